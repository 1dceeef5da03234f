#!/usr/bin/env python3
"""Export a torchvision image classifier to ONNX with a dynamic batch axis.

    /usr/bin/python3 scripts/export_torchvision.py --arch resnet50 --out resnet50.onnx \
        [--pretrained] [--opset 13] [--size 224] [--check]

Weights are random (seeded, reproducible) unless --pretrained is given; then
torchvision's ImageNet weights are downloaded, and the script fails with a
clear message when there is no internet. The graph takes float32
"input" [N, 3, size, size] (NCHW, RGB, ImageNet mean/std normalisation, i.e.
headtune's "imagenet" preset) and returns "logits" [N, 1000]. The model is
saved as one file (no external data), ready for `headtune models add
FILE.onnx --preset imagenet`.

--check runs onnx.checker on the result and compares the output of
onnxruntime (or, when that is not importable, OpenCV DNN) with PyTorch's for
a batch of 2, which exercises the dynamic axis.
Exit status: 0 on success, 2 on bad arguments, 1 on any other failure.
"""

import argparse
import os
import sys
import tempfile

ARCHS = {
    # name: (torchvision constructor, weights enum name, default size)
    "resnet18": ("resnet18", "ResNet18_Weights", 224),
    "resnet34": ("resnet34", "ResNet34_Weights", 224),
    "resnet50": ("resnet50", "ResNet50_Weights", 224),
    "vgg16": ("vgg16", "VGG16_Weights", 224),
    "vgg19": ("vgg19", "VGG19_Weights", 224),
    "mobilenet_v2": ("mobilenet_v2", "MobileNet_V2_Weights", 224),
    "mobilenet_v3_small": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights", 224),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights", 224),
    "squeezenet1_1": ("squeezenet1_1", "SqueezeNet1_1_Weights", 224),
    "densenet121": ("densenet121", "DenseNet121_Weights", 224),
}


def fail(msg, code=1):
    print(f"export_torchvision: {msg}", file=sys.stderr)
    sys.exit(code)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, choices=sorted(ARCHS), help="torchvision architecture")
    p.add_argument("--out", required=True, help="output .onnx path (written atomically)")
    p.add_argument("--pretrained", action="store_true", help="download torchvision's ImageNet weights (needs internet)")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset (default 13)")
    p.add_argument("--size", type=int, default=0, help="input height and width in pixels (default: the architecture's)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights (default 0)")
    p.add_argument("--check", action="store_true", help="run onnx.checker and compare with onnxruntime if available")
    a = p.parse_args(argv)
    if not 7 <= a.opset <= 17:
        p.error(f"--opset {a.opset}: use 7..17 (torch 1.13 exports up to 17)")
    if a.size < 0 or (a.size and a.size < 32):
        p.error(f"--size {a.size}: use at least 32")
    return a


def build_model(torch, torchvision, arch, pretrained, seed):
    ctor_name, weights_name, _ = ARCHS[arch]
    ctor = getattr(torchvision.models, ctor_name, None)
    if ctor is None:
        fail(f"torchvision {torchvision.__version__} has no {ctor_name}")
    if not pretrained:
        torch.manual_seed(seed)
        model = ctor(weights=None)
        break_constant_tensors(torch, model)
        return model
    enum = getattr(torchvision.models, weights_name, None)
    if enum is None:
        fail(f"torchvision {torchvision.__version__} has no {weights_name}; cannot load pretrained weights")
    try:
        return ctor(weights=enum.DEFAULT)
    except Exception as e:  # URLError, HTTPError, OSError, RuntimeError for a bad file
        fail(f"could not get pretrained weights for {arch} ({enum.DEFAULT.url}): {e}\n"
             "  without internet, omit --pretrained to export random weights")


def break_constant_tensors(torch, model):
    """Give constant-initialised tensors (zero biases, BatchNorm statistics)
    small random values. torch.onnx.export shares identical initializers
    through Identity nodes, which some runtimes (OpenCV DNN) cannot load, and
    all-zero biases would hide bias bugs in whoever consumes the model."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point() or t.numel() == 0:
                continue
            if bool((t == t.flatten()[0]).all()):
                noise = (torch.rand_like(t) - 0.5) * 0.02
                if name.endswith("running_var"):
                    t.copy_(1 + noise.abs())
                else:
                    t.add_(noise)


def export(torch, model, out, size, opset):
    model.eval()
    dummy = torch.zeros(1, 3, size, size, dtype=torch.float32)
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out) + ".", suffix=".tmp", dir=out_dir)
    os.close(fd)
    try:
        with torch.no_grad():
            torch.onnx.export(
                model, dummy, tmp,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                opset_version=opset, do_constant_folding=True,
            )
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def check(torch, model, out, size):
    import numpy as np
    import onnx
    m = onnx.load(out)
    onnx.checker.check_model(m)
    dim0 = m.graph.input[0].type.tensor_type.shape.dim[0]
    if dim0.dim_param == "" or dim0.dim_value != 0:
        fail(f"{out}: batch axis of input is not symbolic ({dim0})")
    print(f"onnx.checker: ok; input {m.graph.input[0].name} batch axis '{dim0.dim_param}'")
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x).numpy()
    try:
        import onnxruntime as ort
        sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
        got, engine = sess.run(None, {"input": x.numpy()})[0], "onnxruntime"
    except ImportError:
        try:
            import cv2
        except ImportError:
            print("neither onnxruntime nor OpenCV importable; skipped the numerical comparison")
            return
        try:
            net = cv2.dnn.readNetFromONNX(out)
            net.setInput(x.numpy())
            got, engine = net.forward(), "OpenCV DNN"
        except cv2.error as e:
            lines = [l for l in str(e).splitlines() if "error:" in l] or [str(e).strip()]
            first = lines[-1].strip()
            print(f"OpenCV DNN cannot run this graph ({first}); skipped the numerical comparison")
            return
    err = float(np.abs(got - want).max())
    scale = float(np.abs(want).max()) or 1.0
    print(f"{engine} vs torch, batch 2: max abs diff {err:.3g} (outputs up to {scale:.3g})")
    if err > 1e-3 * max(1.0, scale):
        fail(f"{out}: {engine} output differs from torch by {err}")


def main(argv):
    a = parse_args(argv)
    try:
        import torch
        import torchvision
    except ImportError as e:
        fail(f"needs torch and torchvision ({e}); on Debian: apt-get install python3-torchvision")
    size = a.size or ARCHS[a.arch][2]
    model = build_model(torch, torchvision, a.arch, a.pretrained, a.seed)
    try:
        export(torch, model, a.out, size, a.opset)
    except Exception as e:
        fail(f"export {a.arch} to {a.out}: {e}")
    nbytes = os.path.getsize(a.out)
    weights = "pretrained ImageNet" if a.pretrained else f"random (seed {a.seed})"
    print(f"wrote {a.out}: {a.arch}, {weights} weights, input [N,3,{size},{size}], opset {a.opset}, {nbytes} bytes")
    if a.check:
        check(torch, model, a.out, size)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
