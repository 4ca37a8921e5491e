#!/usr/bin/env python3
"""Real Flight SQL clients against a running service: Python's ADBC driver
(adbc-driver-flightsql) and pyarrow.flight.

usage: flight-clients.py FLIGHT_URI HTTP_BASE READ_KEY WRITE_KEY

Each check prints `ok <name>`; the first failure raises (exit 1). Run by
the suite's `flight::python_drivers_read_write_and_are_refused_as_http_is`.
"""

import json
import sys
import threading
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.ipc as ipc

URI, HTTP, READ, WRITE = sys.argv[1:5]

# Every family of DuckDB types the HTTP API's type tests cover.
TYPES_SQL = """SELECT
    42::TINYINT AS i8, 42::SMALLINT AS i16, 42::INTEGER AS i32, 42::BIGINT AS i64,
    170141183460469231731687303715884105727::HUGEINT AS i128,
    255::UTINYINT AS u8, 4294967295::UINTEGER AS u32, 18446744073709551615::UBIGINT AS u64,
    1.5::FLOAT AS f32, 0.1::DOUBLE AS f64, 12345678901234.5678::DECIMAL(18,4) AS dec18,
    12345678901234567890.123::DECIMAL(38,3) AS dec38, TRUE AS b, 'ünïcödé' AS s,
    '\\x00\\xff'::BLOB AS blob, DATE '2024-02-29' AS d, TIME '12:34:56.789' AS t,
    TIMESTAMP '2024-01-02 03:04:05.678901' AS ts, TIMESTAMPTZ '2024-01-02 03:04:05+02' AS tstz,
    TIMESTAMP_S '2024-01-02 03:04:05' AS ts_s, TIMESTAMP_MS '2024-01-02 03:04:05.123' AS ts_ms,
    INTERVAL '1 year 2 months 3 days 04:05:06' AS iv,
    '0b9a4f66-27a3-4d5b-9f4e-2a6b1d3c4e5f'::UUID AS id,
    [1, 2, NULL] AS list, {'a': 1, 'b': 'x'} AS st, MAP {'k': 1} AS m,
    [1, 2, 3]::INTEGER[3] AS arr, NULL::VARCHAR AS nothing
FROM range(3)"""


def ok(name):
    print(f"ok {name}", flush=True)


def http(path, body=None, key=WRITE):
    request = urllib.request.Request(
        HTTP + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


def http_arrow(sql):
    _, _, body = http("/api/v1/query", {"sql": sql, "format": "arrow"})
    return ipc.open_stream(body).read_all()


def http_rows(sql):
    _, headers, body = http("/api/v1/query", {"sql": sql})
    return json.loads(body)["rows"], headers


def active_queries():
    _, _, body = http("/metrics")
    for line in body.decode().splitlines():
        if line.startswith("ducklake_queries_active "):
            return float(line.split()[1])
    raise AssertionError("no ducklake_queries_active in /metrics")


def until(condition, what, bound=60):
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def connect(key=WRITE, autocommit=True, **options):
    kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {key}"}
    kwargs.update(options)
    return flightsql.connect(URI, db_kwargs=kwargs, autocommit=autocommit)


def refused(connection, sql, code):
    with connection.cursor() as cursor:
        try:
            cursor.execute(sql)
            cursor.fetchall()
        except adbc_driver_manager.Error as err:
            assert f"[{code}" in str(err), f"{sql}: {err}"
            return
    raise AssertionError(f"{sql}: not refused")


# The Basic handshake, as drivers do it: the key as the password; the
# bearer token comes back in the authorization header.
client = flight.FlightClient(URI)
header = client.authenticate_basic_token(b"anyone", READ.encode())
assert header == (b"authorization", f"Bearer {READ}".encode()), header
try:
    flight.FlightClient(URI).authenticate_basic_token(b"anyone", b"dlk_wrong")
    raise AssertionError("a wrong key was accepted")
except flight.FlightUnauthenticatedError:
    pass
ok("pyarrow.flight basic handshake")

# ADBC sends Basic credentials as unpadded base64: user names of every
# length (len("user:key") % 3 of 0, 1 and 2) log in, the README's "me" too.
for user in ["me", "etl", "user", "dbeaver", "a"]:
    with flightsql.connect(
        URI, db_kwargs={"username": user, "password": READ}
    ) as conn, conn.cursor() as cur:
        cur.execute("SELECT 42 AS answer")
        assert cur.fetch_arrow_table().to_pylist() == [{"answer": 42}], user
ok("adbc username/password, any user name")

with connect() as conn:
    with conn.cursor() as cur:
        cur.execute(TYPES_SQL)
        over_flight = cur.fetch_arrow_table()
    over_http = http_arrow(TYPES_SQL)
    assert over_flight.schema == over_http.schema, (over_flight.schema, over_http.schema)
    assert over_flight.equals(over_http), (over_flight, over_http)
    ok(f"{over_flight.num_columns} types equal to the HTTP API's Arrow")

    with conn.cursor() as cur:
        cur.execute("CREATE TABLE py_t (id BIGINT, name VARCHAR)")
        cur.execute("INSERT INTO py_t VALUES (1, 'one'), (2, 'two')")
        cur.execute("SELECT name FROM py_t WHERE id = ?", parameters=(2,))
        assert cur.fetchall() == [("two",)]
        cur.executemany("INSERT INTO py_t VALUES (?, ?)", [(3, "three"), (4, "it's four")])
    rows, _ = http_rows("SELECT id, name FROM py_t ORDER BY id")
    assert rows == [[1, "one"], [2, "two"], [3, "three"], [4, "it's four"]], rows
    ok("statements, parameters, executemany")

# DB-API's default: a transaction, committed or rolled back as a whole.
with connect(autocommit=False) as tx:
    with tx.cursor() as cur:
        cur.execute("INSERT INTO py_t VALUES (5, 'five')")
        cur.execute("SELECT count(*) FROM py_t")
        assert cur.fetchall() == [(5,)]
    assert http_rows("SELECT count(*) FROM py_t")[0] == [[4]]
    tx.commit()
    assert http_rows("SELECT count(*) FROM py_t")[0] == [[5]]
    with tx.cursor() as cur:
        cur.execute("DELETE FROM py_t")
    tx.rollback()
    assert http_rows("SELECT count(*) FROM py_t")[0] == [[5]]
with connect() as conn, conn.cursor() as cur:
    cur.execute("DELETE FROM py_t WHERE id = 5")
ok("transactions commit and roll back")

with connect() as conn:
    table = pa.table({"n": pa.array(range(10_000), pa.int64()), "s": [f"v{i}" for i in range(10_000)]})
    with conn.cursor() as cur:
        loaded = cur.adbc_ingest("py_ingested", table, mode="create")
        assert loaded == 10_000, loaded
    rows, _ = http_rows("SELECT count(*), sum(n), max(s) FROM py_ingested")
    assert rows == [[10_000, 49_995_000, "v9999"]], rows
    with conn.cursor() as cur:
        cur.adbc_ingest("py_ingested", table.slice(0, 10), mode="append")
        cur.adbc_ingest("py_ingested", table.slice(0, 7), mode="replace")
    rows, _ = http_rows("SELECT count(*) FROM py_ingested")
    assert rows == [[7]], rows
    ok("adbc_ingest create, append, replace")

    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    names = {
        (catalog["catalog_name"], schema["db_schema_name"], t["table_name"])
        for catalog in objects
        for schema in catalog["catalog_db_schemas"]
        for t in schema["db_schema_tables"]
    }
    assert ("lake", "main", "py_t") in names and ("lake", "main", "py_ingested") in names, names
    columns = [
        c["column_name"]
        for catalog in objects
        for schema in catalog["catalog_db_schemas"]
        for t in schema["db_schema_tables"]
        if t["table_name"] == "py_t"
        for c in t["table_columns"]
    ]
    assert columns == ["id", "name"], columns
    ok("adbc_get_objects lists the lake")

    # Refusals, with the codes the HTTP API answers.
    refused(conn, "SELECT * FROM read_csv('/etc/passwd')", "forbidden")
    refused(conn, "COPY (SELECT 1) TO '/tmp/py-leak.csv'", "forbidden")
    with connect(READ) as reader:
        refused(reader, "INSERT INTO py_t VALUES (9, 'no')", "insufficient_role")
    try:
        with connect("dlk_not_a_key") as stranger, stranger.cursor() as cur:
            cur.execute("SELECT 1")
        raise AssertionError("a wrong key was accepted")
    except adbc_driver_manager.Error as err:
        assert "[unauthorized]" in str(err), err
    ok("wrong key, read key writing, sandbox attacks refused")

    # A pinned read returns the old rows.
    _, headers = http_rows("SELECT count(*) FROM py_t")
    old = headers["x-ducklake-snapshot"]
    with conn.cursor() as cur:
        cur.execute("DELETE FROM py_t WHERE id > 1")
with connect(**{"adbc.flight.sql.rpc.call_header.x-ducklake-snapshot": old}) as pinned:
    with pinned.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM py_t")
        assert cur.fetchall() == [(4,)]
with connect() as conn, conn.cursor() as cur:
    cur.execute("SELECT count(*) AS n FROM py_t")
    assert cur.fetchall() == [(1,)]
ok("pinned read returns the old rows")

# Cancel a long query from another thread: DuckDB stops.
with connect() as conn, conn.cursor() as cur:
    outcome = {}

    def run():
        try:
            cur.execute("SELECT count(*) FROM range(1000000000000) a WHERE a.range % 7 = 3")
            outcome["rows"] = cur.fetchall()
        except adbc_driver_manager.Error as err:
            outcome["error"] = str(err)

    worker = threading.Thread(target=run)
    worker.start()
    until(lambda: active_queries() >= 1, "the long query to start")
    cur.adbc_cancel()
    worker.join(60)
    assert not worker.is_alive(), "the cancelled execute did not return"
    assert "error" in outcome, outcome
    until(lambda: active_queries() == 0, "the cancelled query to stop")
ok("cancel stops the query")
