#!/usr/bin/env bash
# CI step: when the image's inputs changed since the last image that passed
# here (a stamp in ~/.cache), build the image (scripts/buildah-image.sh, or
# docker where it answers) and run it (scripts/image-smoke.sh); otherwise say
# so and skip. Inputs: the Dockerfile, Cargo.lock, extensions.lock, the
# fetch script and everything under backend/ that is copied into the image.
# SKIP_IMAGE=1 skips it (e.g. on a machine without debootstrap/buildah).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_IMAGE:-0}" = 1 ] && { echo "image: skipped (SKIP_IMAGE=1)"; exit 0; }
stamp=${IMAGE_STAMP:-$HOME/.cache/ducklake-backend/image-inputs.sha256}
inputs=$(git ls-files backend/Dockerfile Cargo.toml Cargo.lock extensions.lock \
  scripts/fetch-extensions.sh backend/Cargo.toml backend/src backend/migrations \
  backend/assets backend/benches | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  echo "image: inputs unchanged since the last image that passed ($inputs); skipped"
  exit 0
fi
./build.sh image
scripts/image-smoke.sh
mkdir -p "$(dirname "$stamp")"
echo "$inputs" >"$stamp"
