#!/usr/bin/env bash
# A throwaway S3 server (garage) on loopback for tests, with one bucket.
#   scripts/s3.sh start DIR PORT BUCKET   start it in the background, wait until it answers
#   scripts/s3.sh stop DIR                stop it; returns once the process has exited
#   scripts/s3.sh admin DIR ARGS...       garage's own command line against that server
#   scripts/s3.sh install                 install garage (cargo install, once per machine)
#
# garage is a real S3 server: it checks signatures and keeps its objects on
# disk, so a restart with the same DIR keeps them. Its key, which the tests
# use:
S3_ACCESS_KEY=GKducklaketestaccess0000
S3_SECRET_KEY=ducklake-test-secret-0123456789abcdef
S3_REGION=us-east-1
# garage is AGPL-3.0: it runs here as a separate test process only, never
# linked into or shipped with the service.
GARAGE_VERSION=2.5.0
GARAGE_ROOT=${GARAGE_ROOT:-$HOME/.cache/garage-$GARAGE_VERSION}
set -euo pipefail
cmd=${1:?usage: $0 start DIR PORT BUCKET | admin DIR ARGS... | stop DIR | install}

garage_bin() {
  if [ -x "$GARAGE_ROOT/bin/garage" ]; then echo "$GARAGE_ROOT/bin/garage"; return; fi
  command -v garage || { echo "garage is not installed: run scripts/s3.sh install" >&2; exit 1; }
}

free_port() {
  python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}

# Until the S3 API answers (any HTTP status), or the process died; the bound
# only catches a hang (a loaded machine can take many seconds to start).
wait_for_api() {
  local dir=$1 port=$2
  for _ in $(seq 1200); do
    if python3 - "$port" <<'EOF' 2>/dev/null; then return 0; fi
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/")
except urllib.error.HTTPError:
    pass
EOF
    kill -0 "$(cat "$dir/s3.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "the S3 server did not start; see $dir/s3.log" >&2
  tail -n 20 "$dir/s3.log" >&2
  exit 1
}

case "$cmd" in
  install)
    [ -x "$GARAGE_ROOT/bin/garage" ] && exit 0
    echo "building garage $GARAGE_VERSION from crates.io into $GARAGE_ROOT (once per machine)"
    # Its own build directory, not the service's warm target dir.
    CARGO_TARGET_DIR="$GARAGE_ROOT/build" \
      cargo install garage --version "$GARAGE_VERSION" --locked --root "$GARAGE_ROOT"
    rm -rf "$GARAGE_ROOT/build"
    ;;
  start)
    dir=$2 port=$3 bucket=$4
    mkdir -p "$dir"
    bin=$(garage_bin)
    # A restart on the same DIR keeps the node, its key, bucket and objects.
    [ -f "$dir/rpc.port" ] || free_port >"$dir/rpc.port"
    [ -f "$dir/rpc.secret" ] || python3 -c "import secrets; print(secrets.token_hex(32))" >"$dir/rpc.secret"
    cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$(cat "$dir/rpc.port")"
rpc_public_addr = "127.0.0.1:$(cat "$dir/rpc.port")"
rpc_secret = "$(cat "$dir/rpc.secret")"

[s3_api]
s3_region = "$S3_REGION"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.localhost"
EOF
    GARAGE_DEFAULT_ACCESS_KEY=$S3_ACCESS_KEY GARAGE_DEFAULT_SECRET_KEY=$S3_SECRET_KEY \
      GARAGE_DEFAULT_BUCKET=$bucket RUST_LOG=${RUST_LOG:-warn} \
      setsid "$bin" -c "$dir/garage.toml" server --single-node --default-bucket \
      >>"$dir/s3.log" 2>&1 &
    echo $! >"$dir/s3.pid"
    wait_for_api "$dir" "$port"
    ;;
  admin)
    dir=$2
    shift 2
    exec "$(garage_bin)" -c "$dir/garage.toml" "$@"
    ;;
  stop)
    # Stopped means gone: wait until the process has exited, so the port no
    # longer answers when this returns (an outage test relies on it).
    dir=$2
    [ -f "$dir/s3.pid" ] || exit 0
    pid=$(cat "$dir/s3.pid")
    kill "$pid" 2>/dev/null || exit 0
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    echo "the S3 server (pid $pid) did not exit" >&2; exit 1
    ;;
  *) echo "usage: $0 start DIR PORT BUCKET | admin DIR ARGS... | stop DIR | install" >&2; exit 2 ;;
esac
