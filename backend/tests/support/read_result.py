"""Reads one query result the way a data tool does, and says what it got.

usage: read_result.py URL REQUEST_JSON

POSTs REQUEST_JSON to URL and reads the body with the format's real reader:
pyarrow's IPC stream reader for arrow, its Parquet and CSV readers for
parquet, csv and tsv, json.loads per line of the body for ndjson and
json.load for json and json_objects. Prints one JSON line:

  {"outcome": "whole", "rows": N}          the reader took it as complete
  {"outcome": "marked", "rows": N}         JSON whose body says truncated
  {"outcome": "refused", "status": S, "code": C}   an HTTP error before the body
  {"outcome": "broken", "error": "..."}    the reader raised: the cut is seen
"""

import io
import os
import json
import sys
import urllib.error
import urllib.request


def read(fmt, response):
    if fmt == "arrow":
        import pyarrow.ipc

        return pyarrow.ipc.open_stream(response).read_all().num_rows, False
    if fmt == "parquet":
        import pyarrow.parquet

        table = pyarrow.parquet.read_table(io.BytesIO(response.read()), use_threads=False)
        return table.num_rows, False
    if fmt in ("csv", "tsv"):
        import pyarrow.csv

        options = pyarrow.csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
        # One thread: pyarrow's threaded CSV reader has aborted the process
        # ("terminate called without an active exception") on a broken
        # stream instead of raising.
        read = pyarrow.csv.ReadOptions(use_threads=False)
        table = pyarrow.csv.read_csv(response, read_options=read, parse_options=options)
        return table.num_rows, False
    if fmt == "ndjson":
        # Read whole, as pandas.read_json(lines=True) and polars do: the
        # standard library's line iterator ends quietly where a chunked body
        # breaks off mid-chunk, which no real reader relies on.
        lines = response.read().splitlines()
        return sum(1 for line in lines if json.loads(line) is not None), False
    body = json.load(response)
    return len(body["rows"]), bool(body["truncated"])


def main():
    url, request = sys.argv[1], json.loads(sys.argv[2])
    fmt = request.get("format", "json")
    post = urllib.request.Request(
        url,
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        response = urllib.request.urlopen(post, timeout=300)
    except urllib.error.HTTPError as err:
        code = json.load(err).get("error", {}).get("code")
        print(json.dumps({"outcome": "refused", "status": err.code, "code": code}))
        return
    try:
        rows, truncated = read(fmt, response)
    except Exception as err:  # noqa: BLE001 - any failure to read is the point
        # IncompleteRead, a connection reset, or the reader's own error. (A
        # bug here would show as "broken" for the whole results the test
        # also reads, which must come back "whole".)
        print(json.dumps({"outcome": "broken", "error": f"{type(err).__name__}: {err}"[:300]}))
        return
    print(json.dumps({"outcome": "marked" if truncated else "whole", "rows": rows}))


if __name__ == "__main__":
    main()
    # The outcome is printed; leave without interpreter teardown, where
    # pyarrow's C++ thread pool once aborted the process ("terminate called
    # without an active exception") after a whole Parquet read.
    sys.stdout.flush()
    os._exit(0)
