"""S3 delivery: object keys and prefixes (reference §9.1, §9.3), compression formats and object metadata
(§9.2), buffering (§8), source-record backup, UpdateDestination, delivery to a real S3-compatible store
(SeaweedFS), outages and retries, error output (§10), delivery metrics (§18) and graceful shutdown.

Buckets are folders under `<data-dir>/buckets/<bucket>/` unless the server is given an `[s3]` or
`[buckets.NAME]` section; then objects go to SeaweedFS (`s3server.py`). `POST /_spillway/streams/{name}/flush`
delivers everything committed before it, whatever the buffering hints say.
"""

import base64
import gzip
import io
import json
import random
import re
import shutil
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections import Counter
from datetime import datetime, timezone
from unittest import mock
from zoneinfo import ZoneInfo

import boto3
import botocore.config
import botocore.exceptions
import cramjam
import pytest

import s3server
from conftest import REGION, ROLE, Server, create_s3_stream, eventually, flush, s3_destination
from s3server import S3Server, s3_server  # noqa: F401 - s3_server is a fixture

TEMP_PREFIX = ".spillway-tmp-"
QUIET = {"IntervalInSeconds": 900, "SizeInMBs": 128}
EXTENSIONS = {"UNCOMPRESSED": "", "GZIP": ".gz", "ZIP": ".zip", "Snappy": ".snappy", "HADOOP_SNAPPY": ".snappy"}
CONTENT_ENCODINGS = {"UNCOMPRESSED": None, "GZIP": "gzip", "ZIP": "zip", "Snappy": "snappy-java",
                     "HADOOP_SNAPPY": "hadoop-snappy"}
SUFFIX_TIME = r"(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------



def local_objects(server, bucket):
    """{key: bytes} of every object in a folder bucket (temp files of in-flight writes left out)."""
    root = server.data_dir / "buckets" / bucket
    out = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith(TEMP_PREFIX):
            continue
        try:
            out[p.relative_to(root).as_posix()] = p.read_bytes()
        except FileNotFoundError:  # a temp file renamed away meanwhile
            continue
    return out


def snappy_raw(data):
    return bytes(cramjam.snappy.decompress_raw(data))


def decode_snappy_java(body):
    """xerial snappy-java stream: magic, i32 version 1, i32 compat 1, then [i32 len][raw snappy] blocks."""
    assert body[:8] == b"\x82SNAPPY\x00", body[:16]
    version, compat = struct.unpack(">ii", body[8:16])
    assert (version, compat) == (1, 1), (version, compat)
    out, pos = bytearray(), 16
    while pos < len(body):
        assert pos + 4 <= len(body), "truncated snappy-java block header"
        (n,) = struct.unpack(">i", body[pos:pos + 4])
        pos += 4
        assert 0 < n and pos + n <= len(body), f"bad snappy-java block length {n} at {pos - 4}"
        block = snappy_raw(body[pos:pos + n])
        assert len(block) <= 32 * 1024, len(block)
        out += block
        pos += n
    return bytes(out)


def decode_hadoop_snappy(body):
    """Hadoop BlockCompressorStream: [u32 uncompressed len] then [u32 compressed len][raw snappy] chunks."""
    out, pos = bytearray(), 0
    while pos < len(body):
        (total,) = struct.unpack(">I", body[pos:pos + 4])
        pos += 4
        got = 0
        while got < total:
            (n,) = struct.unpack(">I", body[pos:pos + 4])
            pos += 4
            assert pos + n <= len(body), f"truncated hadoop-snappy chunk of {n} at {pos - 4}"
            chunk = snappy_raw(body[pos:pos + n])
            pos += n
            got += len(chunk)
            out += chunk
        assert got == total, f"hadoop-snappy block says {total} bytes, chunks hold {got}"
    return bytes(out)


def decode(fmt, body, key=None):
    """The records of an object, decoded in pure Python (GZIP also with the gzip tool when installed; ZIP objects
    are also checked with `unzip` by `unzip_tool`)."""
    if fmt == "UNCOMPRESSED":
        return body
    if fmt == "GZIP":
        plain = gzip.decompress(body)
        if shutil.which("gzip"):
            tool = subprocess.run(["gzip", "-dc"], input=body, capture_output=True, check=True, timeout=30)
            assert tool.stdout == plain
        return plain
    if fmt == "ZIP":
        with zipfile.ZipFile(io.BytesIO(body)) as z:
            assert z.testzip() is None
            infos = z.infolist()
            assert len(infos) == 1, [i.filename for i in infos]
            assert infos[0].compress_type == zipfile.ZIP_DEFLATED
            if key is not None:
                name = key.rsplit("/", 1)[-1]
                assert infos[0].filename == (name[:-4] if name.endswith(".zip") else name)
            return z.read(infos[0])
    if fmt == "Snappy":
        return decode_snappy_java(body)
    if fmt == "HADOOP_SNAPPY":
        return decode_hadoop_snappy(body)
    raise ValueError(fmt)


def unzip_tool(tmp_path, body):
    """Extracts a ZIP object with the `unzip` command; returns the one entry's bytes."""
    path = tmp_path / "object.zip"
    path.write_bytes(body)
    out = subprocess.run(["unzip", "-p", str(path)], capture_output=True, check=True, timeout=30)
    return out.stdout


def metric(server, name, stream):
    text = server.metrics()
    m = re.search(rf'^{re.escape(name)}\{{delivery_stream="{re.escape(stream)}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def describe(client, name):
    return client.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]


def utc_now():
    return datetime.now(timezone.utc)


def split_key(key, stream, version, ext):
    """(prefix, suffix time as a tuple) of a key `<prefix><stream>-<version>-<time>-<uuid><ext>`."""
    m = re.match(rf"^(?P<prefix>.*){re.escape(stream)}-{version}-{SUFFIX_TIME}-(?P<uuid>[0-9a-f-]{{36}})"
                 rf"{re.escape(ext)}$", key, re.S)
    assert m, f"key {key!r} does not end with {stream}-{version}-<yyyy-MM-dd-HH-mm-ss>-<uuid>{ext}"
    uuid.UUID(m.group("uuid"))
    return m.group("prefix"), tuple(int(m.group(i)) for i in range(2, 8))


def within(t0, t1, tz, fmt):
    """Every value `fmt` can give for an instant between t0 and t1 (in zone `tz`)."""
    return {fmt(t0.astimezone(tz)), fmt(t1.astimezone(tz))}


def deliver(server, client, name, records, **dest):
    """Creates a stream (quiet buffering unless given), puts `records`, flushes; returns
    (flush answer, t0 before the put, t1 after the flush)."""
    dest.setdefault("BufferingHints", QUIET)
    create_s3_stream(client, name, **dest)
    t0 = utc_now()
    client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])
    answer = flush(server, name)
    return answer, t0, utc_now()


def s3_config(w, section="[s3]", secret=None):
    return (f'{section}\nendpoint = "{w.endpoint}"\nregion = "{REGION}"\naccess_key_id = "{w.access_key}"\n'
            f'secret_access_key = "{secret or w.secret_key}"\n')


def new_bucket_name():
    return f"b{uuid.uuid4().hex[:16]}"


@pytest.fixture
def servers(tmp_path):
    """Starts spillway servers with their own data dirs (and an optional spillway.toml); kills them after."""
    made = []

    def make(config=None, name="data"):
        s = Server(tmp_path / name, config=config).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.kill()


class Producer:
    """A thread putting batches of uniquely numbered, newline-terminated records; remembers the acknowledged."""

    def __init__(self, endpoint, stream, tag, batch=20, size=120):
        self.client = boto3.client("firehose", endpoint_url=endpoint, region_name=REGION,
                                   aws_access_key_id="AKIDSPILLWAYTEST", aws_secret_access_key="not-checked",
                                   config=botocore.config.Config(retries={"total_max_attempts": 1},
                                                                 connect_timeout=5, read_timeout=30))
        self.stream, self.tag, self.batch, self.size = stream, tag, batch, size
        self.lock = threading.Lock()
        self.acked = set()
        self.sent = set()
        self.errors = []
        self.seq = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def record(self, n):
        head = f"{self.tag}-{n:09d}"
        return (head + "." * max(0, self.size - len(head) - 1) + "\n").encode()

    def _run(self):
        while not self.done.is_set():
            ids = list(range(self.seq, self.seq + self.batch))
            self.seq += self.batch
            with self.lock:
                self.sent.update(ids)
            try:
                resp = self.client.put_record_batch(DeliveryStreamName=self.stream,
                                                    Records=[{"Data": self.record(n)} for n in ids])
            except Exception as e:  # noqa: BLE001 - reported by the test
                with self.lock:
                    self.errors.append(repr(e))
                self.done.wait(0.05)
                continue
            ok = [n for n, r in zip(ids, resp["RequestResponses"]) if "RecordId" in r]
            with self.lock:
                self.acked.update(ok)
            self.done.wait(0.005)

    def count(self):
        with self.lock:
            return len(self.acked)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.done.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def ids_in(plain, tag):
    """Record numbers of a producer's records in decoded object bytes (whole lines only)."""
    assert plain == b"" or plain.endswith(b"\n"), "an object ends inside a record"
    out = []
    for line in plain.split(b"\n")[:-1]:
        m = re.fullmatch(rb"(\w+)-(\d{9})\.*", line)
        assert m, f"malformed record line {line[:60]!r}"
        if m.group(1).decode() == tag:
            out.append(int(m.group(2)))
    return out


# --------------------------------------------------------------------------------------------------
# object keys and prefixes (§9.1, §9.3)
# --------------------------------------------------------------------------------------------------

def hour_folder(t):
    return t.strftime("%Y/%m/%d/%H/")


PREFIX_CASES = [
    # (id, Prefix, ErrorOutputPrefix, expected evaluated prefix for an instant in UTC)
    ("default", None, None, hour_folder),
    ("empty", "", None, hour_folder),
    ("static-no-slash", "legacy", None, lambda t: "legacy" + hour_folder(t)),
    ("static-folder", "logs/app/", None, lambda t: "logs/app/" + hour_folder(t)),
    ("static-partial-segment", "a/b-", None, lambda t: "a/b-" + hour_folder(t)),
    # §9.3 example row 1: an ErrorOutputPrefix alone changes nothing for delivered objects.
    ("ref-row-1", None, "myFirehoseFailures/!{firehose:error-output-type}/", hour_folder),
    ("static-with-static-error-prefix", "in/", "errs/", lambda t: "in/" + hour_folder(t)),
    ("timestamp-folders", "!{timestamp:yyyy/MM/dd}/", "e/!{firehose:error-output-type}/",
     lambda t: t.strftime("%Y/%m/%d/")),
    ("timestamp-no-trailing-slash", "!{timestamp:yyyy/MM/dd}", "e/!{firehose:error-output-type}/",
     lambda t: t.strftime("%Y/%m/%d")),
    ("hive-style", "year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/",
     "e/!{firehose:error-output-type}/", lambda t: t.strftime("year=%Y/month=%m/day=%d/hour=%H/")),
    ("quoted-dashes", "!{timestamp:yyyy'-'MM'-'dd}/", "e/!{firehose:error-output-type}/",
     lambda t: t.strftime("%Y-%m-%d/")),
    ("quoted-words", "!{timestamp:'y='yyyy'/m='MM}/", "e/!{firehose:error-output-type}/",
     lambda t: t.strftime("y=%Y/m=%m/")),
    ("escaped-quote", "!{timestamp:yyyy''MM}/", "e/!{firehose:error-output-type}/",
     lambda t: t.strftime("%Y'%m/")),
    ("text-fields", "!{timestamp:MMM}/!{timestamp:EEE}/!{timestamp:D}/", "e/!{firehose:error-output-type}/",
     lambda t: f"{t.strftime('%b/%a')}/{t.timetuple().tm_yday}/"),
    ("literal-around-expressions", "data/!{timestamp:yyyy}-x/", "e/!{firehose:error-output-type}/",
     lambda t: t.strftime("data/%Y-x/")),
]


@pytest.mark.parametrize("prefix,error_prefix,expected", [c[1:] for c in PREFIX_CASES],
                         ids=[c[0] for c in PREFIX_CASES])
def test_prefix_evaluates_to_the_documented_key(server, firehose, prefix, error_prefix, expected):
    dest = {}
    if prefix is not None:
        dest["Prefix"] = prefix
    if error_prefix is not None:
        dest["ErrorOutputPrefix"] = error_prefix
    answer, t0, t1 = deliver(server, firehose, "keys", [b"abc", b"def"], **dest)
    assert answer["Records"] == 2
    assert len(answer["Objects"]) == 1, answer
    key = answer["Objects"][0]
    assert local_objects(server, "test-bucket") == {key: b"abcdef"}
    got, when = split_key(key, "keys", 1, "")
    assert got in within(t0, t1, timezone.utc, expected), (key, t0, t1)
    # The suffix time is the object's creation time, in UTC without CustomTimeZone.
    stamp = datetime(*when, tzinfo=timezone.utc)
    assert t0.replace(microsecond=0) <= stamp <= t1, (stamp, t0, t1)


def test_reference_example_row_3_random_string_and_timestamp(server, firehose):
    prefix = "myFirehose/DeliveredYear=!{timestamp:yyyy}/anyMonth/rand=!{firehose:random-string}"
    error_prefix = "myFirehoseFailures/!{firehose:error-output-type}/!{timestamp:yyyy}/anyMonth/!{timestamp:dd}"
    answer, t0, t1 = deliver(server, firehose, "row3", [b"x"], Prefix=prefix, ErrorOutputPrefix=error_prefix)
    got, _ = split_key(answer["Objects"][0], "row3", 1, "")
    m = re.fullmatch(r"myFirehose/DeliveredYear=(\d{4})/anyMonth/rand=([0-9a-f]{11})", got)
    assert m, got
    assert m.group(1) in {str(t0.year), str(t1.year)}


def test_random_string_is_11_lowercase_hex_new_per_occurrence_and_object(server, firehose):
    name = create_s3_stream(firehose, "rand", BufferingHints=QUIET,
                            Prefix="r=!{firehose:random-string}/s=!{firehose:random-string}/",
                            ErrorOutputPrefix="e/!{firehose:error-output-type}/")
    seen = []
    for i in range(3):
        firehose.put_record(DeliveryStreamName=name, Record={"Data": b"r%d" % i})
        key = flush(server, name)["Objects"][0]
        got, _ = split_key(key, name, 1, "")
        m = re.fullmatch(r"r=([0-9a-f]{11})/s=([0-9a-f]{11})/", got)
        assert m, got
        assert m.group(1) != m.group(2), "every occurrence gets a new value"
        seen += [m.group(1), m.group(2)]
    assert len(set(seen)) == len(seen), seen


def test_prefix_with_only_random_string_gets_no_date_appended(server, firehose):
    answer, _, _ = deliver(server, firehose, "onlyrand", [b"x"], Prefix="!{firehose:random-string}/",
                           ErrorOutputPrefix="e/!{firehose:error-output-type}/")
    got, _ = split_key(answer["Objects"][0], "onlyrand", 1, "")
    assert re.fullmatch(r"[0-9a-f]{11}/", got), got


@pytest.mark.parametrize("zone", ["Asia/Kathmandu", "America/New_York", "Asia/Tokyo"])
def test_custom_time_zone_applies_to_prefix_and_suffix(server, firehose, zone):
    tz = ZoneInfo(zone)
    answer, t0, t1 = deliver(server, firehose, "tz", [b"x"], CustomTimeZone=zone)
    got, when = split_key(answer["Objects"][0], "tz", 1, "")
    assert got in within(t0, t1, tz, hour_folder), (got, zone)
    stamp = datetime(*when, tzinfo=tz)
    assert t0.replace(microsecond=0) <= stamp <= t1, (stamp.isoformat(), t0, t1)


def test_custom_time_zone_in_timestamp_expressions_keeps_minute_offsets(server, firehose):
    tz = ZoneInfo("Asia/Kathmandu")  # UTC+05:45: minutes differ from UTC
    answer, t0, t1 = deliver(server, firehose, "tzexpr", [b"x"], CustomTimeZone="Asia/Kathmandu",
                             Prefix="!{timestamp:yyyy-MM-dd'T'HH-mm}/",
                             ErrorOutputPrefix="e/!{firehose:error-output-type}/")
    got, _ = split_key(answer["Objects"][0], "tzexpr", 1, "")
    assert got in within(t0, t1, tz, lambda t: t.strftime("%Y-%m-%dT%H-%M/")), got


def test_unknown_custom_time_zone_is_rejected(firehose):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        create_s3_stream(firehose, "badtz", CustomTimeZone="Mars/Olympus")
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert "Mars/Olympus" in e.value.response["Error"]["Message"]


@pytest.mark.parametrize("fmt,extension", [("GZIP", ".json.gz"), ("UNCOMPRESSED", ".jsonl"), ("ZIP", ".data"),
                                           ("GZIP", "")])
def test_file_extension_replaces_the_default(server, firehose, fmt, extension):
    answer, _, _ = deliver(server, firehose, "ext", [b'{"a":1}\n', b'{"b":2}\n'], CompressionFormat=fmt,
                           FileExtension=extension)
    key = answer["Objects"][0]
    expected_ext = extension or EXTENSIONS[fmt]  # an explicit empty string restores the default
    split_key(key, "ext", 1, expected_ext)
    body = local_objects(server, "test-bucket")[key]
    assert decode(fmt, body) == b'{"a":1}\n{"b":2}\n'


def test_deprecated_s3_destination_configuration_delivers_too(server, firehose):
    firehose.create_delivery_stream(
        DeliveryStreamName="old", S3DestinationConfiguration={**s3_destination("old-bucket"), "Prefix": "p/",
                                                              "CompressionFormat": "GZIP", "BufferingHints": QUIET})
    firehose.put_record_batch(DeliveryStreamName="old", Records=[{"Data": b"one"}, {"Data": b"two"}])
    answer = flush(server, "old")
    key = answer["Objects"][0]
    assert key.startswith("p/") and key.endswith(".gz")
    assert decode("GZIP", local_objects(server, "old-bucket")[key]) == b"onetwo"


# --- create-time validation of prefixes (§9.3 validation rules) ---

OBSERVED_EOP_REQUIRED = ("The supplied prefix(es) do not satisfy the following constraint: ErrorOutputPrefix cannot "
                         "be null or empty when Prefix contains expressions")
CONSTRAINT = "The supplied prefix(es) do not satisfy the following constraint: "

INVALID_PREFIXES = [
    ("ref-row-2", {"Prefix": "!{timestamp:yyyy/MM/dd}"}, OBSERVED_EOP_REQUIRED),
    ("empty-error-prefix", {"Prefix": "x/!{timestamp:yyyy}/", "ErrorOutputPrefix": ""}, OBSERVED_EOP_REQUIRED),
    ("random-string-needs-error-prefix", {"Prefix": "!{firehose:random-string}/"}, OBSERVED_EOP_REQUIRED),
    ("error-prefix-without-error-output-type",
     {"Prefix": "x/", "ErrorOutputPrefix": "myFirehoseFailures/!{timestamp:yyyy}/"},
     CONSTRAINT + "ErrorOutputPrefix must contain !{firehose:error-output-type} when it contains expressions"),
    ("error-output-type-in-prefix",
     {"Prefix": "x/!{firehose:error-output-type}/", "ErrorOutputPrefix": "e/!{firehose:error-output-type}/"},
     CONSTRAINT + "Prefix cannot contain the expression !{firehose:error-output-type}"),
    ("partition-key-without-dynamic-partitioning",
     {"Prefix": "k=!{partitionKeyFromQuery:k}/", "ErrorOutputPrefix": "e/!{firehose:error-output-type}/"},
     "Dynamic Partitioning Namespaces can only be part of a prefix expression when Dynamic Partitioning is enabled."),
    ("unknown-namespace", {"Prefix": "x/!{foo:bar}/", "ErrorOutputPrefix": "e/!{firehose:error-output-type}/"},
     CONSTRAINT + "Prefix contains an expression with an unknown namespace"),
    ("unclosed-error-prefix-expression", {"ErrorOutputPrefix": "e/!{firehose:error-output-type"},
     CONSTRAINT + "ErrorOutputPrefix contains an expression that is not closed"),
    ("unknown-firehose-expression-in-error-prefix", {"ErrorOutputPrefix": "e/!{firehose:random}/"},
     CONSTRAINT + "ErrorOutputPrefix contains an unknown firehose expression"),
    ("prefix-too-long", {"Prefix": "p" * 513}, CONSTRAINT + "Prefix cannot be longer than 512 characters"),
]


@pytest.mark.parametrize("dest,message", [c[1:] for c in INVALID_PREFIXES], ids=[c[0] for c in INVALID_PREFIXES])
def test_invalid_prefixes_are_rejected_at_create(firehose, dest, message):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        create_s3_stream(firehose, "badprefix", **dest)
    err = e.value.response["Error"]
    assert err["Code"] == "InvalidArgumentException", err
    assert err["Message"].startswith(message), err["Message"]
    assert "badprefix" not in firehose.list_delivery_streams()["DeliveryStreamNames"]


def test_invalid_prefix_is_rejected_by_update_destination(firehose):
    create_s3_stream(firehose, "upd-bad")
    d = describe(firehose, "upd-bad")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        firehose.update_destination(DeliveryStreamName="upd-bad", CurrentDeliveryStreamVersionId=d["VersionId"],
                                    DestinationId=d["Destinations"][0]["DestinationId"],
                                    ExtendedS3DestinationUpdate={"Prefix": "!{timestamp:yyyy}/"})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert e.value.response["Error"]["Message"] == OBSERVED_EOP_REQUIRED
    assert describe(firehose, "upd-bad")["VersionId"] == d["VersionId"]


# --------------------------------------------------------------------------------------------------
# compression formats and object metadata (§9.2)
# --------------------------------------------------------------------------------------------------

def sample_records(seed):
    """Records that span several snappy-java (32 KiB) and Hadoop (218 422 bytes) blocks: text, binary,
    empty-ish, and incompressible data."""
    rng = random.Random(seed)
    out = [b"abc", b"\x00\x01\x02\xff", b"line with newline\n", b"x"]
    out += [("row %d %s\n" % (i, "lorem ipsum " * rng.randint(1, 40))).encode() for i in range(300)]
    out += [rng.randbytes(rng.randint(1000, 60_000)) for _ in range(6)]
    out += [b"z" * 100_000, b"tail"]
    return out


@pytest.mark.parametrize("fmt", list(EXTENSIONS))
def test_compression_format_round_trips_on_a_local_folder(server, firehose, tmp_path, fmt):
    records = sample_records(1)
    answer, _, _ = deliver(server, firehose, "fmt", records, CompressionFormat=fmt)
    assert answer["Records"] == len(records)
    (key,) = answer["Objects"]
    split_key(key, "fmt", 1, EXTENSIONS[fmt])
    body = local_objects(server, "test-bucket")[key]
    assert decode(fmt, body, key) == b"".join(records)
    if fmt == "ZIP" and shutil.which("unzip"):
        assert unzip_tool(tmp_path, body) == b"".join(records)
    if fmt == "UNCOMPRESSED":
        assert body == b"".join(records)
    else:
        assert len(body) < sum(map(len, records)), "compressible data should shrink"


def seaweed_content_type_for(w, bucket, ext):
    """What SeaweedFS reports as Content-Type for an object uploaded as application/octet-stream under a key
    with extension `ext` (it overrides the type by extension for .gz and .zip; see s3server.py)."""
    probe = f"probe/content-type-probe{ext}"
    w.client().put_object(Bucket=bucket, Key=probe, Body=b"x", ContentType="application/octet-stream")
    ctype = w.get(bucket, probe)[1].get("content-type")
    w.client().delete_object(Bucket=bucket, Key=probe)
    return ctype


@pytest.mark.parametrize("fmt", list(EXTENSIONS))
def test_compression_format_round_trips_on_s3_with_content_encoding(servers, s3_server, fmt):
    w = s3_server
    bucket = new_bucket_name()
    w.create_bucket(bucket)
    server = servers(s3_config(w))
    client = server.client()
    records = sample_records(2)
    answer, _, _ = deliver(server, client, "s3fmt", records, bucket=bucket, CompressionFormat=fmt)
    (key,) = answer["Objects"]
    split_key(key, "s3fmt", 1, EXTENSIONS[fmt])
    assert [k for k, _ in w.list_objects(bucket)] == [key]
    body, headers = w.get(bucket, key)
    assert decode(fmt, body, key) == b"".join(records)
    assert headers.get("content-encoding") == CONTENT_ENCODINGS[fmt], headers
    assert headers.get("content-type") == seaweed_content_type_for(w, bucket, EXTENSIONS[fmt]), headers
    assert not local_objects(server, bucket), "with [s3] nothing goes to the local folder"


def test_s3_objects_are_application_octet_stream(servers, s3_server):
    """With an extension SeaweedFS does not map to a type, the stored Content-Type is exactly what spillway sent."""
    w = s3_server
    bucket = new_bucket_name()
    w.create_bucket(bucket)
    server = servers(s3_config(w))
    answer, _, _ = deliver(server, server.client(), "octet", [b"a", b"b"], bucket=bucket, CompressionFormat="GZIP",
                           FileExtension=".data")
    (key,) = answer["Objects"]
    assert key.endswith(".data")
    body, headers = w.get(bucket, key)
    assert decode("GZIP", body) == b"ab"
    assert headers.get("content-type") == "application/octet-stream", headers
    assert headers.get("content-encoding") == "gzip", headers


# --------------------------------------------------------------------------------------------------
# buffering (§8)
# --------------------------------------------------------------------------------------------------

def test_size_hint_delivers_without_a_flush_measured_before_compression(server, firehose):
    """1.5 MiB of very compressible GZIP data with SizeInMBs 1: an object appears by itself although the
    compressed bytes are tiny; after a flush every record is delivered exactly once."""
    name = create_s3_stream(firehose, "bysize", CompressionFormat="GZIP",
                            BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 900})
    size = 128 * 1024
    records = [f"{i:08d}".encode() + b"s" * (size - 8) for i in range(12)]
    for i in range(0, len(records), 4):
        firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records[i:i + 4]])
    first = eventually(lambda: local_objects(server, "test-bucket"), "an object cut by the size hint", timeout=20)
    plain = [decode("GZIP", b) for b in first.values()]
    assert all(len(p) >= 1024 * 1024 for p in plain), [len(p) for p in plain]
    assert all(len(b) < 64 * 1024 for b in first.values()), "the object is compressed"
    flush(server, name)
    chunks = []
    for body in local_objects(server, "test-bucket").values():
        data = decode("GZIP", body)
        assert len(data) % size == 0
        chunks += [data[i:i + size] for i in range(0, len(data), size)]
    assert sorted(chunks) == sorted(records)


def test_interval_zero_delivers_without_a_flush(server, firehose):
    name = create_s3_stream(firehose, "zero", BufferingHints={"SizeInMBs": 5, "IntervalInSeconds": 0})
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"now"})
    objs = eventually(lambda: local_objects(server, "test-bucket"), "an object with IntervalInSeconds 0", timeout=10)
    assert list(objs.values()) == [b"now"]


def test_interval_delivers_when_it_runs_out(server, firehose):
    name = create_s3_stream(firehose, "interval", BufferingHints={"SizeInMBs": 5, "IntervalInSeconds": 2})
    t0 = time.monotonic()
    firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"a"}, {"Data": b"b"}])
    objs = eventually(lambda: local_objects(server, "test-bucket"), "an object after the 2 s interval", timeout=15)
    assert time.monotonic() - t0 >= 1.5, "delivered before the interval ran out"
    assert list(objs.values()) == [b"ab"]


def test_interval_60_does_not_deliver_before_a_flush(server, firehose):
    name = create_s3_stream(firehose, "sixty", BufferingHints={"SizeInMBs": 5, "IntervalInSeconds": 60})
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"wait"})
    time.sleep(1)  # a bounded negative check: nothing may appear this early
    assert local_objects(server, "test-bucket") == {}
    answer = flush(server, name)
    assert answer["Records"] == 1
    assert list(local_objects(server, "test-bucket").values()) == [b"wait"]


def test_flush_of_an_unknown_stream_is_resource_not_found(server):
    req = urllib.request.Request(f"{server.endpoint}/_spillway/streams/nope/flush", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400
    assert json.loads(e.value.read())["__type"] == "ResourceNotFoundException"


def test_flush_with_nothing_buffered_writes_nothing(server, firehose):
    name = create_s3_stream(firehose, "empty", BufferingHints=QUIET)
    assert flush(server, name) == {"Objects": [], "Records": 0}
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"one"})
    assert flush(server, name)["Records"] == 1
    assert flush(server, name) == {"Objects": [], "Records": 0}
    assert len(local_objects(server, "test-bucket")) == 1


def test_streams_deliver_independently(server, firehose):
    create_s3_stream(firehose, "s-one", bucket="bucket-one", BufferingHints=QUIET)
    create_s3_stream(firehose, "s-two", bucket="bucket-two", BufferingHints=QUIET)
    firehose.put_record(DeliveryStreamName="s-one", Record={"Data": b"1"})
    firehose.put_record(DeliveryStreamName="s-two", Record={"Data": b"2"})
    assert flush(server, "s-one")["Records"] == 1
    assert list(local_objects(server, "bucket-one").values()) == [b"1"]
    assert local_objects(server, "bucket-two") == {}
    assert flush(server, "s-two")["Records"] == 1
    assert list(local_objects(server, "bucket-two").values()) == [b"2"]


# --------------------------------------------------------------------------------------------------
# source-record backup
# --------------------------------------------------------------------------------------------------

def test_backup_enabled_writes_the_source_records_to_the_backup_bucket(server, firehose):
    backup = {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::backup-bucket", "Prefix": "raw/",
              "CompressionFormat": "GZIP", "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 900}}
    name = create_s3_stream(firehose, "withbackup", bucket="main-bucket", CompressionFormat="Snappy",
                            BufferingHints=QUIET, S3BackupMode="Enabled", S3BackupConfiguration=backup)
    records = [b"r1", b"r2", b"r3"]
    t0 = utc_now()
    firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])
    answer = flush(server, name)
    t1 = utc_now()
    main = local_objects(server, "main-bucket")
    backed = local_objects(server, "backup-bucket")
    assert len(main) == 1 and len(backed) == 1, (main, backed)
    (mkey, mbody), = main.items()
    (bkey, bbody), = backed.items()
    assert sorted(answer["Objects"]) == sorted([mkey, bkey])
    split_key(mkey, name, 1, ".snappy")
    got, _ = split_key(bkey, name, 1, ".gz")
    assert got in within(t0, t1, timezone.utc, lambda t: "raw/" + hour_folder(t))
    assert decode("Snappy", mbody) == b"r1r2r3"
    assert decode("GZIP", bbody) == b"r1r2r3"
    assert metric(server, "DeliveryToS3_Records_total", name) == 3
    assert metric(server, "BackupToS3_Records_total", name) == 3
    assert metric(server, "BackupToS3_ObjectCount_total", name) == 1
    assert metric(server, "BackupToS3_Bytes_total", name) == 6
    # StoredBytes counts the objects as stored (compressed), Bytes the records.
    assert metric(server, "DeliveryToS3_StoredBytes_total", name) == len(mbody)
    assert metric(server, "BackupToS3_StoredBytes_total", name) == len(bbody)


def test_backup_to_s3_and_main_to_a_folder(servers, s3_server):
    """`[buckets.NAME]` sends one bucket to SeaweedFS; the other stays a local folder."""
    w = s3_server
    bucket = new_bucket_name()
    w.create_bucket(bucket)
    server = servers(s3_config(w, section=f'[buckets."{bucket}"]'))
    client = server.client()
    backup = {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", "Prefix": "bk/",
              "CompressionFormat": "HADOOP_SNAPPY", "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 900}}
    name = create_s3_stream(client, "split", bucket="local-bucket", BufferingHints=QUIET, S3BackupMode="Enabled",
                            S3BackupConfiguration=backup)
    client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"p"}, {"Data": b"q"}])
    flush(server, name)
    assert list(local_objects(server, "local-bucket").values()) == [b"pq"]
    objs = w.list_objects(bucket)
    assert len(objs) == 1 and objs[0][0].startswith("bk/"), objs
    assert decode("HADOOP_SNAPPY", objs[0][1]) == b"pq"
    assert w.get(bucket, objs[0][0])[1].get("content-encoding") == "hadoop-snappy"
    assert not local_objects(server, bucket)


# --------------------------------------------------------------------------------------------------
# UpdateDestination
# --------------------------------------------------------------------------------------------------

def update(client, name, **changes):
    d = describe(client, name)
    client.update_destination(DeliveryStreamName=name, CurrentDeliveryStreamVersionId=d["VersionId"],
                              DestinationId=d["Destinations"][0]["DestinationId"], ExtendedS3DestinationUpdate=changes)
    return describe(client, name)["VersionId"]


def test_update_destination_applies_to_the_next_object(server, firehose):
    name = create_s3_stream(firehose, "upd", Prefix="v1/", BufferingHints=QUIET)
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"before"})
    (k1,) = flush(server, name)["Objects"]
    assert k1.startswith("v1/")
    split_key(k1, name, 1, "")
    assert update(firehose, name, Prefix="v2/", CompressionFormat="GZIP") == "2"
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"after"})
    (k2,) = flush(server, name)["Objects"]
    assert k2.startswith("v2/"), k2
    split_key(k2, name, 2, ".gz")
    objs = local_objects(server, "test-bucket")
    assert objs[k1] == b"before"
    assert decode("GZIP", objs[k2]) == b"after"


def test_update_destination_applies_to_records_buffered_before_it(server, firehose):
    """An object cut after the update carries the new VersionId and settings, whenever its records arrived."""
    name = create_s3_stream(firehose, "upd-buffered", Prefix="old/", BufferingHints=QUIET)
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"a"})
    update(firehose, name, Prefix="new/", CompressionFormat="ZIP")
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"b"})
    (key,) = flush(server, name)["Objects"]
    assert key.startswith("new/"), key
    split_key(key, name, 2, ".zip")
    assert decode("ZIP", local_objects(server, "test-bucket")[key], key) == b"ab"


def test_update_destination_changes_buffering_of_a_running_stream(server, firehose):
    name = create_s3_stream(firehose, "upd-buf", BufferingHints=QUIET)
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"waiting"})
    update(firehose, name, BufferingHints={"SizeInMBs": 5, "IntervalInSeconds": 0})
    objs = eventually(lambda: local_objects(server, "test-bucket"), "delivery after the interval became 0",
                      timeout=10)
    (key, body), = objs.items()
    assert body == b"waiting"
    split_key(key, name, 2, "")


def test_update_destination_new_time_zone_and_extension(server, firehose):
    name = create_s3_stream(firehose, "upd-tz", BufferingHints=QUIET)
    update(firehose, name, CustomTimeZone="Asia/Tokyo", FileExtension=".txt")
    t0 = utc_now()
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"x"})
    (key,) = flush(server, name)["Objects"]
    got, _ = split_key(key, name, 2, ".txt")
    assert got in within(t0, utc_now(), ZoneInfo("Asia/Tokyo"), hour_folder)


def test_update_destination_enabling_backup_backs_up_later_records(server, firehose):
    name = create_s3_stream(firehose, "late-backup", BufferingHints=QUIET)
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"early"})
    flush(server, name)
    update(firehose, name, S3BackupMode="Enabled",
           S3BackupUpdate={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::late-backup-bucket",
                           "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 900}})
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"late"})
    flush(server, name)
    assert sorted(local_objects(server, "test-bucket").values()) == [b"early", b"late"]
    (key, body), = local_objects(server, "late-backup-bucket").items()
    assert body == b"late"
    split_key(key, name, 2, "")


def test_deleted_stream_records_are_not_delivered_by_a_new_stream_of_the_same_name(server, firehose):
    create_s3_stream(firehose, "again", BufferingHints=QUIET)
    firehose.put_record(DeliveryStreamName="again", Record={"Data": b"old"})
    firehose.delete_delivery_stream(DeliveryStreamName="again")
    eventually(lambda: "again" not in firehose.list_delivery_streams()["DeliveryStreamNames"], "the deletion")
    create_s3_stream(firehose, "again", BufferingHints=QUIET)
    eventually(lambda: describe(firehose, "again")["DeliveryStreamStatus"] == "ACTIVE", "the new stream")
    firehose.put_record(DeliveryStreamName="again", Record={"Data": b"new"})
    assert flush(server, "again")["Records"] == 1
    assert list(local_objects(server, "test-bucket").values()) == [b"new"]


# --------------------------------------------------------------------------------------------------
# a real S3-compatible store
# --------------------------------------------------------------------------------------------------

def test_s3_config_delivers_to_the_real_bucket(servers, s3_server):
    w = s3_server
    bucket = new_bucket_name()
    w.create_bucket(bucket)
    server = servers(s3_config(w))
    client = server.client()
    name = create_s3_stream(client, "real", bucket=bucket, Prefix="in/", BufferingHints=QUIET)
    t0 = utc_now()
    client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"%d\n" % i} for i in range(100)])
    answer = flush(server, name)
    objs = w.list_objects(bucket)
    assert [k for k, _ in objs] == answer["Objects"]
    got, _ = split_key(objs[0][0], name, 1, "")
    assert got in within(t0, utc_now(), timezone.utc, lambda t: "in/" + hour_folder(t))
    assert objs[0][1] == b"".join(b"%d\n" % i for i in range(100))
    assert metric(server, "DeliveryToS3_Success_total", name) == 1
    assert metric(server, "DeliveryToS3_Failures_total", name) == 0


def test_missing_bucket_is_retried_until_it_exists(servers, s3_server):
    w = s3_server
    bucket = new_bucket_name()
    server = servers(s3_config(w))
    client = server.client()
    name = create_s3_stream(client, "nobucket", bucket=bucket, BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0})
    client.put_record(DeliveryStreamName=name, Record={"Data": b"kept"})
    failure = eventually(lambda: describe(client, name).get("FailureDescription"), "a FailureDescription")
    assert failure["Type"] == "UNKNOWN_ERROR"
    assert failure["Details"].startswith(f"S3 delivery to arn:aws:s3:::{bucket} is failing since "), failure
    assert "S3.NoSuchBucket" in failure["Details"], failure
    assert describe(client, name)["DeliveryStreamStatus"] == "ACTIVE"
    assert metric(server, "DeliveryToS3_Failures_total", name) >= 1
    w.create_bucket(bucket)
    objs = eventually(lambda: w.list_objects(bucket), "delivery once the bucket exists", timeout=30)
    assert [b for _, b in objs] == [b"kept"]
    eventually(lambda: "FailureDescription" not in describe(client, name), "the FailureDescription to clear")


def test_wrong_s3_credentials_fail_then_deliver_after_a_restart_with_the_right_ones(servers, s3_server):
    w = s3_server
    bucket = new_bucket_name()
    w.create_bucket(bucket)
    server = servers(s3_config(w, secret="not-the-secret"))
    client = server.client()
    name = create_s3_stream(client, "creds", bucket=bucket, BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0})
    client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"a"}, {"Data": b"b"}])
    failure = eventually(lambda: describe(client, name).get("FailureDescription"), "a FailureDescription")
    assert "S3.AccessDenied" in failure["Details"], failure
    assert w.list_objects(bucket) == []
    server.stop()
    server.config = s3_config(w)
    server.start()
    client = server.client()
    flush(server, name)
    assert [b for _, b in w.list_objects(bucket)] == [b"ab"]
    assert "FailureDescription" not in describe(client, name)


@pytest.mark.parametrize("level", [0, 9])
def test_delivery_gzip_level_setting(servers, level):
    server = servers(f"[delivery]\ngzip_level = {level}\n")
    client = server.client()
    records = [b"compress me please " * 50] * 20
    for fmt in ("GZIP", "ZIP"):
        name = f"lvl-{fmt.lower()}"
        answer, _, _ = deliver(server, client, name, records, bucket=name, CompressionFormat=fmt)
        body = local_objects(server, name)[answer["Objects"][0]]
        assert decode(fmt, body, answer["Objects"][0]) == b"".join(records)
        if fmt == "GZIP" and level == 0:
            assert len(body) > sum(map(len, records)), "level 0 stores without compressing"
        if level == 9:
            assert len(body) < sum(map(len, records)) // 20


def test_multipart_upload_to_s3_keeps_the_bytes_and_metadata(servers, s3_server):
    w = s3_server
    bucket = new_bucket_name()
    w.create_bucket(bucket)
    server = servers(s3_config(w) + "multipart_threshold = 1048576\n")
    client = server.client()
    rng = random.Random(7)
    records = [rng.randbytes(500_000) for _ in range(5)]  # incompressible: the body stays > 2 MiB
    name = create_s3_stream(client, "multi", bucket=bucket, CompressionFormat="Snappy", BufferingHints=QUIET)
    for r in records:
        client.put_record(DeliveryStreamName=name, Record={"Data": r})
    (key,) = flush(server, name)["Objects"]
    body, headers = w.get(bucket, key)
    assert len(body) > 2 * 1024 * 1024
    assert decode("Snappy", body) == b"".join(records)
    assert headers.get("content-encoding") == "snappy-java", headers


def test_sigterm_with_a_failing_destination_keeps_records_for_the_next_start(servers, s3_server):
    w = s3_server
    bucket = new_bucket_name()  # created only later: delivery fails with NoSuchBucket meanwhile
    server = servers(s3_config(w) + "[delivery]\nshutdown_timeout_secs = 1\n")
    client = server.client()
    name = create_s3_stream(client, "termfail", bucket=bucket, BufferingHints=QUIET)
    client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"%d\n" % i} for i in range(50)])
    t0 = time.monotonic()
    assert server.stop() == 0, server.log()
    assert time.monotonic() - t0 < 6, "shutdown_timeout_secs = 1 was not honoured"
    w.create_bucket(bucket)
    server.start()
    flush(server, name)
    objs = w.list_objects(bucket)
    assert sorted(b"".join(b for _, b in objs).splitlines(keepends=True)) == sorted(b"%d\n" % i for i in range(50))


class RestartableS3Server(S3Server):
    """An S3Server that can be started again on the same ports and data directory."""

    def restart(self):
        ports = list(self._ports)
        with mock.patch.object(s3server, "_free_ports", lambda n: ports[:n]):
            return self.start()


def test_s3_outage_under_load_loses_and_duplicates_nothing(servers, tmp_path):
    w = RestartableS3Server(tmp_path / "weed")  # its own: this test stops it
    w.start()
    try:
        bucket = new_bucket_name()
        w.create_bucket(bucket)
        server = servers(s3_config(w))
        client = server.client()
        name = create_s3_stream(client, "outage", bucket=bucket, CompressionFormat="GZIP",
                                BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0})
        producer = Producer(server.endpoint, name, "o").start()
        try:
            eventually(lambda: w.list_objects(bucket), "delivery before the outage", timeout=20)
            w.stop()
            before = producer.count()
            failures_before = metric(server, "DeliveryToS3_Failures_total", name)
            failure = eventually(lambda: describe(client, name).get("FailureDescription"),
                                 "a FailureDescription during the outage", timeout=30)
            assert failure["Type"] == "UNKNOWN_ERROR"
            assert failure["Details"].startswith(f"S3 delivery to arn:aws:s3:::{bucket} is failing since "), failure
            assert describe(client, name)["DeliveryStreamStatus"] == "ACTIVE"
            eventually(lambda: metric(server, "DeliveryToS3_Failures_total", name) > failures_before,
                       "DeliveryToS3_Failures_total to grow", timeout=30)
            eventually(lambda: producer.count() > before + 500, "puts to keep succeeding during the outage")
            w.restart()
            resumed = producer.count()
            eventually(lambda: producer.count() > resumed + 200, "more puts after the store is back")
        finally:
            producer.stop()
        assert not producer.errors, producer.errors[:5]
        flush(server, name)
        eventually(lambda: "FailureDescription" not in describe(client, name), "the FailureDescription to clear")
        seen = Counter()
        for key, body in w.list_objects(bucket):
            assert key.endswith(".gz"), key
            seen.update(ids_in(decode("GZIP", body), "o"))
        dups = {k: v for k, v in seen.items() if v > 1}
        assert not dups, f"{len(dups)} records delivered more than once, e.g. {list(dups.items())[:5]}"
        missing = producer.acked - set(seen)
        assert not missing, f"{len(missing)} acknowledged records never delivered, e.g. {sorted(missing)[:5]}"
        assert set(seen) <= producer.sent
        assert metric(server, "DeliveryToS3_Records_total", name) == sum(seen.values())
    finally:
        w.stop()


# --------------------------------------------------------------------------------------------------
# metrics (§18)
# --------------------------------------------------------------------------------------------------

def test_delivery_metrics_count_records_bytes_and_objects(server, firehose):
    name = create_s3_stream(firehose, "metrics", CompressionFormat="GZIP", BufferingHints=QUIET)
    sizes = [10, 20, 30]
    firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"m" * n} for n in sizes])
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"n" * 40})
    assert metric(server, "DeliveryToS3_Records_total", name) == 0
    flush(server, name)
    expect = {"Records": 4, "Bytes": 100, "ObjectCount": 1, "PutRequests": 1, "Success": 1, "Failures": 0}
    for k, v in expect.items():
        assert metric(server, f"DeliveryToS3_{k}_total", name) == v, k
    firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"o" * 5}] * 3)
    flush(server, name)
    expect = {"Records": 7, "Bytes": 115, "ObjectCount": 2, "PutRequests": 2, "Success": 2, "Failures": 0}
    for k, v in expect.items():
        assert metric(server, f"DeliveryToS3_{k}_total", name) == v, k
    for k in ("Records", "Bytes", "ObjectCount"):
        assert metric(server, f"BackupToS3_{k}_total", name) == 0


def test_data_freshness_is_the_age_of_the_oldest_undelivered_record(server, firehose):
    name = create_s3_stream(firehose, "fresh", BufferingHints=QUIET)
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"old"})
    # Nothing else happens on the stream: the gauge must still age while the record waits.
    seen = []

    def aged():
        seen.append(metric(server, "DeliveryToS3_DataFreshness", name))
        return seen[-1] >= 1.0

    try:
        eventually(aged, "DeliveryToS3_DataFreshness to reach 1 s while a record waits", timeout=5, interval=0.1)
    except AssertionError as e:
        raise AssertionError(f"{e}; the gauge read {sorted(set(seen))} over 5 s") from None
    flush(server, name)
    eventually(lambda: metric(server, "DeliveryToS3_DataFreshness", name) == 0.0,
               "DeliveryToS3_DataFreshness back to 0 after delivery", timeout=5)


# --------------------------------------------------------------------------------------------------
# error output (§10)
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error_prefix,expected", [
    ("errors/!{firehose:error-output-type}/", lambda t: "errors/s3-failed/"),
    # A static ErrorOutputPrefix gets `<error-output-type>/yyyy/MM/dd/HH/` appended (prefix.rs).
    ("errs/", lambda t: "errs/s3-failed/" + hour_folder(t)),
], ids=["expression-error-prefix", "static-error-prefix"])
def test_unwritable_key_sends_records_to_the_error_output(server, firehose, error_prefix, expected):
    """A 300-byte path segment cannot be a folder name: the records go to the error prefix as JSON lines."""
    long_segment = "x" * 300
    name = create_s3_stream(firehose, "unwritable", BufferingHints=QUIET, Prefix=f"!{{timestamp:yyyy}}/{long_segment}/",
                            ErrorOutputPrefix=error_prefix)
    records = [b"first", b"\x00binary\xff", b""]
    t0 = int(time.time() * 1000)
    firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])
    answer = flush(server, name)
    t1 = int(time.time() * 1000)
    objs = local_objects(server, "test-bucket")
    assert list(objs) == answer["Objects"], (objs.keys(), answer)
    (key, body), = objs.items()
    got, _ = split_key(key, name, 1, "")
    at = [datetime.fromtimestamp(t / 1000, timezone.utc) for t in (t0, t1)]
    assert got in within(*at, timezone.utc, expected), key
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [base64.b64decode(x["rawData"]) for x in lines] == records
    for x in lines:
        assert set(x) == {"attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage", "attemptEndingTimestamp",
                          "rawData"}, x
        assert x["errorCode"] == "S3.InvalidKey", x
        assert "255" in x["errorMessage"], x
        assert x["attemptsMade"] >= 1
        assert t0 - 1000 <= x["arrivalTimestamp"] <= x["attemptEndingTimestamp"] <= t1 + 1000, (x, t0, t1)
    assert "FailureDescription" not in describe(firehose, name)
    assert metric(server, "DeliveryToS3_Records_total", name) == 0
    assert metric(server, "DeliveryToS3_ObjectCount_total", name) == 0
    assert metric(server, "DeliveryToS3_ErrorOutputObjects_total", name) == 1
    assert metric(server, "DeliveryToS3_ErrorOutputBytes_total", name) == len(body)
    # The stream keeps going: the next records meet the same fate, nothing is stuck.
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"again"})
    assert flush(server, name)["Records"] == 1
    assert len(local_objects(server, "test-bucket")) == 2


def test_unwritable_error_output_is_retried_and_reported(server, firehose):
    """A static 300-character Prefix makes the error prefix (`<Prefix>s3-failed/...`) unwritable too: nothing is
    dropped, the stream stays ACTIVE and says why delivery fails."""
    name = create_s3_stream(firehose, "stuck", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0},
                            Prefix="y" * 300)
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"stuck"})
    failure = eventually(lambda: describe(firehose, name).get("FailureDescription"), "a FailureDescription")
    assert failure["Type"] == "UNKNOWN_ERROR"
    assert "S3.InvalidKey" in failure["Details"], failure
    assert describe(firehose, name)["DeliveryStreamStatus"] == "ACTIVE"
    eventually(lambda: metric(server, "DeliveryToS3_Failures_total", name) >= 2, "repeated failed attempts")
    assert local_objects(server, "test-bucket") == {}


# --------------------------------------------------------------------------------------------------
# graceful shutdown
# --------------------------------------------------------------------------------------------------

def test_sigterm_delivers_buffered_records(server, firehose):
    name = create_s3_stream(firehose, "term", CompressionFormat="GZIP",
                            BufferingHints={"SizeInMBs": 128, "IntervalInSeconds": 900})
    records = [b"%05d\n" % i for i in range(2000)]
    for i in range(0, len(records), 500):
        firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records[i:i + 500]])
    assert local_objects(server, "test-bucket") == {}
    t0 = time.monotonic()
    assert server.stop() == 0, server.log()
    assert time.monotonic() - t0 < 12
    objs = local_objects(server, "test-bucket")
    assert objs, "nothing delivered on SIGTERM"
    delivered = b"".join(decode("GZIP", b) for b in objs.values())
    assert sorted(delivered.splitlines(keepends=True)) == records
    # Restarted, the server has nothing left to deliver: no record is written twice.
    server.start()
    assert flush(server, name) == {"Objects": [], "Records": 0}
    assert local_objects(server, "test-bucket") == objs
