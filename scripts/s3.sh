#!/usr/bin/env bash
# A throwaway S3-compatible server (moto) on loopback for tests.
#   scripts/s3.sh start DIR PORT   start it in the background, wait until it answers
#   scripts/s3.sh stop DIR         stop it
set -euo pipefail
cmd=$1 dir=$2
case "$cmd" in
  start)
    port=$3
    mkdir -p "$dir"
    command -v moto_server >/dev/null || { echo "moto is not installed (pip install 'moto[server]')" >&2; exit 1; }
    setsid moto_server -H 127.0.0.1 -p "$port" >"$dir/s3.log" 2>&1 &
    echo $! >"$dir/s3.pid"
    for _ in $(seq 100); do
      if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null; then exit 0; fi
      sleep 0.1
    done
    echo "the S3 server did not start; see $dir/s3.log" >&2; exit 1
    ;;
  stop)
    [ -f "$dir/s3.pid" ] && kill "$(cat "$dir/s3.pid")" 2>/dev/null || true
    ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
