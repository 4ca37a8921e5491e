#!/usr/bin/env bash
# The sandbox fuzzer for longer than ./build.sh test runs it: requests built
# from the lexemes DuckDB reads differently from other tokenizers (every
# separator and line end, comments of each kind, strings of each kind,
# quoted names, placeholders) around statements a read key must never run
# and a write key must never run, sent by those keys over POST and the GET
# form; after each, the lake must be as it was (read key), and no snapshot
# expired and nothing of the catalog or the settings landed in a table
# (write key). Each round has a fresh seed (printed); a failing one replays
# with SANDBOX_FUZZ_SEED=<seed> SANDBOX_FUZZ_CASES=<cases>.
#
# usage: scripts/sandbox-fuzz.sh [ROUNDS] [CASES]   (default 10 rounds of 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-10}
cases=${2:-2000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ducklake-backend/target}
scripts/fetch-extensions.sh >/dev/null
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds ($cases cases)"
  SANDBOX_FUZZ_CASES=$cases cargo test --test integration -- --nocapture --exact \
    one_parser::fuzzed_requests_never_let_a_key_do_more_than_its_role 2>&1 |
    grep -E "sandbox fuzz|panicked|test result" 
done
