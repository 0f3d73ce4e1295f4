"""Row-level operations on Iceberg tables (reference §14), black-box: records routed with operation `update` replace
the rows of their unique key (an upsert when the key is missing), `delete` removes them. spillway applies them
copy-on-write (the data files holding a changed key are rewritten in one `overwrite` commit), so PyIceberg and DuckDB
read the result from data files alone. Unique keys come from `DestinationTableConfiguration.UniqueKeys`; without
them, update and delete records go to `iceberg-failed` (`Iceberg.MissingUniqueKeys`, spillway's code: Firehose's is
unconfirmed); an `AppendOnly` stream takes inserts only (`Iceberg.UnsupportedOperation`).
"""

import json

from pyiceberg.catalog.sql import SqlCatalog

from conftest import ACCOUNT_ID, REGION, ROLE, Server, flush
from test_iceberg import cli, duckdb_with_iceberg, error_records

TABLE_BUCKET = "shop-tables"
SCHEMA = [
    {"name": "order_id", "type": "long", "required": False},
    {"name": "customer", "type": "string", "required": False},
    {"name": "amount", "type": "double", "required": False},
    {"name": "status", "type": "string", "required": False},
]
ROUTE = '{destinationDatabaseName: "shop", destinationTableName: .table, operation: .op}'


def destination(unique_keys=("order_id",), **extra):
    tables = []
    for name in ("orders", "plain"):
        t = {"DestinationDatabaseName": "shop", "DestinationTableName": name}
        if name == "orders" and unique_keys:
            t["UniqueKeys"] = list(unique_keys)
        tables.append(t)
    return {
        "RoleARN": ROLE,
        "CatalogConfiguration": {"CatalogARN": f"arn:aws:s3tables:{REGION}:{ACCOUNT_ID}:bucket/{TABLE_BUCKET}"},
        "DestinationTableConfigurationList": tables,
        "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
            {"ParameterName": "MetadataExtractionQuery", "ParameterValue": ROUTE},
            {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]},
        "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
        "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::errors-bucket",
                            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/"},
        **extra,
    }


def catalog(data):
    return SqlCatalog(TABLE_BUCKET, uri=f"sqlite:///{data / 'catalog' / 'catalog.db'}",
                      warehouse=f"file://{data / 'buckets' / TABLE_BUCKET}")


def create_tables(tmp_path, data, partition_by=None):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    for name in ("orders", "plain"):
        extra = ["--partition-by", partition_by] if partition_by and name == "orders" else []
        cli("tables", "create", f"shop.{name}", "--schema", schema, "--catalog", TABLE_BUCKET, "--data-dir", data,
            *extra)


def put(client, name, records):
    resp = client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": json.dumps(r).encode()} for r in records])
    assert resp["FailedPutCount"] == 0, resp


def order(i, op="insert", table="orders", **kw):
    r = {"op": op, "table": table, "order_id": i, "customer": f"c{i % 3}", "amount": 10.0 * i, "status": "new"}
    r.update(kw)
    return r


def row(r):
    return {k: r[k] for k in ("order_id", "customer", "amount", "status")}


def rows_of(table):
    return sorted(table.scan().to_arrow().to_pylist(), key=lambda r: (r["order_id"] is None, r["order_id"] or 0))


def run_updates_and_deletes(tmp_path, partition_by=None):
    data = tmp_path / "data"
    create_tables(tmp_path, data, partition_by)
    server = Server(data).start()
    try:
        client = server.client()
        client.create_delivery_stream(DeliveryStreamName="shop", IcebergDestinationConfiguration=destination())
        d = client.describe_delivery_stream(DeliveryStreamName="shop")["DeliveryStreamDescription"]
        assert d["DeliveryStreamStatus"] == "ACTIVE", d.get("FailureDescription")

        inserts = [order(i) for i in range(1, 21)]
        put(client, "shop", inserts)
        flush(server, "shop")
        expected = {r["order_id"]: row(r) for r in inserts}

        # Updates alone: two existing keys (the last record of a key wins), one missing key (an upsert).
        updates = [order(3, "update", amount=31.0, status="paid"), order(5, "update", status="shipped"),
                   order(3, "update", amount=33.0, status="refunded"), order(42, "update", customer="new")]
        put(client, "shop", updates)
        flush(server, "shop")
        for r in updates:
            expected[r["order_id"]] = row(r)
        table = catalog(data).load_table("shop.orders")
        assert rows_of(table) == [expected[k] for k in sorted(expected)]

        # Deletes alone (one of a key no row has; a delete record needs only the key).
        put(client, "shop", [{"op": "delete", "table": "orders", "order_id": 7},
                             {"op": "delete", "table": "orders", "order_id": 99}])
        flush(server, "shop")
        del expected[7]

        # Mixed in one flush: inserts, updates and deletes of other keys.
        mixed = [order(21), order(8, "update", status="paid"), order(9, "delete"), order(22),
                 order(10, "update", amount=0.5), order(11, "delete"), order(43, "update")]
        put(client, "shop", mixed)
        flush(server, "shop")
        for r in mixed:
            if r["op"] == "delete":
                del expected[r["order_id"]]
            else:
                expected[r["order_id"]] = row(r)

        table = catalog(data).load_table("shop.orders")
        want = [expected[k] for k in sorted(expected)]
        assert rows_of(table) == want
        # (iceberg-rust keeps snapshots in a map: the metadata file lists them in no particular order)
        operations = [s.summary.operation.value for s in sorted(table.snapshots(), key=lambda s: s.sequence_number)]
        assert operations[0] == "append" and set(operations[1:]) == {"append", "overwrite"}, operations
        assert operations.count("overwrite") >= 3, operations
        # Every commit carries the stream's WAL range; the table property holds the last one.
        for snap in table.snapshots():
            assert any(k.startswith("spillway.") and k.endswith(".wal-last") for k in snap.summary.additional_properties)
        assert any(k.startswith("spillway.") and k.endswith(".wal-last") for k in table.properties)
        last = table.current_snapshot().summary.additional_properties
        assert int(last["total-records"]) == len(want)

        # DuckDB reads the same rows from the current metadata file.
        con = duckdb_with_iceberg()
        got = con.execute(f"SELECT order_id, customer, amount, status FROM iceberg_scan('{table.metadata_location}') "
                          "ORDER BY order_id").fetchall()
        assert got == [(r["order_id"], r["customer"], r["amount"], r["status"]) for r in want]
        assert error_records(data) == []
        return data
    finally:
        server.kill()


def test_updates_and_deletes_rewrite_the_rows_of_their_keys(tmp_path):
    run_updates_and_deletes(tmp_path)


def test_updates_and_deletes_on_a_partitioned_table(tmp_path):
    data = run_updates_and_deletes(tmp_path, partition_by="customer")
    table = catalog(data).load_table("shop.orders")
    assert [f.name for f in table.spec().fields] == ["customer"]
    # Order 3 moved from customer c0 to ... c0 still; order 42 is a new customer's only row.
    got = table.scan(row_filter="customer == 'new'").to_arrow().to_pylist()
    assert [r["order_id"] for r in got] == [42]


def test_updates_without_unique_keys_go_to_the_error_output(tmp_path):
    data = tmp_path / "data"
    create_tables(tmp_path, data)
    server = Server(data).start()
    try:
        client = server.client()
        client.create_delivery_stream(DeliveryStreamName="shop", IcebergDestinationConfiguration=destination())
        put(client, "shop", [order(1, table="plain"), order(2, table="plain")])
        flush(server, "shop")
        put(client, "shop", [order(1, "update", table="plain", status="paid"), order(2, "delete", table="plain")])
        flush(server, "shop")
        table = catalog(data).load_table("shop.plain")
        assert [r["status"] for r in rows_of(table)] == ["new", "new"], "nothing applied"
        errors = error_records(data)
        assert len(errors) == 2 and {e["errorCode"] for e in errors} == {"Iceberg.MissingUniqueKeys"}, errors
        assert all("UniqueKeys" in e["errorMessage"] for e in errors), errors
    finally:
        server.kill()


def test_an_append_only_stream_refuses_updates_and_deletes(tmp_path):
    data = tmp_path / "data"
    create_tables(tmp_path, data)
    server = Server(data).start()
    try:
        client = server.client()
        client.create_delivery_stream(DeliveryStreamName="shop",
                                      IcebergDestinationConfiguration=destination(AppendOnly=True))
        put(client, "shop", [order(1), order(2), order(1, "update", status="paid"), order(2, "delete")])
        flush(server, "shop")
        table = catalog(data).load_table("shop.orders")
        assert [(r["order_id"], r["status"]) for r in rows_of(table)] == [(1, "new"), (2, "new")]
        errors = error_records(data)
        assert len(errors) == 2 and {e["errorCode"] for e in errors} == {"Iceberg.UnsupportedOperation"}, errors
        assert all("AppendOnly" in e["errorMessage"] for e in errors), errors
    finally:
        server.kill()
