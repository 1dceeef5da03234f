#!/usr/bin/env bash
# setup-test.sh: what the test suite needs beyond scripts/setup.sh, so that
# `make test` runs every test on a fresh machine:
#   - the Debian peers and data the tests compare against (as root, with
#     apt): numpy, PIL, onnx, scikit-learn, torch, torchvision and OpenCV for
#     python3, Fashion-MNIST, darknet's photos, and node/npm where missing
#   - onnxruntime-node (npm pack) in .deps/node, for TestNodeSnippet
#   - Azurite in .deps/azurite, for the azblob:// tests
# Without root or apt the packages are left to you: the tests that need them
# skip, saying what is missing (and fail under CI=true). Idempotent: what is
# installed is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
export DEBIAN_FRONTEND=noninteractive
log() { printf 'setup-test: %s\n' "$*" >&2; }

pkgs=(libturbojpeg0 python3-numpy python3-pil python3-onnx python3-sklearn
  python3-torch python3-torchvision python3-opencv dataset-fashion-mnist darknet)
missing=()
for p in "${pkgs[@]}"; do
  deb_installed "$p" || missing+=("$p")
done
# Debian's npm conflicts with a NodeSource nodejs (which bundles npm): ask
# apt for node and npm only where they are missing.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]}"
    apt-get update -qq
    apt_install log "${missing[@]}"
  else
    log "not installed (needs root and apt): ${missing[*]}; the tests that need them will say so"
  fi
fi

if command -v npm >/dev/null 2>&1; then
  # By npm pack: onnxruntime-node's install script reaches for hosts that
  # are not reachable offline. export_test finds it in .deps/node.
  npm_unpack .deps/node "onnxruntime-common@${ORT_VERSION:-1.24.1}" "onnxruntime-node@${ORT_VERSION:-1.24.1}"
  # Azurite (Azure Storage emulator) runs from its dependencies: an npm
  # install into .deps/azurite.
  ./scripts/setup-azurite.sh
else
  log "npm not found: onnxruntime-node and Azurite not installed; the tests that need them will say so"
fi
log "done"
