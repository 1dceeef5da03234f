#!/usr/bin/python3
"""Peer side of scripts/bench_peers.sh: PyTorch eager and OpenCV DNN feature
extraction, the machine's FP32 peak, backbone FLOPs, and the final report.

Subcommands (all print JSON lines on stdout, one per measurement, unless
noted; everything runs with --threads threads):

  torch  --images DIR --backbone B [--onnx F] ...
      PyTorch eager: PIL decode + torchvision transforms (Resize((S,S)) squash,
      bilinear with PIL's antialias, ToTensor, Normalize for "imagenet") in a
      DataLoader with --workers worker processes, the torchvision module of the
      same architecture with random weights, torch.set_num_threads(threads),
      torch.inference_mode. B is mobilenetv2-imagenet (torchvision
      mobilenet_v2: features[0:11] + features[11].conv[0:2], i.e. up to and
      including block_10's depthwise conv + BN + ReLU6, then global average
      pooling: the exact layers of headtune's 384-d cut of Keras MobileNetV2,
      BatchNorm kept as separate eager modules) or a torchvision name
      (resnet18, resnet50, ...: fc replaced by Identity, so the module ends at
      the pooled features like headtune's cut).
  opencv --images DIR --onnx F --layout NHWC|NCHW --norm unit|imagenet ...
      OpenCV DNN (cv2.dnn.readNetFromONNX, cv2.setNumThreads(threads)),
      cv2.imread + cvtColor(BGR->RGB) + cv2.resize(INTER_LINEAR, squash) in a
      ThreadPoolExecutor of --workers threads that decodes ahead while the
      network runs on the main thread.
  peak   best FP32 GFLOP/s of torch.mm and numpy matmul (2048x2048x2048,
         median of 5 after a warm-up) with --threads threads.
  flops  --onnx F [--backbone B]: GFLOP per image counted from the ONNX graph
         (2 x multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul,
         shapes from onnx.shape_inference with batch 1), and with --backbone
         the same count on the PyTorch eager module (forward hooks).
  report RESULTS.jsonl: the markdown table (not JSON).

Each peer worker first loads its model and runs one warm-up batch (not
timed), then measures three things on the same files:

  decode  decode + resize + normalise of every image into a float32 tensor,
          on one thread (ms per image: the per-core cost of preprocessing);
  infer   inference only on the tensors prepared by `decode` (images/s);
  e2e     end to end from file names to features (images/s), as a user of
          that library would write it.
"""
import argparse
import glob
import json
import os
import statistics
import sys
import time


def emit(**kw):
    print(json.dumps(kw), flush=True)


def list_images(d, limit):
    paths = sorted(glob.glob(os.path.join(d, "*.jpg")) + glob.glob(os.path.join(d, "*.jpeg")))
    if not paths:
        sys.exit("bench_peers.py: no .jpg files in %s" % d)
    return paths[:limit] if limit > 0 else paths


MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- PyTorch
def torch_module(torch, torchvision, backbone):
    torch.manual_seed(0)
    if backbone == "mobilenetv2-imagenet":
        m = torchvision.models.mobilenet_v2(weights=None)
        b11 = m.features[11]  # Keras block_10: 64 -> 384 expand, depthwise 3x3, (project cut off)
        body = torch.nn.Sequential(*m.features[:11], b11.conv[0], b11.conv[1])
        return torch.nn.Sequential(body, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1)).eval()
    ctor = getattr(torchvision.models, backbone.replace("-", "_"), None)
    if ctor is None:
        sys.exit("bench_peers.py: torchvision %s has no %s" % (torchvision.__version__, backbone))
    m = ctor(weights=None)
    if hasattr(m, "fc"):
        m.fc = torch.nn.Identity()
    elif hasattr(m, "classifier"):
        m.classifier = torch.nn.Identity()
    return m.eval()


def torch_flops(torch, module, size):
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total[0] += 2 * out.numel() * k
        elif isinstance(mod, torch.nn.Linear):
            total[0] += 2 * out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in module.modules()
          if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.inference_mode():
        module(torch.zeros(1, 3, size, size))
    for h in hs:
        h.remove()
    return total[0] / 1e9


def run_torch(a):
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms as T

    torch.set_num_threads(a.threads)
    paths = list_images(a.images, a.limit)
    model = torch_module(torch, torchvision, a.backbone)
    steps = [T.Resize((a.size, a.size), interpolation=T.InterpolationMode.BILINEAR), T.ToTensor()]
    if a.norm == "imagenet":
        steps.append(T.Normalize(MEAN, STD))
    tf = T.Compose(steps)

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as im:
                return tf(im.convert("RGB"))

    ds = Files()
    with torch.inference_mode():
        model(torch.stack([ds[i] for i in range(min(a.batch, len(paths)))]))  # warm-up
    common = dict(peer="PyTorch eager", backbone=a.backbone, n=len(paths), round=a.round)

    # decode: one thread, into one preallocated tensor
    torch.set_num_threads(1)
    x = torch.empty(len(paths), 3, a.size, a.size)
    t = time.perf_counter()
    for i in range(len(paths)):
        x[i] = ds[i]
    emit(mode="decode", ms_per_image=1e3 * (time.perf_counter() - t) / len(paths), **common)
    torch.set_num_threads(a.threads)

    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(paths), a.batch):
            model(x[i:i + a.batch])
    emit(mode="infer", images_per_s=len(paths) / (time.perf_counter() - t), **common)
    del x

    t = time.perf_counter()
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, num_workers=a.workers)
    with torch.inference_mode():
        for xb in loader:
            model(xb)
    emit(mode="e2e", images_per_s=len(paths) / (time.perf_counter() - t), workers=a.workers, **common)


# ---------------------------------------------------------------- OpenCV
CHECK_VALUES = 16


def check_input(shape):
    """The deterministic probe tensor that bench_peers.js also feeds: element
    j (in memory order) is ((j * 7919) % 1000) / 1000."""
    import numpy as np
    n = 1
    for d in shape:
        n *= d
    j = np.arange(n, dtype=np.int64)
    return (((j * 7919) % 1000) / 1000).astype(np.float32).reshape(shape)


def opencv_compatible(path):
    """OpenCV 4.6's importer only takes Clip with min/max as attributes (the
    opset-6 form), not as inputs (opset 11+). When the graph has such Clip
    nodes with constant bounds, write a copy next to path with the bounds moved
    into attributes (same arithmetic, same FLOPs) and return its path;
    otherwise return path unchanged."""
    import onnx
    from onnx import helper, numpy_helper
    m = onnx.load(path)
    consts = {t.name: float(numpy_helper.to_array(t).reshape(-1)[0])
              for t in m.graph.initializer if len(t.dims) == 0 or numpy_helper.to_array(t).size == 1}
    changed = 0
    for n in m.graph.node:
        if n.op_type != "Clip" or len(n.input) == 1:
            continue
        bounds = list(n.input[1:])
        if any(b and b not in consts for b in bounds):
            return path  # non-constant bounds: leave it to OpenCV to refuse clearly
        attrs = []
        if len(bounds) > 0 and bounds[0]:
            attrs.append(helper.make_attribute("min", consts[bounds[0]]))
        if len(bounds) > 1 and bounds[1]:
            attrs.append(helper.make_attribute("max", consts[bounds[1]]))
        del n.input[1:]
        n.attribute.extend(attrs)
        changed += 1
    if not changed:
        return path
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), "bench_peers-opencv-%d-%s" % (os.getpid(), os.path.basename(path)))
    onnx.save(m, out)
    print("bench_peers.py: OpenCV 4.6 copy of %s with %d Clip nodes in attribute form: %s" % (path, changed, out),
          file=sys.stderr)
    import atexit
    atexit.register(lambda: os.path.exists(out) and os.remove(out))
    return out


def run_opencv(a):
    import cv2
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor

    cv2.setNumThreads(a.threads)
    paths = list_images(a.images, a.limit)
    net = cv2.dnn.readNetFromONNX(opencv_compatible(a.onnx))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    mean = np.array(MEAN, np.float32) * 255
    inv = 1 / (np.array(STD, np.float32) * 255)
    nchw = a.layout == "NCHW"

    def load(p):
        im = cv2.imread(p, cv2.IMREAD_COLOR)
        if im is None:
            raise SystemExit("bench_peers.py: OpenCV cannot read %s" % p)
        return cv2.resize(cv2.cvtColor(im, cv2.COLOR_BGR2RGB), (a.size, a.size), interpolation=cv2.INTER_LINEAR)

    def to_tensor(rgb, out):
        # rgb: uint8 [H,W,3]; out: float32 view [H,W,3] (NHWC) or [3,H,W] (NCHW)
        v = out.transpose(1, 2, 0) if nchw else out
        if a.norm == "imagenet":
            np.multiply(np.subtract(rgb, mean, out=v, dtype=np.float32), inv, out=v)
        else:
            np.multiply(rgb, np.float32(1 / 255), out=v, dtype=np.float32)

    shape = (3, a.size, a.size) if nchw else (a.size, a.size, 3)
    buf = np.empty((a.batch,) + shape, np.float32)

    def forward(x):
        net.setInput(x)
        return net.forward()

    for i in range(min(a.batch, len(paths))):
        to_tensor(load(paths[i]), buf[i])
    forward(buf[:min(a.batch, len(paths))])  # warm-up
    common = dict(peer="OpenCV DNN", backbone=a.backbone, n=len(paths), round=a.round)
    probe = check_input((1,) + shape)
    emit(mode="check", output=[float(v) for v in forward(probe).reshape(-1)[:CHECK_VALUES]], **common)

    cv2.setNumThreads(1)
    x = np.empty((len(paths),) + shape, np.float32)
    t = time.perf_counter()
    for i, p in enumerate(paths):
        to_tensor(load(p), x[i])
    emit(mode="decode", ms_per_image=1e3 * (time.perf_counter() - t) / len(paths), **common)
    cv2.setNumThreads(a.threads)

    t = time.perf_counter()
    for i in range(0, len(paths), a.batch):
        forward(x[i:i + a.batch])
    emit(mode="infer", images_per_s=len(paths) / (time.perf_counter() - t), **common)
    del x

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, a.workers)) as pool:
        # Executor.map submits everything at once; decoded images are uint8
        # 224x224x3 (150 KB), so even thousands of files stay small.
        imgs = pool.map(load, paths)
        k = 0
        for rgb in imgs:
            to_tensor(rgb, buf[k])
            k += 1
            if k == a.batch:
                forward(buf)
                k = 0
        if k:
            forward(buf[:k])
    emit(mode="e2e", images_per_s=len(paths) / (time.perf_counter() - t), workers=a.workers, **common)


# ---------------------------------------------------------------- peak, flops
def run_peak(a):
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    n = 2048
    flop = 2 * n ** 3
    res = {}
    A, B = torch.randn(n, n), torch.randn(n, n)
    C = torch.empty(n, n)
    torch.mm(A, B, out=C)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(A, B, out=C)
        ts.append(time.perf_counter() - t)
    res["torch.mm"] = flop / statistics.median(ts) / 1e9
    An, Bn = A.numpy(), B.numpy()
    Cn = An @ Bn
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        np.matmul(An, Bn, out=Cn)
        ts.append(time.perf_counter() - t)
    res["numpy.matmul"] = flop / statistics.median(ts) / 1e9
    best = max(res, key=res.get)
    emit(mode="peak", gflops=res[best], by=best, all=res, threads=a.threads, round=a.round)


def onnx_flops(path):
    import onnx
    from onnx import numpy_helper, shape_inference
    m = onnx.load(path)
    g = m.graph
    inits = {t.name for t in g.initializer}
    # Fix the batch (and any other symbolic) axis of the image input to 1.
    for inp in g.input:
        if inp.name in inits:
            continue
        for d in inp.type.tensor_type.shape.dim:
            if d.dim_value <= 0:
                d.ClearField("dim_param")
                d.dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for t in g.initializer:
        shapes[t.name] = list(t.dims)
    total = 0
    missing = []
    for n in m.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        out = shapes.get(n.output[0])
        w = shapes.get(n.input[1])
        if not out or not w or any(d <= 0 for d in out):
            missing.append(n.name or n.output[0])
            continue
        numel = 1
        for d in out:
            numel *= d
        if n.op_type == "Conv":
            group = next((at.i for at in n.attribute if at.name == "group"), 1)
            k = 1
            for d in w[1:]:
                k *= d  # w is [M, C/group, kh, kw]
            total += 2 * numel * k
        elif n.op_type == "ConvTranspose":
            a = shapes.get(n.input[0])
            k = 1
            for d in w[1:]:
                k *= d
            ain = 1
            for d in a:
                ain *= d
            total += 2 * ain * k
        else:
            a = shapes.get(n.input[0])
            trans = next((at.i for at in n.attribute if at.name == "transA"), 0)
            kdim = a[-2] if (n.op_type == "Gemm" and trans) else a[-1]
            total += 2 * numel * kdim
    return total / 1e9, missing


def run_flops(a):
    g, missing = onnx_flops(a.onnx)
    rec = dict(mode="flops", backbone=a.backbone, onnx=os.path.abspath(a.onnx), gflop_onnx=g)
    if missing:
        rec["uncounted_nodes"] = missing
    if a.backbone:
        import torch
        import torchvision
        rec["gflop_torch"] = torch_flops(torch, torch_module(torch, torchvision, a.backbone), a.size)
    emit(**rec)


# ---------------------------------------------------------------- report
def run_report(a):
    recs = []
    with open(a.results) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    peaks = [r["gflops"] for r in recs if r.get("mode") == "peak"]
    peak = statistics.median(peaks) if peaks else None
    flops = {r["backbone"]: r for r in recs if r.get("mode") == "flops"}
    versions = next((r for r in recs if r.get("mode") == "versions"), {})
    backbones, peers = [], []
    vals = {}
    for r in recs:
        if r.get("mode") not in ("e2e", "infer", "decode"):
            continue
        b, p = r["backbone"], r["peer"]
        if b not in backbones:
            backbones.append(b)
        if p not in peers:
            peers.append(p)
        v = r.get("images_per_s", r.get("ms_per_image"))
        vals.setdefault((b, p, r["mode"]), []).append(v)
    med = {k: statistics.median(v) for k, v in vals.items()}
    nrep = {k: len(v) for k, v in vals.items()}
    ref = "headtune"
    if peak:
        print("machine FP32 peak: %.0f GFLOP/s with %s threads (%s, median of %d runs)"
              % (peak, versions.get("threads", "?"), next((r["by"] for r in recs if r.get("mode") == "peak"), "?"), len(peaks)))
    for b in backbones:
        fl = flops.get(b, {})
        g = fl.get("gflop_onnx")
        print()
        desc = "### %s" % b
        if g:
            desc += ": %.3f GFLOP/image (ONNX graph" % g
            if fl.get("gflop_torch"):
                desc += "; PyTorch module %.3f" % fl["gflop_torch"]
            desc += ")"
        print(desc)
        print()
        print("| peer | end to end img/s | × headtune | inference only img/s | × headtune | decode+resize+normalise ms/img (1 thread) | % of FP32 peak (inference only) | % of peak (end to end) | repeats |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for p in peers:
            e = med.get((b, p, "e2e"))
            i = med.get((b, p, "infer"))
            d = med.get((b, p, "decode"))
            if e is None and i is None and d is None:
                continue
            he, hi = med.get((b, ref, "e2e")), med.get((b, ref, "infer"))

            def f(x, fmt="%.1f"):
                return fmt % x if x is not None else "-"

            def ratio(x, y):
                return "%.2f" % (x / y) if x is not None and y else "-"

            def frac(x):
                return "%.0f%%" % (100 * g * x / peak) if x is not None and g and peak else "-"
            name = "**%s**" % p if p == ref else p
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, f(e), ratio(e, he), f(i), ratio(i, hi), f(d, "%.2f"), frac(i), frac(e),
                max(nrep.get((b, p, m), 0) for m in ("e2e", "infer", "decode"))))
        hows = sorted({r["how"] for r in recs if r.get("backbone") == b and r.get("mode") == "infer" and r.get("how")})
        if hows:
            print()
            print("headtune inference only: %s (the fastest layout of scripts/benchextract; peers use one session "
                  "with all threads)" % "; ".join(hows))
    checks = {}
    for r in recs:
        if r.get("mode") == "check":
            checks.setdefault(r["backbone"], {}).setdefault(r["peer"], r["output"])
    for b, by in checks.items():
        if len(by) < 2:
            continue
        names = sorted(by)
        worst = max(abs(x - y) for n in names[1:] for x, y in zip(by[names[0]], by[n]))
        print()
        print("%s: same probe tensor through the same ONNX file, %s: max abs difference of the first %d outputs %.2g%s"
              % (b, " vs ".join(names), CHECK_VALUES, worst, "" if worst < 1e-3 else "  ** MISMATCH **"))
    if versions:
        print()
        print("versions: " + ", ".join("%s %s" % (k, v) for k, v in versions.items() if k not in ("mode",)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["torch", "opencv", "peak", "flops", "report"])
    ap.add_argument("results", nargs="?", help="report: the JSON-lines results file")
    ap.add_argument("--images", help="folder of .jpg files")
    ap.add_argument("--backbone", default="", help="mobilenetv2-imagenet or a torchvision architecture name")
    ap.add_argument("--onnx", help="the ONNX file (opencv, flops)")
    ap.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"])
    ap.add_argument("--norm", default="imagenet", choices=["imagenet", "unit"],
                    help="imagenet: (x/255-mean)/std; unit: x/255")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="decode workers (DataLoader processes, OpenCV threads)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    ap.add_argument("--round", type=int, default=0, help="round number, copied into the output")
    a = ap.parse_args()
    if a.cmd in ("torch", "opencv") and not a.images:
        ap.error("%s needs --images" % a.cmd)
    if a.cmd in ("opencv", "flops") and not a.onnx:
        ap.error("%s needs --onnx" % a.cmd)
    if a.cmd == "torch" and not a.backbone:
        ap.error("torch needs --backbone")
    if a.cmd == "report" and not a.results:
        ap.error("report needs the results file")
    {"torch": run_torch, "opencv": run_opencv, "peak": run_peak, "flops": run_flops, "report": run_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
