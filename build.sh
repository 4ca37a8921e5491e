#!/usr/bin/env bash
# ducklake-backend build entry point.
#
#   ./build.sh extensions   fetch the pinned DuckDB extensions (sha256-checked)
#   ./build.sh run          extensions + run the service on the embedded default
#   ./build.sh test         extensions + test servers (PostgreSQL, S3) + fmt +
#                           clippy + the whole test suite
#   ./build.sh bench        the query API benchmark (optimised; prints ratios)
#   ./build.sh release      optimised binary in $CARGO_TARGET_DIR/release
#
# CARGO_TARGET_DIR defaults to ~/.cache/ducklake-backend/target, outside the
# clone, so the long bundled-DuckDB build is done once per machine.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ducklake-backend/target}

extensions() { scripts/fetch-extensions.sh; }

case "${1:-help}" in
  extensions) extensions ;;
  run)
    extensions
    shift
    exec cargo run --bin ducklake-backend -- "${@:-serve}"
    ;;
  test)
    extensions
    scripts/install-test-deps.sh
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    # Benchmarks (benches/) are built by clippy above but only run by `bench`.
    cargo test --lib --bins --tests
    ;;
  bench)
    extensions
    # The dev profile (dependencies, DuckDB included, are already optimised
    # there) with our own crate optimised too: no second DuckDB build.
    cargo bench --profile dev --config 'profile.dev.package.ducklake-backend.opt-level=3' \
      --bench query_api
    ;;
  release)
    extensions
    cargo build --release --bin ducklake-backend
    echo "binary: $CARGO_TARGET_DIR/release/ducklake-backend"
    ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    [ "${1:-help}" = help ] || exit 2
    ;;
esac
