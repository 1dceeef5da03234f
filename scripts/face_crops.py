#!/usr/bin/python3
"""Face crops for scripts/bench_face_backbones.sh (README, face backbones).

usage: headtune --json faces PHOTOS > faces.json
       /usr/bin/python3 scripts/face_crops.py faces.json PHOTOS_PARENT OUT JITTERS

Reads the faces `headtune faces --json` found (paths relative to
PHOTOS_PARENT), writes OUT/crops/face_NN.png (upright squares, the box's
larger side plus 25% on each side) and JITTERS crops per face into OUT/jit/a
and OUT/jit/b (alternating; extract wants two classes), with the square
scaled 1.3-1.7x the box and shifted up to 5%, as JPEG quality 92, seed 1.
"""
import json, os, random, sys
from PIL import Image

faces, root, out, jitters = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
d = json.load(open(faces))
for sub in ("crops", "jit/a", "jit/b"):
    os.makedirs(os.path.join(out, sub), exist_ok=True)
random.seed(1)
n = k = 0
for im in d["images"]:
    img = Image.open(os.path.join(root, im["path"])).convert("RGB")
    for f in im["faces"]:
        b = f["box"]
        side, cx, cy = max(b["w"], b["h"]), b["x"] + b["w"] / 2, b["y"] + b["h"] / 2
        s = side * 1.5
        img.crop((round(cx - s / 2), round(cy - s / 2), round(cx + s / 2), round(cy + s / 2))).save(os.path.join(out, "crops", "face_%02d.png" % n))
        n += 1
        for _ in range(jitters):
            s = side * random.uniform(1.3, 1.7)
            x, y = cx + random.uniform(-.05, .05) * s, cy + random.uniform(-.05, .05) * s
            img.crop((round(x - s / 2), round(y - s / 2), round(x + s / 2), round(y + s / 2))).save(
                os.path.join(out, "jit", "ab"[k % 2], "f%03d.jpg" % k), quality=92)
            k += 1
print(n, "faces,", k, "jittered crops")
