"""Apache Iceberg destination (reference §5.10, §14), black-box: seed 000's IoT readings into an S3 Tables-style table of
the embedded catalog, read back with PyIceberg (the same SQLite catalog) and queried with DuckDB as seed 000 queries
it; failures to the `iceberg-failed` error output; exactly-once across a SIGKILL.

The table is created the way a user creates it: `spillway tables create` with seed 000's Terraform schema fields
(name, type, required) as JSON.
"""

import json
import random
import subprocess

import os

import duckdb
import duckdb_extension_avro
import duckdb_extension_iceberg
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from conftest import ACCOUNT_ID, BIN, REGION, ROLE, Server, eventually, flush

TABLE_BUCKET = "iot-table-bucket"
NAMESPACE, TABLE = "iot_namespace", "sensor_readings"
# Seed 000's table: sensor_id, timestamp (Unix seconds), location, temperature, humidity, pressure.
SCHEMA = [
    {"name": "sensor_id", "type": "string", "required": False},
    {"name": "timestamp", "type": "long", "required": False},
    {"name": "location", "type": "string", "required": False},
    {"name": "temperature", "type": "double", "required": False},
    {"name": "humidity", "type": "double", "required": False},
    {"name": "pressure", "type": "double", "required": False},
]
LOCATIONS = ["warehouse-a", "warehouse-b", "office", "lab"]


def cli(*args):
    out = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def reading(i, rng):
    return {"sensor_id": f"sensor-{i % 10:03d}", "timestamp": 1_700_000_000 + i,
            "location": LOCATIONS[(i % 10) % len(LOCATIONS)], "temperature": round(rng.uniform(15, 35), 2),
            "humidity": round(rng.uniform(30, 70), 2), "pressure": round(rng.uniform(990, 1030), 2)}


def iceberg_destination(**extra):
    return {
        "RoleARN": ROLE,
        "CatalogConfiguration": {"CatalogARN": f"arn:aws:s3tables:{REGION}:{ACCOUNT_ID}:bucket/{TABLE_BUCKET}"},
        "DestinationTableConfigurationList": [{"DestinationDatabaseName": NAMESPACE, "DestinationTableName": TABLE}],
        "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
        "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::errors-bucket",
                            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/"},
        **extra,
    }


def catalog(data):
    return SqlCatalog(TABLE_BUCKET, uri=f"sqlite:///{data / 'catalog' / 'catalog.db'}",
                      warehouse=f"file://{data / 'buckets' / TABLE_BUCKET}")


def duckdb_with_iceberg():
    """DuckDB with its iceberg extension loaded from the PyPI wheels; it must never try to download one."""
    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    for module, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
        path = os.path.join(os.path.dirname(module.__file__), "extensions", f"v{duckdb.__version__}",
                            f"{name}.duckdb_extension")
        con.execute(f"LOAD '{path}'")
    return con


def error_records(data):
    root = data / "buckets" / "errors-bucket" / "errors" / "iceberg-failed"
    out = []
    for p in sorted(root.rglob("*")) if root.exists() else []:
        if p.is_file() and not p.name.startswith(".spillway-tmp-"):
            out += [json.loads(line) for line in p.read_text().splitlines()]
    return out


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"fields": SCHEMA}))
    out = cli("tables", "create", f"{NAMESPACE}.{TABLE}", "--schema", schema, "--catalog", TABLE_BUCKET, "--data-dir", d)
    assert TABLE in out
    return d


def put(client, name, records):
    for i in range(0, len(records), 500):
        resp = client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records[i:i + 500]])
        assert resp["FailedPutCount"] == 0, resp


def test_seed000_readings_land_in_the_table_and_answer_the_seed_queries(data):
    server = Server(data).start()
    try:
        client = server.client()
        client.create_delivery_stream(DeliveryStreamName="iot", DeliveryStreamType="DirectPut",
                                      IcebergDestinationConfiguration=iceberg_destination())
        d = client.describe_delivery_stream(DeliveryStreamName="iot")["DeliveryStreamDescription"]
        assert d["DeliveryStreamStatus"] == "ACTIVE", d.get("FailureDescription")
        rng = random.Random(0)
        readings = [reading(i, rng) for i in range(2000)]
        bad = [b'{"sensor_id": "x", "temperature": "hot"}', b"not json", b'{"sensor_id": "a"}{"sensor_id": "b"}']
        put(client, "iot", [json.dumps(r).encode() for r in readings[:1000]] + bad)
        flush(server, "iot")
        put(client, "iot", [json.dumps(r).encode() for r in readings[1000:]])
        report = flush(server, "iot")

        table = catalog(data).load_table(f"{NAMESPACE}.{TABLE}")
        assert len(table.snapshots()) == 2, "one append commit per flush"
        # The flush answer names the data files its commit added (and the error object of the first flush is not
        # in the second's answer).
        current = table.current_snapshot().snapshot_id
        added = {e["data_file"]["file_path"] for e in table.inspect.entries().to_pylist() if e["snapshot_id"] == current}
        assert added and set(report["Objects"]) == added, (report, added)
        assert report["Records"] == 1000, report
        for snap in table.snapshots():
            assert any(k.startswith("spillway.") and k.endswith(".wal-last") for k in snap.summary.additional_properties)
        rows = table.scan().to_arrow()
        assert rows.num_rows == len(readings)
        assert sorted(rows.to_pylist(), key=lambda r: r["timestamp"]) == readings

        # Seed 000's queries, in DuckDB reading the table itself (its iceberg extension, the current metadata file).
        con = duckdb_with_iceberg()
        con.execute(f"CREATE VIEW firehosetos3demo AS SELECT * FROM iceberg_scan('{table.metadata_location}')")
        by_location = con.execute("""SELECT location, AVG(temperature) AS avg_temp, COUNT(*) AS reading_count
                                     FROM firehosetos3demo GROUP BY location ORDER BY avg_temp DESC""").fetchall()
        expect = {}
        for r in readings:
            expect.setdefault(r["location"], []).append(r["temperature"])
        assert {loc: (round(avg, 6), n) for loc, avg, n in by_location} == \
            {loc: (round(sum(t) / len(t), 6), len(t)) for loc, t in expect.items()}
        alerts = con.execute("""SELECT sensor_id, temperature, humidity, timestamp, epoch_ms(timestamp * 1000) AS reading_time
                                FROM firehosetos3demo WHERE temperature > 25 ORDER BY timestamp DESC LIMIT 50""").fetchall()
        hot = sorted((r for r in readings if r["temperature"] > 25), key=lambda r: -r["timestamp"])[:50]
        assert [(a[0], a[1], a[3]) for a in alerts] == [(r["sensor_id"], r["temperature"], r["timestamp"]) for r in hot]
        summary = con.execute("""SELECT sensor_id, location, COUNT(*) AS total_readings, MIN(timestamp), MAX(timestamp)
                                 FROM firehosetos3demo GROUP BY sensor_id, location ORDER BY sensor_id""").fetchall()
        assert sum(s[2] for s in summary) == len(readings) and len(summary) == 10

        errors = error_records(data)
        assert len(errors) == len(bad), errors
        assert {e["errorCode"] for e in errors} <= {"Iceberg.SchemaMismatch", "Iceberg.InvalidJson"}, errors
        m = server.metrics()
        assert f'DeliveryToIceberg_SuccessfulRowCount_total{{delivery_stream="iot"}} {len(readings)}' in m
        assert f'DeliveryToIceberg_FailedRowCount_total{{delivery_stream="iot"}} {len(bad)}' in m
        # The data files the commits wrote, as the table lists them.
        data_files = table.inspect.files().to_pylist()
        assert f'DeliveryToIceberg_DataFiles_total{{delivery_stream="iot"}} {len(data_files)}' in m, m
        total = sum(f["file_size_in_bytes"] for f in data_files)
        assert f'DeliveryToIceberg_DataFileBytes_total{{delivery_stream="iot"}} {total}' in m, m
    finally:
        server.kill()


def test_missing_table_sends_records_to_iceberg_failed(data):
    server = Server(data).start()
    try:
        client = server.client()
        dest = iceberg_destination()
        dest["DestinationTableConfigurationList"][0].update(
            DestinationTableName="nope", S3ErrorOutputPrefix="errors/!{firehose:error-output-type}/nope/")
        client.create_delivery_stream(DeliveryStreamName="lost", IcebergDestinationConfiguration=dest)
        put(client, "lost", [json.dumps(reading(i, random.Random(i))).encode() for i in range(5)])
        report = flush(server, "lost")
        assert [k.rsplit("/", 1)[0] for k in report["Objects"]] == ["errors/iceberg-failed/nope"], report
        errors = error_records(data)
        assert len(errors) == 5 and {e["errorCode"] for e in errors} == {"Iceberg.NoSuchTable"}, errors
    finally:
        server.kill()


def test_commits_are_exactly_once_across_sigkills(data):
    """Each cycle: a chunk is committed (seen in the table), the next chunk is acknowledged and the server is killed
    at once, while that chunk is being processed or committed. After the restarts every acknowledged reading is in
    the table exactly once."""
    server = Server(data).start()
    client = server.client()
    client.create_delivery_stream(DeliveryStreamName="iot", IcebergDestinationConfiguration=iceberg_destination(
        BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
    rng = random.Random(1)
    readings = [reading(i, rng) for i in range(4000)]
    chunks = [readings[i:i + 500] for i in range(0, len(readings), 500)]
    try:
        for cycle in range(3):
            snapshots = len(catalog(data).load_table(f"{NAMESPACE}.{TABLE}").snapshots())
            put(client, "iot", [json.dumps(r).encode() for r in chunks[2 * cycle]])
            eventually(lambda: len(catalog(data).load_table(f"{NAMESPACE}.{TABLE}").snapshots()) > snapshots,
                       f"a commit in cycle {cycle}")
            put(client, "iot", [json.dumps(r).encode() for r in chunks[2 * cycle + 1]])
            server.kill()  # interval 0: this chunk is being processed or committed
            server.start()
            client = server.client()
        put(client, "iot", [json.dumps(r).encode() for c in chunks[6:] for r in c])
        flush(server, "iot")
        rows = catalog(data).load_table(f"{NAMESPACE}.{TABLE}").scan().to_arrow().to_pylist()
        assert sorted(r["timestamp"] for r in rows) == [r["timestamp"] for r in readings], "no loss, no duplicate"
    finally:
        server.kill()


def test_tables_declared_in_spillway_toml_are_created_at_start(tmp_path):
    fields = ", ".join(f'{{ name = "{f["name"]}", type = "{f["type"]}" }}' for f in SCHEMA)
    config = (f'[[iceberg_tables]]\nname = "{NAMESPACE}.readings_by_location"\ncatalog = "{TABLE_BUCKET}"\n'
              f'fields = [{fields}]\npartition_by = ["location"]\n')
    data = tmp_path / "data"
    server = Server(data, config=config).start()
    try:
        client = server.client()
        dest = iceberg_destination()
        dest["DestinationTableConfigurationList"][0]["DestinationTableName"] = "readings_by_location"
        client.create_delivery_stream(DeliveryStreamName="by-location", IcebergDestinationConfiguration=dest)
        rng = random.Random(3)
        readings = [reading(i, rng) for i in range(200)]
        put(client, "by-location", [json.dumps(r).encode() for r in readings])
        flush(server, "by-location")
        table = catalog(data).load_table(f"{NAMESPACE}.readings_by_location")
        assert [f.name for f in table.spec().fields] == ["location"]
        rows = table.scan(row_filter="location == 'office'").to_arrow().to_pylist()
        assert sorted(r["timestamp"] for r in rows) == sorted(r["timestamp"] for r in readings if r["location"] == "office")
    finally:
        server.kill()
