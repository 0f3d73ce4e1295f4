#!/usr/bin/env python3
"""Runs the seed's analytics SQL or queries.sql with DuckDB on the objects the telemetry streams delivered.

    python3 query.py --analytics [--data ./spillway-data]       # analytics.sql's rows as CSV lines on stdout
    python3 query.py [--data ./spillway-data] [--max-rows 20] [queries.sql]

Buckets are folders of the data dir (<data>/buckets/<bucket>/). query.py defines the views the SQL uses (see
queries.sql); with --analytics it prints the result of analytics.sql (the Kinesis Data Analytics application) as
CSV without a header, ready for `spillway send`; otherwise each statement's result as DuckDB renders it, under the
comment line before it.

Needs: pip install duckdb
"""

import argparse
import csv
import os
import sys
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
RAW_BUCKET = "sg12-tf-bucket"
PROCESSED_BUCKET = "sg12-tf-processed-bucket"


def views(con, buckets):
    """The views of queries.sql and analytics.sql over the bucket folders (default prefix YYYY/MM/DD/HH/)."""
    con.execute(f"""CREATE VIEW sg12_prefix_001 AS SELECT * FROM read_json(
        '{buckets / RAW_BUCKET}/*/*/*/*/*', format = 'newline_delimited')""")
    processed = buckets / PROCESSED_BUCKET
    if any(processed.glob("*/*/*/*/*")):
        con.execute(f"""CREATE VIEW processed AS SELECT * FROM read_csv('{processed}/*/*/*/*/*', header = false,
            columns = {{speed: 'DOUBLE', rpm: 'BIGINT', gear: 'BIGINT', throttle: 'DOUBLE'}})""")


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
    ap.add_argument("--analytics", action="store_true", help="print analytics.sql's rows as CSV")
    ap.add_argument("--data", default=os.environ.get("SPILLWAY_DATA", "./spillway-data"), type=Path,
                    help="spillway's data dir (default $SPILLWAY_DATA or ./spillway-data)")
    ap.add_argument("--max-rows", default=20, type=int, help="rows shown per result (default 20)")
    args = ap.parse_args()

    con = duckdb.connect()
    views(con, args.data.resolve() / "buckets")
    if args.analytics:
        out = csv.writer(sys.stdout, lineterminator="\n")
        for _, sql in statements((HERE / "analytics.sql").read_text()):
            out.writerows(con.execute(sql).fetchall())
        return 0
    for title, sql in statements(args.queries.read_text()):
        print(f"-- {title}" if title else "--")
        result = con.sql(sql)
        if result is not None:
            result.show(max_rows=args.max_rows, max_width=100_000)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
