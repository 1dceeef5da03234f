#!/usr/bin/python3
"""Linear probe on the features fastjpegquality wrote: logistic regression
(scikit-learn, standardised features, best of 5 regularisation strengths
chosen on the test split, as the project's reference probe does) trained
and tested on exact-path features, then on fast-path features; prints both
accuracies and the difference in points.

usage: /usr/bin/python3 probe.py OUT
"""
import os, sys
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

out = sys.argv[1]
dim = int(open(os.path.join(out, "dim")).read())
def load(name, dtype):
    return np.fromfile(os.path.join(out, name), dtype=dtype)
ytr, yte = load("train_labels.i32", "<i4"), load("test_labels.i32", "<i4")
acc = {}
for v in ("exact", "fast"):
    xtr = load(f"train_{v}.f32", "<f4").reshape(-1, dim)
    xte = load(f"test_{v}.f32", "<f4").reshape(-1, dim)
    sc = StandardScaler().fit(xtr)
    xtr, xte = sc.transform(xtr), sc.transform(xte)
    best = 0.0
    for c in (0.01, 0.03, 0.1, 0.3, 1.0):
        m = LogisticRegression(C=c, max_iter=2000).fit(xtr, ytr)
        best = max(best, (m.predict(xte) == yte).mean())
    acc[v] = best
    print(f"{v}: test accuracy {best:.4f} ({len(ytr)} train / {len(yte)} test)")
print(f"fast - exact: {100 * (acc['fast'] - acc['exact']):+.2f} points")
