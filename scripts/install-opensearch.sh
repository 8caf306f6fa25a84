#!/usr/bin/env bash
# Installs the single-node OpenSearch the test suites start: OpenSearch 2.19.6's server
# jar and modules from Maven Central (scripts/opensearch/pom.xml) plus a small launcher
# (scripts/opensearch/TestNode.java), into
#   ${CASESCOPE_OPENSEARCH_HOME:-$HOME/.cache/casescope-opensearch}/<hash of those files>/
# with lib/ (jars), classes/ (the compiled launcher) and a `ready` stamp. The testkit
# (crates/testkit) looks there. Idempotent: does nothing when the stamp is present.
#
# Needs Java 17 (javac) and Maven. Without them it says so and exits 0, so a developer
# without Java still runs every other test (the OpenSearch ones then say they were
# skipped); with CASESCOPE_TEST_REQUIRE_OPENSEARCH=1 (as CI sets) it installs them from
# Debian when run as root, and otherwise fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_dir="$here/opensearch"
root="${CASESCOPE_OPENSEARCH_HOME:-$HOME/.cache/casescope-opensearch}"
key=$(cat "$source_dir/pom.xml" "$source_dir/TestNode.java" | sha256sum | cut -c1-16)
target="$root/$key"
require="${CASESCOPE_TEST_REQUIRE_OPENSEARCH:-0}"

if [ -f "$target/ready" ]; then
  echo "OpenSearch test node present: $target"
  exit 0
fi

if ! command -v javac >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  if [ "$require" != "1" ]; then
    echo "note: Java 17 (javac) or Maven missing: the OpenSearch tests will be skipped" \
      "(install openjdk-17-jdk-headless and maven, or set CASESCOPE_TEST_OPENSEARCH_URL)"
    exit 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "OpenSearch is required (CASESCOPE_TEST_REQUIRE_OPENSEARCH=1) but Java 17 or Maven" \
      "is missing and installing them needs root: sudo apt-get install openjdk-17-jdk-headless maven" >&2
    exit 1
  fi
  echo "installing Java 17 and Maven (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi

echo "installing the OpenSearch 2.19.6 test node from Maven Central into $target"
staging="$root/.staging-$$"
rm -rf "$staging"
mkdir -p "$staging/lib" "$staging/classes"
trap 'rm -rf "$staging"' EXIT
mvn -B -q -f "$source_dir/pom.xml" \
  org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$staging/lib"
javac -nowarn -cp "$staging/lib/*" -d "$staging/classes" "$source_dir/TestNode.java"
date -u +%FT%TZ > "$staging/ready"
rm -rf "$target"
mv "$staging" "$target"
trap - EXIT
# Older installs (another pom or launcher) are no longer used.
find "$root" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
echo "OpenSearch test node installed: $target"
