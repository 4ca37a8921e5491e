#!/usr/bin/env bash
# Runs the built image (scripts/buildah-image.sh) the way the container
# runs: as uid 1000, with the environment of docker-compose.yml's service,
# the /data and /tmp volumes, against a real PostgreSQL and S3 server on
# loopback (started here, stopped at the end). Migrates first (the compose
# `migrate` service), then serves, waits for /ready, runs the image's own
# HEALTHCHECK command, runs a query with the bootstrap key, sends SIGTERM
# and expects exit 0.
#   scripts/image-smoke.sh [VERSION]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' backend/Cargo.toml | head -1)}
bah() { buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-overlay}" "$@"; }
work=$(mktemp -d)
chmod 755 "$work"
pg_port=$((20000 + RANDOM % 10000)) s3_port=$((30000 + RANDOM % 10000)) port=$((40000 + RANDOM % 10000))
key=image-smoke-bootstrap-admin-key-0123456789
cleanup() {
  [ -n "${serve_pid:-}" ] && kill "$serve_pid" 2>/dev/null || true
  [ -n "${ctr:-}" ] && bah rm "$ctr" >/dev/null 2>&1 || true
  scripts/pg.sh stop "$work/pg" || true
  scripts/s3.sh stop "$work/s3" || true
  rm -rf "$work"
}
trap cleanup EXIT

scripts/pg.sh start "$work/pg" "$pg_port"
scripts/s3.sh start "$work/s3" "$s3_port"
python3 -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:$s3_port/ducklake-data', method='PUT'))"
PGPASSWORD=postgres-test-pw psql -h 127.0.0.1 -p "$pg_port" -U postgres -tAc 'CREATE DATABASE ducklake' >/dev/null

mkdir -p "$work/data" "$work/tmp"
chown 1000:1000 "$work/data" "$work/tmp"
env_args=(
  --env ENVIRONMENT=production --env LOG_LEVEL=info --env SERVER_HOST=127.0.0.1 --env "SERVER_PORT=$port"
  --env DATA_DIR=/data --env AUTH_ENABLED=true --env "AUTH_BOOTSTRAP_KEY=$key"
  --env DB_POSTGRES_HOST=127.0.0.1 --env "DB_POSTGRES_PORT=$pg_port" --env DB_POSTGRES_DB=ducklake
  --env DB_POSTGRES_USER=postgres --env DB_POSTGRES_PASSWORD=postgres-test-pw
  --env "STORAGE_MINIO_ENDPOINT=127.0.0.1:$s3_port" --env STORAGE_MINIO_ACCESS_KEY=test-access
  --env STORAGE_MINIO_SECRET_KEY=test-secret --env STORAGE_DEFAULT_BUCKET=ducklake-data
  --env STORAGE_PREFIX=lake --env STORAGE_CREATE_BUCKET=false --env DUCKDB_MEMORY_LIMIT=280MB
)
run_args=(--isolation chroot --user 1000:1000
  --mount "type=bind,src=$work/data,dst=/data" --mount "type=bind,src=$work/tmp,dst=/tmp")
ctr=$(bah from "ducklake-backend:$version")
for e in "${env_args[@]}"; do [ "$e" = --env ] || bah config --env "$e" "$ctr"; done

echo "==> migrate"
bah run "${run_args[@]}" "$ctr" -- /usr/local/bin/ducklake-backend migrate
echo "==> serve"
bah run "${run_args[@]}" "$ctr" -- /usr/local/bin/ducklake-backend serve >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 300); do
  if curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/ready" >/dev/null || { cat "$work/serve.log"; echo "not ready" >&2; exit 1; }
echo "==> HEALTHCHECK"
bah run "${run_args[@]}" "$ctr" -- /usr/local/bin/ducklake-backend healthcheck
echo "==> a query with the bootstrap key"
curl -fsS -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '{"sql": "CREATE TABLE smoke AS SELECT 42 AS answer; SELECT answer FROM smoke", "transaction": true}' \
  "http://127.0.0.1:$port/api/v1/query"
echo
status=$(curl -s -o /dev/null -w '%{http_code}' -d '{"sql":"SELECT 1"}' -H 'Content-Type: application/json' \
  "http://127.0.0.1:$port/api/v1/query")
[ "$status" = 401 ] || { echo "expected 401 without a key, got $status" >&2; exit 1; }
echo "==> SIGTERM"
pid=$(pgrep -f "ducklake-backend serve" -n -u 1000)
kill -TERM "$pid"
wait "$serve_pid"
echo "image ducklake-backend:$version: migrated, served, healthy, stopped cleanly"
