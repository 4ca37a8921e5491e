#!/usr/bin/env python3
"""Drivers as their users run them, with every default, against a running
service with authentication on: ADBC's DB-API (autocommit off, as pandas,
Superset and notebooks use it) with the docs' own example run verbatim,
200 connections left idle, a client killed inside a transaction, pandas,
SQLAlchemy through flightsql-dbapi (what Superset uses), 2,000,000 rows.

usage: flight-drivers.py FLIGHT_URI HTTP_BASE WRITE_KEY ADMIN_KEY FLIGHT_PAGE

Each check prints `ok <name>`; the first failure raises (exit 1). Run by
the suite's `transactions::drivers_with_their_defaults`. The service runs
with `flight.transaction_idle_timeout_ms` short (the test sets it).
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql

URI, HTTP, WRITE, ADMIN, README = sys.argv[1:6]
PORT = urllib.parse.urlparse(URI).port


def ok(name):
    print(f"ok {name}", flush=True)


def http(path, body=None, key=ADMIN):
    request = urllib.request.Request(
        HTTP + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def sql(text):
    return http("/api/v1/query", {"sql": text})["rows"]


def metric(name):
    request = urllib.request.Request(HTTP + "/metrics")
    with urllib.request.urlopen(request, timeout=60) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def transactions(state):
    return metric(f'ducklake_transactions_open{{state="{state}"}}')


def connections():
    lake = http("/ready")["components"]["lake"]
    return lake["connections"]["available"], lake["connections"]["size"]


def until(what, condition, seconds=120):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def connect(**kwargs):
    # Every DB-API default (autocommit off); the key as the password.
    return flightsql.connect(URI, db_kwargs={"username": "me", "password": WRITE}, **kwargs)


# --- The Flight SQL page's own example, verbatim (its key and address filled in).
section = open(README, encoding="utf-8").read()
example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
assert '"dlk_..."' in example, example
sql("CREATE TABLE events (kind VARCHAR, n INTEGER)")
sql("INSERT INTO events VALUES ('signup', 1), ('login', 2), ('signup', 3)")
assert '"grpc://127.0.0.1:8815"' in example, example
filled = example.replace('"dlk_..."', repr(WRITE)).replace('"grpc://127.0.0.1:8815"', repr(URI))
exec(compile(filled, README, "exec"), {})
assert sql("SELECT count(*) FROM events WHERE kind = 'signup'") == [[4]], sql("SELECT * FROM events")
assert sql("SELECT count(*) FROM events_copy") == [[2]]
ok("the docs' example, verbatim, with DB-API's defaults")

# --- Transactions as DB-API runs them: rollback after a statement nobody
# fetched, commit after a write, a well-behaved client leaves nothing held.
with connect() as conn:
    cur = conn.cursor()
    cur.execute("CREATE TABLE tx3 (x INT)")
    conn.rollback()
    cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'tx3'")
    assert cur.fetchall() == [(0,)]
    cur.execute("CREATE TABLE tx4 (x INT)")
    cur.execute("INSERT INTO tx4 VALUES (1), (2)")
    conn.commit()
assert sql("SELECT count(*) FROM tx4") == [[2]]
for _ in range(50):
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM tx4")
    assert cur.fetchall() == [(2,)]
    conn.commit()
    cur.close()
    conn.close()
assert transactions("writing_idle") == 0 and transactions("writing_active") == 0
available, size = connections()
assert available == size, (available, size)
ok("rollback and commit at any point; well-behaved clients hold no connection")

# --- 200 connections opened and left idle (each in a transaction that has
# read) while HTTP and Flight queries keep answering.
def latencies(n=20):
    http_ms, flight_ms = [], []
    with flightsql.connect(URI, db_kwargs={"username": "me", "password": WRITE}, autocommit=True) as probe:
        cur = probe.cursor()
        for i in range(n):
            started = time.perf_counter()
            assert sql(f"SELECT count(*) + {i} FROM tx4") == [[2 + i]]
            http_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            cur.execute("SELECT count(*) + ? FROM tx4", parameters=(i,))
            assert cur.fetchall() == [(2 + i,)]
            flight_ms.append((time.perf_counter() - started) * 1000)
    return statistics.median(http_ms), statistics.median(flight_ms)


before = latencies()
reading_before = transactions("reading")
idle = []
for _ in range(200):
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM tx4")
    cur.fetchall()
    idle.append(conn)
assert transactions("reading") >= reading_before + 200
available, size = connections()
assert available == size, f"{size - available} connections held by idle clients"
during = latencies()
print(
    f"  median ms before/with 200 idle: HTTP {before[0]:.1f}/{during[0]:.1f} "
    f"({during[0] / before[0]:.2f}x), Flight {before[1]:.1f}/{during[1]:.1f} "
    f"({during[1] / before[1]:.2f}x)",
    flush=True,
)
for conn in idle:
    conn.close()
ok("200 idle DB-API connections hold no connection; HTTP and Flight answer")

# --- A client killed inside a transaction that wrote: its connection is
# held until the idle timeout rolls it back; nothing of it stays.
sql("CREATE TABLE killed (x INT)")
child = subprocess.Popen(
    [
        sys.executable,
        "-c",
        "import sys, time, adbc_driver_flightsql.dbapi as f\n"
        f"c = f.connect({URI!r}, db_kwargs={{'username': 'me', 'password': {WRITE!r}}})\n"
        "cur = c.cursor()\n"
        "cur.execute('INSERT INTO killed VALUES (1)')\n"
        "print('wrote', flush=True)\n"
        "time.sleep(3600)\n",
    ],
    stdout=subprocess.PIPE,
    text=True,
)
assert child.stdout.readline().strip() == "wrote"
os.kill(child.pid, signal.SIGKILL)
child.wait()
assert transactions("writing_idle") == 1
assert sql("SELECT count(*) FROM killed") == [[0]]
until("the killed client's transaction rolled back", lambda: transactions("writing_idle") == 0)
assert sql("SELECT count(*) FROM killed") == [[0]]
available, size = connections()
assert available == size, (available, size)
ok("a client killed mid-transaction: rolled back after the idle timeout")

# --- pandas over ADBC.
import pandas

with connect() as conn:
    frame = pandas.read_sql("SELECT kind, sum(n) AS total FROM events GROUP BY kind ORDER BY kind", conn)
assert list(frame["kind"]) == ["login", "signup"], frame
assert list(frame["total"]) == [2, 8], frame
ok("pandas read_sql over ADBC")

# --- SQLAlchemy through flightsql-dbapi, Superset's Flight SQL dialect.
import sqlalchemy

engine = sqlalchemy.create_engine(f"datafusion://me:{WRITE}@127.0.0.1:{PORT}?insecure=true")
with engine.connect() as conn:
    conn.execute(sqlalchemy.text("CREATE TABLE sa (id INTEGER, name VARCHAR)"))
    conn.execute(sqlalchemy.text("INSERT INTO sa VALUES (1, 'one'), (2, 'two')"))
    rows = conn.execute(sqlalchemy.text("SELECT name FROM sa ORDER BY id")).fetchall()
    assert [r[0] for r in rows] == ["one", "two"], rows
inspector = sqlalchemy.inspect(engine)
assert "sa" in inspector.get_table_names(), inspector.get_table_names()
columns = {c["name"]: str(c["type"]) for c in inspector.get_columns("sa")}
assert set(columns) == {"id", "name"}, columns
ok("SQLAlchemy (flightsql-dbapi) creates, reads and reflects tables")

# --- 2,000,000 rows with no server setting changed.
with connect() as conn:
    cur = conn.cursor()
    cur.execute("SELECT range AS i, 'row ' || range AS s FROM range(2000000)")
    table = cur.fetch_arrow_table()
assert table.num_rows == 2_000_000, table.num_rows
assert table.column("i").to_pylist()[-1] == 1_999_999
ok("2,000,000 rows fetched whole, no server setting changed")
