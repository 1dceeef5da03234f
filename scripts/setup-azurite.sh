#!/usr/bin/env bash
# setup-azurite.sh: Azurite, Microsoft's Azure Storage emulator, for the
# azblob:// tests (go test -tags azure; objstore/objstoretest starts its
# blob service on 127.0.0.1 with node). Unlike the other npm packages
# headtune uses it runs from its dependencies, so this is an `npm install`
# (373 packages, 186 MB, 14 s with a warm npm cache), with install scripts off; it goes to
# .deps/azurite and is kept while the version matches. scripts/setup-test.sh
# (make test) calls it; without it the Azure tests skip, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
# 3.34.0: Azurite 3.35 and newer ask for node 22 (package.json engines),
# 3.34.0 for node 10 or newer, so Debian's node (18 on bookworm) and the
# NodeSource 20 of the CI image both run it.
AZURITE_VERSION="${AZURITE_VERSION:-3.34.0}"
DEPS_DIR="${HEADTUNE_DEPS:-$PWD/.deps}"
dir="$DEPS_DIR/azurite"
log() { printf 'setup-azurite: %s\n' "$*" >&2; }

pkg="$dir/node_modules/azurite/package.json"
if [ -f "$pkg" ] && grep -q "\"version\": *\"$AZURITE_VERSION\"" "$pkg"; then
  log "Azurite $AZURITE_VERSION: $dir"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { log "npm not found: it is needed to install azurite@$AZURITE_VERSION"; exit 1; }
command -v node >/dev/null 2>&1 || { log "node not found: it is needed to run Azurite"; exit 1; }
log "installing azurite@$AZURITE_VERSION into $dir (npm install, install scripts off)"
rm -rf "$dir.tmp"
npm install --prefix "$dir.tmp" --ignore-scripts --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2
rm -rf "$dir"
mv "$dir.tmp" "$dir"
log "Azurite $AZURITE_VERSION: $dir"
