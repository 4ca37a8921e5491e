#!/usr/bin/env bash
# Ingest benchmark: loads one large CSV (1 GiB by default) through
# POST /api/v1/tables/{schema}/{table}/data under a DuckDB memory limit, and
# the same file in process with DuckDB's Python package (the baseline, same
# DuckDB 1.5.5 and DuckLake), and prints the ratios:
#   - wall time: service (upload + validating read + load) / in-process load
#   - peak resident memory of the service (VmHWM) against the file's size
#
#   scripts/ingest-bench.sh                 # 1024 MiB
#   INGEST_BENCH_MB=256 scripts/ingest-bench.sh
#   INGEST_BENCH_MEMORY=512MB scripts/ingest-bench.sh
#
# Needs: a built binary ($CARGO_TARGET_DIR/debug/ducklake-backend; dependencies,
# DuckDB included, are optimised in the dev profile), python3 with duckdb
# 1.5.5 (scripts/install-test-deps.sh), the extensions (./build.sh extensions),
# curl. Results: backend/benches/RESULTS.md.
set -euo pipefail

cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$HOME/.cache/ducklake-backend/target}
binary=${BINARY:-$target/debug/ducklake-backend}
mb=${INGEST_BENCH_MB:-1024}
memory=${INGEST_BENCH_MEMORY:-1GB}
port=${INGEST_BENCH_PORT:-18642}
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

[ -x "$binary" ] || { echo "no binary at $binary: run cargo build first" >&2; exit 1; }

echo "== generating a ${mb} MiB CSV"
python3 - "$work/data.csv" "$mb" <<'PY'
import sys, duckdb
path, mb = sys.argv[1], int(sys.argv[2])
rows = mb * 1024 * 1024 // 78  # about 78 bytes a row
duckdb.connect().execute(f"""
COPY (SELECT i AS id, 'name ' || i AS name, (i % 1000) / 7.0 AS score,
             DATE '2020-01-01' + (i % 3000)::INT AS day, md5(i::VARCHAR) AS tag
      FROM range({rows}) t(i)) TO '{path}' (HEADER)""")
PY
bytes=$(stat -c %s "$work/data.csv")
echo "   $bytes bytes"

echo "== baseline: DuckDB in process (python), CREATE TABLE AS read_csv"
baseline=$(python3 - "$work" "$memory" <<'PY'
import sys, time, resource, duckdb
work, memory = sys.argv[1], sys.argv[2]
con = duckdb.connect(config={"memory_limit": memory})
con.execute("LOAD ducklake")
con.execute(f"ATTACH 'ducklake:{work}/base.ducklake' AS lake (DATA_PATH '{work}/base/')")
start = time.perf_counter()
con.execute(f"CREATE TABLE lake.t AS SELECT * FROM read_csv('{work}/data.csv', header = true)")
elapsed = time.perf_counter() - start
rows = con.execute("SELECT count(*) FROM lake.t").fetchone()[0]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"{elapsed:.3f} {rows} {peak}")
PY
)
read -r base_s base_rows base_peak <<<"$baseline"
rm -rf "$work/base" "$work/base.ducklake"*

echo "== service: upload and load (DUCKDB_MEMORY_LIMIT=$memory)"
DATA_DIR="$work/svc" SERVER_PORT=$port DUCKDB_MEMORY_LIMIT=$memory LOG_LEVEL=warn \
  "$binary" serve >"$work/service.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -sf "localhost:$port/ready" >/dev/null && break
  sleep 0.2
done
idle=$(awk '/VmRSS/ {print $2 * 1024}' "/proc/$pid/status")
start=$(date +%s.%N)
answer=$(curl -sf -X POST -T "$work/data.csv" -H 'content-type: text/csv' \
  "localhost:$port/api/v1/tables/main/t/data?mode=create")
end=$(date +%s.%N)
peak=$(awk '/VmHWM/ {print $2 * 1024}' "/proc/$pid/status")
rows=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["rows_loaded"])' "$answer")
[ "$rows" = "$base_rows" ] || { echo "rows differ: service $rows, baseline $base_rows" >&2; exit 1; }

python3 - "$bytes" "$rows" "$base_s" "$base_peak" "$start" "$end" "$idle" "$peak" "$memory" <<'PY'
import sys
size, rows, base_s, base_peak, start, end, idle, peak, memory = sys.argv[1:]
size, rows, base_s, base_peak = int(size), int(rows), float(base_s), int(base_peak)
svc_s = float(end) - float(start)
idle, peak = int(idle), int(peak)
mib = lambda b: f"{b / 2**20:.0f} MiB"
print()
print(f"| file | rows | DuckDB memory limit | in process | service | time ratio | service RSS idle → peak | peak / file size | in-process peak RSS |")
print(f"|---|---|---|---|---|---|---|---|---|")
print(f"| {mib(size)} CSV | {rows} | {memory} | {base_s:.1f} s | {svc_s:.1f} s | {svc_s / base_s:.2f}× | {mib(idle)} → {mib(peak)} | {peak / size:.2f} | {mib(base_peak)} |")
PY
