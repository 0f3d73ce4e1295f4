"""Data processing (reference §11), error output of processing failures (§10), dynamic partitioning (§12) and prefix
expressions with partition keys (§9.3), black-box against the real binary.

Transformation functions are Python files: seed 001's function, the seed 002-style enrichment and the seed 004-style
filter from crates/spillway-pipeline/tests/fixtures/lambda/ (shared with the Rust tests), plus the small handlers of
`lambda/functions.py` and a JSON-lines program, `lambda/upper_command.py`. Every server of this module
gets a spillway.toml mapping LambdaArns to them (`[functions."arn:..."]`). Buckets are folders under
`<data-dir>/buckets/<bucket>/`; `POST /_spillway/streams/{name}/flush` processes and delivers everything buffered,
whatever the Lambda and S3 buffering hints say.
"""

import base64
import gzip
import json
import os
import random
import re
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import ACCOUNT_ID, REGION, ROLE, FollowingProducers, Server, aws_cli, create_s3_stream, eventually, flush

LAMBDA_DIR = Path(__file__).resolve().parent / "lambda"
# Seed functions shared with the Rust tests of the Lambda contract.
SEED_LAMBDAS = Path(__file__).resolve().parents[2] / "crates" / "spillway-pipeline" / "tests" / "fixtures" / "lambda"
FUNCTIONS_PY = LAMBDA_DIR / "functions.py"
QUIET = {"IntervalInSeconds": 900, "SizeInMBs": 128}
TEMP_PREFIX = ".spillway-tmp-"
SUFFIX = r"{name}-1-\d{{4}}-\d{{2}}-\d{{2}}-\d{{2}}-\d{{2}}-\d{{2}}-[0-9a-f-]{{36}}"
HOUR = r"\d{4}/\d{2}/\d{2}/\d{2}/"
ERROR_FIELDS = {"attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage", "attemptEndingTimestamp", "rawData"}
FUNCTION_ERROR_MESSAGE = "The Lambda function was successfully invoked but it returned an error result."


def function_arn(name):
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


# name → (file, handler, extra options) of the Python functions every server of this module knows.
PY_FUNCTIONS = {
    "seed001": (SEED_LAMBDAS / "seed001" / "lambda_function.py", "lambda_handler", {}),
    "extra2": (SEED_LAMBDAS / "extra2" / "hello.py", "lambda_handler", {}),
    "spurious": (SEED_LAMBDAS / "spurious_filter" / "lambda_function.py", "lambda_handler", {}),
    "echo": (FUNCTIONS_PY, "echo", {}),
    "raises": (FUNCTIONS_PY, "raises", {}),
    "partial": (FUNCTIONS_PY, "partial", {}),
    "keys": (FUNCTIONS_PY, "partition_keys", {}),
    "sleepy": (FUNCTIONS_PY, "sleepy", {"timeout_secs": 1}),
    "crashy": (FUNCTIONS_PY, "crashy", {}),
    "tagged": (FUNCTIONS_PY, "tagged", {}),
}


def toml_str(s):
    return json.dumps(str(s))  # a JSON string is a valid TOML basic string for these paths


def spillway_toml(calls_file, delivery=None, more_toml=""):
    """The [functions] table (the interpreter is this virtualenv's Python, which has boto3 for seed 001's
    `import boto3`), the bare-name `upper` command function, and an optional [delivery] table."""
    out = []
    for name, (file, handler, extra) in PY_FUNCTIONS.items():
        out.append(f"[functions.{toml_str(function_arn(name))}]")
        out.append(f"file = {toml_str(file)}")
        out.append(f"handler = {toml_str(handler)}")
        out.append(f"python = {toml_str(sys.executable)}")
        out.append("workers = 2")
        for k, v in extra.items():
            out.append(f"{k} = {v}")
        out.append(f"env = {{ CALLS_FILE = {toml_str(calls_file)} }}")
        out.append("")
    out.append("[functions.upper]")
    out.append(f"command = [{toml_str(sys.executable)}, {toml_str(LAMBDA_DIR / 'upper_command.py')}]")
    out.append("")
    if delivery:
        out.append("[delivery]")
        out += [f"{k} = {v}" for k, v in delivery.items()]
        out.append("")
    return "\n".join(out) + more_toml


@pytest.fixture
def servers(tmp_path):
    """Starts spillway servers (own data dir each) with this module's functions; kills them afterwards."""
    made = []

    def make(delivery=None, name="data", more_toml=""):
        s = Server(tmp_path / name, config=spillway_toml(tmp_path / "calls.jsonl", delivery, more_toml)).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.kill()


@pytest.fixture
def srv(servers):
    return servers()


def calls(tmp_path, handler=None):
    """Invocations logged by lambda/functions.py handlers (see its module docstring)."""
    path = tmp_path / "calls.jsonl"
    if not path.exists():
        return []
    out = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [c for c in out if handler is None or c["handler"] == handler]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------



def bucket_files(server, bucket):
    """{key: bytes} of every file in a folder bucket, temp files of in-flight writes included."""
    root = server.data_dir / "buckets" / bucket
    out = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        if p.is_file():
            try:
                out[p.relative_to(root).as_posix()] = p.read_bytes()
            except FileNotFoundError:  # renamed away while listing
                pass
    return out


def local_objects(server, bucket="test-bucket"):
    return {k: v for k, v in bucket_files(server, bucket).items()
            if not k.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)}


def under(objs, prefix):
    return {k: v for k, v in objs.items() if k.startswith(prefix)}


def metric(server, name, stream):
    """A sample `name{delivery_stream="stream"}` (counters: pass `X_total`, histograms: `X_count`)."""
    m = re.search(rf'^{re.escape(name)}\{{delivery_stream="{re.escape(stream)}"\}} (\S+)$', server.metrics(), re.M)
    return float(m.group(1)) if m else None


def describe(client, name):
    return client.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]


def param_list(params):
    return [{"ParameterName": k, "ParameterValue": str(v)} for k, v in params.items()]


def proc(kind, **params):
    p = {"Type": kind}
    if params:
        p["Parameters"] = param_list(params)
    return p


def lam(name, retries=1, **params):
    """A Lambda processor for a function of this module's spillway.toml (NumberOfRetries 1 unless given)."""
    arn = name if name.startswith("arn:") else function_arn(name)
    return proc("Lambda", LambdaArn=arn, NumberOfRetries=retries, **params)


def jq(query):
    return proc("MetadataExtraction", MetadataExtractionQuery=query, JsonParsingEngine="JQ-1.6")


APPEND = proc("AppendDelimiterToRecord")
DP = {"Enabled": True, "RetryOptions": {"DurationInSeconds": 60}}


def create(client, name, processors, **dest):
    """Creates an Extended S3 stream with `processors` enabled (quiet buffering unless given); asserts it is
    ACTIVE."""
    dest.setdefault("BufferingHints", QUIET)
    if processors is not None:
        dest["ProcessingConfiguration"] = {"Enabled": True, "Processors": processors}
    create_s3_stream(client, name, **dest)
    d = describe(client, name)
    assert d["DeliveryStreamStatus"] == "ACTIVE", d.get("FailureDescription")
    return name


def put(client, name, records):
    """PutRecordBatch of `records` (bytes), 500 at a time; asserts every record was accepted."""
    for i in range(0, len(records), 500):
        resp = client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records[i:i + 500]])
        assert resp["FailedPutCount"] == 0, resp


def now_ms():
    return int(time.time() * 1000)


def hour_folders(t0_ms, t1_ms):
    """The yyyy/MM/dd/HH/ folders (UTC) an arrival between t0 and t1 can have."""
    return {datetime.fromtimestamp(t / 1000, timezone.utc).strftime("%Y/%m/%d/%H/") for t in (t0_ms, t1_ms)}


def key_parts(key, prefix_re, name):
    m = re.fullmatch(rf"({prefix_re}){SUFFIX.format(name=re.escape(name))}", key, re.S)
    assert m, f"key {key!r} is not {prefix_re}<{name}-1-yyyy-MM-dd-HH-mm-ss-uuid>"
    return m.group(1)


def error_lines(body):
    text = body.decode()
    assert text.endswith("\n"), f"error object does not end with a newline: {text[-80:]!r}"
    return [json.loads(line) for line in text.splitlines()]


def check_error(line, raw, code, attempts, t0, t1, lambda_arn=None, message=None):
    """One error-output line (§10): exact field set, original bytes, code, attempts and timestamps."""
    fields = ERROR_FIELDS | ({"lambdaARN"} if lambda_arn else set())
    assert set(line) == fields, line
    assert base64.b64decode(line["rawData"]) == raw, (line, raw)
    assert line["errorCode"] == code, line
    assert line["attemptsMade"] == attempts, line
    assert isinstance(line["errorMessage"], str) and line["errorMessage"], line
    if message is not None:
        assert line["errorMessage"] == message, line
    if lambda_arn:
        assert line["lambdaARN"] == lambda_arn, line
    assert isinstance(line["arrivalTimestamp"], int) and isinstance(line["attemptEndingTimestamp"], int), line
    assert t0 - 1000 <= line["arrivalTimestamp"] <= line["attemptEndingTimestamp"] <= t1 + 1000, (line, t0, t1)


def all_files(root):
    return [p for p in Path(root).rglob("*") if p.is_file()]


# --------------------------------------------------------------------------------------------------
# 1-3: the seeds' functions, run unchanged
# --------------------------------------------------------------------------------------------------

SEED001_FIELDS = ["timestamp", "event_type", "user_id", "session_id", "page_url", "referrer", "user_agent",
                  "ip_address", "processed_by", "processing_timestamp"]


def check_seed001_output(body, inputs, t0, t1):
    """seed001/lambda_function.py output: one JSON line per input, in order, with exactly its ten fields."""
    assert body.endswith(b"\n")
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert len(lines) == len(inputs)
    for out, src in zip(lines, inputs):
        assert list(out) == SEED001_FIELDS, out  # exactly these fields, in the function's order
        for k in ("event_type", "user_id", "session_id", "page_url", "referrer", "user_agent", "ip_address"):
            assert out[k] == src[k], (k, out, src)
        assert out["processed_by"] == "lambda-firehose-transform"
        stamp = datetime.fromisoformat(out["timestamp"]).replace(tzinfo=timezone.utc)  # utcnow().isoformat()
        assert t0 - 2000 <= stamp.timestamp() * 1000 <= t1 + 2000, (out["timestamp"], t0, t1)
        assert isinstance(out["processing_timestamp"], float)
    return lines


def test_seed001_function_runs_unchanged(srv):
    client = srv.client()
    raw = (SEED_LAMBDAS / "seed001" / "test-data.jsonl").read_bytes().splitlines()
    inputs = [json.loads(r) for r in raw]
    assert len(inputs) == 3
    name = create(client, "clickstream", [lam("seed001", retries=3)], Prefix="clicks/", ErrorOutputPrefix="errs/")
    t0 = now_ms()
    put(client, name, raw)
    answer = flush(srv, name)
    t1 = now_ms()
    objs = local_objects(srv)
    assert sorted(objs) == sorted(answer["Objects"]), (objs.keys(), answer)
    assert answer["Records"] == 3
    (key, body), = objs.items()
    assert key_parts(key, r"clicks/" + HOUR, name)[len("clicks/"):] in hour_folders(t0, t1)
    lines = check_seed001_output(body, inputs, t0, t1)
    assert [x["user_id"] for x in lines] == ["user123", "user456", "user789"]
    assert metric(srv, "SucceedProcessing_Records_total", name) == 3
    assert metric(srv, "SucceedProcessing_Bytes_total", name) == len(body)
    assert metric(srv, "DeliveryToS3_Records_total", name) == 3


def test_seed001_function_via_the_aws_cli(srv, tmp_path):
    raw = (SEED_LAMBDAS / "seed001" / "test-data.jsonl").read_text().splitlines()
    cfg = {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::cli-bucket", "Prefix": "cli/",
           "BufferingHints": QUIET,
           "ProcessingConfiguration": {"Enabled": True, "Processors": [
               {"Type": "Lambda", "Parameters": [
                   {"ParameterName": "LambdaArn", "ParameterValue": function_arn("seed001")},
                   {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "900"}]}]}}
    (tmp_path / "dest.json").write_text(json.dumps(cfg))
    (tmp_path / "records.json").write_text(json.dumps([{"Data": line} for line in raw]))
    aws_cli(srv, "firehose", "create-delivery-stream", "--delivery-stream-name", "cli-clicks",
            "--extended-s3-destination-configuration", f"file://{tmp_path / 'dest.json'}")
    d = aws_cli(srv, "firehose", "describe-delivery-stream", "--delivery-stream-name", "cli-clicks")
    desc = d["DeliveryStreamDescription"]
    assert desc["DeliveryStreamStatus"] == "ACTIVE", desc.get("FailureDescription")
    pc = desc["Destinations"][0]["ExtendedS3DestinationDescription"]["ProcessingConfiguration"]
    assert pc["Enabled"] is True and pc["Processors"][0]["Type"] == "Lambda"
    t0 = now_ms()
    out = aws_cli(srv, "firehose", "put-record-batch", "--delivery-stream-name", "cli-clicks",
                  "--records", f"file://{tmp_path / 'records.json'}")
    assert out["FailedPutCount"] == 0
    flush(srv, "cli-clicks")
    t1 = now_ms()
    (key, body), = local_objects(srv, "cli-bucket").items()
    assert key.startswith("cli/")
    check_seed001_output(body, [json.loads(r) for r in raw], t0, t1)


def test_seed002_style_enrichment_gives_the_expected_output(srv):
    client = srv.client()
    expected = (SEED_LAMBDAS / "extra2" / "expected_output.json").read_text()
    assert expected.endswith("\n")
    source = expected.rstrip("\n").replace(', "EXTRA2": 181.43999999999997', "")
    assert source != expected.rstrip("\n")
    second = json.loads(source)
    second.update(fuel_consumption=2, lap_time=3.5)
    name = create(client, "telemetry", [lam("extra2")])
    put(client, name, [source.encode(), json.dumps(second).encode()])
    answer = flush(srv, name)
    assert answer["Records"] == 2
    (body,) = local_objects(srv).values()
    first_line, second_line = body.decode().splitlines(keepends=True)
    assert first_line == expected  # byte for byte, EXTRA2 = fuel_consumption * lap_time appended last
    assert json.loads(second_line) == {**second, "EXTRA2": 7.0}
    assert list(json.loads(second_line))[-1] == "EXTRA2"


TAXI_COLUMNS = ["pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude", "trip_id",
                "trip_distance", "passenger_count", "pickup_datetime", "dropoff_datetime", "total_amount"]


def taxi_trip(trip_id, **changes):
    trip = {"type": "trip", "trip_id": trip_id, "pickup_latitude": 40.75, "pickup_longitude": -73.98,
            "dropoff_latitude": 40.76, "dropoff_longitude": -73.97, "trip_distance": 1.2, "passenger_count": 1,
            "pickup_datetime": "2020-09-03T09:00:00Z", "dropoff_datetime": "2020-09-03T09:10:00Z",
            "total_amount": 9.5, "vendor_id": 2, "store_and_fwd_flag": "N"}
    trip.update(changes)
    return trip


def test_seed004_style_filter_drops_spurious_trips_and_fails_non_json(srv):
    client = srv.client()
    clean = [taxi_trip(1), taxi_trip(2, passenger_count=3, total_amount=31.25)]
    spurious = [taxi_trip(901, trip_distance=0.0), taxi_trip(902, pickup_latitude=0.0, pickup_longitude=0.0),
                taxi_trip(903, dropoff_datetime="2020-09-03T08:00:00Z"), taxi_trip(904, type="watermark"),
                taxi_trip(905, total_amount=None)]
    not_json = [b"definitely not json \x00\xff", b"[1, 2, 3]"]
    records = [json.dumps(clean[0]).encode(), json.dumps(spurious[0]).encode(), not_json[0],
               json.dumps(spurious[1]).encode(), json.dumps(clean[1]).encode()]
    records += [json.dumps(s).encode() for s in spurious[2:]] + [not_json[1]]
    name = create(client, "taxi", [lam("spurious")], Prefix="trips/", ErrorOutputPrefix="trips-errors/")
    t0 = now_ms()
    put(client, name, records)
    answer = flush(srv, name)
    t1 = now_ms()
    objs = local_objects(srv)
    assert sorted(objs) == sorted(answer["Objects"])
    main, errors = under(objs, "trips/"), under(objs, "trips-errors/")
    assert len(main) == 1 and len(errors) == 1 and len(objs) == 2, list(objs)
    (key, body), = main.items()
    assert key_parts(key, "trips/" + HOUR, name)[len("trips/"):] in hour_folders(t0, t1)
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert body.endswith(b"\n")
    assert [list(x) for x in lines] == [TAXI_COLUMNS, TAXI_COLUMNS], "only the table's columns, in order"
    assert lines == [{c: t[c] for c in TAXI_COLUMNS} for t in clean]
    (ekey, ebody), = errors.items()
    folder = key_parts(ekey, "trips-errors/processing-failed/" + HOUR, name)
    assert folder[len("trips-errors/processing-failed/"):] in hour_folders(t0, t1)
    failed = error_lines(ebody)
    assert len(failed) == 2
    for line, raw in zip(failed, not_json):
        check_error(line, raw, "Lambda.ProcessingFailedStatus", 1, t0, t1, lambda_arn=function_arn("spurious"))
    # Dropped trips are nowhere: not delivered, not in the error output.
    everything = body + b"".join(base64.b64decode(x["rawData"]) for x in failed)
    for s in spurious:
        assert b'"trip_id": %d' % s["trip_id"] not in everything
    assert answer["Records"] == 4, "2 delivered + 2 error lines; the 5 dropped count nowhere"
    assert metric(srv, "SucceedProcessing_Records_total", name) == 2
    assert metric(srv, "DeliveryToS3_Records_total", name) == 2


# --------------------------------------------------------------------------------------------------
# 4: failing functions
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error_prefix,expected", [
    ("errs/", "errs/processing-failed/" + HOUR),
    ("e/!{firehose:error-output-type}/y=!{timestamp:yyyy}/", r"e/processing-failed/y=\d{4}/"),
    (None, "out/processing-failed/" + HOUR),  # no ErrorOutputPrefix: <Prefix><type>/yyyy/MM/dd/HH/
], ids=["static-error-prefix", "error-prefix-template", "no-error-prefix"])
def test_function_error_sends_the_whole_batch_to_processing_failed(srv, tmp_path, error_prefix, expected):
    client = srv.client()
    dest = {"Prefix": "out/"}
    if error_prefix is not None:
        dest["ErrorOutputPrefix"] = error_prefix
    name = create(client, "raising", [lam("raises", retries=1)], **dest)
    records = [b"r0", b"\x00binary\xff", b'{"json": true}']
    t0 = now_ms()
    put(client, name, records)
    answer = flush(srv, name)
    t1 = now_ms()
    objs = local_objects(srv)
    assert sorted(objs) == sorted(answer["Objects"])
    (key, body), = objs.items()
    prefix = key_parts(key, expected, name)
    if "y=" in expected:
        assert prefix in {
            f"e/processing-failed/y={datetime.fromtimestamp(t / 1000, timezone.utc).year}/" for t in (t0, t1)}
    else:
        assert prefix[-len("yyyy/MM/dd/HH/"):] in hour_folders(t0, t1), prefix
    lines = error_lines(body)
    assert len(lines) == 3
    for line, raw in zip(lines, records):
        check_error(line, raw, "Lambda.FunctionError", 2, t0, t1, lambda_arn=function_arn("raises"),
                    message=FUNCTION_ERROR_MESSAGE)
    # NumberOfRetries 1: two invocations with the same records, each with a fresh invocationId.
    made = calls(tmp_path, "raises")
    assert len(made) == 2, made
    assert made[0]["recordIds"] == made[1]["recordIds"] and len(made[0]["recordIds"]) == 3
    assert made[0]["invocationId"] != made[1]["invocationId"]
    assert made[0]["data"][0] == "r0"
    assert metric(srv, "DeliveryToS3_Records_total", name) == 0


def test_processing_failed_records_go_to_the_error_output_others_are_delivered(srv, tmp_path):
    client = srv.client()
    name = create(client, "partial", [lam("partial", retries=3)], Prefix="ok/", ErrorOutputPrefix="errs/")
    records = [b"keep", b"fail-me", b"drop-me", b"keep2", b"fail-too"]
    t0 = now_ms()
    put(client, name, records)
    answer = flush(srv, name)
    t1 = now_ms()
    objs = local_objects(srv)
    assert sorted(objs) == sorted(answer["Objects"])
    (main,) = under(objs, "ok/").values()
    assert main == b"KEEP|tKEEP2|t"
    (ekey, ebody), = under(objs, "errs/").items()
    key_parts(ekey, "errs/processing-failed/" + HOUR, name)
    lines = error_lines(ebody)
    assert [base64.b64decode(x["rawData"]) for x in lines] == [b"fail-me", b"fail-too"]
    for line, raw in zip(lines, [b"fail-me", b"fail-too"]):
        check_error(line, raw, "Lambda.ProcessingFailedStatus", 1, t0, t1, lambda_arn=function_arn("partial"))
    assert len(calls(tmp_path, "partial")) == 1, "a record-level ProcessingFailed is not retried"


def test_timeout_fails_the_batch_after_the_retries(srv, tmp_path):
    client = srv.client()
    name = create(client, "slow", [lam("sleepy", retries=1)], Prefix="ok/", ErrorOutputPrefix="errs/")
    records = [b"sleep", b"innocent bystander"]
    t0 = now_ms()
    put(client, name, records)
    started = time.monotonic()
    answer = flush(srv, name)
    elapsed = time.monotonic() - started
    t1 = now_ms()
    assert elapsed < 20, f"timeout_secs = 1 was not honoured: the flush took {elapsed:.1f} s"
    (key, body), = local_objects(srv).items()
    assert key in answer["Objects"]
    key_parts(key, "errs/processing-failed/" + HOUR, name)
    lines = error_lines(body)
    for line, raw in zip(lines, records):
        check_error(line, raw, "Lambda.FunctionError", 2, t0, t1, lambda_arn=function_arn("sleepy"))
        # Two attempts, each cut by the 1 s timeout.
        assert line["attemptEndingTimestamp"] - line["arrivalTimestamp"] >= 1900, line
    assert len(lines) == 2
    assert len(calls(tmp_path, "sleepy")) == 2
    # The timed-out worker is replaced: a later batch is processed normally.
    put(client, name, [b"after"])
    answer = flush(srv, name)
    (body,) = under(local_objects(srv), "ok/").values()
    assert body == b"after"


def test_crashed_worker_is_restarted_and_a_later_batch_succeeds(srv, tmp_path):
    client = srv.client()
    name = create(client, "crashing", [lam("crashy", retries=1)], Prefix="ok/", ErrorOutputPrefix="errs/")
    t0 = now_ms()
    put(client, name, [b"crash", b"caught in it"])
    flush(srv, name)
    t1 = now_ms()
    (body,) = under(local_objects(srv), "errs/").values()
    lines = error_lines(body)
    assert len(lines) == 2
    for line, raw in zip(lines, [b"crash", b"caught in it"]):
        check_error(line, raw, "Lambda.FunctionError", 2, t0, t1, lambda_arn=function_arn("crashy"))
    assert len(calls(tmp_path, "crashy")) == 2
    put(client, name, [b"later", b"batch"])
    flush(srv, name)
    assert list(under(local_objects(srv), "ok/").values()) == [b"laterbatch"]
    assert len(calls(tmp_path, "crashy")) == 3
    assert "Lambda.FunctionError" not in json.dumps(list(under(local_objects(srv), "ok/")))


def test_command_function_by_bare_name(srv):
    """`[functions.upper]` (a bare function name, a JSON-lines program) matches arn:...:function:upper."""
    client = srv.client()
    name = create(client, "cmd", [lam(function_arn("upper")), APPEND])
    put(client, name, [b"one", b"two"])
    flush(srv, name)
    assert list(local_objects(srv).values()) == [b"ONE!\nTWO!\n"]


def test_lambda_buffer_interval_processes_without_a_flush(srv, tmp_path):
    client = srv.client()
    name = create(client, "lambda-interval", [lam("echo", BufferIntervalInSeconds=1)],
                  BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0})
    started = time.monotonic()
    put(client, name, [b"a", b"b"])
    objs = eventually(lambda: local_objects(srv), "an object after the 1 s Lambda buffer interval", timeout=20)
    assert time.monotonic() - started >= 0.9, "processed before the Lambda buffer interval ran out"
    assert list(objs.values()) == [b"ab"]
    assert len(calls(tmp_path, "echo")) == 1


def test_lambda_buffer_size_bounds_each_invocation(srv, tmp_path):
    client = srv.client()
    name = create(client, "lambda-size", [lam("echo", BufferSizeInMBs=0.2, BufferIntervalInSeconds=900)])
    records = [b"%04d" % i + b"x" * 9996 for i in range(50)]  # 500 kB in 10 kB records
    put(client, name, records)
    flush(srv, name)
    assert b"".join(local_objects(srv).values()) == b"".join(records)
    made = calls(tmp_path, "echo")
    assert len(made) >= 3, [len(c["data"]) for c in made]
    for c in made:
        assert sum(len(d) for d in c["data"]) <= 0.2 * 1024 * 1024, [len(c["data"]) for c in made]
    # Invocations run concurrently (workers = 2), so the log is in completion order; each is a contiguous run.
    runs = sorted(c["data"] for c in made)
    assert [d for run in runs for d in run] == [r.decode() for r in records], "every record sent once, in runs"


# --------------------------------------------------------------------------------------------------
# 5: built-in processors
# --------------------------------------------------------------------------------------------------

def test_append_delimiter_adds_a_newline_after_each_record(srv):
    client = srv.client()
    name = create(client, "delim", [APPEND])
    put(client, name, [b"a", b"b", b'{"c":1}', b""])
    answer = flush(srv, name)
    assert list(local_objects(srv).values()) == [b'a\nb\n{"c":1}\n\n']
    assert answer["Records"] == 4


def test_record_deaggregation_json(srv):
    client = srv.client()
    plain = create(client, "deagg-json", [proc("RecordDeAggregation", SubRecordType="JSON")], bucket="plain")
    lines = create(client, "deagg-json-lines", [proc("RecordDeAggregation", SubRecordType="JSON"), APPEND],
                   bucket="lines", ErrorOutputPrefix="errs/")
    records = [b'{"a":1}{"a":2}', b'{"a":3}\n{"a":4}\n', b'{"a":5}']
    put(client, plain, records)
    assert flush(srv, plain)["Records"] == 5
    assert list(local_objects(srv, "plain").values()) == [b'{"a":1}{"a":2}{"a":3}{"a":4}{"a":5}']
    bad = b'{"a":6}[1,2]'
    t0 = now_ms()
    put(client, lines, records + [bad])
    flush(srv, lines)
    t1 = now_ms()
    objs = local_objects(srv, "lines")
    main = {k: v for k, v in objs.items() if not k.startswith("errs/")}
    assert list(main.values()) == [b'{"a":1}\n{"a":2}\n{"a":3}\n{"a":4}\n{"a":5}\n']
    (ekey, ebody), = under(objs, "errs/").items()
    key_parts(ekey, "errs/processing-failed/" + HOUR, lines)
    (line,) = error_lines(ebody)
    check_error(line, bad, line["errorCode"], 1, t0, t1)  # all or nothing: the good half is not delivered
    assert line["errorCode"].startswith("RecordDeAggregation."), line


def test_record_deaggregation_delimited(srv):
    client = srv.client()
    delimiter = base64.b64encode(b"####").decode()
    assert delimiter == "IyMjIw=="
    name = create(client, "deagg-delim",
                  [APPEND, proc("RecordDeAggregation", SubRecordType="DELIMITED", Delimiter=delimiter)])
    put(client, name, [b"a####b####c", b"one", b"x####y####"])
    answer = flush(srv, name)
    # java.lang.String#split: trailing empty pieces are dropped.
    assert list(local_objects(srv).values()) == [b"a\nb\nc\none\nx\ny\n"]
    assert answer["Records"] == 6


def cloudwatch_envelope(message_type, messages, group="/aws/lambda/app"):
    return gzip.compress(json.dumps({
        "messageType": message_type, "owner": ACCOUNT_ID, "logGroup": group, "logStream": "2026/01/01/[$LATEST]abc",
        "subscriptionFilters": ["to-firehose"],
        "logEvents": [{"id": str(36000000000000000000000000000000000000000000000000000000 + i),
                       "timestamp": 1700000000000 + i, "message": m} for i, m in enumerate(messages)],
    }).encode())


def test_cloudwatch_logs_decompression_and_message_extraction(srv):
    client = srv.client()
    name = create(client, "cwl", [proc("CloudWatchLogProcessing", DataMessageExtraction="true"),
                                   proc("Decompression", CompressionFormat="GZIP")],
                  Prefix="logs/", ErrorOutputPrefix="cwl-errors/")
    data1 = cloudwatch_envelope("DATA_MESSAGE", ["first line", '{"level":"info","msg":"json message"}'])
    control = gzip.compress(json.dumps({"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs",
                                        "logGroup": "", "logStream": "", "subscriptionFilters": [],
                                        "logEvents": [{"id": "", "timestamp": 1700000000000,
                                                       "message": "CWL CONTROL MESSAGE: Checking health of "
                                                                  "destination Firehose."}]}).encode())
    data2 = cloudwatch_envelope("DATA_MESSAGE", ["third"])
    not_gzip = b"plain text, not gzip"
    corrupt = data2[:12] + b"\x00" * 8
    not_envelope = gzip.compress(b'{"hello": "world"}')
    t0 = now_ms()
    put(client, name, [data1, control, not_gzip, data2, corrupt, not_envelope])
    answer = flush(srv, name)
    t1 = now_ms()
    objs = local_objects(srv)
    assert sorted(objs) == sorted(answer["Objects"])
    (body,) = under(objs, "logs/").values()
    # one LF-terminated line per logEvents[].message; the CONTROL_MESSAGE adds nothing visible
    assert body == b'first line\n{"level":"info","msg":"json message"}\nthird\n'
    (ekey, ebody), = under(objs, "cwl-errors/").items()
    key_parts(ekey, "cwl-errors/decompression-failed/" + HOUR, name)
    lines = error_lines(ebody)
    assert [base64.b64decode(x["rawData"]) for x in lines] == [not_gzip, corrupt, not_envelope]
    for line, raw in zip(lines, [not_gzip, corrupt, not_envelope]):
        check_error(line, raw, "Decompression failed.", 1, t0, t1, message="Decompression failed.")


def test_decompression_without_extraction_delivers_the_envelope(srv):
    client = srv.client()
    name = create(client, "cwl-raw", [proc("Decompression"), proc("CloudWatchLogProcessing",
                                                                   DataMessageExtraction="false")])
    data = cloudwatch_envelope("DATA_MESSAGE", ["m"])
    put(client, name, [data])
    flush(srv, name)
    assert list(local_objects(srv).values()) == [gzip.decompress(data)]


# --------------------------------------------------------------------------------------------------
# 6: dynamic partitioning
# --------------------------------------------------------------------------------------------------

CUSTOMER_QUERY = '{customer_id:.customer_id,year:.ts|strftime("%Y")}'
CUSTOMER_PREFIX = "customer_id=!{partitionKeyFromQuery:customer_id}/year=!{partitionKeyFromQuery:year}/"


def test_dynamic_partitioning_by_jq_query(srv):
    client = srv.client()
    name = create(client, "dp-jq", [jq(CUSTOMER_QUERY), APPEND], Prefix=CUSTOMER_PREFIX + "arrival=!{timestamp:yyyy}/",
                  ErrorOutputPrefix="dp-errors/!{firehose:error-output-type}/", DynamicPartitioningConfiguration=DP)
    y2023, y2020 = 1700000000, 1600000000
    good = []
    for i in range(12):
        customer = ["alpha", "bravo", "charlie"][i % 3]
        ts = y2020 if (customer == "charlie" and i >= 6) else y2023
        good.append({"customer_id": customer, "ts": ts, "n": i})
    bad = [b'{"ts": 1700000000, "n": 100}', b"not json at all", b'{"customer_id": "alpha", "ts": "soon"}',
           b'{"customer_id": null, "ts": 1700000000}']
    records = [json.dumps(g).encode() for g in good]
    records = records[:5] + [bad[0], bad[1]] + records[5:] + [bad[2], bad[3]]
    t0 = now_ms()
    put(client, name, records)
    answer = flush(srv, name)
    t1 = now_ms()
    objs = local_objects(srv)
    assert sorted(objs) == sorted(answer["Objects"])
    main = {k: v for k, v in objs.items() if not k.startswith("dp-errors/")}
    by_prefix = {}
    for key, body in main.items():
        prefix, arrival = re.fullmatch(r"(customer_id=[a-z]+/year=\d{4}/)arrival=(\d{4})/",
                                       key_parts(key, r"customer_id=[a-z]+/year=\d{4}/arrival=\d{4}/", name)).groups()
        assert int(arrival) in {datetime.fromtimestamp(t / 1000, timezone.utc).year for t in (t0, t1)}, key
        assert prefix not in by_prefix, f"two objects for {prefix} in one flush"
        by_prefix[prefix] = [json.loads(line) for line in body.decode().splitlines()]
        assert body.endswith(b"\n")
    expect = {}
    for g in good:
        year = datetime.fromtimestamp(g["ts"], timezone.utc).year
        expect.setdefault(f"customer_id={g['customer_id']}/year={year}/", []).append(g)
    assert by_prefix == expect  # each object holds exactly its partition's records, in order
    assert len(by_prefix) == 4
    (ekey, ebody), = under(objs, "dp-errors/").items()
    key_parts(ekey, "dp-errors/processing-failed/", name)
    lines = error_lines(ebody)
    assert [base64.b64decode(x["rawData"]) for x in lines] == bad
    for line, raw in zip(lines, bad):
        check_error(line, raw, "DynamicPartitioning.MetadataExtractionFailed", 1, t0, t1)
    assert metric(srv, "JQProcessing_Duration_count", name) >= 1
    assert metric(srv, "DeliveryToS3_Records_total", name) == len(good)
    assert metric(srv, "DeliveryToS3_ObjectCount_total", name) == 4


def test_dynamic_partitioning_by_lambda_partition_keys_after_deaggregation(srv, tmp_path):
    """RecordDeAggregation → Lambda (metadata.partitionKeys) → jq on the function's output → delimiter."""
    client = srv.client()
    name = create(client, "dp-lambda",
                  [APPEND, jq("{kind:.kind}"), lam("keys"), proc("RecordDeAggregation", SubRecordType="JSON")],
                  Prefix="tenant=!{partitionKeyFromLambda:tenant}/kind=!{partitionKeyFromQuery:kind}/",
                  ErrorOutputPrefix="errs/!{firehose:error-output-type}/", DynamicPartitioningConfiguration=DP)
    aggregated = b'{"tenant":"t1","kind":"a","n":1}{"tenant":"t2","kind":"a","n":2}{"tenant":"t1","kind":"b","n":3}'
    single = b'{"tenant":"t2","kind":"a","n":4}'
    no_tenant = b'{"kind":"a","n":5}'
    numeric = b'{"tenant":42,"kind":"b","n":6}'
    t0 = now_ms()
    put(client, name, [aggregated, single, no_tenant, numeric])
    flush(srv, name)
    t1 = now_ms()
    objs = local_objects(srv)
    got = {key_parts(k, r"tenant=\w+/kind=[ab]/", name): v for k, v in objs.items() if not k.startswith("errs/")}
    assert got == {
        "tenant=42/kind=b/": numeric + b"\n\n",  # a number from metadata.partitionKeys is taken as its text
        "tenant=t1/kind=a/": b'{"tenant":"t1","kind":"a","n":1}\n\n',
        "tenant=t2/kind=a/": b'{"tenant":"t2","kind":"a","n":2}\n\n{"tenant":"t2","kind":"a","n":4}\n\n',
        "tenant=t1/kind=b/": b'{"tenant":"t1","kind":"b","n":3}\n\n',
    }, "the function saw each sub-record (its output ends with LF, the delimiter adds another)"
    made = calls(tmp_path, "partition_keys")
    assert [d for c in made for d in c["data"]] == [
        '{"tenant":"t1","kind":"a","n":1}', '{"tenant":"t2","kind":"a","n":2}', '{"tenant":"t1","kind":"b","n":3}',
        single.decode(), no_tenant.decode(), numeric.decode()]
    (ebody,) = under(objs, "errs/processing-failed/").values()
    (line,) = error_lines(ebody)
    check_error(line, no_tenant, "DynamicPartitioning.MetadataExtractionFailed", 1, t0, t1)


def test_active_partitions_limit(servers):
    srv = servers(delivery={"active_partitions_limit": 3})
    client = srv.client()
    name = create(client, "dp-limit", [jq("{c:.c}"), APPEND], Prefix="c=!{partitionKeyFromQuery:c}/",
                  ErrorOutputPrefix="errs/!{firehose:error-output-type}/", DynamicPartitioningConfiguration=DP)
    customers = ["c1", "c2", "c3", "c4", "c5"]
    records = [json.dumps({"c": c, "i": i}).encode() for i in range(2) for c in customers]
    t0 = now_ms()
    put(client, name, records)
    eventually(lambda: metric(srv, "PartitionCount", name) == 3, "PartitionCount 3 before the flush")
    assert metric(srv, "PartitionCountExceeded", name) == 1
    flush(srv, name)
    t1 = now_ms()
    objs = local_objects(srv)
    main = {key_parts(k, r"c=c\d/", name): v for k, v in objs.items() if not k.startswith("errs/")}
    assert main == {f"c={c}/": b"".join(json.dumps({"c": c, "i": i}).encode() + b"\n" for i in range(2))
                    for c in ["c1", "c2", "c3"]}
    (ebody,) = under(objs, "errs/processing-failed/").values()
    lines = error_lines(ebody)
    refused = [json.dumps({"c": c, "i": i}).encode() for i in range(2) for c in ["c4", "c5"]]
    assert [base64.b64decode(x["rawData"]) for x in lines] == refused
    for line, raw in zip(lines, refused):
        check_error(line, raw, "DynamicPartitioning.ActivePartitionsLimitExceeded", 1, t0, t1)
    assert metric(srv, "PartitionCountExceeded", name) == 1
    # The flushed partitions are no longer active: a new customer is accepted again.
    put(client, name, [b'{"c":"c4","i":9}'])
    eventually(lambda: metric(srv, "PartitionCountExceeded", name) == 0, "PartitionCountExceeded back to 0")
    assert metric(srv, "PartitionCount", name) == 1
    flush(srv, name)
    c4 = [v for k, v in local_objects(srv).items() if k.startswith("c=c4/")]
    assert c4 == [b'{"c":"c4","i":9}\n']


ESCAPES = ["../../../../escaped-{tag}", "/tmp/escaped-{tag}-abs", "..", ".", "a/../../../escaped-{tag}",
           "../escaped-{tag}", "ctl\u0001escaped-{tag}", "new\nline-escaped-{tag}", "", "a/..", "./x"]


@pytest.mark.parametrize("source", ["query", "lambda"])
def test_partition_key_values_cannot_escape_the_bucket(servers, tmp_path, source):
    srv = servers()
    client = srv.client()
    tag = os.urandom(4).hex()
    if source == "query":
        processors = [jq("{k:.tenant}")]
        prefix = "data/!{partitionKeyFromQuery:k}/"
    else:
        processors = [lam("keys")]
        prefix = "data/!{partitionKeyFromLambda:tenant}/"
    name = create(client, f"escape-{source}", processors, Prefix=prefix,
                  ErrorOutputPrefix="errs/!{firehose:error-output-type}/", DynamicPartitioningConfiguration=DP)
    bad = [json.dumps({"tenant": v.format(tag=tag)}, separators=(",", ":")).encode() for v in ESCAPES]
    ok = [b'{"tenant":"fine"}', b'{"tenant":"a/b"}', b'{"tenant":"..."}', b'{"tenant":"x..y"}']
    t0 = now_ms()
    put(client, name, ok[:2] + bad + ok[2:])
    flush(srv, name)
    t1 = now_ms()
    # Nothing anywhere outside <bucket>/data/ and <bucket>/errs/, on the whole test's disk area or /tmp.
    stray = [p for p in all_files(tmp_path) if f"escaped-{tag}" in str(p)]
    assert not stray, stray
    assert not Path(f"/tmp/escaped-{tag}-abs").exists()
    assert not list(Path("/tmp").glob(f"*escaped-{tag}*"))
    bucket = srv.data_dir / "buckets" / "test-bucket"
    assert sorted(p.name for p in (srv.data_dir / "buckets").iterdir()) == ["test-bucket"]
    for p in all_files(bucket):
        rel = p.relative_to(bucket).as_posix()
        assert rel.startswith("data/") or rel.startswith("errs/"), rel
        assert p.resolve().is_relative_to(bucket.resolve()), p
    objs = local_objects(srv)
    main = {key_parts(k, r"data/.+/", name): v for k, v in objs.items() if k.startswith("data/")}
    suffix = b"\n" if source == "lambda" else b""  # the `keys` function re-serialises with an LF
    assert main == {"data/fine/": ok[0] + suffix, "data/a/b/": ok[1] + suffix, "data/.../": ok[2] + suffix,
                    "data/x..y/": ok[3] + suffix}
    (ebody,) = under(objs, "errs/processing-failed/").values()
    lines = error_lines(ebody)
    assert [base64.b64decode(x["rawData"]) for x in lines] == bad
    for line, raw in zip(lines, bad):
        check_error(line, raw, "DynamicPartitioning.MetadataExtractionFailed", 1, t0, t1)


# --------------------------------------------------------------------------------------------------
# 7: source record backup
# --------------------------------------------------------------------------------------------------

def test_backup_keeps_the_original_records_including_dropped_and_failed(srv):
    client = srv.client()
    backup = {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::backup-bucket", "Prefix": "raw/",
              "BufferingHints": QUIET}
    name = create(client, "with-backup", [lam("partial")], bucket="main-bucket", ErrorOutputPrefix="errs/",
                  S3BackupMode="Enabled", S3BackupConfiguration=backup)
    records = [b"keep", b"drop-me", b"fail-me", b"more"]
    put(client, name, records)
    answer = flush(srv, name)
    main = local_objects(srv, "main-bucket")
    backed = local_objects(srv, "backup-bucket")
    assert sorted(answer["Objects"]) == sorted(list(main) + list(backed))
    assert [v for k, v in main.items() if not k.startswith("errs/")] == [b"KEEP|tMORE|t"]
    (ebody,) = under(main, "errs/").values()
    assert [base64.b64decode(x["rawData"]) for x in error_lines(ebody)] == [b"fail-me"]
    (bkey, bbody), = backed.items()
    assert bkey.startswith("raw/")
    assert bbody == b"keepdrop-mefail-memore", "the backup holds every original record, untransformed"
    assert metric(srv, "BackupToS3_Records_total", name) == 4
    assert metric(srv, "DeliveryToS3_Records_total", name) == 2


# --------------------------------------------------------------------------------------------------
# 8: create-time validation
# --------------------------------------------------------------------------------------------------

DP_QUERY_PREFIX = {"Prefix": "k=!{partitionKeyFromQuery:k}/", "ErrorOutputPrefix": "e/!{firehose:error-output-type}/",
                   "DynamicPartitioningConfiguration": {"Enabled": True}}
INVALID_PROCESSING = [
    ("retries-not-a-number", [lam("echo", retries="many")], {}, "NumberOfRetries"),
    ("retries-too-many", [lam("echo", retries=301)], {}, "NumberOfRetries"),
    ("buffer-size-too-large", [lam("echo", BufferSizeInMBs=10)], {}, "BufferSizeInMBs"),
    ("buffer-interval-too-long", [lam("echo", BufferIntervalInSeconds=901)], {}, "BufferIntervalInSeconds"),
    ("lambda-without-arn", [proc("Lambda", NumberOfRetries=1)], {}, "LambdaArn"),
    ("two-lambdas", [lam("echo"), lam("partial")], {}, "at most once"),
    ("cloudwatch-without-decompression", [proc("CloudWatchLogProcessing", DataMessageExtraction="true")], {},
     "Decompression"),
    ("bad-compression-format", [proc("Decompression", CompressionFormat="ZSTD")], {}, "CompressionFormat"),
    ("delimited-without-delimiter", [proc("RecordDeAggregation", SubRecordType="DELIMITED")], {}, "Delimiter"),
    ("bad-sub-record-type", [proc("RecordDeAggregation", SubRecordType="XML")], {}, "SubRecordType"),
    ("invalid-jq", [jq("{k:.k")], {}, "MetadataExtractionQuery"),
    ("jq-wrong-engine", [proc("MetadataExtraction", MetadataExtractionQuery="{k:.k}", JsonParsingEngine="JQ-1.5")],
     {}, "JsonParsingEngine"),
    ("query-key-without-metadata-extraction", [APPEND], DP_QUERY_PREFIX, "MetadataExtraction"),
    ("query-does-not-produce-the-key", [jq("{other:.k}")], DP_QUERY_PREFIX, "does not produce the key k"),
    ("lambda-key-without-lambda", [jq("{k:.k}")],
     {**DP_QUERY_PREFIX, "Prefix": "k=!{partitionKeyFromQuery:k}/t=!{partitionKeyFromLambda:t}/"},
     "no Lambda processor"),
    ("empty-processor-list", [], {}, "Processors"),
]


@pytest.mark.parametrize("processors,dest,fragment", [c[1:] for c in INVALID_PROCESSING],
                         ids=[c[0] for c in INVALID_PROCESSING])
def test_invalid_processing_configuration_is_invalid_argument(srv, processors, dest, fragment):
    """A configuration the real service refuses is refused at the API (InvalidArgumentException naming the
    problem); no stream is created."""
    client = srv.client()
    dest = dict(dest)
    dest["ProcessingConfiguration"] = {"Enabled": True, "Processors": processors}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        create_s3_stream(client, "invalid", **dest)
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException", e.value.response
    assert fragment in e.value.response["Error"]["Message"], e.value.response
    assert client.list_delivery_streams()["DeliveryStreamNames"] == []


def test_unmapped_lambda_arn_fails_the_create(srv):
    """A function spillway does not know where to run: the stream is CREATING_FAILED with a FailureDescription
    saying which [functions] entry to add; it takes no records."""
    client = srv.client()
    create_s3_stream(client, "invalid", ProcessingConfiguration={"Enabled": True, "Processors": [lam("not-configured")]})
    d = describe(client, "invalid")
    assert d["DeliveryStreamStatus"] == "CREATING_FAILED", d
    failure = d["FailureDescription"]
    assert failure["Type"] == "UNKNOWN_ERROR", failure
    assert "not-configured" in failure["Details"], failure
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.put_record(DeliveryStreamName="invalid", Record={"Data": b"x"})
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException", e.value.response
    assert not (srv.data_dir / "buckets").exists() or not any((srv.data_dir / "buckets").iterdir())


def test_partition_key_in_prefix_without_dynamic_partitioning_is_invalid_argument(srv):
    client = srv.client()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        create_s3_stream(client, "nodp", Prefix="k=!{partitionKeyFromQuery:k}/",
                         ErrorOutputPrefix="e/!{firehose:error-output-type}/",
                         ProcessingConfiguration={"Enabled": True, "Processors": [jq("{k:.k}")]})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert e.value.response["Error"]["Message"] == ("Dynamic Partitioning Namespaces can only be part of a prefix "
                                                    "expression when Dynamic Partitioning is enabled.")


def test_disabled_processing_is_kept_but_not_run(srv):
    """`Enabled: false` keeps the processors (even an unmapped function) without running them."""
    client = srv.client()
    create_s3_stream(client, "off", BufferingHints=QUIET, ProcessingConfiguration={
        "Enabled": False, "Processors": [lam("not-configured"), APPEND]})
    d = describe(client, "off")
    assert d["DeliveryStreamStatus"] == "ACTIVE", d.get("FailureDescription")
    pc = d["Destinations"][0]["ExtendedS3DestinationDescription"]["ProcessingConfiguration"]
    assert pc["Enabled"] is False and [p["Type"] for p in pc["Processors"]] == ["Lambda", "AppendDelimiterToRecord"]
    put(client, "off", [b"as", b"is"])
    flush(srv, "off")
    assert list(local_objects(srv).values()) == [b"asis"]


# --------------------------------------------------------------------------------------------------
# 9: metrics
# --------------------------------------------------------------------------------------------------

def test_processing_metrics_move(srv):
    client = srv.client()
    name = create(client, "metered", [lam("crashy", retries=0)], ErrorOutputPrefix="errs/")
    text = srv.metrics()
    for family in ("ExecuteProcessing_Duration", "ExecuteProcessing_Success", "SucceedProcessing_Records",
                   "SucceedProcessing_Bytes", "JQProcessing_Duration", "PartitionCount", "PartitionCountExceeded"):
        assert f"# TYPE {family} " in text, family
    assert metric(srv, "ExecuteProcessing_Duration_count", name) in (None, 0)
    put(client, name, [b"alpha", b"beta"])
    flush(srv, name)
    assert metric(srv, "ExecuteProcessing_Duration_count", name) == 1
    assert metric(srv, "ExecuteProcessing_Duration_sum", name) > 0
    assert metric(srv, "ExecuteProcessing_Success", name) == 1.0
    assert metric(srv, "SucceedProcessing_Records_total", name) == 2
    assert metric(srv, "SucceedProcessing_Bytes_total", name) == 9
    assert metric(srv, "DeliveryToS3_Records_total", name) == 2
    assert metric(srv, "DeliveryToS3_Bytes_total", name) == 9
    put(client, name, [b"crash", b"gamma"])  # NumberOfRetries 0: one failed invocation
    flush(srv, name)
    assert metric(srv, "ExecuteProcessing_Duration_count", name) == 2
    assert metric(srv, "ExecuteProcessing_Success", name) == 0.5
    assert metric(srv, "SucceedProcessing_Records_total", name) == 2
    assert metric(srv, "DeliveryToS3_Records_total", name) == 2, "error output is not DeliveryToS3 records"
    put(client, name, [b"delta"])
    flush(srv, name)
    assert metric(srv, "ExecuteProcessing_Success", name) == pytest.approx(2 / 3)
    assert metric(srv, "SucceedProcessing_Records_total", name) == 3
    assert metric(srv, "SucceedProcessing_Bytes_total", name) == 14

    dp = create(client, "metered-dp", [jq("{c:.c}")], Prefix="c=!{partitionKeyFromQuery:c}/",
                ErrorOutputPrefix="e/!{firehose:error-output-type}/", DynamicPartitioningConfiguration=DP)
    assert metric(srv, "JQProcessing_Duration_count", dp) in (None, 0)
    put(client, dp, [b'{"c":"a"}', b'{"c":"b"}'])
    eventually(lambda: metric(srv, "PartitionCount", dp) == 2, "PartitionCount 2")
    assert metric(srv, "JQProcessing_Duration_count", dp) >= 1
    assert metric(srv, "PartitionCountExceeded", dp) == 0
    flush(srv, dp)
    assert metric(srv, "DeliveryToS3_ObjectCount_total", dp) == 2
    assert metric(srv, "ExecuteProcessing_Duration_count", dp) in (None, 0), "no Lambda on this stream"


# --------------------------------------------------------------------------------------------------
# 10: crash safety with Lambda + dynamic partitioning
# --------------------------------------------------------------------------------------------------

CRASH_TYPES = ["view", "click", "buy"]


class Producers(FollowingProducers):
    """Threads putting batches of uniquely numbered JSON click events; `acked` maps the id to its kind. The unique id
    is `user_id`, a field seed 001's function keeps."""

    store = dict
    pause = 0.01

    def _batch(self, i, n, rng):
        """(id, kind) of the next records of thread `i`, numbered from `n`; every 10th is "bad"."""
        return [(f"p{i}-{k:09d}", "bad" if (k + 1) % 10 == 7 else rng.choice(CRASH_TYPES))
                for k in range(n, n + rng.randint(1, 30))]

    def _record(self, item, rng):
        """The record of one (id, kind). Every 10th is not JSON: seed 001's function answers ProcessingFailed."""
        uid, t = item
        if t == "bad":
            return f"BAD {uid}".encode()
        return json.dumps({"event_type": t, "user_id": uid, "session_id": "s",
                           "page_url": "https://example.com/" + "p" * rng.randint(10, 300)}).encode()


def seen_ids(objects):
    return {uid for ids in objects.values() for uid in ids}


def crash_objects(server, bucket):
    """{key: [user ids]} of the delivered objects; checks every record is in the partition of its type."""
    out = {}
    for key, body in local_objects(server, bucket).items():
        if key.startswith("errors/"):
            key_parts(key, "errors/processing-failed/", "crash-dp")
            ids = []
            for line in error_lines(body):
                assert line["errorCode"] == "Lambda.ProcessingFailedStatus", line
                raw = base64.b64decode(line["rawData"]).decode()
                assert raw.startswith("BAD "), line
                ids.append(raw[4:])
            out[key] = ids
            continue
        m = re.fullmatch(rf"type=([a-z]+)/{SUFFIX.format(name='crash-dp')}", key)
        assert m, f"unexpected object {key}"
        assert body.endswith(b"\n"), f"object {key} ends inside a record"
        ids = []
        for line in body.decode().splitlines():
            rec = json.loads(line)
            assert list(rec) == SEED001_FIELDS, rec
            assert rec["event_type"] == m.group(1), (key, rec)
            ids.append(rec["user_id"])
        out[key] = ids
    return out


def test_sigkill_with_lambda_and_dynamic_partitioning_delivers_exactly_once(servers):
    seed = int(os.environ.get("SPILLWAY_CRASH_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    server = servers()
    try:
        create(server.client(), "crash-dp",
               [lam("seed001", retries=3, BufferIntervalInSeconds=0, BufferSizeInMBs=0.2),
                jq("{event_type:.event_type}")],
               bucket="crash-bucket", Prefix="type=!{partitionKeyFromQuery:event_type}/",
               ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
               BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}, DynamicPartitioningConfiguration=DP)
        producers = Producers("crash-dp", seed)
        producers.follow(server)
        producers.start()
        snapshots = {}
        try:
            for cycle in range(4):
                before_objects = len(local_objects(server, "crash-bucket"))
                before_acked = producers.count()
                eventually(lambda: len(local_objects(server, "crash-bucket")) >= before_objects + 3
                           and producers.count() >= before_acked + 300,
                           f"new objects and acknowledged puts in cycle {cycle}", timeout=40)
                time.sleep(rng.uniform(0, 0.5))  # a random kill moment, not a wait for state
                server.kill()
                snapshots.update(crash_objects(server, "crash-bucket"))
                server.start()
                producers.follow(server)
        finally:
            producers.stop()
        client = server.client()
        resp = client.put_record_batch(DeliveryStreamName="crash-dp", Records=[{"Data": json.dumps(
            {"event_type": "view", "user_id": "p9-000000000"}).encode()}])
        assert resp["FailedPutCount"] == 0
        producers.acked["p9-000000000"] = "view"
        producers.sent["p9-000000000"] = "view"
        flush(server, "crash-dp")

        files = bucket_files(server, "crash-bucket")
        leftovers = [k for k in files if k.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)]
        assert not leftovers, f"temp files of interrupted writes are left: {leftovers[:5]}"
        final = crash_objects(server, "crash-bucket")
        failed = {uid for k, ids in final.items() if k.startswith("errors/") for uid in ids}
        assert failed == {uid for uid in seen_ids(final) if producers.sent.get(uid) == "bad"}
        assert all(producers.sent[uid] == "bad" for uid in failed), "a good record in the error output"
        changed = [k for k, ids in snapshots.items() if final.get(k) != ids]
        assert not changed, f"objects whose records changed or vanished after a crash: {changed[:3]}"
        seen = Counter(uid for ids in final.values() for uid in ids)
        dups = {k: v for k, v in seen.items() if v > 1}
        assert not dups, f"{len(dups)} records delivered more than once, e.g. {list(dups.items())[:5]}"
        missing = set(producers.acked) - set(seen)
        assert not missing, f"{len(missing)} acknowledged records missing, e.g. {sorted(missing)[:5]}"
        unknown = set(seen) - set(producers.sent)
        assert not unknown, f"records nobody sent: {sorted(unknown)[:5]}"
        assert len(seen) >= 1200
    except AssertionError as e:
        raise AssertionError(f"{e} (SPILLWAY_CRASH_SEED={seed}; server log: {server.log()[-2500:]})") from None


def test_sigkill_with_lambda_no_partitioning_and_backup_delivers_each_lane_exactly_once(servers):
    """A processing lane (function that transforms and drops, GZIP objects) next to a backup lane of the original
    records: after crashes, the main bucket holds every kept record once, the backup every record once."""
    seed = int(os.environ.get("SPILLWAY_CRASH_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    server = servers()
    backup = {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::crash-backup", "Prefix": "src/",
              "CompressionFormat": "GZIP", "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}}
    try:
        create(server.client(), "crash-tagged", [lam("tagged", retries=3, BufferIntervalInSeconds=0)],
               bucket="crash-main", CompressionFormat="GZIP", ErrorOutputPrefix="errors/",
               BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0},
               S3BackupMode="Enabled", S3BackupConfiguration=backup)
        producers = TaggedProducers("crash-tagged", seed)
        producers.follow(server)
        producers.start()
        snapshots = {"crash-main": {}, "crash-backup": {}}
        try:
            for cycle in range(3):
                before_objects = len(local_objects(server, "crash-main"))
                before_acked = producers.count()
                eventually(lambda: len(local_objects(server, "crash-main")) >= before_objects + 3
                           and producers.count() >= before_acked + 300,
                           f"new objects and acknowledged puts in cycle {cycle}", timeout=40)
                time.sleep(rng.uniform(0, 0.5))
                server.kill()
                for bucket in snapshots:
                    for key, body in local_objects(server, bucket).items():
                        snapshots[bucket][key] = gzip_ids(key, body, bucket)
                server.start()
                producers.follow(server)
        finally:
            producers.stop()
        flush(server, "crash-tagged")
        results = {}
        for bucket in ("crash-main", "crash-backup"):
            files = bucket_files(server, bucket)
            assert not [k for k in files if k.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)], "temp files left"
            final = {k: gzip_ids(k, v, bucket) for k, v in files.items()}
            changed = [k for k, ids in snapshots[bucket].items() if final.get(k) != ids]
            assert not changed, f"{bucket}: objects changed or vanished after a crash: {changed[:3]}"
            seen = Counter(i for ids in final.values() for i in ids)
            dups = {k: v for k, v in seen.items() if v > 1}
            assert not dups, f"{bucket}: {len(dups)} records more than once, e.g. {list(dups.items())[:5]}"
            results[bucket] = set(seen)
        kept = {i for i, drop in producers.acked.items() if not drop}
        missing = kept - results["crash-main"]
        assert not missing, f"{len(missing)} acknowledged kept records missing, e.g. {sorted(missing)[:5]}"
        dropped = {i for i, drop in producers.sent.items() if drop}
        assert not (results["crash-main"] & dropped), "a Dropped record was delivered"
        assert results["crash-main"] <= set(producers.sent)
        missing = set(producers.acked) - results["crash-backup"]
        assert not missing, f"{len(missing)} acknowledged records missing from the backup, e.g. {sorted(missing)[:5]}"
        assert results["crash-backup"] <= set(producers.sent)
    except AssertionError as e:
        raise AssertionError(f"{e} (SPILLWAY_CRASH_SEED={seed}; server log: {server.log()[-2500:]})") from None


def gzip_ids(key, body, bucket):
    """Record ids of a GZIP object of the second crash test: `{"id":..,"seen":true}` lines (main) or the original
    `{"id":..,"drop":..}` records (backup)."""
    try:
        plain = gzip.decompress(body)
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"object {key} does not decode: {e!r}") from None
    if bucket == "crash-main":
        assert key.endswith(".gz") and not key.startswith("errors/"), key
        assert plain.endswith(b"\n"), key
        ids = []
        for line in plain.decode().splitlines():
            rec = json.loads(line)
            assert rec["seen"] is True, rec
            ids.append(rec["id"])
        return ids
    assert key.startswith("src/"), key
    return [json.loads(x)["id"] for x in re.findall(rb'\{"id": "[^"]+", "drop": (?:true|false)\}', plain)]


class TaggedProducers(Producers):
    """Producers of `{"id": ..., "drop": bool}` records for the `tagged` function (every 5th is dropped)."""

    def _batch(self, i, n, rng):
        return [(f"q{i}-{k:09d}", k % 5 == 0) for k in range(n, n + rng.randint(1, 30))]

    def _record(self, item, rng):
        rid, drop = item
        return json.dumps({"id": rid, "drop": drop}).encode()


# --------------------------------------------------------------------------------------------------
# restarts and shutdown with processing
# --------------------------------------------------------------------------------------------------

def test_records_waiting_for_the_lambda_buffer_survive_sigkill(srv, tmp_path):
    client = srv.client()
    name = create(client, "lambda-kill", [lam("partial", BufferIntervalInSeconds=900)], ErrorOutputPrefix="errs/")
    put(client, name, [b"one", b"two", b"fail-three"])
    srv.kill()
    assert local_objects(srv) == {}
    srv.start()
    client = srv.client()
    put(client, name, [b"four"])
    flush(srv, name)
    objs = local_objects(srv)
    assert [v for k, v in objs.items() if not k.startswith("errs/")] == [b"ONE|tTWO|tFOUR|t"]
    (ebody,) = under(objs, "errs/").values()
    assert [base64.b64decode(x["rawData"]) for x in error_lines(ebody)] == [b"fail-three"]


def test_processed_partitions_survive_sigkill(srv):
    """Records already processed into partition buffers (not yet in objects) are delivered once after a crash."""
    client = srv.client()
    name = create(client, "dp-kill", [jq("{c:.c}"), APPEND], Prefix="c=!{partitionKeyFromQuery:c}/",
                  ErrorOutputPrefix="errs/!{firehose:error-output-type}/", DynamicPartitioningConfiguration=DP)
    put(client, name, [b'{"c":"a","n":1}', b'{"c":"b","n":2}', b'{"c":"a","n":3}'])
    eventually(lambda: metric(srv, "PartitionCount", name) == 2, "the records processed into 2 partitions")
    srv.kill()
    srv.start()
    flush(srv, name)
    got = {key_parts(k, r"c=[ab]/", name): v for k, v in local_objects(srv).items()}
    assert got == {"c=a/": b'{"c":"a","n":1}\n{"c":"a","n":3}\n', "c=b/": b'{"c":"b","n":2}\n'}


def test_restart_after_a_flush_delivers_and_invokes_nothing_again(srv, tmp_path):
    client = srv.client()
    name = create(client, "done", [lam("partial")], ErrorOutputPrefix="errs/")
    put(client, name, [b"keep", b"drop-me", b"fail-me"])
    first = flush(srv, name)
    assert len(first["Objects"]) == 2
    put(client, name, [b"drop-only"])
    assert flush(srv, name) == {"Objects": [], "Records": 0}, "a batch that is all Dropped writes nothing"
    before = local_objects(srv)
    invocations = len(calls(tmp_path, "partial"))
    assert invocations == 2
    srv.kill()
    srv.start()
    assert flush(srv, name) == {"Objects": [], "Records": 0}
    assert local_objects(srv) == before
    assert len(calls(tmp_path, "partial")) == invocations, "records already processed were sent to the function again"


def test_sigterm_processes_and_delivers_buffered_records(srv, tmp_path):
    client = srv.client()
    name = create(client, "term", [lam("partial", BufferIntervalInSeconds=900)], ErrorOutputPrefix="errs/")
    put(client, name, [b"a", b"b", b"drop-c"])
    assert srv.stop() == 0, srv.log()
    assert list(local_objects(srv).values()) == [b"A|tB|t"]
    srv.start()
    assert flush(srv, name) == {"Objects": [], "Records": 0}
    assert len(calls(tmp_path, "partial")) == 1


def test_update_destination_turns_processing_on_and_off(srv):
    client = srv.client()
    create_s3_stream(client, "toggle", BufferingHints=QUIET)
    client.put_record(DeliveryStreamName="toggle", Record={"Data": b"plain1"})

    def update(**changes):
        d = describe(client, "toggle")
        client.update_destination(DeliveryStreamName="toggle", CurrentDeliveryStreamVersionId=d["VersionId"],
                                  DestinationId=d["Destinations"][0]["DestinationId"],
                                  ExtendedS3DestinationUpdate=changes)

    update(ProcessingConfiguration={"Enabled": True, "Processors": [lam("partial")]})
    client.put_record(DeliveryStreamName="toggle", Record={"Data": b"processed"})
    flush(srv, "toggle")
    bodies = sorted(local_objects(srv).values())
    # The record put before the update is delivered under the old plan (untransformed, its own object).
    assert bodies == [b"PROCESSED|t", b"plain1"], bodies
    update(ProcessingConfiguration={"Enabled": False})
    client.put_record(DeliveryStreamName="toggle", Record={"Data": b"plain2"})
    flush(srv, "toggle")
    assert sorted(local_objects(srv).values()) == [b"PROCESSED|t", b"plain1", b"plain2"]
    assert describe(client, "toggle")["DeliveryStreamStatus"] == "ACTIVE"


def test_update_destination_rejects_an_unmapped_function(srv):
    client = srv.client()
    create_s3_stream(client, "upd-bad-fn", BufferingHints=QUIET)
    d = describe(client, "upd-bad-fn")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.update_destination(DeliveryStreamName="upd-bad-fn", CurrentDeliveryStreamVersionId=d["VersionId"],
                                  DestinationId=d["Destinations"][0]["DestinationId"],
                                  ExtendedS3DestinationUpdate={"ProcessingConfiguration": {
                                      "Enabled": True, "Processors": [lam("not-configured")]}})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert "not-configured" in e.value.response["Error"]["Message"]
    assert describe(client, "upd-bad-fn")["VersionId"] == d["VersionId"]


@pytest.mark.parametrize("word", ["keep", "drop"])
def test_processed_records_release_the_wal_even_when_all_are_dropped(servers, tmp_path, word):
    """With a 2 MiB WAL quota, 3 MiB put in rounds that are each flushed must keep being accepted: once a round is
    processed (delivered, or Dropped by the function) its WAL space is released."""
    srv = servers(more_toml="\n[wal]\nmax_bytes = 2097152\nsegment_bytes = 262144\n")
    client = srv.client()
    name = create(client, f"wal-{word}", [lam("partial")], ErrorOutputPrefix="errs/")
    record = (word + "-" + "x" * 995).encode()
    for round_ in range(30):
        resp = client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": record}] * 100)
        assert resp["FailedPutCount"] == 0, (f"round {round_} ({round_ * 100} kB put, all flushed before) refused: "
                                             f"{resp['RequestResponses'][0]}")
        flush(srv, name)
    if word == "keep":
        assert metric(srv, "DeliveryToS3_Records_total", name) == 3000
    else:
        assert local_objects(srv) == {}


def test_the_function_gets_the_firehose_invocation_event(srv, tmp_path):
    client = srv.client()
    name = create(client, "event-shape", [lam("echo")])
    t0 = now_ms()
    put(client, name, [b"first", b""])
    client.put_record(DeliveryStreamName=name, Record={"Data": b"third"})
    t1 = now_ms()
    flush(srv, name)
    (call,) = calls(tmp_path, "echo")
    assert call["event"] == {"invocationId": call["invocationId"], "region": REGION,
                             "deliveryStreamArn": f"arn:aws:firehose:{REGION}:{ACCOUNT_ID}:deliverystream/{name}"}
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", call["invocationId"])
    assert call["recordKeys"] == ["approximateArrivalTimestamp", "data", "recordId"]
    assert call["data"] == ["first", "", "third"]
    assert len(set(call["recordIds"])) == 3
    assert all(re.fullmatch(r"\d{62}", r) for r in call["recordIds"]), call["recordIds"]
    assert all(t0 - 1000 <= a <= t1 + 1000 for a in call["arrivals"]), (call["arrivals"], t0, t1)
    assert list(local_objects(srv).values()) == [b"firstthird"]


def test_partition_keys_the_folder_store_cannot_hold_go_to_the_error_output_as_original_records(srv, tmp_path):
    """A key with an empty segment (`a//b`) or a segment over 255 bytes cannot be a folder path; those records are
    not lost and are written to the error output, whose rawData is the record as it was put (§10), not the
    function's output."""
    client = srv.client()
    name = create(client, "unholdable", [lam("keys"), APPEND], Prefix="data/!{partitionKeyFromLambda:tenant}/",
                  ErrorOutputPrefix="errs/!{firehose:error-output-type}/", DynamicPartitioningConfiguration=DP)
    bad = [json.dumps({"tenant": "a//b"}).encode(), json.dumps({"tenant": "x" * 300}).encode()]
    good = json.dumps({"tenant": "ok"}).encode()
    put(client, name, [bad[0], good, bad[1]])
    answer = flush(srv, name)
    objs = local_objects(srv)
    assert sorted(objs) == sorted(answer["Objects"])
    assert [v for k, v in objs.items() if k.startswith("data/")] == [b'{"tenant":"ok"}\n\n']
    for p in all_files(srv.data_dir / "buckets"):
        assert p.resolve().is_relative_to((srv.data_dir / "buckets" / "test-bucket").resolve()), p
    lines = [x for k, v in objs.items() if k.startswith("errs/") for x in error_lines(v)]
    assert sorted(base64.b64decode(x["rawData"]) for x in lines) == sorted(bad), \
        [base64.b64decode(x["rawData"]) for x in lines]
    for line in lines:
        assert ERROR_FIELDS <= set(line), line


def test_partition_buffers_spilled_to_disk_deliver_every_record_once_in_order(servers):
    """With a 64 KiB memory budget for partition buffers, 20 partitions of ~600 kB in total spill to files; every
    object still holds exactly its partition's records, in order, also across a SIGKILL and restart."""
    srv = servers(delivery={"partition_memory_bytes": 65536})
    client = srv.client()
    name = create(client, "spilly", [jq("{p:.p}"), APPEND], Prefix="p=!{partitionKeyFromQuery:p}/",
                  ErrorOutputPrefix="errs/!{firehose:error-output-type}/", DynamicPartitioningConfiguration=DP)
    records = [json.dumps({"p": f"k{i % 20:02d}", "n": i, "pad": "z" * 250}).encode() for i in range(2400)]
    put(client, name, records[:1200])
    eventually(lambda: metric(srv, "PartitionCount", name) == 20, "20 active partitions")
    spill_dir = srv.data_dir / "spill"
    assert spill_dir.exists() and any(p.is_file() for p in spill_dir.rglob("*")), "nothing was spilled"
    srv.kill()
    srv.start()
    client = srv.client()
    put(client, name, records[1200:])
    flush(srv, name)
    got = {}
    for key, body in local_objects(srv).items():
        prefix = key_parts(key, r"p=k\d\d/", name)
        got.setdefault(prefix, []).extend(json.loads(line)["n"] for line in body.decode().splitlines())
    assert set(got) == {f"p=k{j:02d}/" for j in range(20)}
    for j in range(20):
        assert sorted(got[f"p=k{j:02d}/"]) == list(range(j, 2400, 20)), f"partition k{j:02d}"


def test_processors_run_in_firehose_order_whatever_the_configured_order(srv):
    """Decompression → CloudWatch message extraction → Lambda → MetadataExtraction → AppendDelimiter, configured
    backwards: the function sees the extracted messages, jq sees the function's output."""
    client = srv.client()
    name = create(client, "order", [APPEND, jq("{seen:.seen}"), lam("tagged"),
                                    proc("CloudWatchLogProcessing", DataMessageExtraction="true"),
                                    proc("Decompression")],
                  Prefix="seen=!{partitionKeyFromQuery:seen}/", ErrorOutputPrefix="errs/!{firehose:error-output-type}/",
                  DynamicPartitioningConfiguration=DP)
    # Each message is a JSON record for `tagged` (which outputs {"id", "seen": true} + LF); the input has no
    # `seen`, so jq on anything but the function's output would fail.
    put(client, name, [cloudwatch_envelope("DATA_MESSAGE", ['{"id":"m1"}', '{"id":"m2"}']),
                       cloudwatch_envelope("DATA_MESSAGE", ['{"id":"m3","drop":true}', '{"id":"m4"}'])])
    flush(srv, name)
    objs = local_objects(srv)
    assert not under(objs, "errs/"), {k: v[:300] for k, v in objs.items()}
    (key, body), = objs.items()
    key_parts(key, "seen=true/", name)
    assert body == b"".join(json.dumps({"id": i, "seen": True}).encode() + b"\n\n" for i in ["m1", "m2", "m4"])
