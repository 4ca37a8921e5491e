#!/usr/bin/env bash
# The long forms of the load tests (backend/tests/load.rs) against a real
# PostgreSQL and S3 server: 32 clients of mixed reads and writes; the same
# through a PostgreSQL restart and an S3 freeze; three replicas with one
# SIGKILLed. Writes the figures to backend/tests/LOAD_RESULTS.md.
#   scripts/load-test.sh [SECONDS]   (default 60; the fault runs take twice that)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ducklake-backend/target}
seconds=${1:-60}
out=backend/tests/LOAD_RESULTS.md
scripts/install-test-deps.sh
scripts/fetch-extensions.sh
{
  echo "<!-- Written by scripts/load-test.sh $seconds on $(date -u +%Y-%m-%d); rerun it to refresh. -->"
  echo
  echo "# Load runs against PostgreSQL + S3 (garage)"
  echo
  echo "machine: $(nproc) cores; debug build; $seconds s per run (fault runs: twice that)"
  echo
  echo "| scenario | clients | s | requests | req/s | 2xx | 4xx | 5xx | no answer | writes acked | rows found | acked but missing | RSS start → end |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
} > "$out"
LOAD_SECONDS=$seconds LOAD_RESULTS="$root/$out" \
  cargo test --test load -- --nocapture --test-threads 1
echo
cat "$out"
