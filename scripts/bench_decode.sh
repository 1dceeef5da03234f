#!/usr/bin/env bash
# bench_decode.sh: JPEG decode throughput, Go (image/jpeg, libjpeg-turbo via
# imaging/turbojpeg, the imaging package's tensor path with FastJPEG off/on)
# beside PIL (with and without draft) and OpenCV (with and without
# IMREAD_REDUCED_COLOR_2), in one run, on the same files, each pinned to one
# core. Prints one table of images/s (median of REPEATS passes) with ratios.
#
# The data set is 200 JPEGs of 640x480 at quality 90 (4:2:0), cut from the
# photos of Debian's darknet package (random 4:3 crops of 40-100% of the
# area, random mirror, Lanczos to 640x480). It is made once under
# BENCH_DECODE_DIR (default .deps/bench_decode).
#
# Environment: BENCH_DECODE_DIR, REPEATS (5), SIZE (224), CPU (0),
# PYTHON (/usr/bin/python3, which has PIL, numpy and OpenCV on Debian).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${BENCH_DECODE_DIR:-$PWD/.deps/bench_decode}"
REPEATS="${REPEATS:-5}"
SIZE="${SIZE:-224}"
CPU="${CPU:-0}"
PYTHON="${PYTHON:-/usr/bin/python3}"
N=200

log() { printf 'bench_decode: %s\n' "$*" >&2; }

if [ "$(ls "$DIR"/*.jpg 2>/dev/null | wc -l)" -lt "$N" ]; then
  tmp=$(mktemp -d)
  log "making $N test JPEGs in $DIR from Debian darknet's sample photos"
  (cd "$tmp" && apt-get download darknet >/dev/null 2>&1) || { log "apt-get download darknet failed"; exit 1; }
  dpkg -x "$tmp"/darknet_*.deb "$tmp/x"
  mkdir -p "$DIR"
  "$PYTHON" - "$tmp/x/usr/share/darknet/data" "$DIR" "$N" <<'PY'
import glob, os, random, sys
from PIL import Image
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
photos = [Image.open(p).convert("RGB") for p in sorted(glob.glob(os.path.join(src, "*.jpg")))]
if not photos:
    sys.exit(f"no photos in {src}")
rng = random.Random(1)
for i in range(n):
    im = photos[i % len(photos)]
    w, h = im.size
    area = rng.uniform(0.4, 1.0) * w * h
    cw = min(w, int((area * 4 / 3) ** 0.5)); ch = min(h, int(cw * 3 / 4)); cw = int(ch * 4 / 3)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = im.crop((x, y, x + cw, y + ch)).resize((640, 480), Image.LANCZOS)
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    out.save(os.path.join(dst, f"img{i:03d}.jpg"), quality=90)
PY
fi

pin=()
if command -v taskset >/dev/null 2>&1; then pin=(taskset -c "$CPU"); else log "taskset not found: not pinned"; fi

bin="${TMPDIR:-/tmp}/headtune-benchdecode.$$"
go build -o "$bin" ./scripts/benchdecode
results=$(mktemp)
trap 'rm -f "$results" "$bin"; [ -n "${tmp:-}" ] && rm -rf "$tmp"' EXIT
# Go and Python passes alternate, so that load from other processes on a
# shared machine hits both sides alike; each case's figure is the median
# over the REPEATS rounds.
for r in $(seq 1 "$REPEATS"); do
  log "round $r/$REPEATS: Go"
  GOMAXPROCS=1 "${pin[@]}" "$bin" -dir "$DIR" -repeats 1 -size "$SIZE" >>"$results"
  log "round $r/$REPEATS: Python"
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "${pin[@]}" "$PYTHON" scripts/bench_decode.py "$DIR" --repeats 1 --size "$SIZE" >>"$results"
done

"$PYTHON" - "$results" "$SIZE" "$(ls "$DIR"/*.jpg | wc -l)" "$REPEATS" <<'PY'
import statistics, sys
order, wall, cpu = [], {}, {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) != 3:
        continue
    n = f[0]
    if n not in wall:
        order.append(n); wall[n] = []; cpu[n] = []
    wall[n].append(float(f[1])); cpu[n].append(float(f[2]))
size, nfiles, repeats = sys.argv[2], sys.argv[3], sys.argv[4]
W = {n: statistics.median(v) for n, v in wall.items()}
C = {n: statistics.median(v) for n, v in cpu.items()}
def kind(n):
    return "tensor" if "tensor" in n else "decode"
base = {"decode": "Go image/jpeg decode", "tensor": "Go image/jpeg + draw.ApproxBiLinear tensor"}
peer = {}
for k in ("decode", "tensor"):
    c = [n for n in order if not n.startswith("Go") and kind(n) == k]
    peer[k] = max(c, key=lambda n: C[n]) if c else None
print(f"\n{nfiles} JPEGs 640x480 q90; one core each (taskset, GOMAXPROCS=1); medians of {repeats} alternating rounds")
print(f"tensor = {size}x{size} float32 HWC 0..1 after a bilinear squash resize; decode = the library's own decoded image")
print("img/s cpu = images per CPU-second of the process (per-core throughput); img/s wall = per elapsed second")
w = max(len(n) for n in order)
print(f"{'case':<{w}}  {'img/s cpu':>9}  {'img/s wall':>10}  {'x Go base':>9}  {'x best peer':>11}")
for n in order:
    k = kind(n)
    b = C.get(base[k]); p = C.get(peer[k]) if peer[k] else None
    fb = f"{C[n] / b:.2f}" if b else "-"
    fp = f"{C[n] / p:.2f}" if p else "-"
    print(f"{n:<{w}}  {C[n]:9.1f}  {W[n]:10.1f}  {fb:>9}  {fp:>11}")
print(f"x Go base: against '{base['decode']}' / '{base['tensor']}'; x best peer: against the fastest PIL/OpenCV case of the same kind ({peer['decode']} / {peer['tensor']}), by CPU rate")
PY
