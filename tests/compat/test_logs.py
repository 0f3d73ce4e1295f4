"""Error logging of `CloudWatchLoggingOptions` (reference §18.1): streams with logging enabled write one JSON event
per error to `<data-dir>/logs/<stream>.jsonl` and to the server's stderr, with their log group and log stream names;
`spillway logs` reads them. Streams with logging disabled write no file. The failures are real ones: a Lambda function
(run by spillway's `[functions]`) that fails records, and a key the local bucket cannot hold.
"""

import json
import subprocess
import threading

from conftest import BIN, Server, eventually, flush
from test_processing import QUIET, create, lam, put, spillway_toml

LOGGING = {"Enabled": True, "LogGroupName": "/aws/kinesisfirehose/orders-logged", "LogStreamName": "DestinationDelivery"}


def events(server, stream):
    path = server.data_dir / "logs" / f"{stream}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def logs_cli(server, *args):
    out = subprocess.run([BIN, "logs", "--data-dir", str(server.data_dir), *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_processing_failures_are_logged_to_the_group_and_read_back(tmp_path):
    server = Server(tmp_path / "data", config=spillway_toml(tmp_path / "calls.jsonl")).start()
    try:
        client = server.client()
        create(client, "orders-logged", [lam("partial", retries=0)], CloudWatchLoggingOptions=LOGGING)
        # Same failures, logging off: nothing is written for it.
        create(client, "orders-quiet", [lam("partial", retries=0)], CloudWatchLoggingOptions={"Enabled": False})
        records = [b"ok-1", b"fail-1", b"fail-2", b"ok-2", b"fail-3"]
        for name in ("orders-logged", "orders-quiet"):
            put(client, name, records)
            flush(server, name)

        logged = eventually(lambda: events(server, "orders-logged"), "an error event of orders-logged")
        (e,) = logged
        assert e["logGroupName"] == "/aws/kinesisfirehose/orders-logged"
        assert e["logStreamName"] == "DestinationDelivery"
        assert e["deliveryStreamName"] == "orders-logged"
        assert e["deliveryStreamARN"] == "arn:aws:firehose:us-east-1:123456789012:deliverystream/orders-logged"
        assert e["errorCode"] == "Lambda.ProcessingFailedStatus", e
        assert e["recordCount"] == 3, e
        assert e["processor"].endswith(":function:partial"), e
        assert e["destination"] == "arn:aws:s3:::test-bucket", e
        assert isinstance(e["timestamp"], int) and e["message"], e
        assert not (server.data_dir / "logs" / "orders-quiet.jsonl").exists()

        # The same line went to stderr (the server's log file here).
        eventually(lambda: json.dumps(e["message"])[1:-1] in server.log() and '"logGroupName":"/aws/kinesisfirehose/'
                   'orders-logged"' in server.log(), "the event on the server's stderr")

        # spillway logs: text by default, the stored lines with --json, filters.
        text = logs_cli(server)
        assert "/aws/kinesisfirehose/orders-logged DestinationDelivery [orders-logged] Lambda.ProcessingFailedStatus" in text
        assert "3 records" in text
        lines = [json.loads(line) for line in logs_cli(server, "orders-logged", "--json").splitlines()]
        assert lines == logged
        assert logs_cli(server, "--log-group-name", "/other", "--json") == ""
        assert logs_cli(server, "orders-quiet", "--json") == ""
        assert logs_cli(server, "--since", "1h", "--json").count("\n") == 1
    finally:
        server.kill()


def test_a_default_group_and_delivery_failures_and_logs_follow(server, firehose):
    """Enabled without names: the console's defaults. A key the local bucket cannot hold (a 300-byte folder name)
    fails delivery: S3.InvalidKey is logged, and `spillway logs --follow` prints it as it is written."""
    follower = subprocess.Popen([BIN, "logs", "--data-dir", str(server.data_dir), "--follow"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(follower.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        name = "unwritable-logged"
        firehose.create_delivery_stream(
            DeliveryStreamName=name,
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose-role", "BucketARN": "arn:aws:s3:::test-bucket",
                "Prefix": "x" * 300 + "/", "ErrorOutputPrefix": "errors/", "BufferingHints": QUIET,
                "CloudWatchLoggingOptions": {"Enabled": True}})
        firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"a"}, {"Data": b"b"}])
        flush(server, name)
        (e,) = eventually(lambda: events(server, name), "the delivery failure event")
        assert e["logGroupName"] == f"/aws/kinesisfirehose/{name}"
        assert e["logStreamName"] == "DestinationDelivery"
        assert e["errorCode"] == "S3.InvalidKey", e
        assert "255" in e["message"], e
        assert e["recordCount"] == 2 and e["attemptsMade"] == 1, e
        eventually(lambda: any("S3.InvalidKey" in line and f"[{name}]" in line for line in seen),
                   "spillway logs --follow to print the event")
    finally:
        follower.kill()
        follower.wait(timeout=10)
