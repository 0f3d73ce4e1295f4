"""Iceberg tables behind a real Iceberg REST catalog: SeaweedFS (`weed mini -tableBucket=NAME`) serves an S3 Tables
style catalog that wants SigV4 (service `s3tables`) and keeps the table data in its S3 bucket NAME. spillway finds
the catalog by the table bucket of the stream's CatalogARN (`[iceberg_catalogs.NAME]` in spillway.toml) and the
bucket's store in `[buckets.NAME]`; PyIceberg reads the table through the same catalog, and the seed 000 queries run
in DuckDB over what it reads.
"""

import json
import random
import subprocess

import duckdb
import pytest
from pyiceberg.catalog import load_catalog

from conftest import ACCOUNT_ID, BIN, REGION, ROLE, Server, flush
from s3server import S3Server
from test_iceberg import SCHEMA, reading

TABLE_BUCKET = "iot-rest"
NAMESPACE, TABLE = "iot_namespace", "sensor_readings"

@pytest.fixture(scope="module")
def weed(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("weed-iceberg"), table_bucket=TABLE_BUCKET)
    server.start()
    yield server
    server.stop()


def spillway_toml(weed):
    return f"""
[buckets.{TABLE_BUCKET}]
endpoint = "{weed.endpoint}"
region = "{REGION}"
access_key_id = "{weed.access_key}"
secret_access_key = "{weed.secret_key}"

[iceberg_catalogs.{TABLE_BUCKET}]
uri = "{weed.iceberg_uri}"
warehouse = "{TABLE_BUCKET}"
sigv4 = {{ region = "{REGION}", service = "s3tables", access_key_id = "{weed.access_key}", secret_access_key = "{weed.secret_key}" }}
"""


def pyiceberg_catalog(weed, monkeypatch):
    # PyIceberg's SigV4 signer takes its keys from the boto3 session: the environment.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", weed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", weed.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return load_catalog("weed", **{
        "type": "rest", "uri": weed.iceberg_uri, "warehouse": TABLE_BUCKET,
        "rest.sigv4-enabled": "true", "rest.signing-region": REGION, "rest.signing-name": "s3tables",
        "s3.endpoint": weed.endpoint, "s3.access-key-id": weed.access_key,
        "s3.secret-access-key": weed.secret_key, "s3.region": REGION})


def destination(table):
    return {
        "RoleARN": ROLE,
        "CatalogConfiguration": {"CatalogARN": f"arn:aws:s3tables:{REGION}:{ACCOUNT_ID}:bucket/{TABLE_BUCKET}"},
        "DestinationTableConfigurationList": [{"DestinationDatabaseName": NAMESPACE, "DestinationTableName": table}],
        "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
        "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::errors-bucket",
                            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/"},
    }


def test_seed000_readings_through_the_rest_catalog_answer_the_seed_queries(weed, tmp_path, monkeypatch):
    data = tmp_path / "data"
    config = tmp_path / "spillway.toml"
    config.write_text(spillway_toml(weed))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"fields": SCHEMA}))
    out = subprocess.run([BIN, "tables", "create", f"{NAMESPACE}.{TABLE}", "--schema", str(schema),
                          "--catalog", TABLE_BUCKET, "--config", str(config), "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cat = pyiceberg_catalog(weed, monkeypatch)
    table = cat.load_table(f"{NAMESPACE}.{TABLE}")
    assert table.metadata_location.startswith(f"s3://{TABLE_BUCKET}/"), "the catalog chose the location"
    assert [f.name for f in table.schema().fields] == [f["name"] for f in SCHEMA]

    server = Server(data, config=spillway_toml(weed)).start()
    try:
        client = server.client()
        client.create_delivery_stream(DeliveryStreamName="iot", IcebergDestinationConfiguration=destination(TABLE))
        d = client.describe_delivery_stream(DeliveryStreamName="iot")["DeliveryStreamDescription"]
        assert d["DeliveryStreamStatus"] == "ACTIVE", d.get("FailureDescription")
        rng = random.Random(0)
        readings = [reading(i, rng) for i in range(1500)]
        for chunk in (readings[:700], readings[700:]):
            for i in range(0, len(chunk), 500):
                resp = client.put_record_batch(DeliveryStreamName="iot",
                                               Records=[{"Data": json.dumps(r).encode()} for r in chunk[i:i + 500]])
                assert resp["FailedPutCount"] == 0, resp
            flush(server, "iot")
        assert "DeliveryToIceberg_SuccessfulRowCount_total{delivery_stream=\"iot\"} 1500" in server.metrics()
    finally:
        server.stop()

    table = cat.load_table(f"{NAMESPACE}.{TABLE}")
    assert len(table.snapshots()) == 2, "one append commit per flush"
    for snap in table.snapshots():
        assert any(k.startswith("spillway.") and k.endswith(".wal-last") for k in snap.summary.additional_properties)
    files = [task.file.file_path for task in table.scan().plan_files()]
    assert files and all(f.startswith(f"s3://{TABLE_BUCKET}/") for f in files), files
    rows = table.scan().to_arrow()
    assert sorted(rows.to_pylist(), key=lambda r: r["timestamp"]) == readings

    # Seed 000's queries, in DuckDB over the rows PyIceberg read from the catalog.
    con = duckdb.connect()
    con.register("firehosetos3demo", rows)
    by_location = dict((loc, (round(avg, 6), n)) for loc, avg, n in con.execute(
        """SELECT location, AVG(temperature), COUNT(*) FROM firehosetos3demo GROUP BY location""").fetchall())
    expect = {}
    for r in readings:
        expect.setdefault(r["location"], []).append(r["temperature"])
    assert by_location == {loc: (round(sum(t) / len(t), 6), len(t)) for loc, t in expect.items()}
    alerts = con.execute("""SELECT sensor_id, temperature, timestamp FROM firehosetos3demo
                            WHERE temperature > 25 ORDER BY timestamp DESC LIMIT 50""").fetchall()
    hot = sorted((r for r in readings if r["temperature"] > 25), key=lambda r: -r["timestamp"])[:50]
    assert alerts == [(r["sensor_id"], r["temperature"], r["timestamp"]) for r in hot]
    summary = con.execute("""SELECT sensor_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM firehosetos3demo
                             GROUP BY sensor_id ORDER BY sensor_id""").fetchall()
    assert [s[1] for s in summary] == [150] * 10


def test_a_table_missing_from_the_rest_catalog_sends_records_to_the_error_output(weed, tmp_path):
    data = tmp_path / "data"
    server = Server(data, config=spillway_toml(weed)).start()
    try:
        client = server.client()
        client.create_delivery_stream(DeliveryStreamName="lost", IcebergDestinationConfiguration=destination("absent"))
        client.put_record(DeliveryStreamName="lost", Record={"Data": b'{"sensor_id": "x"}'})
        flush(server, "lost")
    finally:
        server.stop()
    root = data / "buckets" / "errors-bucket" / "errors" / "iceberg-failed"
    errors = [json.loads(line) for p in sorted(root.rglob("*")) if p.is_file() for line in p.read_text().splitlines()]
    assert [e["errorCode"] for e in errors] == ["Iceberg.NoSuchTable"], errors


def test_the_embedded_catalog_keeps_its_warehouse_on_an_s3_compatible_store(weed, tmp_path):
    """No REST catalog for the table bucket: the embedded (SQLite) catalog, with the warehouse `s3://BUCKET` because
    `[buckets.BUCKET]` puts that bucket on SeaweedFS's S3."""
    bucket = "lake-warehouse"
    weed.create_bucket(bucket)
    fields = ", ".join('{ name = "%s", type = "%s" }' % (f["name"], f["type"]) for f in SCHEMA)
    config = f"""
[buckets.{bucket}]
endpoint = "{weed.endpoint}"
region = "{REGION}"
access_key_id = "{weed.access_key}"
secret_access_key = "{weed.secret_key}"

[[iceberg_tables]]
name = "{NAMESPACE}.{TABLE}"
catalog = "{bucket}"
fields = [{fields}]
"""
    data = tmp_path / "data"
    server = Server(data, config=config).start()
    try:
        client = server.client()
        dest = destination(TABLE)
        dest["CatalogConfiguration"]["CatalogARN"] = f"arn:aws:s3tables:{REGION}:{ACCOUNT_ID}:bucket/{bucket}"
        client.create_delivery_stream(DeliveryStreamName="s3wh", IcebergDestinationConfiguration=dest)
        rng = random.Random(1)
        readings = [reading(i, rng) for i in range(300)]
        resp = client.put_record_batch(DeliveryStreamName="s3wh",
                                       Records=[{"Data": json.dumps(r).encode()} for r in readings])
        assert resp["FailedPutCount"] == 0, resp
        flush(server, "s3wh")
    finally:
        server.stop()
    keys = [k for k, _ in weed.list_objects(bucket)]
    assert any(k.startswith(f"{NAMESPACE}.db/{TABLE}/data/") and k.endswith(".parquet") for k in keys), keys
    assert not (data / "buckets" / bucket).exists(), "nothing of the warehouse in the data dir"
    from pyiceberg.catalog.sql import SqlCatalog
    cat = SqlCatalog(bucket, uri=f"sqlite:///{data / 'catalog' / 'catalog.db'}", **{
        "s3.endpoint": weed.endpoint, "s3.access-key-id": weed.access_key, "s3.secret-access-key": weed.secret_key,
        "s3.region": REGION})
    table = cat.load_table(f"{NAMESPACE}.{TABLE}")
    assert table.metadata_location.startswith(f"s3://{bucket}/")
    assert sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["timestamp"]) == readings
