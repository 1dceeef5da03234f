#!/usr/bin/python3
"""Benchmark headtune's heads against the reference linear probes.

Usage:
    /usr/bin/python3 scripts/bench_head.py DIR            # features exported by `headtune cache export-npy`
    /usr/bin/python3 scripts/bench_head.py --synthetic DIR  # first write a synthetic Gaussian mixture to DIR

DIR holds Xtrain.npy [N,D] float32, ytrain.npy [N] int, Xtest.npy, ytest.npy
and optionally classes.txt. Every method trains on exactly Xtrain/ytrain and
is scored on Xtest/ytest:

  * scikit-learn LogisticRegression(lbfgs, C=1, max_iter=1000) on
    StandardScaler features (the linear-probe protocol of CLIP/DINOv2);
  * PyTorch nn.Linear + Adam (lr 1e-3, batch 256, 30 epochs) on the same
    standardised features;
  * headtune's linear (L-BFGS) and MLP heads, through scripts/benchhead.

Wall times include standardisation. All runs use 2 threads. Prints one
markdown table; ratios are relative to headtune's linear head.
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic(d, n_train=10000, n_test=2000, dim=384, k=10, seed=0):
    """A k-class Gaussian mixture with uneven feature scales and offsets."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 0.12
    scale = np.exp(rng.normal(size=dim))
    off = rng.normal(size=dim) * 5
    os.makedirs(d, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, k, n)
        x = ((centres[y] + rng.normal(size=(n, dim))) * scale + off).astype(np.float32)
        np.save(os.path.join(d, "X%s.npy" % name), x)
        np.save(os.path.join(d, "y%s.npy" % name), y.astype(np.int64))
    with open(os.path.join(d, "classes.txt"), "w") as f:
        f.write("\n".join("class%d" % i for i in range(k)) + "\n")


def run_sklearn(Xtr, ytr, Xte, yte):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    t0, c0 = time.perf_counter(), time.process_time()
    sc = StandardScaler().fit(Xtr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=1000).fit(sc.transform(Xtr), ytr)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    acc = clf.score(sc.transform(Xte), yte)
    return dict(name="scikit-learn LogisticRegression (lbfgs)", accuracy=acc, seconds=secs, cpu_seconds=cpu,
                iterations=int(np.max(clf.n_iter_)))


def run_torch(Xtr, ytr, Xte, yte, epochs=30, seed=0):
    import torch
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    mu, sd = Xtr.mean(0), Xtr.std(0)
    sd[sd == 0] = 1
    xt = torch.from_numpy((Xtr - mu) / sd)
    yt = torch.from_numpy(ytr.astype(np.int64))
    k = int(ytr.max()) + 1
    model = torch.nn.Linear(xt.shape[1], k)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    n = xt.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, 256):
            idx = perm[i:i + 256]
            opt.zero_grad()
            loss = lossf(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    with torch.no_grad():
        pred = model(torch.from_numpy((Xte - mu) / sd)).argmax(1).numpy()
    return dict(name="PyTorch nn.Linear + Adam (%d epochs)" % epochs, accuracy=float((pred == yte).mean()),
                seconds=secs, cpu_seconds=cpu, iterations=epochs * ((n + 255) // 256))


def run_headtune(d, kinds):
    exe = os.path.join(REPO, "scripts", "benchhead", "benchhead")
    subprocess.run(["go", "build", "-o", exe, "./scripts/benchhead"], cwd=REPO, check=True)
    out = subprocess.run([exe, "-dir", d, "-kinds", kinds], check=True, stdout=subprocess.PIPE,
                         env=dict(os.environ, GOMAXPROCS="2")).stdout
    os.remove(exe)
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--synthetic", action="store_true", help="write a synthetic data set to DIR first")
    ap.add_argument("--kinds", default="linear,mlp", help="headtune heads (linear, linear-adam, mlp)")
    ap.add_argument("--skip", default="", help="comma-separated peers to skip: sklearn, torch")
    args = ap.parse_args()
    if args.synthetic:
        synthetic(args.dir)
    Xtr = np.load(os.path.join(args.dir, "Xtrain.npy")).astype(np.float32, copy=False)
    ytr = np.load(os.path.join(args.dir, "ytrain.npy"))
    Xte = np.load(os.path.join(args.dir, "Xtest.npy")).astype(np.float32, copy=False)
    yte = np.load(os.path.join(args.dir, "ytest.npy"))
    skip = set(filter(None, args.skip.split(",")))
    rows = run_headtune(args.dir, args.kinds)
    if "sklearn" not in skip:
        rows.append(run_sklearn(Xtr, ytr, Xte, yte))
    if "torch" not in skip:
        rows.append(run_torch(Xtr, ytr, Xte, yte))
    ref = rows[0]
    print("features: train %d x %d, test %d, %d classes (%s)" % (Xtr.shape[0], Xtr.shape[1], Xte.shape[0],
                                                              int(ytr.max()) + 1, args.dir))
    print()
    print("| method | test accuracy | Δ vs headtune linear (points) | wall time (s) | wall / headtune linear "
          "| CPU time (s) | CPU / headtune linear | iterations |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print("| %s | %.4f | %+.2f | %.2f | %.2fx | %.2f | %.2fx | %s |" % (
            r["name"], r["accuracy"], 100 * (r["accuracy"] - ref["accuracy"]), r["seconds"],
            r["seconds"] / ref["seconds"], r["cpu_seconds"], r["cpu_seconds"] / ref["cpu_seconds"],
            r.get("iterations", "")))
    print()
    print("Wall and CPU times include standardisation; all methods use at most 2 threads. "
          "On a shared machine compare CPU times as well as wall times.")


if __name__ == "__main__":
    sys.exit(main())
