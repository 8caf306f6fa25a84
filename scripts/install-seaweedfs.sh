#!/usr/bin/env bash
# Builds SeaweedFS (an S3-compatible object store) from the Go module proxy, pinned, into
# ~/.cache/casescope-tools/bin/weed: the S3 evidence store of the ingest service is
# tested against it (the tests start a private `weed server -s3` on loopback).
# `go install` refuses this module (its go.mod has replace directives), so the module is
# downloaded and built in a copy of it. A few minutes the first time; idempotent.
set -euo pipefail

version=v0.0.0-20261109003541-7506e5f91cd6
tools=${CASESCOPE_TOOLS_DIR:-$HOME/.cache/casescope-tools}
weed="$tools/bin/weed"
if [ -x "$weed" ] && [ "$(cat "$tools/weed.version" 2>/dev/null)" = "$version" ]; then
  echo "SeaweedFS present: $weed ($version)"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "Go is missing: SeaweedFS (the S3 test server) cannot be built" >&2
  exit 1
fi
echo "building SeaweedFS $version (Go module proxy; a few minutes the first time)"
module_dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$version" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
build=$(mktemp -d)
trap 'chmod -R u+w "$build"; rm -rf "$build"' EXIT
cp -r "$module_dir/." "$build/"
chmod -R u+w "$build"
mkdir -p "$tools/bin"
(cd "$build" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$weed" ./weed)
echo "$version" >"$tools/weed.version"
echo "SeaweedFS built: $weed ($version)"
