#!/usr/bin/env bash
# doctor.sh: end-to-end check of `headtune doctor` on real image files.
# Fashion-MNIST (Debian dataset-fashion-mnist): 100 training images per
# class, 5% of them moved into a wrong class folder at random, 20 test
# images copied into train (same class, new name), 50 test images per
# class. Prints the precision and recall of the suspects list at its
# default cut-off and whether every copied image is reported as a leak.
#   scripts/smalldata/doctor.sh [OUT] [SEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-smalldata-out}"
SEED="${2:-1}"
HT="${HEADTUNE:-bin/headtune}"
export HEADTUNE_HOME="${HEADTUNE_HOME:-$PWD/$OUT/home}"
mkdir -p "$OUT"
"$HT" models pull mobilenetv2-imagenet >/dev/null
go run ./scripts/fashionmnist -out "$OUT/fm" -train 3000 -test 1000 2>/dev/null
DS="$OUT/doctor-$SEED"
rm -rf "$DS"
/usr/bin/python3 - "$OUT/fm" "$DS" "$SEED" <<'PY'
import os, random, shutil, sys, json
src, ds, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
classes = sorted(os.listdir(os.path.join(src, "train")))
truth = {}
for c in classes:
    files = sorted(os.listdir(os.path.join(src, "train", c)))[:100]
    for f in files:
        truth[("train", c, f)] = c
    tfiles = sorted(os.listdir(os.path.join(src, "test", c)))[:50]
    for f in tfiles:
        truth[("test", c, f)] = c
keys = sorted(k for k in truth if k[0] == "train")
flipped = set(rng.sample(keys, len(keys) // 20))
copies = rng.sample(sorted(k for k in truth if k[0] == "test"), 20)
placed = {}
for (split, c, f) in sorted(truth):
    dst_c = c
    if (split, c, f) in flipped:
        dst_c = rng.choice([x for x in classes if x != c])
    d = os.path.join(ds, split, dst_c)
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(src, split, c, f), os.path.join(d, f))
    placed[(split, c, f)] = os.path.join(split, dst_c, f)
for (split, c, f) in copies:
    shutil.copy(os.path.join(src, split, c, f), os.path.join(ds, "train", c, "copy-" + f))
json.dump({"flipped": sorted(placed[k] for k in flipped),
           "copies": [[os.path.join("train", c, "copy-" + f), os.path.join("test", c, f)] for (_, c, f) in copies]},
          open(ds + ".truth.json", "w"))
PY
"$HT" extract "$DS" --cache "$OUT/cache" --quiet
"$HT" doctor "$DS" --cache "$OUT/cache" --json --max 0 --seed "$SEED" > "$DS.doctor.json"
"$HT" doctor "$DS" --cache "$OUT/cache" --max 10 --seed "$SEED" --html "$DS.html" > "$DS.doctor.txt"
/usr/bin/python3 - "$DS" <<'PY'
import json, sys
ds = sys.argv[1]
truth = json.load(open(ds + ".truth.json"))
res = json.load(open(ds + ".doctor.json"))
paths, rep = res["paths"], res["report"]
sus = {paths[s["row"]] for s in rep["suspects"]}
flipped = set(truth["flipped"])
hit = len(sus & flipped)
print(f"suspects {len(sus)}, flipped {len(flipped)}: precision {hit/max(1,len(sus)):.3f}, recall {hit/len(flipped):.3f}")
leaks = {frozenset((paths[p["a"]], paths[p["b"]])) for p in rep["duplicates"] if p["kind"] == "leak"}
found = sum(frozenset(c) in leaks for c in truth["copies"])
print(f"copied test images reported as train/test leaks: {found} of {len(truth['copies'])} ({rep['counts']['Leaks']} leak pairs in all)")
PY
