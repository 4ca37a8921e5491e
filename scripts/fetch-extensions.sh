#!/usr/bin/env bash
# Provision the pinned DuckDB extensions (extensions.lock) into an extension
# directory laid out the way DuckDB looks for them:
#   <dir>/v1.5.5/linux_amd64/<name>.duckdb_extension
# The wheels come from PyPI and are checked against the sha256 in the lock file.
#
# usage: scripts/fetch-extensions.sh [DIR]
#   DIR defaults to $DUCKDB_EXTENSION_DIRECTORY, else ~/.duckdb/extensions
#   WHEEL_CACHE (default ~/.cache/ducklake-backend/wheels) keeps downloads.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${DUCKDB_EXTENSION_DIRECTORY:-$HOME/.duckdb/extensions}}
cache=${WHEEL_CACHE:-$HOME/.cache/ducklake-backend/wheels}
platform=linux_amd64
mkdir -p "$cache"

while read -r name version sha; do
  case "$name" in ''|'#'*) continue ;; esac
  target="$dir/v$version/$platform/$name.duckdb_extension"
  if [ -f "$target.sha256" ] && [ "$(cat "$target.sha256")" = "$sha" ] && [ -f "$target" ]; then
    echo "ok      $name $version ($target)"
    continue
  fi
  pkg="duckdb-extension-${name//_/-}"
  wheel="$cache/duckdb_extension_${name}-${version}-py3-none-manylinux2014_x86_64.whl"
  if [ ! -f "$wheel" ] || ! echo "$sha  $wheel" | sha256sum --check --status; then
    rm -f "$wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux2014_x86_64 --python-version 3.11 \
      -d "$cache" "$pkg==$version"
  fi
  if ! echo "$sha  $wheel" | sha256sum --check --status; then
    echo "error: $wheel does not match the sha256 pinned in extensions.lock" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$target")"
  python3 - "$wheel" "$name" "$version" "$target" <<'PY'
import shutil, sys, zipfile
wheel, name, version, target = sys.argv[1:]
member = f"duckdb_extension_{name}/extensions/v{version}/{name}.duckdb_extension"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(target + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$target.part" "$target"
  echo "$sha" > "$target.sha256"
  echo "fetched $name $version ($target)"
done < "$root/extensions.lock"
