"""Iceberg tables that follow their records (reference §5.10, §14): `TableCreationConfiguration` creates a missing
table from the records routed to it, with `PartitionSpec.Identity` partitions; `SchemaEvolutionConfiguration` adds
the columns new records bring. Read back with PyIceberg from the embedded SQLite catalog.

Firehose documents both features but not how it types new columns; spillway's rules (JSON boolean → boolean,
integer → long, other numbers → double, string → string, object → struct, array → list) are in
`crates/spillway-destination/src/iceberg/evolve.rs`.
"""

import json
import re

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from conftest import ACCOUNT_ID, REGION, ROLE, Server, eventually, flush
from test_iceberg import error_records

TABLE_BUCKET = "evolving-tables"


def destination(*, creation=True, evolution=True, tables=None):
    return {
        "RoleARN": ROLE,
        "CatalogConfiguration": {"CatalogARN": f"arn:aws:s3tables:{REGION}:{ACCOUNT_ID}:bucket/{TABLE_BUCKET}",
                                 "WarehouseLocation": f"s3://{TABLE_BUCKET}/"},
        "DestinationTableConfigurationList": tables if tables is not None else [
            {"DestinationDatabaseName": "iot", "DestinationTableName": "events",
             "PartitionSpec": {"Identity": [{"SourceName": "site"}]}}],
        "TableCreationConfiguration": {"Enabled": creation},
        "SchemaEvolutionConfiguration": {"Enabled": evolution},
        "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
        "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::errors-bucket",
                            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/"},
    }


def catalog(data):
    return SqlCatalog(TABLE_BUCKET, uri=f"sqlite:///{data / 'catalog' / 'catalog.db'}",
                      warehouse=f"file://{data / 'buckets' / TABLE_BUCKET}")


def put(client, name, records):
    resp = client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": json.dumps(r).encode()} for r in records])
    assert resp["FailedPutCount"] == 0, resp


def test_a_missing_table_is_created_from_its_records_and_grows_with_them(tmp_path):
    data = tmp_path / "data"
    server = Server(data).start()
    try:
        client = server.client()
        client.create_delivery_stream(DeliveryStreamName="grow", IcebergDestinationConfiguration=destination())
        d = client.describe_delivery_stream(DeliveryStreamName="grow")["DeliveryStreamDescription"]
        assert d["DeliveryStreamStatus"] == "ACTIVE", d.get("FailureDescription")
        dest = d["Destinations"][0]["IcebergDestinationDescription"]
        assert dest["TableCreationConfiguration"] == {"Enabled": True}
        assert dest["SchemaEvolutionConfiguration"] == {"Enabled": True}

        first = [{"device": f"d{i}", "temp": 20 + i, "site": ["north", "south"][i % 2], "note": None} for i in range(6)]
        first[1]["temp"] = 21.5  # long and double meet in double
        put(client, "grow", first)
        flush(server, "grow")

        table = catalog(data).load_table("iot.events")
        assert [(f.name, str(f.field_type), f.required) for f in table.schema().fields] == [
            ("device", "string", False), ("temp", "double", False), ("site", "string", False)]
        assert [f.name for f in table.spec().fields] == ["site"]
        assert table.format_version == 2
        got = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["device"])
        assert got == [{"device": r["device"], "temp": float(r["temp"]), "site": r["site"]} for r in first]

        second = [{"device": "d9", "temp": 18, "site": "north", "battery": 87, "pos": {"lat": 1.5, "lon": 2},
                   "tags": ["a", "b"], "Temp": 99}]
        put(client, "grow", second)
        flush(server, "grow")

        table = catalog(data).load_table("iot.events")
        schema = {f.name: str(f.field_type) for f in table.schema().fields}
        assert list(schema) == ["device", "temp", "site", "battery", "pos", "tags"], "Temp matches temp"
        assert schema["battery"] == "long"
        assert schema["pos"].startswith("struct<") and "lat: optional double" in schema["pos"] \
            and "lon: optional long" in schema["pos"], schema["pos"]
        assert schema["tags"] == "list<string>"
        rows = {r["device"]: r for r in table.scan().to_arrow().to_pylist()}
        assert len(rows) == 7
        assert rows["d0"]["battery"] is None and rows["d0"]["pos"] is None, "old rows read the new columns as null"
        assert rows["d9"]["battery"] == 87 and rows["d9"]["pos"] == {"lat": 1.5, "lon": 2}
        assert rows["d9"]["tags"] == ["a", "b"]
        assert error_records(data) == []
    finally:
        server.stop()


def test_without_evolution_new_fields_are_left_out_and_without_creation_a_missing_table_is_an_error(tmp_path):
    data = tmp_path / "data"
    server = Server(data).start()
    try:
        client = server.client()
        client.create_delivery_stream(DeliveryStreamName="fixed",
                                      IcebergDestinationConfiguration=destination(evolution=False))
        put(client, "fixed", [{"device": "a", "temp": 1}])
        flush(server, "fixed")
        put(client, "fixed", [{"device": "b", "temp": 2, "extra": True}])
        flush(server, "fixed")
        table = catalog(data).load_table("iot.events")
        assert [f.name for f in table.schema().fields] == ["device", "temp"]
        assert sorted(r["device"] for r in table.scan().to_arrow().to_pylist()) == ["a", "b"]

        client.create_delivery_stream(
            DeliveryStreamName="nocreate",
            IcebergDestinationConfiguration=destination(
                creation=False, tables=[{"DestinationDatabaseName": "iot", "DestinationTableName": "absent"}]))
        put(client, "nocreate", [{"device": "c"}])
        flush(server, "nocreate")
        errors = error_records(data)
        assert [e["errorCode"] for e in errors] == ["Iceberg.NoSuchTable"], errors
        assert not catalog(data).table_exists("iot.absent")
    finally:
        server.stop()


def test_records_routed_by_jq_create_one_table_each(tmp_path):
    data = tmp_path / "data"
    server = Server(data).start()
    try:
        client = server.client()
        config = destination(tables=[])
        config["ProcessingConfiguration"] = {"Enabled": True, "Processors": [{
            "Type": "MetadataExtraction",
            "Parameters": [
                {"ParameterName": "MetadataExtractionQuery",
                 "ParameterValue": '{destinationDatabaseName: "fleet", destinationTableName: .kind}'},
                {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]}
        client.create_delivery_stream(DeliveryStreamName="routed", IcebergDestinationConfiguration=config)
        put(client, "routed", [{"kind": "truck", "load": 3}, {"kind": "van", "seats": 2}, {"kind": "truck", "load": 5}])
        flush(server, "routed")
        cat = catalog(data)
        truck = cat.load_table("fleet.truck")
        van = cat.load_table("fleet.van")
        assert [f.name for f in truck.schema().fields] == ["kind", "load"]
        assert [f.name for f in van.schema().fields] == ["kind", "seats"]
        assert sorted(r["load"] for r in truck.scan().to_arrow().to_pylist()) == [3, 5]
        assert van.scan().to_arrow().num_rows == 1
        assert pa.types.is_int64(truck.scan().to_arrow().schema.field("load").type)
    finally:
        server.stop()


def metric(server, name, stream):
    m = re.search(rf'^{re.escape(name)}\{{delivery_stream="{re.escape(stream)}"\}} (\S+)$', server.metrics(), re.M)
    return float(m.group(1)) if m else None


def test_data_freshness_is_the_age_of_the_oldest_uncommitted_record(tmp_path):
    data = tmp_path / "data"
    server = Server(data).start()
    try:
        client = server.client()
        client.create_delivery_stream(DeliveryStreamName="fresh", IcebergDestinationConfiguration=destination())
        put(client, "fresh", [{"device": "a", "temp": 1}])
        eventually(lambda: (metric(server, "DeliveryToIceberg_DataFreshness", "fresh") or 0) >= 1.0,
                   "DeliveryToIceberg_DataFreshness to reach 1 s while a record waits", timeout=5, interval=0.1)
        flush(server, "fresh")
        eventually(lambda: metric(server, "DeliveryToIceberg_DataFreshness", "fresh") == 0.0,
                   "DeliveryToIceberg_DataFreshness back to 0 after the commit", timeout=5)
        assert metric(server, "DeliveryToIceberg_SuccessfulRowCount_total", "fresh") == 1
    finally:
        server.stop()
