"""`spillway tables compact`, black-box: readings delivered to an Iceberg table of the embedded catalog in several
flushes (one small data file per flush and partition), compacted by the CLI while the server runs (and appends), then
read back with PyIceberg (the same SQLite catalog) and DuckDB: fewer data files, the same rows, a `replace` snapshot on
top of the appends.
"""

import json
import random
import subprocess
import threading

import pytest

from conftest import BIN, Server, flush
from test_iceberg import NAMESPACE, SCHEMA, TABLE, catalog, cli, duckdb_with_iceberg, iceberg_destination, put, reading
from test_iceberg import TABLE_BUCKET

NAME = f"{NAMESPACE}.{TABLE}"


def make_table(tmp_path, *partition_by):
    d = tmp_path / "data"
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"fields": SCHEMA}))
    args = ["tables", "create", NAME, "--schema", schema, "--catalog", TABLE_BUCKET, "--data-dir", d]
    for column in partition_by:
        args += ["--partition-by", column]
    cli(*args)
    return d


def compact(data, *extra):
    return subprocess.run([BIN, "tables", "compact", NAME, "--catalog", TABLE_BUCKET, "--data-dir", str(data), *extra],
                          capture_output=True, text=True, timeout=120)


def load(data):
    return catalog(data).load_table(NAME)


def data_files(table):
    return table.inspect.files().to_pylist()


def deliver(server, client, readings, chunk):
    """Puts `readings` in chunks of `chunk`, one flush (one commit) per chunk."""
    for i in range(0, len(readings), chunk):
        put(client, "iot", [json.dumps(r).encode() for r in readings[i:i + chunk]])
        flush(server, "iot")


def by_timestamp(rows):
    return sorted(rows, key=lambda r: r["timestamp"])


def start(data):
    server = Server(data).start()
    client = server.client()
    client.create_delivery_stream(DeliveryStreamName="iot", IcebergDestinationConfiguration=iceberg_destination())
    return server, client


def test_compaction_merges_the_flushes_into_one_file_with_the_same_rows(tmp_path):
    data = make_table(tmp_path)
    server, client = start(data)
    try:
        rng = random.Random(7)
        readings = [reading(i, rng) for i in range(600)]
        deliver(server, client, readings[:480], 80)
        table = load(data)
        assert len(data_files(table)) == 6, "one file per flush"
        appends = [s.snapshot_id for s in sorted(table.snapshots(), key=lambda s: s.sequence_number)]

        # The server runs (and keeps its catalog open) while the CLI compacts.
        out = compact(data)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"compacted {NAME}: 6 files -> 1 (6 rewritten, 1 written, 480 rows, "), out.stdout
        snapshot_id = int(out.stdout.rsplit("snapshot ", 1)[1])

        table = load(data)
        files = data_files(table)
        assert len(files) == 1 and files[0]["file_path"].split("/")[-1].startswith(f"compact-{snapshot_id}-"), files
        assert files[0]["record_count"] == 480
        current = table.current_snapshot()
        assert current.snapshot_id == snapshot_id
        assert current.parent_snapshot_id == appends[-1]
        assert current.summary.operation.value == "replace"
        summary = current.summary.additional_properties
        assert (summary["added-data-files"], summary["deleted-data-files"]) == ("1", "6")
        assert (summary["added-records"], summary["deleted-records"], summary["total-records"]) == ("480", "480", "480")
        assert [s.snapshot_id for s in sorted(table.snapshots(), key=lambda s: s.sequence_number)] == \
            appends + [snapshot_id]
        assert by_timestamp(table.scan().to_arrow().to_pylist()) == readings[:480]
        # Time travel to before the compaction still reads the old files.
        assert table.scan(snapshot_id=appends[-1]).to_arrow().num_rows == 480

        # The server appends on top of the replace snapshot; a second compaction takes the new file in.
        deliver(server, client, readings[480:], 120)
        out = compact(data)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"compacted {NAME}: 2 files -> 1 (2 rewritten, 1 written, 600 rows, "), out.stdout
        out = compact(data)
        assert out.returncode == 0, out.stderr
        assert out.stdout == f"nothing to compact in {NAME} (1 file)\n"

        table = load(data)
        assert len(data_files(table)) == 1
        assert by_timestamp(table.scan().to_arrow().to_pylist()) == readings
        con = duckdb_with_iceberg()
        count, distinct = con.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT timestamp) FROM iceberg_scan('{table.metadata_location}')").fetchone()
        assert (count, distinct) == (600, 600)

        # The server still knows what it committed: a restart delivers nothing twice.
        server.stop()
        server.start()
        client = server.client()
        extra = [reading(i, rng) for i in range(600, 650)]
        deliver(server, client, extra, 50)
        assert by_timestamp(load(data).scan().to_arrow().to_pylist()) == readings + extra
    finally:
        server.kill()


def test_a_partitioned_table_is_compacted_per_partition_while_the_server_appends(tmp_path):
    data = make_table(tmp_path, "location")
    server, client = start(data)
    try:
        rng = random.Random(11)
        readings = [reading(i, rng) for i in range(800)]
        deliver(server, client, readings[:400], 100)
        assert len(data_files(load(data))) == 16, "one file per flush and location"

        # Compactions race the server's appends (a commit every few tens of milliseconds): one that loses a commit race
        # puts its new files on the new snapshot (up to 10 times), so it may fail with a conflict, never with anything
        # else, and no row is lost or doubled.
        errors = []

        def appender():
            try:
                deliver(server, client, readings[400:], 20)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        thread = threading.Thread(target=appender)
        thread.start()
        results = []
        while thread.is_alive() or not results:
            out = compact(data)
            assert out.returncode == 0 or "CatalogCommitConflicts" in out.stderr, out.stderr
            results.append(out.returncode)
        thread.join()
        assert not errors, errors
        assert 0 in results, results

        out = compact(data)
        assert out.returncode == 0, out.stderr
        table = load(data)
        files = data_files(table)
        assert sorted(f["partition"]["location"] for f in files) == sorted({r["location"] for r in readings}), files
        assert all(f["file_path"].split("/")[-1].startswith("compact-") for f in files), files
        assert table.current_snapshot().summary.operation.value == "replace"
        assert by_timestamp(table.scan().to_arrow().to_pylist()) == readings
        office = table.scan(row_filter="location == 'office'").to_arrow().to_pylist()
        assert by_timestamp(office) == [r for r in readings if r["location"] == "office"]
    finally:
        server.kill()


@pytest.mark.parametrize("args, message", [
    (["--min-input-files", "1"], "--min-input-files"),
    (["--target-file-size", "0"], "--target-file-size"),
])
def test_bad_options_are_refused(tmp_path, args, message):
    data = make_table(tmp_path)
    out = compact(data, *args)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_a_missing_table_or_catalog_is_an_error(tmp_path):
    out = compact(tmp_path / "nothing-here")
    assert out.returncode != 0 and "no Iceberg catalog" in out.stderr, out.stderr
    data = make_table(tmp_path)
    out = subprocess.run([BIN, "tables", "compact", f"{NAMESPACE}.nope", "--catalog", TABLE_BUCKET,
                          "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "not found" in out.stderr, out.stderr
