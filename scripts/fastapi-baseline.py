"""The FastAPI + DuckDB stack of origin document 004, as its users write it:
the baseline of the point-lookup benchmark (backend/benches/query_api.rs).

One shared DuckDB connection with the DuckLake extension and the lake
attached; each request takes its own connection off it with `cursor()`
(FastAPI runs the plain `def` endpoint in its thread pool, and DuckDB
releases the GIL while a query runs), and answers `{"columns", "rows"}` as
JSON. Served by uvicorn with its usual settings: one worker (a local DuckDB
catalog file is opened by one process only), uvloop and httptools from
`uvicorn[standard]`, log level warning (no access log, as the service under
test logs at warn).

The lake is its own, built at start in LAKE_DIR (local catalog file
LAKE_DIR/catalog.ducklake, local data directory LAKE_DIR/data/), with the
same `items` table the benchmark gives the service. The ducklake extension is
the project's pinned one (scripts/fetch-extensions.sh): loaded from
DUCKDB_EXTENSION_DIRECTORY (default ~/.duckdb/extensions), never installed or
auto-loaded.

usage:
  python scripts/fastapi-baseline.py --requirements   the pinned packages
  python scripts/fastapi-baseline.py --check          exit 0 when they are installed
  LAKE_DIR=/tmp/x PORT=8000 python scripts/fastapi-baseline.py
"""

import os
import sys

# What the benchmark installs in its own virtual environment (`--requirements`)
# and checks before each run (`--check`). uvloop and httptools are what
# `uvicorn[standard]` brings; pinned too, so that a later release of either
# does not change the baseline.
PINS = {
    "fastapi": "0.165.0",
    "uvicorn": "0.55.0",
    "duckdb": "1.5.5",
    "uvloop": "0.23.0",
    "httptools": "0.9.0",
}
REQUIREMENTS = [
    f"{name}[standard]=={v}" if name == "uvicorn" else f"{name}=={v}" for name, v in PINS.items()
]
LOOKUP_ROWS = 100_000


def check() -> int:
    from importlib.metadata import PackageNotFoundError, version

    wrong = []
    for name, pinned in PINS.items():
        try:
            found = version(name)
        except PackageNotFoundError:
            found = None
        if found != pinned:
            wrong.append(f"{name} {found or 'missing'} (want {pinned})")
    if wrong:
        print("fastapi-baseline: " + ", ".join(wrong), file=sys.stderr)
        return 1
    return 0


def die_with_parent() -> None:
    """Ends this process when the benchmark that started it dies, even by
    SIGKILL (its guard kills us otherwise). Linux only; best effort."""
    try:
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:
            sys.exit(1)
    except OSError:
        pass


if __name__ == "__main__" and "--check" in sys.argv[1:]:
    sys.exit(check())
if __name__ == "__main__" and "--requirements" in sys.argv[1:]:
    print("\n".join(REQUIREMENTS))
    sys.exit(0)

from typing import Any, Iterator  # noqa: E402

import duckdb  # noqa: E402
from fastapi import Depends, FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402

LAKE_DIR = os.environ.get("LAKE_DIR", "lake")
EXTENSION_DIRECTORY = os.environ.get(
    "DUCKDB_EXTENSION_DIRECTORY", os.path.expanduser("~/.duckdb/extensions")
)

db = duckdb.connect(
    config={
        "extension_directory": EXTENSION_DIRECTORY,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
)
db.execute("LOAD ducklake")
db.execute(
    f"ATTACH 'ducklake:{LAKE_DIR}/catalog.ducklake' AS lake (DATA_PATH '{LAKE_DIR}/data/')"
)
db.execute("USE lake")
db.execute(
    "CREATE TABLE IF NOT EXISTS items AS SELECT range AS id, 'item-' || range AS name, "
    f"range * 0.5 AS price FROM range({LOOKUP_ROWS})"
)

app = FastAPI(title="ducklake-backend (FastAPI baseline)")


class Query(BaseModel):
    sql: str
    params: list[Any] | None = None


class QueryResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


def get_cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection of its own for each request, in the lake (a cursor starts
    in the in-memory database: `search_path` cannot be set globally)."""
    cursor = db.cursor()
    try:
        cursor.execute("USE lake")
        yield cursor
    finally:
        cursor.close()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "healthy"}


@app.post("/api/v1/query")
def query(body: Query, cursor: duckdb.DuckDBPyConnection = Depends(get_cursor)) -> QueryResult:
    try:
        cursor.execute(body.sql, body.params or [])
    except duckdb.Error as e:
        raise HTTPException(status_code=400, detail=str(e)) from e
    columns = [d[0] for d in cursor.description] if cursor.description else []
    return QueryResult(columns=columns, rows=[list(row) for row in cursor.fetchall()])


if __name__ == "__main__":
    import uvicorn

    die_with_parent()
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        log_level="warning",
    )
