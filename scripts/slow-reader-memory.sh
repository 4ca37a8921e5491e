#!/usr/bin/env bash
# The service's peak memory while a slow client (curl --limit-rate) reads a
# wide Parquet export: how much of the result the service holds ahead of
# its reader. Starts the built binary on an embedded lake in a temporary
# directory, reads once, prints the result's size and the growth of the
# process's peak RSS, and stops it.
#
# usage: scripts/slow-reader-memory.sh [ROWS] [RATE]
#   ROWS  rows of ~200 bytes (default 1000000); RATE curl's --limit-rate (default 10M)
# Build first: cargo build --bin ducklake-backend
set -euo pipefail
rows=${1:-1000000}
rate=${2:-10M}
bin=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/ducklake-backend/target}/debug/ducklake-backend}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
flight=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATA_DIR=$dir SERVER_PORT=$port FLIGHT_PORT=$flight LOG_LEVEL=warn ENVIRONMENT=test \
  QUERY_MAX_ROWS=100000000 CACHE_ENABLED=false "$bin" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
until curl -sf "127.0.0.1:$port/ready" >/dev/null; do
  kill -0 $pid 2>/dev/null || { echo "the service did not start" >&2; exit 1; }
  sleep 0.2
done
peak() { awk '/VmHWM/ {print $2}' /proc/$pid/status; }
before=$(peak)
pad="md5(range::VARCHAR)"
for i in 1 2 3 4 5; do pad="$pad || md5((range + $i)::VARCHAR)"; done
sql="SELECT range AS id, $pad AS pad FROM range($rows)"
bytes=$(curl -s --limit-rate "$rate" -o /dev/null -w '%{size_download}' \
  -X POST "127.0.0.1:$port/api/v1/query" -H 'content-type: application/json' \
  -d "{\"sql\": \"$sql\", \"format\": \"parquet\"}")
after=$(peak)
echo "parquet result $((bytes / 1048576)) MiB read at $rate/s; service peak RSS grew by $(((after - before) / 1024)) MiB"
