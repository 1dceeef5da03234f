#!/usr/bin/env bash
# domainguard.sh: how the head's "outside the training data" guard behaves,
# measured with the real CLI (README, small datasets). Two heads on
# MobileNetV2-block10 features of Fashion-MNIST:
#   small: 9 training images per class of 4 classes (36, the issue's case)
#   large: 5400 training images of 10 classes
# Each predicts held-out Fashion-MNIST test images (same distribution: few
# should be flagged) and the 7 photos of Debian's darknet package (another
# distribution: all should be), and the script prints per set how many rows
# came out outside, the range of their distance ratios, and the range of
# top probabilities.
#   usage: scripts/domainguard.sh [OUT]   (needs `make build`, dataset-fashion-mnist, darknet)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-.deps/domainguard}"
HT="${HEADTUNE:-bin/headtune}"
export HEADTUNE_HOME="$PWD/$OUT/home"
mkdir -p "$OUT"
"$HT" models pull --default --quiet >/dev/null
[ -d "$OUT/fm" ] || go run ./scripts/fashionmnist -out "$OUT/fm" -train 6000 -test 2000
photos=(/usr/share/darknet/data/{dog,eagle,giraffe,horses,kite,person,scream}.jpg)

summary() { # CSV with header path,class,probability,top_k,error,set,outside
  /usr/bin/python3 - "$1" "$2" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
out = [float(r["outside"]) for r in rows if r["outside"]]
top = [float(r["probability"]) for r in rows]
rng = lambda v: f"{min(v):.2f}-{max(v):.2f}" if v else "-"
print(f"{sys.argv[2]:<34} {len(out):>4} of {len(rows):<5} outside  ratio {rng(out):<11}  top probability {rng(top)}")
PY
}

for setup in small large; do
  ds="$OUT/$setup"
  rm -rf "$ds"
  if [ $setup = small ]; then
    for c in tshirt_top trouser pullover dress; do
      mkdir -p "$ds/train/$c" "$ds/test/$c"
      ls "$OUT/fm/train/$c" | head -9 | while read -r f; do cp "$OUT/fm/train/$c/$f" "$ds/train/$c/"; done
      ls "$OUT/fm/test/$c" | head -3 | while read -r f; do cp "$OUT/fm/test/$c/$f" "$ds/test/$c/"; done
    done
    held=("$OUT"/fm/test/{tshirt_top,trouser,pullover,dress})
  else
    mkdir -p "$ds"
    ln -s "$PWD/$OUT/fm/train" "$ds/train"
    held=("$OUT"/fm/test)
  fi
  "$HT" extract "$ds" --cache "$OUT/cache" --quiet >/dev/null
  "$HT" train --cache "$OUT/cache" --head "$OUT/$setup.head" --seed 1 --quiet >/dev/null
  "$HT" predict --head "$OUT/$setup.head" --quiet -o "$OUT/$setup-held.csv" "${held[@]}"
  "$HT" predict --head "$OUT/$setup.head" --quiet -o "$OUT/$setup-photos.csv" "${photos[@]}"
  summary "$OUT/$setup-held.csv" "$setup head, Fashion-MNIST test"
  summary "$OUT/$setup-photos.csv" "$setup head, darknet photos"
done
