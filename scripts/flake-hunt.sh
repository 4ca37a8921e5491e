#!/usr/bin/env bash
# Reruns the test suite (or one test binary) N times and names every failure.
#
#   scripts/flake-hunt.sh N                 the whole suite (cargo test --lib --bins --tests)
#   scripts/flake-hunt.sh N ui              one area of the integration tests
#                                           (tests/integration/ui.rs), or the
#                                           load / streaming_memory binary
#   scripts/flake-hunt.sh N ui -- cancel    ... and libtest's own arguments after --
#
# Each run's output is kept in $FLAKE_DIR (default target/flake-hunt/<time>);
# a line per run says how long it took and which tests failed, and the end
# counts the failures by test. Exits 1 when any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ducklake-backend/target}

runs=${1:?usage: scripts/flake-hunt.sh N [test-binary] [-- cargo test args]}
shift
target=(--lib --bins --tests)
name=suite
filter=()
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  case $1 in
    load | streaming_memory) target=(--test "$1") ;;
    # One binary holds every other area, a module each.
    *) target=(--test integration) filter=("$1::") ;;
  esac
  name=$1
  shift
fi
[ "${1:-}" = "--" ] && shift
set -- "${filter[@]}" "$@"
dir=${FLAKE_DIR:-$CARGO_TARGET_DIR/flake-hunt/$(date +%Y%m%d-%H%M%S)-$name}
mkdir -p "$dir"

# Build once, so the runs time the tests and not the compiler.
cargo test "${target[@]}" --no-run >"$dir/build.log" 2>&1 || {
  echo "the build failed; see $dir/build.log" >&2
  tail -n 30 "$dir/build.log" >&2
  exit 2
}

failed_runs=0
: >"$dir/failures"
for i in $(seq "$runs"); do
  log="$dir/run-$i.log"
  start=$(date +%s)
  cargo test --no-fail-fast "${target[@]}" -- "$@" >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  # libtest marks each failed test "test name ... FAILED"; a binary that
  # crashed or could not start has no such line, so name the binary.
  failures=$(grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/')
  if [ "$rc" -ne 0 ] && [ -z "$failures" ]; then
    failures="(exit $rc: $(grep -E '^error|Running' "$log" | tail -n 1))"
  fi
  if [ "$rc" -eq 0 ]; then
    printf 'run %d/%d: ok in %ds\n' "$i" "$runs" "$took"
  else
    failed_runs=$((failed_runs + 1))
    printf 'run %d/%d: FAILED in %ds (%s):\n' "$i" "$runs" "$took" "$log"
    # The binary each failure is in: the last "Running" line before it.
    while IFS= read -r test; do
      [ -n "$test" ] || continue
      binary=$(awk -v t="test $test ... FAILED" '/Running /{b=$2} index($0, t)==1{print b; exit}' "$log")
      printf '  %s %s\n' "${binary:-?}" "$test"
      printf '%s %s\n' "${binary:-?}" "$test" >>"$dir/failures"
    done <<<"$failures"
  fi
done

echo
if [ "$failed_runs" -eq 0 ]; then
  echo "$name: $runs of $runs runs passed (logs in $dir)"
  exit 0
fi
echo "$name: $failed_runs of $runs runs failed (logs in $dir); failures by test:"
sort "$dir/failures" | uniq -c | sort -rn
exit 1
