#!/usr/bin/env python3
"""Runs queries.sql with DuckDB on the Parquet files the nyc-taxi-trips stream delivered to a spillway data dir.

    python3 query.py [--data ./spillway-data] [--max-rows 20] [queries.sql]

Buckets are folders of the data dir (<data>/buckets/<bucket>/). query.py defines the views the queries use
(see queries.sql), then prints each statement's result as DuckDB renders it, under the comment line before it.

Needs: pip install duckdb
"""

import argparse
import os
import sys
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
BUCKET = "kinesislab-nyctaxitrips-initials"


def views(con, bucket):
    """The table of queries.sql, kinesislab.nyctaxitrips, over the bucket folder (LOCATION 's3://<bucket>/nyctaxitrips/')."""
    con.execute("CREATE SCHEMA kinesislab")
    con.execute(f"""CREATE VIEW kinesislab.nyctaxitrips AS SELECT * FROM read_parquet(
        '{bucket}/nyctaxitrips/*/*/*/*/*.parquet', hive_partitioning = true, hive_types_autocast = false)""")


def statements(text):
    """(title, sql) of each statement: the title is the last `--` comment line before it."""
    title, lines = None, []
    for line in text.splitlines():
        stripped = line.strip()
        if not lines and stripped.startswith("--"):
            title = stripped.lstrip("-").strip() or title
            continue
        if not lines and not stripped:
            continue
        lines.append(line)
        if stripped.endswith(";"):
            yield title, "\n".join(lines)
            title, lines = None, []
    if lines:
        yield title, "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("queries", nargs="?", default=HERE / "queries.sql", type=Path)
    ap.add_argument("--data", default=os.environ.get("SPILLWAY_DATA", "./spillway-data"), type=Path,
                    help="spillway's data dir (default $SPILLWAY_DATA or ./spillway-data)")
    ap.add_argument("--max-rows", default=20, type=int, help="rows shown per result (default 20)")
    args = ap.parse_args()

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    views(con, args.data.resolve() / "buckets" / BUCKET)
    for title, sql in statements(args.queries.read_text()):
        print(f"-- {title}" if title else "--")
        result = con.sql(sql)
        if result is not None:
            result.show(max_rows=args.max_rows, max_width=100_000)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
