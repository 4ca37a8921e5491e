#!/usr/bin/env python3
"""Reads one Parquet URL with the readers that fetch a file by byte range, and
checks what each one got: polars' own HTTP reader, stock DuckDB's
read_parquet over httpfs, and pyarrow through fsspec's HTTP filesystem.

The integration tests of the result cache point it at
`GET /api/v1/query?sql=...&format=parquet`, which must then behave like a
file: HEAD with Content-Length, Range answered with 206 and Content-Range.

usage: range-readers.py --url URL [--header 'Authorization: Bearer KEY']...
           --extension-dir DIR --expect JSON [--readers polars,duckdb,pyarrow]

  --extension-dir  holds httpfs for DuckDB 1.5.5 (scripts/fetch-extensions.sh DIR)
  --expect         {"columns": ["id", "name"], "rows": [[1, "a"], [2, "b"]]},
                   or @FILE holding it (one argument stops at 128 KiB)

Rows are compared after sorting by all columns; DuckDB also fails if any GET
was not a range answered 206 (it would quietly download the whole file).
Prints one JSON line per reader, {"reader", "ok", "rows", "error"}; exits 1
if any failed.

polars (2.1.0) sends no custom header to an http(s) URL: its storage_options
are ignored there, so it is refused where the service wants a key; leave it
out of --readers for such runs.
"""

import argparse
import json
import os


def read_polars(url, headers, _ext_dir):
    import polars as pl

    df = pl.read_parquet(url, storage_options=headers or None)
    return df.columns, df.rows()


def read_duckdb(url, headers, ext_dir):
    import duckdb

    con = duckdb.connect(config={
        "extension_directory": ext_dir,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })
    con.execute("LOAD httpfs")
    # A `*` in the URL (an unencoded `SELECT *`) is taken for a glob otherwise.
    con.execute("SET allow_asterisks_in_http_paths = true")
    if headers:
        quote = lambda s: "'" + s.replace("'", "''") + "'"
        pairs = ", ".join(f"{quote(k)}: {quote(v)}" for k, v in headers.items())
        con.execute(f"CREATE SECRET (TYPE http, EXTRA_HTTP_HEADERS MAP {{{pairs}}})")
    con.execute("CALL enable_logging('HTTP')")
    cur = con.execute("SELECT * FROM read_parquet(?)", [url])
    columns, rows = [d[0] for d in cur.description], cur.fetchall()
    # DuckDB quietly downloads the whole file when a range is answered 200:
    # every GET must have been a range answered 206.
    bad = con.execute("""SELECT request.headers['Range'], response.status
        FROM duckdb_logs_parsed('HTTP') WHERE request.type = 'GET'
        AND (request.headers['Range'] IS NULL OR response.status <> 'PartialContent_206')""").fetchall()
    if bad:
        raise RuntimeError(f"GETs not answered as ranges (Range, status): {bad[:5]}")
    return columns, rows


def read_pyarrow(url, headers, _ext_dir):
    import fsspec
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("http", headers=headers)))
    table = pq.read_table(url, filesystem=fs)
    return table.column_names, [list(r) for r in zip(*(c.to_pylist() for c in table.columns))]


READERS = {"polars": read_polars, "duckdb": read_duckdb, "pyarrow": read_pyarrow}


def canonical(rows):
    """Rows as JSON values (so 1 == 1 whatever the reader's int type), sorted
    by all columns, nulls last."""
    rows = [json.loads(json.dumps(list(r), default=str)) for r in rows]
    return sorted(rows, key=lambda r: [(v is None, v) for v in r])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    p.add_argument("--extension-dir", required=True)
    p.add_argument("--expect", required=True,
                   type=lambda v: json.load(open(v[1:])) if v.startswith("@") else json.loads(v))
    p.add_argument("--readers", default=",".join(READERS))
    args = p.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    want_cols, want_rows = args.expect["columns"], canonical(args.expect["rows"])

    failed = False
    for name in args.readers.split(","):
        out = {"reader": name, "ok": False, "rows": 0, "error": ""}
        try:
            cols, rows = READERS[name](args.url, headers, args.extension_dir)
            out["rows"] = len(rows)
            got = canonical(rows)
            if list(cols) != want_cols:
                out["error"] = f"columns {list(cols)}, expected {want_cols}"
            elif got != want_rows:
                out["error"] = f"rows {json.dumps(got)[:300]}, expected {json.dumps(want_rows)[:300]}"
            else:
                out["ok"] = True
        except Exception as e:  # each reader's own error, reported as such
            out["error"] = f"{type(e).__name__}: {e}"[:1000]
        failed |= not out["ok"]
        print(json.dumps(out), flush=True)
    # Skip interpreter teardown: with DuckDB's, Arrow's and fsspec's threads
    # still about, it now and then aborts ("terminate called without an
    # active exception") after everything was checked.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
