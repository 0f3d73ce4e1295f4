"""`spillway send` and `spillway streams list|describe|flush` against a real server.

The CLI is run as a subprocess; delivered objects are read from the server's folder buckets
(`<data-dir>/buckets/<bucket>/`).
"""

import json
import os
import re
import subprocess

from conftest import BIN, create_s3_stream

SUMMARY = re.compile(r"^sent (\d+) records \((\d+) bytes\) to (\S+) in [\d.]+ s; (\d+) failed$")


def cli(*args, input=None, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.pop("SPILLWAY_ENDPOINT", None)
    env.update(env_extra or {})
    return subprocess.run([BIN, *args], input=input, capture_output=True, env=env, timeout=timeout)


def summary(out):
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 1, out.stdout
    m = SUMMARY.match(lines[0])
    assert m, lines[0]
    return int(m[1]), int(m[2]), m[3], int(m[4])


def delivered(server, bucket):
    """Every record of every object in a folder bucket (each object a run of "\n"-ended records)."""
    root = server.data_dir / "buckets" / bucket
    records = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            body = p.read_bytes()
            assert body.endswith(b"\n"), p
            records += [line + b"\n" for line in body.split(b"\n")[:-1]]
    return records


def ndjson_lines(n):
    return [json.dumps({"id": i, "name": f"item-{i}", "pad": "x" * (i % 50)}) for i in range(n)]


def flush_cli(server, stream):
    out = cli("streams", "flush", stream, "--endpoint", server.endpoint)
    assert out.returncode == 0, out.stderr
    line = out.stdout.decode().strip()
    m = re.match(r"^flushed (\S+): (\d+) records? in (\d+) objects?", line)
    assert m and m[1] == stream, line
    return int(m[2]), int(m[3])


def test_send_file_crlf_and_empty_lines_then_flush(server, firehose, tmp_path):
    create_s3_stream(firehose, "cli-send", bucket="cli-bucket")
    lines = ndjson_lines(1234)
    body = []
    for i, line in enumerate(lines):
        body.append(line + "\r\n")
        if i % 100 == 0:
            body.append("\r\n\n")
    text = "".join(body).rstrip("\r\n")  # the final line has no newline
    path = tmp_path / "records.ndjson"
    path.write_bytes(text.encode())

    out = cli("send", "--stream", "cli-send", str(path), "--endpoint", server.endpoint)
    assert out.returncode == 0, out.stderr
    expected = [(line + "\n").encode() for line in lines]
    assert summary(out) == (1234, sum(map(len, expected)), "cli-send", 0)
    assert out.stderr == b"", "no progress line when stderr is not a terminal"

    records, objects = flush_cli(server, "cli-send")
    assert records == 1234 and objects >= 1
    got = delivered(server, "cli-bucket")
    assert sorted(got) == sorted(expected)


def test_send_stdin_with_env_endpoint(server, firehose):
    create_s3_stream(firehose, "cli-stdin", bucket="stdin-bucket")
    lines = ndjson_lines(700)
    data = ("\n".join(lines) + "\n").encode()
    out = cli("send", "--stream", "cli-stdin", "-", input=data, env_extra={"SPILLWAY_ENDPOINT": server.endpoint})
    assert out.returncode == 0, out.stderr
    assert summary(out)[0] == 700
    # No file argument reads stdin too; --no-newline sends the lines as they are.
    out = cli("send", "--stream", "cli-stdin", "--no-newline", "--endpoint", server.endpoint, input=b"a\nb\n")
    assert out.returncode == 0, out.stderr
    assert summary(out) == (2, 2, "cli-stdin", 0)
    assert flush_cli(server, "cli-stdin")[0] == 702
    body = b"".join(p.read_bytes() for p in (server.data_dir / "buckets" / "stdin-bucket").rglob("*") if p.is_file())
    assert len(body) == len(data) + 2 and body.count(b"\n") == 700
    assert sorted(body) == sorted(data + b"ab"), "the same bytes, whatever the order of the records"


def test_oversized_line_is_reported_and_others_are_sent(server, firehose, tmp_path):
    create_s3_stream(firehose, "cli-big", bucket="big-bucket")
    lines = ["first", "x" * 1_100_000, "third", "y" * 1_023_999]  # 1,023,999 + "\n" is exactly the limit
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n")
    out = cli("send", "--stream", "cli-big", str(path), "--endpoint", server.endpoint)
    assert out.returncode != 0
    assert b"line 2" in out.stderr and b"1100001 bytes" in out.stderr, out.stderr
    sent, _, _, failed = summary(out)
    assert (sent, failed) == (3, 1)
    flush_cli(server, "cli-big")
    got = delivered(server, "big-bucket")
    assert sorted(got) == sorted([b"first\n", b"third\n", b"y" * 1_023_999 + b"\n"])


def test_missing_stream_fails_clearly(server, tmp_path):
    path = tmp_path / "r.ndjson"
    path.write_text('{"a": 1}\n')
    out = cli("send", "--stream", "nope", str(path), "--endpoint", server.endpoint)
    assert out.returncode != 0
    assert b"ResourceNotFoundException" in out.stderr, out.stderr
    out = cli("streams", "describe", "nope", "--endpoint", server.endpoint)
    assert out.returncode != 0
    assert b"ResourceNotFoundException" in out.stderr, out.stderr


def test_unreachable_server_fails(tmp_path):
    out = cli("streams", "list", "--endpoint", "http://127.0.0.1:1")
    assert out.returncode != 0
    assert b"cannot reach" in out.stderr, out.stderr


def test_streams_list_and_describe(server, firehose):
    names = [f"list-{i:02d}" for i in range(12)]  # more than one page of ListDeliveryStreams' default 10
    for name in names:
        create_s3_stream(firehose, name, bucket="list-bucket")
    out = cli("streams", "list", "--endpoint", server.endpoint)
    assert out.returncode == 0, out.stderr
    rows = out.stdout.decode().splitlines()
    assert rows[0].split() == ["NAME", "STATUS", "DESTINATION", "CREATED"]
    by_name = {r.split()[0]: r.split() for r in rows[1:]}
    assert sorted(by_name) == names
    for name in names:
        assert by_name[name][1] == "ACTIVE"
        assert by_name[name][2] == "arn:aws:s3:::list-bucket"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", by_name[name][3])

    out = cli("streams", "describe", "list-03", "--endpoint", server.endpoint)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["DeliveryStreamName"] == "list-03"
    assert d["DeliveryStreamStatus"] == "ACTIVE"
    assert d["Destinations"][0]["ExtendedS3DestinationDescription"]["BucketARN"] == "arn:aws:s3:::list-bucket"


def test_flush_of_an_empty_stream(server, firehose):
    create_s3_stream(firehose, "idle", bucket="idle-bucket")
    assert flush_cli(server, "idle") == (0, 0)
