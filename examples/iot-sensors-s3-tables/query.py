#!/usr/bin/env python3
"""Runs queries.sql with DuckDB on the Iceberg table firehosetos3demo.firehosetos3demo of a spillway data dir.

    python3 query.py [--data ./spillway-data] [--max-rows 20] [queries.sql]

The table is found in spillway's embedded catalog (<data>/catalog/catalog.db, an Iceberg SQL catalog read with
PyIceberg) and read by DuckDB's iceberg extension from its current metadata file, as a view with the seed's name,
so the seed's Athena queries run as they are written. Each statement of the file is printed with the comment line
before it, then its result as DuckDB renders it.

Needs: pip install duckdb pyiceberg sqlalchemy (and the iceberg extension: from the duckdb-extension-iceberg and
duckdb-extension-avro wheels when installed, else DuckDB's `INSTALL iceberg`, which downloads it).
"""

import argparse
import os
import sys
from pathlib import Path

import duckdb
from pyiceberg.catalog.sql import SqlCatalog

HERE = Path(__file__).resolve().parent
TABLE_BUCKET = "firehosetos3demo"  # the S3 Tables table bucket of the stream's CatalogARN
NAMESPACE, TABLE = "firehosetos3demo", "firehosetos3demo"


def connect():
    """DuckDB with the iceberg extension: from the PyPI wheels when installed (nothing downloaded), else INSTALL."""
    try:
        import duckdb_extension_avro
        import duckdb_extension_iceberg
    except ImportError:
        con = duckdb.connect()
        con.execute("INSTALL iceberg")
        con.execute("LOAD iceberg")
        return con
    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    for module, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
        path = os.path.join(os.path.dirname(module.__file__), "extensions", f"v{duckdb.__version__}",
                            f"{name}.duckdb_extension")
        con.execute(f"LOAD '{path}'")
    return con


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

    data = args.data.resolve()
    catalog = SqlCatalog(TABLE_BUCKET, uri=f"sqlite:///{data / 'catalog' / 'catalog.db'}",
                         warehouse=f"file://{data / 'buckets' / TABLE_BUCKET}")
    table = catalog.load_table(f"{NAMESPACE}.{TABLE}")
    con = connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE SCHEMA {NAMESPACE}")
    con.execute(f"CREATE VIEW {NAMESPACE}.{TABLE} AS SELECT * FROM iceberg_scan('{table.metadata_location}')")

    for title, sql in statements(args.queries.read_text()):
        print(f"-- {title}" if title else "--")
        result = con.sql(sql)
        if result is not None:
            result.show(max_rows=args.max_rows, max_width=100_000)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
