"""Reference outputs of a Darknet network from OpenCV's Darknet reader.

usage: opencv_ref.py NET.cfg NET.weights INPUT.bin N C H W OUTDIR

INPUT.bin holds float32 NCHW values. For every Darknet layer number i that
OpenCV computes, OUTDIR/layer_<i>.bin receives that layer's output (float32,
C-order) and OUTDIR/layers.txt a line "i shape..." per file. OpenCV names a
layer's parts <kind>_<i>, except the activation of a convolution, which
carries the number i+1; the last part of layer i is its output.
"""
import os
import sys

import cv2
import numpy as np

ACTIVATIONS = {"leaky", "relu", "mish", "swish", "logistic", "tanh", "sigmoid", "elu", "hardswish"}


def main():
    cfg, weights, inp, n, c, h, w, out = sys.argv[1:9]
    n, c, h, w = int(n), int(c), int(h), int(w)
    x = np.fromfile(inp, dtype=np.float32).reshape(n, c, h, w)
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    owner = {}
    for name in net.getLayerNames():
        kind, _, idx = name.rpartition("_")
        if not idx.isdigit():
            continue
        i = int(idx)
        if kind in ACTIVATIONS:
            i -= 1
        owner[i] = name  # the last part wins
    idxs = sorted(owner)
    net.setInput(x)
    outs = net.forward([owner[i] for i in idxs])
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "layers.txt"), "w") as f:
        for i, o in zip(idxs, outs):
            o = np.ascontiguousarray(o, dtype=np.float32)
            o.tofile(os.path.join(out, "layer_%d.bin" % i))
            f.write("%d %s %s\n" % (i, owner[i], " ".join(str(d) for d in o.shape)))


if __name__ == "__main__":
    main()
