#!/usr/bin/env bash
# A throwaway S3-compatible server (moto) on loopback for tests.
#   scripts/s3.sh start DIR PORT   start it in the background, wait until it answers
#   scripts/s3.sh stop DIR         stop it; returns once the process has exited
set -euo pipefail
cmd=$1 dir=$2
case "$cmd" in
  start)
    port=$3
    mkdir -p "$dir"
    command -v moto_server >/dev/null || { echo "moto is not installed (pip install 'moto[server]')" >&2; exit 1; }
    setsid moto_server -H 127.0.0.1 -p "$port" >"$dir/s3.log" 2>&1 &
    echo $! >"$dir/s3.pid"
    # Until it answers, or it died; the bound only catches a hang (a loaded
    # machine can take many seconds to import moto).
    for _ in $(seq 1200); do
      if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null; then exit 0; fi
      kill -0 "$(cat "$dir/s3.pid")" 2>/dev/null || break
      sleep 0.1
    done
    echo "the S3 server did not start; see $dir/s3.log" >&2; exit 1
    ;;
  stop)
    # Stopped means gone: wait until the process has exited, so the port no
    # longer answers when this returns (an outage test relies on it).
    [ -f "$dir/s3.pid" ] || exit 0
    pid=$(cat "$dir/s3.pid")
    kill "$pid" 2>/dev/null || exit 0
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    echo "the S3 server (pid $pid) did not exit" >&2; exit 1
    ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
