# lib.sh: functions the setup and demo scripts share. Source it.

# step prints a section heading: bold on a terminal, plain text anywhere
# else (logs, pipes, NO_COLOR, TERM=dumb), so captured output has no
# escape codes.
step() {
  if [ -t 1 ] && [ -z "${NO_COLOR:-}" ] && [ "${TERM:-dumb}" != dumb ]; then
    printf '\n\033[1m== %s\033[0m\n' "$*"
  else
    printf '\n== %s\n' "$*"
  fi
}

# deb_installed PKG reports (status 0) whether dpkg has PKG installed.
deb_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# apt_install LOG PKG... installs Debian packages with apt-get and judges
# the outcome by what dpkg then has installed, not by apt-get's status (a
# second apt-get racing for the lock fails although the first installs the
# package). When a package is still missing it prints apt's own last lines,
# the reason, and returns 1. LOG is a function that prints one message.
apt_install() {
  local log=$1; shift
  local out missing=()
  out=$(mktemp)
  if ! apt-get install -y -qq --no-install-recommends "$@" >"$out" 2>&1; then
    # A stale package list is the usual cause on a fresh machine: refresh
    # once and try again.
    apt-get update -qq >>"$out" 2>&1 || true
    apt-get install -y -qq --no-install-recommends "$@" >>"$out" 2>&1 || true
  fi
  for p in "$@"; do
    deb_installed "$p" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    "$log" "could not install ${missing[*]}; apt-get said:"
    tail -n 5 "$out" | sed 's/^/    /' >&2
    rm -f "$out"
    return 1
  fi
  rm -f "$out"
  return 0
}

# ort_record_file is where setup records the ONNX Runtime library it
# fetched, so that a headtune binary copied out of the repository finds it
# (the same rule as ort.RecordFile in backbone/ort).
ort_record_file() {
  if [ -n "${HEADTUNE_HOME:-}" ]; then
    printf '%s/onnxruntime-library\n' "$HEADTUNE_HOME"
  else
    printf '%s/headtune/onnxruntime-library\n' "${XDG_CONFIG_HOME:-$HOME/.config}"
  fi
}

# npm_unpack DIR PKG@VERSION... fetches packages with `npm pack` (never
# `npm install`, whose install scripts reach for unreachable hosts) and
# unpacks each as DIR/node_modules/NAME, so that NODE_PATH=DIR/node_modules
# finds them. Packages already unpacked at that version are kept.
npm_unpack() {
  local dir=$1; shift
  mkdir -p "$dir/node_modules"
  local spec name version tgz
  for spec in "$@"; do
    name=${spec%@*}; version=${spec##*@}
    if [ -f "$dir/node_modules/$name/package.json" ] && grep -q "\"version\": *\"$version\"" "$dir/node_modules/$name/package.json"; then
      continue
    fi
    tgz=$(cd "$dir" && npm pack --silent "$spec" | tail -n 1)
    rm -rf "$dir/node_modules/$name.tmp" && mkdir -p "$dir/node_modules/$name.tmp"
    tar -xzf "$dir/$tgz" -C "$dir/node_modules/$name.tmp" --strip-components=1
    rm -rf "$dir/node_modules/$name" && mv "$dir/node_modules/$name.tmp" "$dir/node_modules/$name"
    rm -f "$dir/$tgz"
  done
}
