#!/usr/bin/env bash
# Runs the built image (scripts/buildah-image.sh) the way the container
# runs: as uid 1000, with the environment of docker-compose.yml's service,
# the /data and /tmp volumes, against a real PostgreSQL and S3 server on
# loopback (started here, stopped at the end). Creates the bucket and
# migrates first (the compose `create-bucket` and `migrate` services), then serves, waits for /ready, runs the image's own
# HEALTHCHECK command, runs a query with the bootstrap key, sends SIGTERM
# and expects exit 0.
#   scripts/image-smoke.sh [VERSION]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ducklake-backend/target}
version=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' backend/Cargo.toml | head -1)}
bah() { buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-overlay}" "$@"; }
work=$(mktemp -d)
chmod 755 "$work"
pg_port=$((20000 + RANDOM % 10000)) s3_port=$((30000 + RANDOM % 10000)) port=$((40000 + RANDOM % 10000))
key=image-smoke-bootstrap-admin-key-0123456789
cleanup() {
  [ -n "${serve_pid:-}" ] && kill "$serve_pid" 2>/dev/null || true
  [ -n "${ro_pid:-}" ] && kill "$ro_pid" 2>/dev/null || true
  if [ -n "${ro:-}" ]; then
    for m in proc dev/null dev/urandom dev/random tmp data ""; do umount "$ro/$m" 2>/dev/null || true; done
  fi
  [ -n "${ctr:-}" ] && bah umount "$ctr" >/dev/null 2>&1 || true
  [ -n "${ctr:-}" ] && bah rm "$ctr" >/dev/null 2>&1 || true
  scripts/pg.sh stop "$work/pg" || true
  scripts/s3.sh stop "$work/s3" || true
  rm -rf "$work"
}
trap cleanup EXIT

scripts/pg.sh start "$work/pg" "$pg_port"
# Another bucket: the lake's is made by the image's bucket step below.
scripts/s3.sh start "$work/s3" "$s3_port" smoke-other
PGPASSWORD=postgres-test-pw psql -h 127.0.0.1 -p "$pg_port" -U postgres -tAc 'CREATE DATABASE ducklake' >/dev/null

mkdir -p "$work/data" "$work/tmp"
chown 1000:1000 "$work/data" "$work/tmp"
env_args=(
  --env ENVIRONMENT=production --env LOG_LEVEL=info --env SERVER_HOST=127.0.0.1 --env "SERVER_PORT=$port"
  --env DATA_DIR=/data --env AUTH_ENABLED=true --env "AUTH_BOOTSTRAP_KEY=$key"
  --env DB_POSTGRES_HOST=127.0.0.1 --env "DB_POSTGRES_PORT=$pg_port" --env DB_POSTGRES_DB=ducklake
  --env DB_POSTGRES_USER=postgres --env DB_POSTGRES_PASSWORD=postgres-test-pw
  --env "STORAGE_MINIO_ENDPOINT=127.0.0.1:$s3_port" --env STORAGE_MINIO_ACCESS_KEY=$(sed -n "s/^S3_ACCESS_KEY=//p" scripts/s3.sh)
  --env STORAGE_MINIO_SECRET_KEY=$(sed -n "s/^S3_SECRET_KEY=//p" scripts/s3.sh) --env STORAGE_DEFAULT_BUCKET=ducklake-data
  --env STORAGE_PREFIX=lake --env STORAGE_CREATE_BUCKET=false --env DUCKDB_MEMORY_LIMIT=280MB
)
run_args=(--isolation chroot --user 1000:1000
  --mount "type=bind,src=$work/data,dst=/data" --mount "type=bind,src=$work/tmp,dst=/tmp")
ctr=$(bah from "ducklake-backend:$version")
for e in "${env_args[@]}"; do [ "$e" = --env ] || bah config --env "$e" "$ctr"; done

echo "==> create-bucket (the compose and Kubernetes bucket step)"
created=$(bah run "${run_args[@]}" "$ctr" -- /usr/local/bin/ducklake-backend create-bucket)
echo "$created"
[ "$created" = "created bucket ducklake-data" ] || { echo "the bucket step did not create the bucket" >&2; exit 1; }
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
echo "==> read-only root: the image's files mounted read-only, only /data and /tmp writable"
# buildah run has no read-only root, so the image's root filesystem is
# bind-mounted read-only and the binary chrooted into it as uid 1000, with
# the same environment (the image has no shell: the binary runs directly).
mnt=$(bah mount "$ctr")
mkdir -p "$mnt/proc" "$mnt/dev" "$mnt/data" "$mnt/tmp"
touch "$mnt/dev/null" "$mnt/dev/urandom" "$mnt/dev/random"
ro=$work/ro
mkdir -p "$ro"
mount --bind "$mnt" "$ro"
mount -o remount,bind,ro "$ro"
mount --bind "$work/data" "$ro/data"
mount --bind "$work/tmp" "$ro/tmp"
mount -t proc proc "$ro/proc"
for d in null urandom random; do mount --bind "/dev/$d" "$ro/dev/$d"; done
if touch "$ro/written" 2>/dev/null || touch "$ro/usr/local/bin/written" 2>/dev/null; then
  echo "the root filesystem is writable" >&2; exit 1
fi
plain_env=()
for e in "${env_args[@]}"; do [ "$e" = --env ] || plain_env+=("$e"); done
image_env=$(bah inspect --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "ducklake-backend:$version")
mapfile -t image_env_list <<<"$image_env"
env -i "${image_env_list[@]}" "${plain_env[@]}" \
  chroot --userspec=1000:1000 "$ro" /usr/local/bin/ducklake-backend serve >"$work/ro.log" 2>&1 &
ro_pid=$!
for _ in $(seq 300); do
  if curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/ready" >/dev/null || { cat "$work/ro.log"; echo "not ready on a read-only root" >&2; exit 1; }
answer=$(curl -fsS -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '{"sql": "INSERT INTO smoke VALUES (43); SELECT count(*) AS n FROM smoke"}' \
  "http://127.0.0.1:$port/api/v1/query")
echo "$answer"
case "$answer" in *'[[2]]'*) ;; *) echo "unexpected answer on a read-only root" >&2; exit 1 ;; esac
upload=$(curl -fsS -H "Authorization: Bearer $key" -H 'Content-Type: text/csv' --data-binary $'answer\n44\n' \
  "http://127.0.0.1:$port/api/v1/tables/main/smoke/data")
echo "$upload"
case "$upload" in *'"rows_loaded":1'*) ;; *) echo "ingest failed on a read-only root" >&2; exit 1 ;; esac
kill -TERM "$ro_pid"
wait "$ro_pid"
ro_pid=
cp "$mnt/usr/local/bin/ducklake-backend" "$work/release-binary"
for m in proc dev/null dev/urandom dev/random tmp data ""; do umount "$ro/$m"; done
ro=
bah umount "$ctr" >/dev/null

echo "==> the container test (backend/tests/integration/container.rs) with the image's release binary"
CONTAINER_BINARY=$work/release-binary \
  cargo test --manifest-path backend/Cargo.toml --test integration container:: -- --nocapture 2>&1 | grep -E "binary under test|test result"
echo "image ducklake-backend:$version: migrated, served, healthy, read-only root, release binary through its probes, stopped cleanly"
