#!/usr/bin/python3
"""Accuracy table of scripts/bench_accuracy.sh (run that script, not this one).

    bench_accuracy.py --features DIR --raw DIR --views VIEW_FEATURES VIEW_RAW \
        --headtune RESULTS.jsonl [--backbone NAME]

--features and --raw are folders written by `headtune cache export-npy`
(Xtrain/ytrain/Xtest/ytest.npy) from two extracts of the same dataset: the
backbone's features, and the raw pixels (a one-node ONNX Flatten of the
28x28 grey image, 0..255). Both are split by headtune with the same seed, and
the two view files must list the same images in the same order with the same
labels and split folders, which is checked first: the rows of both .npy sets
then are the same images.

--headtune holds one JSON object per line, {"name", "accuracy", "seconds"},
from `headtune train` (written by bench_accuracy.sh).

scikit-learn follows the usual linear-probe protocol, the same as
scripts/bench_head.py: StandardScaler fitted on the training rows, then
LogisticRegression(lbfgs, C=1, max_iter=1000) (multinomial), trained on the
train rows only and scored on the test rows. Prints one markdown table.
"""
import argparse
import csv
import json
import os
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np  # noqa: E402


def load(d):
    out = {}
    for part in ("train", "test"):
        for k in ("X", "y"):
            p = os.path.join(d, "%s%s.npy" % (k, part))
            try:
                out[k + part] = np.load(p)
            except OSError as e:
                sys.exit("bench_accuracy.py: read %s: %s" % (p, e))
    if len(out["Xtrain"]) != len(out["ytrain"]) or len(out["Xtest"]) != len(out["ytest"]):
        sys.exit("bench_accuracy.py: %s: X and y row counts differ" % d)
    return out


def view_rows(p):
    try:
        with open(p, newline="") as f:
            return [(r["path"], r["label"], r["split"]) for r in csv.DictReader(f)]
    except (OSError, KeyError) as e:
        sys.exit("bench_accuracy.py: read view %s: %s" % (p, e))


def sklearn_probe(d):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    t = time.perf_counter()
    sc = StandardScaler().fit(d["Xtrain"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=1.0, max_iter=1000).fit(sc.transform(d["Xtrain"]), d["ytrain"])
    secs = time.perf_counter() - t
    return float(clf.score(sc.transform(d["Xtest"]), d["ytest"])), secs, int(np.max(clf.n_iter_))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--views", nargs=2, required=True, metavar=("VIEW_FEATURES", "VIEW_RAW"))
    ap.add_argument("--headtune", required=True)
    ap.add_argument("--backbone", default="mobilenetv2-imagenet")
    a = ap.parse_args()

    va, vb = view_rows(a.views[0]), view_rows(a.views[1])
    if va != vb:
        diff = next((i for i, (x, y) in enumerate(zip(va, vb)) if x != y), min(len(va), len(vb)))
        sys.exit("bench_accuracy.py: the two extracts list different images (first difference at row %d: %s vs %s)"
                 % (diff, va[diff] if diff < len(va) else "-", vb[diff] if diff < len(vb) else "-"))
    feat, raw = load(a.features), load(a.raw)
    for k in ("ytrain", "ytest"):
        if not np.array_equal(feat[k], raw[k]):
            sys.exit("bench_accuracy.py: %s differs between %s and %s: not the same split" % (k, a.features, a.raw))
    if raw["Xtrain"].shape[1] != 28 * 28:
        sys.exit("bench_accuracy.py: %s: raw pixels are %d-d, want 784" % (a.raw, raw["Xtrain"].shape[1]))

    rows = []
    with open(a.headtune) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append((r["name"], r["accuracy"], r.get("seconds")))
    acc, secs, it = sklearn_probe(feat)
    rows.append(("scikit-learn LogisticRegression (lbfgs, C=1), %s features" % a.backbone, acc, secs))
    acc, secs, it = sklearn_probe(raw)
    rows.append(("scikit-learn LogisticRegression (lbfgs, C=1), raw 28x28 pixels", acc, secs))

    ntr, nte, dim = len(feat["ytrain"]), len(feat["ytest"]), feat["Xtrain"].shape[1]
    k = int(max(feat["ytrain"].max(), feat["ytest"].max())) + 1
    print("Fashion-MNIST: %d train / %d test images, %d classes; %s features %d-d; same rows for every method"
          % (ntr, nte, k, a.backbone, dim))
    print()
    ref = rows[0][1]
    print("| method | test accuracy | Δ vs headtune linear (points) | training time (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, acc, secs in rows:
        print("| %s | %.4f | %+.2f | %s |" % (name, acc, 100 * (acc - ref), "%.2f" % secs if secs is not None else "-"))


if __name__ == "__main__":
    sys.exit(main())
