#!/usr/bin/python3
"""Decode throughput of PIL and OpenCV (both on libjpeg-turbo) on a folder
of JPEGs, for comparison with scripts/benchdecode (Go). Run it through
scripts/bench_decode.sh, which pins both to one core.

Every case works on the file bytes already in memory and ends in what a
model would receive: "decode" stops at the library's decoded RGB/BGR
image; "tensor" also resizes (bilinear) to 224x224, converts to RGB and
to float32 HWC in 0..1. Prints one line per case: name<TAB>images per
wall-clock second<TAB>images per CPU second (process time), medians of the
repeats.

usage: /usr/bin/python3 bench_decode.py DIR [--repeats N] [--size 224]
"""
import argparse
import glob
import io
import os
import statistics
import sys
import time

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--size", type=int, default=224)
args = ap.parse_args()
S = args.size

files = sorted(glob.glob(os.path.join(args.dir, "*.jpg")))
if not files:
    sys.exit(f"bench_decode.py: no .jpg files in {args.dir}")
blobs = [open(f, "rb").read() for f in files]
scale = np.float32(1 / 255)

cases = {}
try:
    from PIL import Image

    def pil_decode(b):
        im = Image.open(io.BytesIO(b))
        im.load()
        return im

    def pil_tensor(b):
        im = Image.open(io.BytesIO(b)).convert("RGB")
        return np.asarray(im.resize((S, S), Image.BILINEAR), dtype=np.float32) * scale

    def pil_draft_decode(b):
        im = Image.open(io.BytesIO(b))
        im.draft("RGB", (S, S))  # DCT-domain 1/2, 1/4, 1/8 keeping >= SxS
        im.load()
        return im

    def pil_draft_tensor(b):
        im = Image.open(io.BytesIO(b))
        im.draft("RGB", (S, S))
        im = im.convert("RGB")
        return np.asarray(im.resize((S, S), Image.BILINEAR), dtype=np.float32) * scale

    import PIL
    v = PIL.__version__
    cases[f"PIL {v} decode"] = pil_decode
    cases[f"PIL {v} draft decode"] = pil_draft_decode
    cases[f"PIL {v} tensor (bilinear)"] = pil_tensor
    cases[f"PIL {v} draft + tensor (bilinear)"] = pil_draft_tensor
except ImportError as e:
    print(f"bench_decode.py: PIL unavailable: {e}", file=sys.stderr)

try:
    import cv2
    cv2.setNumThreads(1)

    def cv_decode(b):
        return cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)

    def cv_reduced_decode(b):
        return cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)

    def cv_tensor(b, flag=cv2.IMREAD_COLOR):
        im = cv2.imdecode(np.frombuffer(b, np.uint8), flag)
        im = cv2.resize(im, (S, S), interpolation=cv2.INTER_LINEAR)
        im = cv2.cvtColor(im, cv2.COLOR_BGR2RGB)
        return im.astype(np.float32) * scale

    def cv_reduced_tensor(b):
        # A fixed reduction, as OpenCV offers it; 1/2 keeps 640x480 above 224.
        return cv_tensor(b, cv2.IMREAD_REDUCED_COLOR_2)

    v = cv2.__version__
    cases[f"OpenCV {v} decode"] = cv_decode
    cases[f"OpenCV {v} reduced_2 decode"] = cv_reduced_decode
    cases[f"OpenCV {v} tensor (linear)"] = cv_tensor
    cases[f"OpenCV {v} reduced_2 + tensor (linear)"] = cv_reduced_tensor
except ImportError as e:
    print(f"bench_decode.py: OpenCV unavailable: {e}", file=sys.stderr)

for name, fn in cases.items():
    for b in blobs[:10]:  # warm up
        fn(b)
    wall, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for b in blobs:
            fn(b)
        wall.append(len(blobs) / (time.perf_counter() - t0))
        cpu.append(len(blobs) / max(time.process_time() - c0, 1e-9))
    print(f"{name}\t{statistics.median(wall):.1f}\t{statistics.median(cpu):.1f}", flush=True)
