"""Data plane: PutRecord / PutRecordBatch, their limits, what lands in the WAL, the WAL quota,
the AWS CLI, and the ingest metrics."""

import base64
import json
import re

import boto3
import botocore.config
import botocore.exceptions
import pytest

from conftest import REGION, Server, aws_cli, create_s3_stream, eventually, raw_request

RECORD_ID_RE = re.compile(r"^[0-9a-f]{36}$")
# Large buffers: nothing is delivered (and taken out of the WAL) while a test runs.
QUIET = {"BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 900}}
MAX_RECORD = 1_024_000
MAX_BATCH = 4 * 1024 * 1024


def quiet_stream(client, name):
    return create_s3_stream(client, name, **QUIET)


def lsn_of(record_id):
    return int(record_id[16:32], 16)


def b64(data):
    return base64.b64encode(data).decode()


def next_lsn(server):
    return server.status()["wal"]["next_lsn"]


def entries_by_lsn(server):
    summary, entries = server.wal_inspect()
    return summary, {e["lsn"]: e for e in entries}


def no_retry_client(server):
    """A client that never retries. (conftest's `make_client(retries=0)` sets botocore's `max_attempts`
    to 1, which botocore reads as *retry* attempts: it retries once.)"""
    return boto3.client("firehose", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id="AKIDSPILLWAYTEST", aws_secret_access_key="not-checked",
                        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def metric(text, name, stream):
    m = re.search(rf'^{re.escape(name)}\{{delivery_stream="{re.escape(stream)}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------------
# PutRecord / PutRecordBatch and the WAL
# --------------------------------------------------------------------------------------------------

def test_put_record_returns_a_record_id(server, firehose):
    quiet_stream(firehose, "ids")
    first = firehose.put_record(DeliveryStreamName="ids", Record={"Data": b"hello"})
    second = firehose.put_record(DeliveryStreamName="ids", Record={"Data": b"world"})
    for r in (first, second):
        assert RECORD_ID_RE.match(r["RecordId"]), r["RecordId"]
        assert r["Encrypted"] is False
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert first["RecordId"] != second["RecordId"]
    wal_id = server.status()["wal"]["wal_id"]
    assert first["RecordId"][:16] == wal_id == second["RecordId"][:16]
    assert lsn_of(second["RecordId"]) > lsn_of(first["RecordId"])
    assert next_lsn(server) > lsn_of(second["RecordId"])


def test_every_acknowledged_record_is_in_the_wal(server, firehose):
    quiet_stream(firehose, "main")
    quiet_stream(firehose, "other")
    expected = {}  # lsn -> (stream, records, bytes)
    acked = []

    r = firehose.put_record(DeliveryStreamName="main", Record={"Data": b"0123456789"})
    acked.append(r["RecordId"])
    expected[lsn_of(r["RecordId"])] = ("main", 1, 10)

    small = [b"a", b"bb", b"ccc"]
    r = firehose.put_record_batch(DeliveryStreamName="main", Records=[{"Data": d} for d in small])
    assert r["FailedPutCount"] == 0
    ids = [e["RecordId"] for e in r["RequestResponses"]]
    acked += ids
    expected[lsn_of(ids[0])] = ("main", 3, 6)

    records = [bytes([i % 251]) * (i % 97 + 1) for i in range(500)]
    r = firehose.put_record_batch(DeliveryStreamName="main", Records=[{"Data": d} for d in records])
    assert r["FailedPutCount"] == 0
    assert r["Encrypted"] is False
    responses = r["RequestResponses"]
    assert len(responses) == 500
    ids = [e["RecordId"] for e in responses]
    assert all(set(e) == {"RecordId"} for e in responses), "successful entries carry only a RecordId"
    assert all(RECORD_ID_RE.match(i) for i in ids)
    assert len(set(ids)) == 500, "RecordIds are distinct"
    assert len({i[:32] for i in ids}) == 1, "one request is one WAL entry"
    assert [int(i[32:], 16) for i in ids] == list(range(500)), "responses are in request order"
    acked += ids
    expected[lsn_of(ids[0])] = ("main", 500, sum(map(len, records)))

    r = firehose.put_record(DeliveryStreamName="main", Record={"Data": b""})
    acked.append(r["RecordId"])
    expected[lsn_of(r["RecordId"])] = ("main", 1, 0)

    r = firehose.put_record(DeliveryStreamName="other", Record={"Data": b"x" * 1234})
    acked.append(r["RecordId"])
    expected[lsn_of(r["RecordId"])] = ("other", 1, 1234)

    assert len(set(acked)) == len(acked) == 506
    server.kill()  # SIGKILL: no shutdown flush, so the records are still in the WAL
    assert server.wal_record_ids() == set(acked), "the WAL holds exactly the acknowledged records"
    summary, entries = entries_by_lsn(server)
    assert summary["next_lsn"] > max(expected)
    assert summary["truncated_bytes"] == 0
    for lsn, (stream, count, size) in expected.items():
        e = entries[lsn]
        assert (e["stream"], e["records"], e["bytes"]) == (stream, count, size), e
        assert e["acked"] is False
    assert len(entries) == len(expected)


def test_empty_and_largest_records_are_accepted(server, firehose):
    quiet_stream(firehose, "sizes")
    empty = firehose.put_record(DeliveryStreamName="sizes", Record={"Data": b""})["RecordId"]
    largest = firehose.put_record(DeliveryStreamName="sizes", Record={"Data": b"L" * MAX_RECORD})["RecordId"]
    r = firehose.put_record_batch(DeliveryStreamName="sizes",
                                  Records=[{"Data": b"B" * MAX_RECORD}, {"Data": b""}, {"Data": b"z"}])
    assert r["FailedPutCount"] == 0
    batch = r["RequestResponses"][0]["RecordId"]
    server.kill()  # SIGKILL: no shutdown flush, so the records are still in the WAL
    _, entries = entries_by_lsn(server)
    assert (entries[lsn_of(empty)]["records"], entries[lsn_of(empty)]["bytes"]) == (1, 0)
    assert (entries[lsn_of(largest)]["records"], entries[lsn_of(largest)]["bytes"]) == (1, MAX_RECORD)
    assert (entries[lsn_of(batch)]["records"], entries[lsn_of(batch)]["bytes"]) == (3, MAX_RECORD + 1)


def test_oversized_record_is_validation_exception(server, firehose):
    quiet_stream(firehose, "big")
    start = next_lsn(server)
    too_big = b64(b"o" * (MAX_RECORD + 1))
    buffer = f"java.nio.HeapByteBuffer[pos=0 lim={MAX_RECORD + 1} cap={MAX_RECORD + 1}]"

    r = raw_request(server, "PutRecord", {"DeliveryStreamName": "big", "Record": {"Data": too_big}})
    assert r.status == 400
    assert r.error_type == "ValidationException"
    assert r.message == (f"1 validation error detected: Value '{buffer}' at 'record.data' failed to satisfy "
                         f"constraint: Member must have length less than or equal to {MAX_RECORD}")

    r = raw_request(server, "PutRecordBatch", {"DeliveryStreamName": "big",
                                               "Records": [{"Data": too_big}, {"Data": b64(b"ok")}]})
    assert r.status == 400
    assert r.error_type == "ValidationException"
    assert r.message == (f"1 validation error detected: Value '{buffer}' at 'records.1.member.data' failed to "
                         f"satisfy constraint: Member must have length less than or equal to {MAX_RECORD}")

    r = raw_request(server, "PutRecordBatch", {"DeliveryStreamName": "big",
                                               "Records": [{"Data": b64(b"ok")}, {"Data": too_big},
                                                           {"Data": too_big}]})
    assert r.status == 400 and r.error_type == "ValidationException"
    assert r.message.startswith("2 validation errors detected: "), r.message
    assert "'records.2.member.data'" in r.message and "'records.3.member.data'" in r.message

    # botocore does not check the maximum: the server answers the same to an SDK.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        firehose.put_record(DeliveryStreamName="big", Record={"Data": b"o" * (MAX_RECORD + 1)})
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert next_lsn(server) == start, "a rejected put stores nothing"


def test_too_many_or_no_records_is_validation_exception(server, firehose):
    quiet_stream(firehose, "count")
    start = next_lsn(server)
    r = raw_request(server, "PutRecordBatch",
                    {"DeliveryStreamName": "count", "Records": [{"Data": b64(b"r")}] * 501})
    assert r.status == 400
    assert r.error_type == "ValidationException"
    assert r.message.startswith("1 validation error detected: Value "), r.message
    assert r.message.endswith(" at 'records' failed to satisfy constraint: "
                              "Member must have length less than or equal to 500"), r.message

    r = raw_request(server, "PutRecordBatch", {"DeliveryStreamName": "count", "Records": []})
    assert r.status == 400 and r.error_type == "ValidationException"
    assert r.message.endswith(" at 'records' failed to satisfy constraint: "
                              "Member must have length greater than or equal to 1"), r.message

    r = raw_request(server, "PutRecordBatch", {"DeliveryStreamName": "count",
                                               "Records": [{"Data": b64(b"r")}, {}]})
    assert r.status == 400 and r.error_type == "ValidationException"
    assert r.message == ("1 validation error detected: Value null at 'records.2.member.data' failed to satisfy "
                         "constraint: Member must not be null")

    r = raw_request(server, "PutRecord", {"DeliveryStreamName": "count"})
    assert r.status == 400 and r.error_type == "ValidationException"
    assert r.message == ("1 validation error detected: Value null at 'record' failed to satisfy constraint: "
                         "Member must not be null")
    assert next_lsn(server) == start


def test_batch_total_size_limit(server, firehose):
    quiet_stream(firehose, "total")
    start = next_lsn(server)
    with pytest.raises(firehose.exceptions.InvalidArgumentException) as e:
        firehose.put_record_batch(DeliveryStreamName="total", Records=[{"Data": b"m" * 1_000_000}] * 5)
    assert e.value.response["Error"]["Message"] == "Records size exceeds 4 MB limit"
    with pytest.raises(firehose.exceptions.InvalidArgumentException) as e:
        firehose.put_record_batch(DeliveryStreamName="total",
                                  Records=[{"Data": b"m" * 1_000_000}] * 4 + [{"Data": b"m" * 194_305}])
    assert e.value.response["Error"]["Message"] == "Records size exceeds 4 MB limit"
    assert next_lsn(server) == start

    r = firehose.put_record_batch(DeliveryStreamName="total",
                                  Records=[{"Data": b"m" * 1_000_000}] * 4 + [{"Data": b"m" * 194_304}])
    assert r["FailedPutCount"] == 0 and len(r["RequestResponses"]) == 5
    lsn = lsn_of(r["RequestResponses"][0]["RecordId"])
    server.kill()  # SIGKILL: no shutdown flush, so the records are still in the WAL
    _, entries = entries_by_lsn(server)
    assert entries[lsn]["bytes"] == MAX_BATCH and entries[lsn]["records"] == 5
    assert len(entries) == 1


@pytest.mark.parametrize("operation,body", [
    ("PutRecord", {"DeliveryStreamName": "b64", "Record": {"Data": "!!!"}}),
    ("PutRecord", {"DeliveryStreamName": "b64", "Record": {"Data": "****"}}),
    ("PutRecord", {"DeliveryStreamName": "b64", "Record": {"Data": 12}}),
    ("PutRecordBatch", {"DeliveryStreamName": "b64", "Records": [{"Data": "aGk="}, {"Data": "a$b="}]}),
    ("PutRecordBatch", {"DeliveryStreamName": "b64", "Records": [{"Data": "aGk="}, {"Data": "not base64 at all"}]}),
], ids=["short", "bad-chars", "number", "batch-bad-chars", "batch-text"])
def test_invalid_base64_is_serialization_exception(server, firehose, operation, body):
    quiet_stream(firehose, "b64")
    start = next_lsn(server)
    r = raw_request(server, operation, body)
    assert r.status == 400
    assert r.error_type == "SerializationException", r.text
    assert next_lsn(server) == start, "nothing is stored for a malformed put"
    # The stream still takes well-formed records.
    assert firehose.put_record(DeliveryStreamName="b64", Record={"Data": b"fine"})["RecordId"]


def test_json_escapes_in_record_data(server, firehose):
    """Some JSON encoders escape '/' as '\\/'; the base64 text is the unescaped string."""
    quiet_stream(firehose, "escaped")
    body = '{"DeliveryStreamName": "escaped", "Record": {"Data": "\\/\\/\\/\\/\\u0041QID"}}'
    r = raw_request(server, "PutRecord", body)
    assert r.status == 200, r.text
    lsn = lsn_of(r.json["RecordId"])
    server.kill()  # SIGKILL: no shutdown flush, so the records are still in the WAL
    _, entries = entries_by_lsn(server)
    assert entries[lsn]["bytes"] == len(base64.b64decode("////AQID"))


def test_delete_while_puts_are_in_flight(server, firehose):
    """Puts racing a DeleteDeliveryStream either succeed or get ResourceNotFoundException, never a 500."""
    import threading
    quiet_stream(firehose, "racing")
    clients = [no_retry_client(server) for _ in range(3)]
    lock = threading.Lock()
    outcomes = {"ok": 0}
    done = threading.Event()

    def produce(c):
        for _ in range(10_000):
            try:
                c.put_record_batch(DeliveryStreamName="racing", Records=[{"Data": b"r" * 500}] * 20)
                with lock:
                    outcomes["ok"] += 1
            except botocore.exceptions.ClientError as e:
                code = e.response["Error"]["Code"]
                with lock:
                    outcomes[code] = outcomes.get(code, 0) + 1
                if code == "ResourceNotFoundException":
                    return
            if done.is_set():
                return

    threads = [threading.Thread(target=produce, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    eventually(lambda: outcomes["ok"] >= 30, "puts before the delete")
    firehose.delete_delivery_stream(DeliveryStreamName="racing")
    for t in threads:
        t.join(timeout=60)
    done.set()
    assert set(outcomes) == {"ok", "ResourceNotFoundException"}, outcomes
    assert outcomes["ResourceNotFoundException"] == len(clients), outcomes
    # The server is healthy afterwards and the name is free again.
    quiet_stream(firehose, "racing")
    assert firehose.put_record(DeliveryStreamName="racing", Record={"Data": b"again"})["RecordId"]


# --------------------------------------------------------------------------------------------------
# WAL quota
# --------------------------------------------------------------------------------------------------

WAL_QUOTA = 262144
SMALL_WAL = f"[wal]\nmax_bytes = {WAL_QUOTA}\nsegment_bytes = 65536\n"


def test_full_wal_throttles_puts(tmp_data):
    servers = [Server(tmp_data, config=SMALL_WAL).start()]
    try:
        server = servers[0]
        c = no_retry_client(server)  # a throttled call surfaces at once, and is counted once
        quiet_stream(c, "fill")
        quiet_stream(c, "bystander")
        acked = set()
        batch = [{"Data": bytes([i]) * 2000} for i in range(10)]
        throttled = None
        for _ in range(200):
            r = c.put_record_batch(DeliveryStreamName="fill", Records=batch)
            assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
            if r["FailedPutCount"]:
                throttled = r
                break
            acked |= {e["RecordId"] for e in r["RequestResponses"]}
        assert throttled is not None, "the WAL never filled up"
        assert len(acked) >= 100, "about 256 KiB of 20 KB batches must fit before throttling"
        refused = 0
        for r in (throttled, c.put_record_batch(DeliveryStreamName="fill", Records=batch)):
            assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
            assert r["FailedPutCount"] == len(batch)
            assert r["RequestResponses"] == [{"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
                                             ] * len(batch)
            refused += len(batch)

        with pytest.raises(c.exceptions.ServiceUnavailableException) as e:
            c.put_record(DeliveryStreamName="fill", Record={"Data": b"p" * 30_000})
        assert e.value.response["Error"]["Message"] == "Slow down."
        refused += 1
        # The quota is the server's: another stream is throttled too.
        r = c.put_record_batch(DeliveryStreamName="bystander", Records=batch)
        assert r["FailedPutCount"] == len(batch)

        # Everything else keeps working.
        assert c.describe_delivery_stream(DeliveryStreamName="fill")["DeliveryStreamDescription"][
            "DeliveryStreamStatus"] == "ACTIVE"
        create_s3_stream(c, "created-while-full")
        assert c.list_delivery_streams()["DeliveryStreamNames"] == ["bystander", "created-while-full", "fill"]
        wal = server.status()["wal"]
        assert wal["max_bytes"] == WAL_QUOTA
        assert wal["bytes"] <= WAL_QUOTA
        assert wal["segments"] >= 4, "65536-byte segments"
        text = server.metrics()
        assert metric(text, "ThrottledRecords_total", "fill") == refused
        assert metric(text, "ThrottledRecords_total", "bystander") == len(batch)
        assert metric(text, "IncomingRecords_total", "fill") == len(acked)

        server.kill()  # SIGKILL: no shutdown flush, so the records are still in the WAL
        assert acked <= server.wal_record_ids()

        server = Server(tmp_data, config=SMALL_WAL).start()
        servers.append(server)
        c = server.client()
        assert server.status()["wal"]["bytes"] <= WAL_QUOTA
        r = c.put_record_batch(DeliveryStreamName="fill", Records=batch)
        assert r["FailedPutCount"] == len(batch), "the WAL is still full after a restart"
        server.kill()  # SIGKILL: no shutdown flush, so the records are still in the WAL
        assert acked <= server.wal_record_ids()
        summary, _ = server.wal_inspect()
        assert summary["truncated_bytes"] == 0
    finally:
        for s in servers:
            s.kill()


# --------------------------------------------------------------------------------------------------
# AWS CLI
# --------------------------------------------------------------------------------------------------

def test_aws_cli(server, tmp_path):
    out = aws_cli(server, "firehose", "create-delivery-stream", "--delivery-stream-name", "cli-stream",
                  "--extended-s3-destination-configuration",
                  "RoleARN=arn:aws:iam::123456789012:role/firehose-role,BucketARN=arn:aws:s3:::cli-bucket,"
                  "BufferingHints={SizeInMBs=128,IntervalInSeconds=900}")
    assert out["DeliveryStreamARN"] == "arn:aws:firehose:us-east-1:123456789012:deliverystream/cli-stream"
    aws_cli(server, "firehose", "create-delivery-stream", "--delivery-stream-name", "cli-doomed",
            "--s3-destination-configuration",
            "RoleARN=arn:aws:iam::123456789012:role/firehose-role,BucketARN=arn:aws:s3:::cli-bucket")

    d = aws_cli(server, "firehose", "describe-delivery-stream", "--delivery-stream-name", "cli-stream")
    d = d["DeliveryStreamDescription"]
    assert d["DeliveryStreamStatus"] == "ACTIVE"
    assert d["VersionId"] == "1"
    assert d["Destinations"][0]["ExtendedS3DestinationDescription"]["BucketARN"] == "arn:aws:s3:::cli-bucket"
    assert d["Destinations"][0]["ExtendedS3DestinationDescription"]["BufferingHints"] == {
        "SizeInMBs": 128, "IntervalInSeconds": 900}

    out = aws_cli(server, "firehose", "list-delivery-streams")
    assert out == {"DeliveryStreamNames": ["cli-doomed", "cli-stream"], "HasMoreDeliveryStreams": False}
    out = aws_cli(server, "firehose", "list-delivery-streams", "--limit", "1")
    assert out == {"DeliveryStreamNames": ["cli-doomed"], "HasMoreDeliveryStreams": True}

    # AWS CLI v1 base64-encodes blob arguments itself: Data=hello stores the 5 bytes "hello".
    r1 = aws_cli(server, "firehose", "put-record", "--delivery-stream-name", "cli-stream", "--record", "Data=hello")
    assert RECORD_ID_RE.match(r1["RecordId"]) and r1["Encrypted"] is False

    put_json = tmp_path / "put.json"
    put_json.write_text(json.dumps({"DeliveryStreamName": "cli-stream", "Record": {"Data": "world!"}}))
    r2 = aws_cli(server, "firehose", "put-record", "--cli-input-json", f"file://{put_json}")
    assert RECORD_ID_RE.match(r2["RecordId"])

    batch_json = tmp_path / "batch.json"
    batch_json.write_text(json.dumps({"DeliveryStreamName": "cli-stream",
                                      "Records": [{"Data": "one\n"}, {"Data": "two\n"}, {"Data": "three\n"}]}))
    r3 = aws_cli(server, "firehose", "put-record-batch", "--cli-input-json", f"file://{batch_json}")
    assert r3["FailedPutCount"] == 0
    assert len(r3["RequestResponses"]) == 3 and all(RECORD_ID_RE.match(e["RecordId"]) for e in r3["RequestResponses"])

    # Shorthand for a list of one-member structures: each value is a record's data.
    r4 = aws_cli(server, "firehose", "put-record-batch", "--delivery-stream-name", "cli-stream",
                 "--records", "abc", "defgh")
    assert r4["FailedPutCount"] == 0 and len(r4["RequestResponses"]) == 2

    out = aws_cli(server, "firehose", "delete-delivery-stream", "--delivery-stream-name", "cli-doomed")
    assert out in (None, {})
    with pytest.raises(Exception) as e:
        aws_cli(server, "firehose", "describe-delivery-stream", "--delivery-stream-name", "cli-doomed")
    assert "ResourceNotFoundException" in e.value.stderr
    assert "Firehose cli-doomed under account 123456789012 not found." in e.value.stderr
    out = aws_cli(server, "firehose", "list-delivery-streams")
    assert out["DeliveryStreamNames"] == ["cli-stream"]

    server.kill()  # SIGKILL: no shutdown flush, so the records are still in the WAL
    _, entries = entries_by_lsn(server)
    got = [(entries[lsn_of(r["RecordId"])]["records"], entries[lsn_of(r["RecordId"])]["bytes"],
            entries[lsn_of(r["RecordId"])]["stream"]) for r in (r1, r2)]
    assert got == [(1, 5, "cli-stream"), (1, 6, "cli-stream")]
    e3 = entries[lsn_of(r3["RequestResponses"][0]["RecordId"])]
    assert (e3["records"], e3["bytes"]) == (3, 14)
    e4 = entries[lsn_of(r4["RequestResponses"][0]["RecordId"])]
    assert (e4["records"], e4["bytes"]) == (2, 8)


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------

def test_ingest_metrics(server, firehose):
    quiet_stream(firehose, "m1")
    quiet_stream(firehose, "m2")
    for size in (10, 20, 30):
        firehose.put_record(DeliveryStreamName="m1", Record={"Data": b"r" * size})
    firehose.put_record_batch(DeliveryStreamName="m1", Records=[{"Data": b"b" * 100}] * 5)
    firehose.put_record_batch(DeliveryStreamName="m1", Records=[{"Data": b"c" * 7}] * 3)
    firehose.put_record(DeliveryStreamName="m2", Record={"Data": b"other"})
    # Rejected puts are not counted.
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.put_record_batch(DeliveryStreamName="m1", Records=[{"Data": b"m" * 1_000_000}] * 5)
    r = raw_request(server, "PutRecord", {"DeliveryStreamName": "m1", "Record": {"Data": "!!!"}})
    assert r.error_type == "SerializationException"

    text = server.metrics()
    expected_m1 = {
        "IncomingRecords_total": 11,
        "IncomingBytes_total": 60 + 500 + 21,
        "IncomingPutRequests_total": 5,
        "PutRecord_Requests_total": 3,
        "PutRecord_Bytes_total": 60,
        "PutRecordBatch_Requests_total": 2,
        "PutRecordBatch_Records_total": 8,
        "PutRecordBatch_Bytes_total": 521,
        "PutRecord_Latency_count": 3,
        "PutRecordBatch_Latency_count": 2,
        "ThrottledRecords_total": 0,
    }
    got = {name: metric(text, name, "m1") for name in expected_m1}
    assert got == expected_m1, text
    expected_m2 = {"IncomingRecords_total": 1, "IncomingBytes_total": 5, "IncomingPutRequests_total": 1,
                   "PutRecord_Latency_count": 1, "PutRecordBatch_Latency_count": 0}
    assert {name: metric(text, name, "m2") for name in expected_m2} == expected_m2, text
    assert metric(text, "PutRecord_Latency_sum", "m1") > 0

    # A deleted stream's series disappear.
    firehose.delete_delivery_stream(DeliveryStreamName="m2")
    assert 'delivery_stream="m2"' not in server.metrics()


def test_metrics_endpoint_is_openmetrics_text(server, firehose):
    import urllib.request
    quiet_stream(firehose, "om")
    with urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=5) as r:
        assert r.status == 200
        ctype = r.headers.get("Content-Type", "")
        body = r.read().decode()
    assert ctype.startswith("application/openmetrics-text") or ctype.startswith("text/plain"), ctype
    assert "# TYPE IncomingRecords counter" in body
    assert body.rstrip().endswith("# EOF")


def test_status_endpoint(server, firehose):
    st = server.status()
    assert st["pid"] == server.proc.pid
    assert st["streams"] == 0
    assert re.match(r"^[0-9a-f]{16}$", st["wal"]["wal_id"])
    assert st["wal"]["next_lsn"] == st["wal"]["first_lsn"]
    quiet_stream(firehose, "s")
    r = firehose.put_record(DeliveryStreamName="s", Record={"Data": b"x"})
    st = server.status()
    assert st["streams"] == 1
    assert st["wal"]["next_lsn"] == lsn_of(r["RecordId"]) + 1
    assert st["wal"]["bytes"] > 0 and st["wal"]["segments"] >= 1

