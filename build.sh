#!/usr/bin/env bash
# ducklake-backend build entry point.
#
# usage: ./build.sh COMMAND [ARGS]
#
#   setup            DuckDB extensions (sha256-checked) and the test/lint tools
#   extensions       only the pinned DuckDB extensions
#   run [ARGS]       run the service on the embedded default (default: serve)
#   test             setup + fmt + clippy + the whole test suite
#   docs             the documentation (docs/src, mdBook) into docs/book/: open
#                    docs/book/index.html; everything is local, nothing fetched
#   lint             fmt, clippy, hadolint, yamllint, kubernetes-validate,
#                    checkov and the compose schema
#   bench            the query API benchmark (optimised; prints ratios)
#   release          optimised binary in $CARGO_TARGET_DIR/release
#   image [VERSION]  container image ducklake-backend:VERSION (default: the
#                    version in backend/Cargo.toml) with docker, or with
#                    buildah where no docker engine answers
#   image-smoke [V]  run the built image as the container does against a real
#                    PostgreSQL and S3 server (scripts/image-smoke.sh)
#   push [VERSION]   push ducklake-backend:VERSION to $REGISTRY
#   help             this text
#
# CARGO_TARGET_DIR defaults to ~/.cache/ducklake-backend/target, outside the
# clone, so the long bundled-DuckDB build is done once per machine.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ducklake-backend/target}

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  bold=$'\e[1m' red=$'\e[31m' green=$'\e[32m' reset=$'\e[0m'
else
  bold='' red='' green='' reset=''
fi
step() { printf '%s==> %s%s\n' "$bold" "$*" "$reset"; }
die() { printf '%serror:%s %s\n' "$red" "$reset" "$*" >&2; exit 1; }
ok() { printf '%s%s%s\n' "$green" "$*" "$reset"; }
usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }

version() { sed -n 's/^version = "\(.*\)"/\1/p' backend/Cargo.toml | head -1; }
revision() { git rev-parse --short HEAD 2>/dev/null || echo unknown; }

extensions() { step "DuckDB extensions"; scripts/fetch-extensions.sh; }
setup() {
  extensions
  step "test and lint tools"
  scripts/install-test-deps.sh
}

lint() {
  step "rustfmt"; cargo fmt --all -- --check
  step "clippy"; cargo clippy --all-targets -- -D warnings
  scripts/lint-deploy.sh
}

docs() {
  command -v mdbook >/dev/null || scripts/install-test-deps.sh mdbook
  step "mdbook build docs"
  mdbook build docs
  # The site works offline: no page pulls a script, style or font from the web.
  if grep -rlE '<(script|link)[^>]+(src|href)="(https?:)?//' docs/book --include='*.html' >/dev/null; then
    die "docs/book loads something from the web: $(grep -rlE '<(script|link)[^>]+(src|href)="(https?:)?//' docs/book --include='*.html' | head -3)"
  fi
  ok "docs: docs/book/index.html"
}

docker_answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

image() {
  local v=${1:-$(version)}
  local tag="ducklake-backend:$v"
  if docker_answers; then
    step "docker build $tag"
    docker build -f backend/Dockerfile \
      --build-arg VERSION="$v" --build-arg REVISION="$(revision)" \
      -t "$tag" -t ducklake-backend:"$(revision)" .
  elif command -v buildah >/dev/null || command -v apt-get >/dev/null; then
    step "no docker engine answers: building $tag with buildah (scripts/buildah-image.sh)"
    scripts/buildah-image.sh "$v" "$(revision)"
  else
    die "no container engine: install docker, or buildah for a daemonless build"
  fi
  ok "built $tag"
}

push() {
  local v=${1:-$(version)}
  [ -n "${REGISTRY:-}" ] || die "set REGISTRY (e.g. registry.example.com/data) to push"
  if docker_answers; then
    docker tag "ducklake-backend:$v" "$REGISTRY/ducklake-backend:$v"
    docker push "$REGISTRY/ducklake-backend:$v"
  elif command -v buildah >/dev/null; then
    buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-overlay}" push "ducklake-backend:$v" "docker://$REGISTRY/ducklake-backend:$v"
  else
    die "no container engine to push with"
  fi
  ok "pushed $REGISTRY/ducklake-backend:$v"
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  extensions) extensions ;;
  run)
    extensions
    step "ducklake-backend ${*:-serve}"
    exec cargo run --bin ducklake-backend -- "${@:-serve}"
    ;;
  test)
    setup
    step "rustfmt"; cargo fmt --all -- --check
    step "clippy"; cargo clippy --all-targets -- -D warnings
    # Benchmarks (benches/) are built by clippy above but only run by `bench`.
    step "tests"; cargo test --lib --bins --tests
    scripts/lint-deploy.sh
    docs
    ok "all green"
    ;;
  lint) lint; ok "lint clean" ;;
  docs) docs ;;
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
    ok "binary: $CARGO_TARGET_DIR/release/ducklake-backend"
    ;;
  image) image "$@" ;;
  image-smoke) scripts/image-smoke.sh "$@" ;;
  push) push "$@" ;;
  help|-h|--help) usage ;;
  *) usage >&2; die "unknown command: $cmd" ;;
esac
