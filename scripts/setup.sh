#!/usr/bin/env bash
# setup.sh: obtain everything headtune needs on a fresh machine.
#   - Go modules (through the module proxy)
#   - ONNX Runtime's CPU shared library, from the npm package onnxruntime-node
#     (npm pack + tar; never `npm install`, whose install script reaches for
#     hosts that are not reachable offline)
#   - onnxruntime-node and onnxruntime-common unpacked into
#     .deps/node_modules (npm pack + tar), the Node consumer the export
#     tests run (skip with HEADTUNE_SKIP_NODE=1)
#   - libturbojpeg (optional, faster JPEG decoding) where apt is usable
# Idempotent: a second run only checks that the files are there.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION="${ORT_VERSION:-1.24.1}"
DEPS_DIR="${HEADTUNE_DEPS:-$PWD/.deps}"
ORT_DIR="$DEPS_DIR/onnxruntime-$ORT_VERSION"
ORT_LIB="$ORT_DIR/libonnxruntime.so.1"

log() { printf 'setup: %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "go not found on PATH (need Go 1.26 or newer)"; exit 1
fi
go mod download

arch=$(uname -m)
case "$arch" in
  x86_64) ort_arch=x64 ;;
  aarch64|arm64) ort_arch=arm64 ;;
  *) log "unsupported architecture $arch"; exit 1 ;;
esac

if [ ! -s "$ORT_LIB" ]; then
  command -v npm >/dev/null 2>&1 || { log "npm not found: it is needed to fetch onnxruntime-node@$ORT_VERSION"; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  log "fetching onnxruntime-node@$ORT_VERSION with npm pack"
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
  tgz=$(ls "$tmp"/onnxruntime-node-*.tgz)
  tar -xzf "$tgz" -C "$tmp" "package/bin/napi-v6/linux/$ort_arch/libonnxruntime.so.1"
  mkdir -p "$ORT_DIR"
  mv "$tmp/package/bin/napi-v6/linux/$ort_arch/libonnxruntime.so.1" "$ORT_LIB.tmp"
  mv "$ORT_LIB.tmp" "$ORT_LIB"
fi
ln -sfn "onnxruntime-$ORT_VERSION" "$DEPS_DIR/onnxruntime"
log "ONNX Runtime $ORT_VERSION: $ORT_LIB"

# onnxruntime-node for the export tests' Node consumer (the README's Node
# snippet): the package's own JS, its linux binding and CPU library, and
# onnxruntime-common; nothing else is needed at run time.
NODE_DIR="$DEPS_DIR/node_modules"
if [ "${HEADTUNE_SKIP_NODE:-}" != 1 ] && [ ! -s "$NODE_DIR/onnxruntime-node/package.json" ]; then
  command -v npm >/dev/null 2>&1 || { log "npm not found: it is needed to fetch onnxruntime-node@$ORT_VERSION"; exit 1; }
  tmpn=$(mktemp -d)
  log "fetching onnxruntime-node@$ORT_VERSION and onnxruntime-common@$ORT_VERSION with npm pack"
  (cd "$tmpn" && npm pack --silent "onnxruntime-node@$ORT_VERSION" "onnxruntime-common@$ORT_VERSION" >/dev/null)
  mkdir -p "$tmpn/onnxruntime-node" "$tmpn/onnxruntime-common"
  tar -xzf "$tmpn"/onnxruntime-node-*.tgz -C "$tmpn/onnxruntime-node" --strip-components=1 \
    package/package.json package/dist "package/bin/napi-v6/linux/$ort_arch"
  tar -xzf "$tmpn"/onnxruntime-common-*.tgz -C "$tmpn/onnxruntime-common" --strip-components=1
  mkdir -p "$NODE_DIR"
  rm -rf "$NODE_DIR/onnxruntime-node" "$NODE_DIR/onnxruntime-common"
  mv "$tmpn/onnxruntime-common" "$NODE_DIR/onnxruntime-common"
  mv "$tmpn/onnxruntime-node" "$NODE_DIR/onnxruntime-node"
  rm -rf "$tmpn"
fi
[ -s "$NODE_DIR/onnxruntime-node/package.json" ] && log "onnxruntime-node: $NODE_DIR"

# libturbojpeg is optional: headtune loads it at run time when present and
# falls back to its pure-Go decoder otherwise.
if ! ldconfig -p 2>/dev/null | grep -q 'libturbojpeg.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing libturbojpeg0 (optional fast JPEG path)"
    (apt-get install -y -qq libturbojpeg0 >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libturbojpeg0 >/dev/null 2>&1; }) \
      || log "could not install libturbojpeg0; the pure-Go JPEG decoder will be used"
  else
    log "libturbojpeg0 not found; the pure-Go JPEG decoder will be used"
  fi
fi
log "done"
