#!/usr/bin/env bash
# setup.sh: obtain everything headtune needs on a fresh machine.
#   - Go modules (through the module proxy)
#   - ONNX Runtime's CPU shared library, from the npm package onnxruntime-node
#     (npm pack + tar; never `npm install`, whose install script reaches for
#     hosts that are not reachable offline)
#   - libturbojpeg (optional, faster JPEG decoding) where apt is usable
# Idempotent: a second run only checks that the files are there.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION="${ORT_VERSION:-1.24.1}"
DEPS_DIR="${HEADTUNE_DEPS:-$PWD/.deps}"
ORT_DIR="$DEPS_DIR/onnxruntime-$ORT_VERSION"
ORT_LIB="$ORT_DIR/libonnxruntime.so.1"

log() { printf 'setup: %s\n' "$*" >&2; }
. scripts/lib.sh

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
# Record where the library is, so that bin/headtune copied elsewhere (for
# example to ~/bin) still finds it. HEADTUNE_NO_RECORD=1 skips this.
if [ -z "${HEADTUNE_NO_RECORD:-}" ]; then
  rec=$(ort_record_file)
  if mkdir -p "$(dirname "$rec")" 2>/dev/null && printf '%s\n' "$(cd "$ORT_DIR" && pwd)/libonnxruntime.so.1" >"$rec.tmp" 2>/dev/null && mv "$rec.tmp" "$rec"; then
    log "recorded the library's location in $rec"
  else
    log "could not record the library's location in $rec; a headtune binary outside this repository needs --ort-lib or HEADTUNE_ORT_LIB"
  fi
fi

# libturbojpeg is optional: headtune loads it at run time when present and
# falls back to its pure-Go decoder otherwise.
if ! deb_installed libturbojpeg0 && ! ldconfig -p 2>/dev/null | grep -q 'libturbojpeg.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing libturbojpeg0 (optional fast JPEG path)"
    if apt_install log libturbojpeg0; then
      log "libturbojpeg0 installed"
    else
      log "the pure-Go JPEG decoder will be used"
    fi
  else
    log "libturbojpeg0 not found; the pure-Go JPEG decoder will be used"
  fi
fi
log "done"
