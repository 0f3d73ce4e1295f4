"""The walk-throughs of examples/, end to end: for each example directory, a server started with the example's own
spillway.toml (the harness chooses the port and data dir with --listen / --data-dir, which take precedence over the
file), then the example's run.sh exactly as a user runs it (AWS CLI, `spillway generate|send|streams flush`, DuckDB),
then its query output checked against the data: row counts equal to the records sent, the seed queries' columns,
aggregates recomputed from the delivered data.

run.sh gets $SPILLWAY_ENDPOINT, $SPILLWAY (the binary under test), $SPILLWAY_DATA (the server's data dir), this
virtualenv's bin first on PATH (aws, python3 with duckdb and pyiceberg) and dummy AWS credentials.
"""

import json
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from conftest import BIN, REGION, ROOT, Server

EXAMPLES = ROOT / "examples"
NAMES = sorted(p.parent.name for p in EXAMPLES.glob("*/run.sh"))
SENT = 2000  # every run.sh generates this many records


def run_example(name, server, tmp_path):
    env = dict(os.environ)
    env.update({
        "SPILLWAY_ENDPOINT": server.endpoint, "SPILLWAY": BIN, "SPILLWAY_DATA": str(server.data_dir),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "AWS_ACCESS_KEY_ID": "AKIDSPILLWAYTEST", "AWS_SECRET_ACCESS_KEY": "not-checked", "AWS_DEFAULT_REGION": REGION,
        "AWS_PAGER": "", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    })
    out = subprocess.run([str(EXAMPLES / name / "run.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, (f"run.sh exited with {out.returncode}\n--- stdout\n{out.stdout}\n--- stderr\n"
                                 f"{out.stderr}\n--- server log\n{server.log()}")
    return out.stdout


class Result:
    """One query result as DuckDB's box rendering shows it: column names, the rows shown (strings) and the row count."""

    def __init__(self, columns, rows, count):
        self.columns, self.rows, self.count = columns, rows, count

    def column(self, name):
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def dicts(self):
        return [dict(zip(self.columns, r)) for r in self.rows]


def results(output):
    """{title: Result} of query.py's output: each `-- title` line, then the result's box."""
    found, title, cells = {}, None, None
    for line in output.splitlines():
        if line.startswith("-- "):
            title = line[3:].strip()
        elif line.startswith("┌"):
            cells = []
        elif line.startswith("│") and cells is not None:
            values = [c.strip() for c in line.strip().strip("│").split("│")]
            if not all(v in ("·", "") for v in values):
                cells.append(values)
        elif line.startswith("└") and cells is not None:
            columns, rows = cells[0], cells[2:]  # the second line holds the types
            found[title] = Result(columns, rows, len(rows))
            cells = None
        elif (m := re.match(r"\s+(\d+) rows? \(", line)) and title in found:
            found[title].count = int(m.group(1))
    return found


def check_iot_sensors_s3_tables(out, data):
    assert f"sent {SENT} records" in out
    assert "(no error records)" in out
    r = results(out)
    table = SqlCatalog("firehosetos3demo", uri=f"sqlite:///{data / 'catalog' / 'catalog.db'}").load_table(
        "firehosetos3demo.firehosetos3demo")
    rows = table.scan().to_arrow().to_pylist()
    assert len(rows) == SENT

    everything = r["View All Sensor Data"]
    assert everything.columns == ["sensor_id", "timestamp", "location", "temperature", "humidity", "pressure"]
    assert everything.count == 100

    by_location = r["Average Temperature by Location"]
    assert by_location.columns == ["location", "avg_temp", "reading_count"]
    temps = {}
    for row in rows:
        temps.setdefault(row["location"], []).append(row["temperature"])
    got = {d["location"]: (float(d["avg_temp"]), int(d["reading_count"])) for d in by_location.dicts()}
    assert got == {loc: (pytest.approx(sum(t) / len(t)), len(t)) for loc, t in temps.items()}
    assert sorted(temps) == ["office_1", "office_2", "warehouse_a", "warehouse_b"]
    avgs = [float(a) for a in by_location.column("avg_temp")]
    assert avgs == sorted(avgs, reverse=True)

    alerts = r["Recent High Temperature Alerts"]
    assert alerts.columns == ["sensor_id", "temperature", "humidity", "timestamp", "reading_time"]
    assert alerts.count == min(50, sum(1 for row in rows if row["temperature"] > 25))
    assert all(float(t) > 25 for t in alerts.column("temperature"))

    summary = r["Sensor Activity Summary"]
    assert summary.columns == ["sensor_id", "location", "total_readings", "avg_temp", "avg_humidity",
                               "first_reading", "last_reading"]
    assert summary.column("sensor_id") == [f"sensor_{i:03d}" for i in range(1, 11)]
    per_sensor = Counter(row["sensor_id"] for row in rows)
    assert {d["sensor_id"]: int(d["total_readings"]) for d in summary.dicts()} == per_sensor
    assert sum(per_sensor.values()) == SENT


def check_clickstream_etl_parquet(out, data):
    assert f"sent {SENT} records" in out
    r = results(out)
    sent = SENT + 3  # and the seed's three test events; the "invalid-json-data" record goes to error-data/
    by_type = r["Events by type"]
    assert by_type.columns == ["event_type", "events", "users", "sessions"]
    assert set(by_type.column("event_type")) == {"page_view", "click", "purchase"}
    assert sum(int(n) for n in by_type.column("events")) == sent

    partitions = r["Rows per partition, and what the transform Lambda added"]
    assert partitions.columns[:5] == ["year", "month", "day", "hour", "total_rows"]
    assert sum(int(n) for n in partitions.column("total_rows")) == sent
    assert set(partitions.column("processed_by")) == {"lambda-firehose-transform"}
    assert set(partitions.column("processors")) == {"1"}
    bucket = data / "buckets" / "streaming-etl-data-demo01"
    for d in partitions.dicts():
        folder = bucket / "processed-data" / f"year={d['year']}" / f"month={d['month']}" / f"day={d['day']}" / \
            f"hour={d['hour']}"
        assert any(folder.glob("streaming-etl-demo01-1-*.parquet")), folder

    seed_records = r["The seed's three test records"]
    assert [(d["event_type"], d["user_id"], d["ip_address"], d["processed_by"]) for d in seed_records.dicts()] == [
        ("page_view", "user123", "192.168.1.1", "lambda-firehose-transform"),
        ("click", "user456", "192.168.1.2", "lambda-firehose-transform"),
        ("purchase", "user789", "192.168.1.3", "lambda-firehose-transform"),
    ]

    failed = r["Records the transform Lambda marked ProcessingFailed (the seed's error-handling test)"]
    assert failed.columns == ["errorCode", "errorMessage", "raw_data"]
    assert len(failed.rows) == 1 and failed.dicts()[0]["raw_data"] == "invalid-json-data"
    assert failed.dicts()[0]["errorCode"].startswith("Lambda."), failed.dicts()
    assert any((bucket / "error-data" / "processing-failed").rglob("streaming-etl-demo01-1-*"))


def check_car_telemetry_lambda(out, data):
    assert f"sent {SENT} records" in out
    fast = int(re.search(r"sent (\d+) records \(\d+ bytes\) to sg12-kinesis-firehose-after-analytics", out).group(1))
    r = results(out)
    first = r["The first bucket: every record, with the EXTRA2 key the Lambda adds"].dicts()
    assert first == [{"records": str(SENT), "with_extra2": str(SENT), "speed_200_or_more": str(fast)}]
    assert 0 < fast < SENT

    sample = r["Records as the seed shows them (a few columns of the nested record)"]
    assert "EXTRA2" in sample.columns and len(sample.rows) == 5
    for d in sample.dicts():
        assert float(d["EXTRA2"]) == pytest.approx(float(d["fuel_consumption"]) * float(d["lap_time"]))

    processed = r["The processed bucket: the CSV rows of the analytics output"].dicts()[0]
    assert int(processed["total_rows"]) == fast
    assert float(processed["min_speed"]) >= 200
    per_gear = r["Fast records per gear"]
    assert sum(int(n) for n in per_gear.column("fast_records")) == fast

    lines = [line for f in sorted((data / "buckets" / "sg12-tf-processed-bucket").rglob("*"))
             if f.is_file() and not f.name.startswith(".") for line in f.read_text().splitlines()]
    assert len(lines) == fast and all(len(line.split(",")) == 4 for line in lines)
    raw = [json.loads(line) for f in sorted((data / "buckets" / "sg12-tf-bucket").rglob("*"))
           if f.is_file() and not f.name.startswith(".") for line in f.read_text().splitlines()]
    assert len(raw) == SENT and all(rec["EXTRA2"] == rec["fuel_consumption"] * rec["lap_time"] for rec in raw)


def check_nyc_taxi_trips_parquet(out, data):
    assert f"sent {SENT} records" in out
    r = results(out)
    seed_query = r["The seed's query, as written for Athena"]
    assert seed_query.count == 10
    assert seed_query.columns[:10] == ["pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude",
                                       "trip_id", "trip_distance", "passenger_count", "pickup_datetime",
                                       "dropoff_datetime", "total_amount"]
    assert sorted(seed_query.columns[10:]) == ["day", "hour", "month", "year"]

    partitions = r["Trips per partition"]
    assert sum(int(n) for n in partitions.column("trips")) == SENT
    root = data / "buckets" / "kinesislab-nyctaxitrips-initials" / "nyctaxitrips"
    for d in partitions.dicts():
        folder = root / f"year={d['year']}" / f"month={d['month']}" / f"day={d['day']}" / f"hour={d['hour']}"
        assert any(folder.glob("nyc-taxi-trips-1-*.parquet")), folder
    assert not (data / "buckets" / "kinesislab-nyctaxitrips-initials" / "nyctaxitripserror").exists()

    spurious = r["Trips the seed's Kinesis-side Lambda would have filtered out as spurious (not in this pipeline: "
                 "see README)"].dicts()[0]
    assert 0 < int(spurious["spurious_trips"]) < SENT * 0.05  # `spillway generate` makes ~2 % of them spurious


CHECKS = {
    "iot-sensors-s3-tables": check_iot_sensors_s3_tables,
    "clickstream-etl-parquet": check_clickstream_etl_parquet,
    "car-telemetry-lambda": check_car_telemetry_lambda,
    "nyc-taxi-trips-parquet": check_nyc_taxi_trips_parquet,
}


def test_every_example_is_checked_and_listed():
    assert NAMES and sorted(CHECKS) == NAMES
    index = (EXAMPLES / "README.md").read_text()
    for name in NAMES:
        assert f"({name}/)" in index, f"examples/README.md does not link {name}/"


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_end_to_end(tmp_path, name):
    example = EXAMPLES / name
    for f in ("README.md", "spillway.toml", "run.sh", "queries.sql"):
        assert (example / f).is_file(), f"{name}/{f} is missing"
    config = tomllib.loads((example / "spillway.toml").read_text())
    # The README's `serve --config examples/<name>/spillway.toml` and run.sh agree on the defaults.
    assert not {"listen", "data_dir"} & set(config.get("server", {})), "the example must not pin listen / data_dir"

    # The example's own file (relative paths in it resolve against its folder); the harness's --listen and
    # --data-dir take precedence over the file.
    server = Server(tmp_path / "data", extra_args=["--config", str(example / "spillway.toml")]).start()
    try:
        out = run_example(name, server, tmp_path)
        CHECKS[name](out, server.data_dir)
    finally:
        server.kill()


def test_iceberg_schema_file_matches_the_config():
    """iot-sensors-s3-tables ships its table schema twice: [[iceberg_tables]] and schema.json (`tables create`)."""
    example = EXAMPLES / "iot-sensors-s3-tables"
    (table,) = tomllib.loads((example / "spillway.toml").read_text())["iceberg_tables"]
    assert table["fields"] == json.loads((example / "schema.json").read_text())["fields"]
