"""Record format conversion (reference §13): JSON records to Parquet and ORC against a table schema, its validation, the
`format-conversion-failed` error output (§10) and the conversion metrics; black-box against the real binary.

Tables are defined the ways a user defines them: the seed 004 Hive DDL file added with `spillway tables add`, files in
`<data-dir>/tables/<database>/`, and `[[tables]]` in spillway.toml. Delivered files are read back with pyarrow and
DuckDB (including DuckDB's `hive_partitioning` over Hive-style prefixes), and every value and type is compared with
what was sent.
"""

import base64
import datetime as dt
import decimal
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import duckdb
import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest

from conftest import ACCOUNT_ID, BIN, REGION, ROLE, Server, flush

LAMBDA_DIR = Path(__file__).resolve().parent / "lambda"
TEMP_PREFIX = ".spillway-tmp-"
QUIET = {"IntervalInSeconds": 900, "SizeInMBs": 128}

# Seed 004's DDL, exactly as written in the seed (shared with the Rust tests and the benchmark).
SEED004_DDL = (Path(__file__).resolve().parents[2] / "crates" / "spillway-format" / "tests" / "fixtures"
               / "nyctaxitrips.sql").read_text()

# A table with every Hive type OpenX can read, as a JSON column list.
ALL_TYPES = [
    ("b", "boolean"), ("ti", "tinyint"), ("si", "smallint"), ("i", "int"), ("bi", "bigint"), ("f", "float"),
    ("d", "double"), ("dec", "decimal(10,2)"), ("s", "string"), ("vc", "varchar(5)"), ("c", "char(3)"),
    ("dt", "date"), ("ts", "timestamp"), ("arr", "array<int>"), ("m", "map<string,bigint>"),
    ("st", "struct<a:string,b:array<struct<c:int>>>"),
]
ALL_TYPES_ARROW = {
    "b": pa.bool_(), "ti": pa.int8(), "si": pa.int16(), "i": pa.int32(), "bi": pa.int64(), "f": pa.float32(),
    "d": pa.float64(), "dec": pa.decimal128(10, 2), "s": pa.string(), "vc": pa.string(), "c": pa.string(),
    "dt": pa.date32(), "ts": pa.timestamp("us"),
}


def all_types_row(n):
    """A record of ALL_TYPES, and the values a reader must find for it."""
    rec = {
        "b": n % 2 == 0, "ti": -n % 128, "si": n * 100, "i": n * 100000, "bi": n * 10**12, "f": n + 0.5,
        "d": n / 3, "dec": f"{n}.25", "s": f"str-{n}-é", "vc": f"abcdefg{n}", "c": "x", "dt": f"2024-02-{n % 28 + 1:02d}",
        "ts": f"2024-02-03T04:05:06.{n % 1000:03d}Z", "arr": [n, None, n + 1], "m": {"k": n, "z": None},
        "st": {"A": f"a{n}", "b": [{"c": n}, None]}, "unknown": {"ignored": True},
    }
    expect = dict(rec)
    del expect["unknown"]
    expect.update({
        "dec": decimal.Decimal(f"{n}.25"), "vc": "abcde", "c": "x  ", "dt": dt.date(2024, 2, n % 28 + 1),
        "ts": dt.datetime(2024, 2, 3, 4, 5, 6, (n % 1000) * 1000), "m": [("k", n), ("z", None)],
        "st": {"a": f"a{n}", "b": [{"c": n}, None]}, "f": float(n + 0.5),
    })
    return rec, expect


def toml_str(s):
    return json.dumps(str(s))


def columns_json(cols):
    return json.dumps([{"Name": n, "Type": t} for n, t in cols])


def conversion_toml(tmp_path):
    """spillway.toml: the all-types table inline in [[tables]] (from a JSON file), and the `upper` command function."""
    types_file = tmp_path / "all_types.json"
    types_file.write_text(columns_json(ALL_TYPES))
    hive_ddl = ("CREATE TABLE lab.hive_events (`id` bigint, `t` timestamp, `payload` binary, `n` int) "
                "PARTITIONED BY (`dt` string) STORED AS PARQUET")
    return "\n".join([
        "[[tables]]", 'database = "lab"', f"file = {toml_str(types_file)}", "",
        "[[tables]]", f"ddl = {toml_str(hive_ddl)}", "",
        "[functions.upper]",
        f"command = [{toml_str(sys.executable)}, {toml_str(LAMBDA_DIR / 'upper_json_command.py')}]", "",
    ])


@pytest.fixture
def srv(tmp_path):
    data = tmp_path / "data"
    (data / "tables" / "shop").mkdir(parents=True)
    (data / "tables" / "shop" / "orders.json").write_text(json.dumps({"columns": [
        {"name": "order_id", "type": "bigint"}, {"name": "customer", "type": "string"},
        {"name": "amount", "type": "decimal(12,2)"}, {"name": "kind", "type": "string"},
        {"name": "ts", "type": "timestamp"}]}))
    s = Server(data, config=conversion_toml(tmp_path)).start()
    yield s
    s.kill()


def spillway_cli(*args):
    out = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def dfc(database, table, serializer=None, deserializer=None, **extra):
    return {
        "Enabled": True,
        "SchemaConfiguration": {"DatabaseName": database, "TableName": table, "RoleARN": ROLE, **extra},
        "InputFormatConfiguration": {"Deserializer": deserializer or {"OpenXJsonSerDe": {}}},
        "OutputFormatConfiguration": {"Serializer": serializer or {"ParquetSerDe": {}}},
    }


def create(client, name, conversion, bucket="test-bucket", **dest):
    dest.setdefault("BufferingHints", QUIET)
    dest.setdefault("ErrorOutputPrefix", "errors/!{firehose:error-output-type}/")
    client.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
                                            "DataFormatConversionConfiguration": conversion, **dest})
    d = client.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert d["DeliveryStreamStatus"] == "ACTIVE", d.get("FailureDescription")
    return d


def put(client, name, records):
    for i in range(0, len(records), 500):
        resp = client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records[i:i + 500]])
        assert resp["FailedPutCount"] == 0, resp


def objects(server, bucket="test-bucket"):
    root = server.data_dir / "buckets" / bucket
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(TEMP_PREFIX)}


def error_records(server, error_type="format-conversion-failed"):
    out = []
    for key, path in objects(server).items():
        if key.startswith(f"errors/{error_type}/"):
            out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


def metric(server, name, stream):
    import re
    m = re.search(rf'^{re.escape(name)}\{{delivery_stream="{re.escape(stream)}"\}} (\S+)$', server.metrics(), re.M)
    return float(m.group(1)) if m else None


def read_rows(path):
    table = orc.read_table(path) if str(path).endswith(".orc") else pq.read_table(path)
    return table, table.to_pylist()


def invalid_argument(client, name, conversion, **dest):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        create(client, name, conversion, **dest)
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException", e.value.response
    return e.value.response["Error"]["Message"]


# --------------------------------------------------------------------------------------------------
# seed 004: taxi trips, the Hive DDL, Hive-style prefixes, pyarrow and DuckDB
# --------------------------------------------------------------------------------------------------


def taxi_trip(i, rng):
    pickup = dt.datetime(2020, 9, 3, 9, 0, 0) + dt.timedelta(seconds=rng.randrange(0, 3000))
    drop = pickup + dt.timedelta(seconds=rng.randrange(60, 3600), milliseconds=rng.randrange(0, 1000))
    return {
        "pickup_latitude": round(rng.uniform(40.5, 40.9), 6), "pickup_longitude": round(rng.uniform(-74.1, -73.7), 6),
        "dropoff_latitude": round(rng.uniform(40.5, 40.9), 6), "dropoff_longitude": round(rng.uniform(-74.1, -73.7), 6),
        "trip_id": 10_000_000_000 + i, "trip_distance": round(rng.uniform(0.1, 30), 2),
        "passenger_count": rng.randrange(1, 7),
        "pickup_datetime": pickup.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "dropoff_datetime": drop.strftime("%Y-%m-%dT%H:%M:%S.") + f"{drop.microsecond // 1000:03d}Z",
        "total_amount": round(rng.uniform(3, 150), 2), "type": "trip",
    }


def test_seed004_taxi_trips_to_parquet_read_by_pyarrow_and_duckdb(tmp_path):
    data = tmp_path / "data"
    ddl = tmp_path / "nyctaxitrips.sql"
    ddl.write_text(SEED004_DDL)
    # `spillway tables add` registers the seed's DDL file as table kinesislab.nyctaxitrips.
    out = spillway_cli("tables", "add", ddl, "--database", "kinesislab", "--data-dir", data)
    assert "nyctaxitrips" in out
    assert "kinesislab" in spillway_cli("tables", "list", "--data-dir", data)
    server = Server(data).start()
    try:
        client = server.client()
        name = "nyc-taxi-trips"
        d = create(client, name, dfc("kinesislab", "nyctaxitrips", VersionId="LATEST"),
                   BufferingHints={"SizeInMBs": 128, "IntervalInSeconds": 180},
                   Prefix="nyctaxitrips/year=!{timestamp:YYYY}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/",
                   ErrorOutputPrefix="nyctaxitripserror/!{firehose:error-output-type}/year=!{timestamp:YYYY}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/")
        ext = d["Destinations"][0]["ExtendedS3DestinationDescription"]
        assert ext["CompressionFormat"] == "UNCOMPRESSED"
        rng = random.Random(4)
        trips = [taxi_trip(i, rng) for i in range(3000)]
        t0 = time.time()
        put(client, name, [json.dumps(t).encode() for t in trips])
        report = flush(server, name)
        t1 = time.time()
        files = objects(server)
        parquet = [k for k in files if k.endswith(".parquet")]
        assert parquet and set(report["Objects"]) == set(parquet), (report, list(files))
        hours = {dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("year=%Y/month=%m/day=%d/hour=%H/") for t in (t0, t1)}
        for key in parquet:
            assert key.startswith("nyctaxitrips/") and key[len("nyctaxitrips/"):].rsplit("/", 1)[0] + "/" in hours, key
            assert key.rsplit("/", 1)[1].startswith(f"{name}-1-"), key
        table = pa.concat_tables([pq.read_table(files[k]) for k in parquet])
        # The file has the table's data columns with their types, in order; partition columns are not in it.
        assert table.schema.names == ["pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude",
                                      "trip_id", "trip_distance", "passenger_count", "pickup_datetime",
                                      "dropoff_datetime", "total_amount"]
        assert table.schema.field("trip_id").type == pa.int64()
        assert table.schema.field("passenger_count").type == pa.int32()
        assert table.schema.field("pickup_datetime").type == pa.timestamp("us")
        assert table.schema.field("total_amount").type == pa.float64()
        rows = sorted(table.to_pylist(), key=lambda r: r["trip_id"])
        assert len(rows) == len(trips)
        for row, trip in zip(rows, trips):
            for k in ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude", "trip_id",
                      "trip_distance", "passenger_count", "total_amount"):
                assert row[k] == trip[k], (k, row, trip)
            for k in ("pickup_datetime", "dropoff_datetime"):
                assert row[k] == dt.datetime.strptime(trip[k], "%Y-%m-%dT%H:%M:%S.%fZ"), (k, row, trip)
        # Athena-style query with DuckDB over the Hive-style prefix.
        root = server.data_dir / "buckets" / "test-bucket" / "nyctaxitrips"
        con = duckdb.connect()
        got = con.execute(
            "SELECT year, month, day, hour, count(*), sum(total_amount), min(pickup_datetime) "
            f"FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true, hive_types_autocast = false) "
            "GROUP BY ALL ORDER BY ALL").fetchall()
        assert sum(r[4] for r in got) == len(trips)
        assert {f"year={r[0]}/month={r[1]}/day={r[2]}/hour={r[3]}/" for r in got} <= hours, got
        assert abs(sum(r[5] for r in got) - sum(t["total_amount"] for t in trips)) < 1e-6
        assert min(r[6] for r in got) == min(dt.datetime.strptime(t["pickup_datetime"], "%Y-%m-%dT%H:%M:%S.%fZ") for t in trips)
        assert metric(server, "SucceedConversion_Records_total", name) == len(trips)
        assert metric(server, "FailedConversion_Records_total", name) == 0
    finally:
        server.kill()


# --------------------------------------------------------------------------------------------------
# every type, both output formats
# --------------------------------------------------------------------------------------------------


def check_all_types(table, rows, expected, orc_file=False):
    for field, typ in ALL_TYPES_ARROW.items():
        if orc_file and field == "ts":
            typ = pa.timestamp("ns")  # pyarrow reads every ORC timestamp as nanoseconds
        assert table.schema.field(field).type == typ, (field, table.schema.field(field).type)
    assert pa.types.is_list(table.schema.field("arr").type)
    assert table.schema.field("arr").type.value_type == pa.int32()
    assert pa.types.is_map(table.schema.field("m").type)
    assert table.schema.field("m").type.item_type == pa.int64()
    st = table.schema.field("st").type
    assert pa.types.is_struct(st) and [st.field(i).name for i in range(st.num_fields)] == ["a", "b"]
    assert table.schema.names == [n for n, _ in ALL_TYPES], "unknown JSON fields are not columns"
    assert len(rows) == len(expected)
    for row, exp in zip(rows, expected):
        for k, v in exp.items():
            if k == "f":
                assert row[k] == pytest.approx(v), (k, row[k], v)
            elif k == "m":
                assert sorted(row[k]) == sorted(v), (k, row[k], v)
            else:
                assert row[k] == v, (k, row[k], v)


@pytest.mark.parametrize("serializer,ext", [
    ({"ParquetSerDe": {}}, ".parquet"),
    ({"ParquetSerDe": {"Compression": "GZIP", "WriterVersion": "V2", "EnableDictionaryCompression": False}}, ".parquet"),
    ({"ParquetSerDe": {"Compression": "UNCOMPRESSED", "BlockSizeBytes": 67108864, "PageSizeBytes": 65536,
                       "MaxPaddingBytes": 1024}}, ".parquet"),
    ({"OrcSerDe": {}}, ".orc"),
    ({"OrcSerDe": {"Compression": "ZLIB", "StripeSizeBytes": 8388608, "RowIndexStride": 1000,
                   "FormatVersion": "V0_11", "BloomFilterColumns": ["s"], "EnablePadding": True}}, ".orc"),
    ({"OrcSerDe": {"Compression": "NONE"}}, ".orc"),
], ids=["parquet-snappy", "parquet-gzip-v2", "parquet-uncompressed", "orc-snappy", "orc-zlib", "orc-none"])
def test_every_type_round_trips(srv, serializer, ext):
    client = srv.client()
    name = "types-" + ext.strip(".") + "-" + str(abs(hash(json.dumps(serializer))) % 10000)
    create(client, name, dfc("lab", "all_types", serializer))
    pairs = [all_types_row(n) for n in range(1, 40)]
    nulls = {"b": None, "ti": None, "arr": None, "st": None, "m": None}  # explicit nulls and missing keys
    put(client, name, [json.dumps(r).encode() for r, _ in pairs] + [json.dumps(nulls).encode(), b"{}"])
    report = flush(srv, name)
    files = [k for k in objects(srv) if k.endswith(ext)]
    assert len(files) == 1 and report["Objects"] == files, (report, files)
    table, rows = read_rows(objects(srv)[files[0]])
    check_all_types(table, rows[:-2], [e for _, e in pairs], orc_file=ext == ".orc")
    assert all(v is None for v in rows[-1].values()) and all(v is None for v in rows[-2].values())
    if ext == ".parquet":
        meta = pq.ParquetFile(objects(srv)[files[0]]).metadata
        codec = meta.row_group(0).column(0).compression
        want = serializer["ParquetSerDe"].get("Compression", "SNAPPY")
        assert codec == want, (codec, want)
        if serializer["ParquetSerDe"].get("WriterVersion") == "V2":
            assert meta.format_version == "2.6"
        # DuckDB reads the same values.
        got = duckdb.connect().execute(
            f"SELECT bi, dec, ts, st.a, arr[1] FROM read_parquet('{objects(srv)[files[0]]}') WHERE bi IS NOT NULL ORDER BY bi").fetchall()
        assert got == [(e["bi"], e["dec"], e["ts"], e["st"]["a"], e["arr"][0]) for _, e in pairs]
    else:
        f = orc.ORCFile(objects(srv)[files[0]])
        want = {"NONE": "UNCOMPRESSED", "ZLIB": "ZLIB", "SNAPPY": "SNAPPY"}[serializer["OrcSerDe"].get("Compression", "SNAPPY")]
        assert f.compression == want, f.compression
        assert f.nrows == len(pairs) + 2


# --------------------------------------------------------------------------------------------------
# bad records
# --------------------------------------------------------------------------------------------------


BAD = [
    (b"", "DataFormatConversion.MalformedData", "The record was empty or contained only whitespace."),
    (b"   \n", "DataFormatConversion.MalformedData", "The record was empty or contained only whitespace."),
    (b'{"order_id": 1, "customer": "x"', "DataFormatConversion.ParseError", "Encountered malformed JSON."),
    (b'{"order_id": "one"}', "DataFormatConversion.MalformedData", 'For input string: "one"'),
    (b'{"order_id": 99999999999999999999}', "DataFormatConversion.MalformedData", "Value out of range"),
    (b'{"amount": 12345678901.5}', None, None),  # decimal(12,2) overflow: null, as Hive's precision rule
    (b"42", "DataFormatConversion.MalformedData", "primitive at the top level"),
    (b'[{"order_id": 1}]', "DataFormatConversion.MalformedData", "array"),
    (b'{"ts": "2024-01-01T00:00:00+02:00"}', "DataFormatConversion.MalformedData", "timestamp"),
]


def test_bad_records_go_to_format_conversion_failed_and_the_rest_is_delivered(srv):
    client = srv.client()
    name = "orders-bad"
    create(client, name, dfc("shop", "orders"))
    good = [{"order_id": i, "customer": f"c{i}", "amount": f"{i}.5", "kind": "web", "ts": 1700000000 + i}
            for i in range(5)]
    records = [json.dumps(good[0]).encode()] + [b for b, _, _ in BAD] + [json.dumps(g).encode() for g in good[1:]]
    records.append(b'{"order_id": 10}{"order_id": 11}\n')  # concatenated objects: two rows
    t0 = int(time.time() * 1000)
    put(client, name, records)
    report = flush(srv, name)
    t1 = int(time.time() * 1000)
    files = objects(srv)
    parquet = [k for k in files if k.endswith(".parquet")]
    assert len(parquet) == 1, list(files)
    rows = pq.read_table(files[parquet[0]]).to_pylist()
    assert [r["order_id"] for r in rows] == [0, None, 1, 2, 3, 4, 10, 11], rows
    assert rows[1]["amount"] is None
    assert rows[0]["amount"] == decimal.Decimal("0.50") and rows[0]["ts"] == dt.datetime(2023, 11, 14, 22, 13, 20)
    errors = error_records(srv)
    failing = [(b, c, m) for b, c, m in BAD if c]
    assert len(errors) == len(failing), errors
    assert any(k.startswith("errors/format-conversion-failed/") for k in report["Objects"]), report
    by_raw = {base64.b64decode(e["rawData"]): e for e in errors}
    for raw, code, message in failing:
        e = by_raw[raw]
        assert e["lastErrorCode"] == code, e
        assert message in e["lastErrorMessage"], e
        assert e["attemptsMade"] == 1
        assert t0 - 1000 <= e["arrivalTimestamp"] <= e["attemptEndingTimestamp"] <= t1 + 1000, e
        assert e["dataCatalogTable"] == {"catalogId": ACCOUNT_ID, "databaseName": "shop", "tableName": "orders",
                                         "region": REGION, "versionId": "LATEST", "catalogArn": None}, e
        assert set(e) == {"attemptsMade", "arrivalTimestamp", "lastErrorCode", "lastErrorMessage",
                          "attemptEndingTimestamp", "rawData", "sequenceNumber", "subSequenceNumber",
                          "dataCatalogTable"}, e
    ok_bytes = sum(len(r) for r in records) - sum(len(b) for b, _, _ in failing)
    assert metric(srv, "SucceedConversion_Records_total", name) == len(records) - len(failing)
    assert metric(srv, "SucceedConversion_Bytes_total", name) == ok_bytes
    assert metric(srv, "FailedConversion_Records_total", name) == len(failing)
    assert metric(srv, "FailedConversion_Bytes_total", name) == sum(len(b) for b, _, _ in failing)
    # One Parquet object and one error object, counted as stored.
    error_keys = [k for k in report["Objects"] if k.startswith("errors/format-conversion-failed/")]
    assert metric(srv, "DeliveryToS3_ObjectCount_total", name) == 1
    assert metric(srv, "DeliveryToS3_StoredBytes_total", name) == files[parquet[0]].stat().st_size
    assert metric(srv, "DeliveryToS3_ErrorOutputObjects_total", name) == len(error_keys) == 1
    assert metric(srv, "DeliveryToS3_ErrorOutputBytes_total", name) == sum(files[k].stat().st_size for k in error_keys)


def test_a_batch_of_only_bad_records_writes_no_file(srv):
    client = srv.client()
    create(client, "all-bad", dfc("shop", "orders"))
    put(client, "all-bad", [b"nope", b""])
    flush(srv, "all-bad")
    keys = list(objects(srv))
    assert not [k for k in keys if k.endswith(".parquet")], keys
    assert len(error_records(srv)) == 2


# --------------------------------------------------------------------------------------------------
# input SerDes
# --------------------------------------------------------------------------------------------------


def test_openx_options(srv):
    client = srv.client()
    de = {"OpenXJsonSerDe": {"CaseInsensitive": False, "ColumnToJsonKeyMappings": {"ts": "event.time"},
                             "ConvertDotsInJsonKeysToUnderscores": False}}
    create(client, "openx", dfc("shop", "orders", deserializer=de))
    put(client, "openx", [json.dumps({"order_id": 1, "Customer": "not matched", "event.time": "2024-05-06 07:08:09",
                                      "amount": 3}).encode()])
    flush(srv, "openx")
    path = [p for k, p in objects(srv).items() if k.endswith(".parquet")][0]
    row = pq.read_table(path).to_pylist()[0]
    assert row == {"order_id": 1, "customer": None, "amount": decimal.Decimal("3.00"), "kind": None,
                   "ts": dt.datetime(2024, 5, 6, 7, 8, 9)}


def test_hive_serde_timestamp_formats_and_binary(srv):
    client = srv.client()
    de = {"HiveJsonSerDe": {"TimestampFormats": ["millis", "dd/MM/yyyy HH:mm:ss"]}}
    create(client, "hive", dfc("lab", "hive_events", deserializer=de))
    put(client, "hive", [
        json.dumps({"id": 1, "t": 1700000000123, "payload": base64.b64encode(b"\x00\x01").decode(), "n": 5}).encode(),
        json.dumps({"id": 2, "t": "14/11/2023 22:13:20", "dt": "2023-11-14"}).encode(),
        json.dumps({"id": 3, "t": "2023-11-14 22:13:20.5"}).encode(),
        json.dumps({"id": 4, "n": "5"}).encode(),  # Hive refuses numeric strings
    ])
    flush(srv, "hive")
    path = [p for k, p in objects(srv).items() if k.endswith(".parquet")][0]
    table = pq.read_table(path)
    assert table.schema.names == ["id", "t", "payload", "n"], "the partition column dt is not in the file"
    assert table.schema.field("payload").type == pa.binary()
    rows = table.to_pylist()
    assert [r["t"] for r in rows] == [dt.datetime(2023, 11, 14, 22, 13, 20, 123000), dt.datetime(2023, 11, 14, 22, 13, 20),
                                      dt.datetime(2023, 11, 14, 22, 13, 20, 500000)]
    assert rows[0]["payload"] == b"\x00\x01" and rows[0]["n"] == 5
    (e,) = error_records(srv)
    assert json.loads(base64.b64decode(e["rawData"]))["id"] == 4


# --------------------------------------------------------------------------------------------------
# with processing and dynamic partitioning
# --------------------------------------------------------------------------------------------------


def test_conversion_after_a_lambda_keeps_original_raw_data_for_failures(srv):
    client = srv.client()
    create(client, "after-lambda", dfc("shop", "orders"),
           ProcessingConfiguration={"Enabled": True, "Processors": [
               {"Type": "Lambda", "Parameters": [{"ParameterName": "LambdaArn",
                                                  "ParameterValue": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:upper"}]}]})
    # The function upper-cases the whole record: keys still match (OpenX ignores case), values are upper-case.
    put(client, "after-lambda", [b'{"order_id": 7, "customer": "ann"}', b'{"order_id": "x7"}'])
    flush(srv, "after-lambda")
    path = [p for k, p in objects(srv).items() if k.endswith(".parquet")][0]
    assert pq.read_table(path).to_pylist()[0]["customer"] == "ANN"
    (e,) = error_records(srv)
    assert base64.b64decode(e["rawData"]) == b'{"order_id": "x7"}', "rawData is the record as it was put"
    assert 'For input string: "X7"' in e["lastErrorMessage"]


def test_dynamic_partitioning_with_conversion_is_readable_with_hive_partitioning(srv):
    client = srv.client()
    create(client, "dp-parquet", dfc("shop", "orders"),
           BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 900},
           Prefix="orders/kind=!{partitionKeyFromQuery:kind}/",
           DynamicPartitioningConfiguration={"Enabled": True},
           ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
               {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{kind: .kind}"},
               {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]})
    kinds = ["web", "store", "app"]
    put(client, "dp-parquet", [json.dumps({"order_id": i, "kind": kinds[i % 3], "amount": i}).encode() for i in range(90)])
    flush(srv, "dp-parquet")
    keys = [k for k in objects(srv) if k.endswith(".parquet")]
    assert sorted(k.split("/")[1] for k in keys) == sorted(f"kind={k}" for k in kinds), keys
    root = srv.data_dir / "buckets" / "test-bucket" / "orders"
    got = duckdb.connect().execute(
        f"SELECT kind, count(*), sum(order_id) FROM read_parquet('{root}/*/*.parquet', hive_partitioning = true) "
        "GROUP BY kind ORDER BY kind").fetchall()
    assert got == sorted((k, 30, sum(i for i in range(90) if kinds[i % 3] == k)) for k in kinds)


def test_converted_records_survive_a_crash_exactly_once(tmp_path):
    data = tmp_path / "data"
    (data / "tables" / "shop").mkdir(parents=True)
    (data / "tables" / "shop" / "orders.sql").write_text(
        "CREATE EXTERNAL TABLE orders (order_id bigint, customer string) STORED AS PARQUET;")
    server = Server(data).start()
    client = server.client()
    create(client, "crashy", dfc("shop", "orders"))
    put(client, "crashy", [json.dumps({"order_id": i}).encode() for i in range(1000)] + [b"bad"])
    server.kill()  # SIGKILL: nothing was delivered; everything acknowledged is in the WAL
    server = Server(data).start()
    try:
        flush(server, "crashy")
        files = objects(server)
        ids = sorted(r["order_id"] for k, p in files.items() if k.endswith(".parquet") for r in pq.read_table(p).to_pylist())
        assert ids == list(range(1000))
        assert len(error_records(server)) == 1
    finally:
        server.kill()


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


def test_validation_as_the_real_service(srv):
    # Client-side validation off: the server's own checks are under test.
    client = boto3.client("firehose", endpoint_url=srv.endpoint, region_name=REGION, aws_access_key_id="AKIDSPILLWAYTEST",
                          aws_secret_access_key="x", config=botocore.config.Config(parameter_validation=False,
                                                                                 retries={"total_max_attempts": 1}))
    msg = invalid_argument(client, "v1", dfc("shop", "orders"), CompressionFormat="GZIP")
    assert "UNCOMPRESSED" in msg
    msg = invalid_argument(client, "v2", dfc("shop", "orders"), BufferingHints={"SizeInMBs": 5, "IntervalInSeconds": 60})
    assert "at least 64" in msg
    msg = invalid_argument(client, "v3", dfc("shop", "nope"))
    assert "shop.nope" in msg and "spillway tables add" in msg, msg
    conv = dfc("shop", "orders")
    del conv["InputFormatConfiguration"]
    assert "InputFormatConfiguration" in invalid_argument(client, "v4", conv)
    assert "BlockSizeBytes" in invalid_argument(client, "v5", dfc("shop", "orders", {"ParquetSerDe": {"BlockSizeBytes": 1024}}))
    assert "Invalid deserializer option" in invalid_argument(
        client, "v6", dfc("shop", "orders", deserializer={"HiveJsonSerDe": {"TimestampFormats": ["yyyy-MM-dd G"]}}))
    assert "only one" in invalid_argument(
        client, "v7", dfc("shop", "orders", {"ParquetSerDe": {}, "OrcSerDe": {}}))
    assert not client.list_delivery_streams()["DeliveryStreamNames"]
    # Defaults: 128 MiB buffer when the hints are not given; Enabled: false applies none of the rules.
    client.create_delivery_stream(DeliveryStreamName="defaults", ExtendedS3DestinationConfiguration={
        "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::b", "DataFormatConversionConfiguration": dfc("shop", "orders")})
    ext = client.describe_delivery_stream(DeliveryStreamName="defaults")["DeliveryStreamDescription"]["Destinations"][0][
        "ExtendedS3DestinationDescription"]
    assert ext["BufferingHints"] == {"SizeInMBs": 128, "IntervalInSeconds": 300}
    off = dict(dfc("shop", "nope"), Enabled=False)
    create(client, "disabled", off, CompressionFormat="GZIP", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60})
    # UpdateDestination is validated the same way.
    d = client.describe_delivery_stream(DeliveryStreamName="defaults")["DeliveryStreamDescription"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.update_destination(DeliveryStreamName="defaults", CurrentDeliveryStreamVersionId=d["VersionId"],
                                  DestinationId=d["Destinations"][0]["DestinationId"],
                                  ExtendedS3DestinationUpdate={"DataFormatConversionConfiguration": {
                                      "SchemaConfiguration": {"DatabaseName": "shop", "TableName": "missing"}}})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"


def test_tables_cli_show(srv):
    config = srv.data_dir.parent / f"{srv.data_dir.name}-spillway.toml"
    out = spillway_cli("tables", "show", "lab.all_types", "--data-dir", srv.data_dir, "--config", config)
    assert "decimal(10,2)" in out and "struct<a:string,b:array<struct<c:int>>>" in out, out
