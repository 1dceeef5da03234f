#!/usr/bin/python3
"""Regenerates imaging/testdata: source images and golden outputs computed
by independent implementations (PIL 9.4, torchvision 0.14, OpenCV 4.6).

Run from anywhere with Debian's python (not a pyenv one):

    /usr/bin/python3 imaging/testdata/gen.py

Everything is deterministic (fixed seeds). Outputs:
  src_*.png/.jpg/...     source images
  golden.json            the cases: source, transform, output file, shape
  *.f32                  float32 little-endian tensors (C, H, W)
  *.rgb                  uint8 packed RGB (H, W, 3)
"""
import json
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
os.chdir(HERE)
rng = np.random.default_rng(20261127)


def photo(w, h, seed):
    """Photo-like content: smooth colour fields, hard edges, fine noise."""
    r = np.random.default_rng(seed)
    small = Image.fromarray(r.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    base = np.asarray(small.resize((w, h), Image.BICUBIC), dtype=np.int32)
    yy, xx = np.mgrid[0:h, 0:w]
    base[(xx > w // 3) & (xx < w // 2) & (yy > h // 4)] = [250, 20, 30]
    base[((xx - 2 * w // 3) ** 2 + (yy - h // 2) ** 2) < (min(w, h) // 6) ** 2] = [10, 200, 40]
    base = base + r.integers(-12, 13, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


cases = []
files = {}

a = photo(257, 193, 1)
Image.fromarray(a).save("src_landscape.png")
b = photo(150, 301, 2)
Image.fromarray(b).save("src_portrait.png")
g = photo(100, 80, 3)[:, :, 1]
Image.fromarray(g, "L").save("src_grey.png")

import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
INTERP = {
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "area": Image.BOX,
    "nearest": Image.NEAREST,
}
TVINTERP = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
}


def tv_case(name, src, shorter, crop, interp):
    """torchvision Resize(shorter)+CenterCrop(crop)+ToTensor+Normalize."""
    im = Image.open(src).convert("RGB")
    tf = T.Compose([
        T.Resize(shorter, interpolation=TVINTERP[interp]),
        T.CenterCrop(crop),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])
    t = tf(im).numpy().astype("<f4")
    t.tofile(name + ".f32")
    # the uint8 image before ToTensor, for bit-exact resampling checks
    rgb = T.CenterCrop(crop)(T.Resize(shorter, interpolation=TVINTERP[interp])(im))
    np.asarray(rgb, dtype=np.uint8).tofile(name + ".rgb")
    cases.append(dict(name=name, src=src, kind="torchvision", resize="crop",
                      resize_shorter=shorter, width=crop, height=crop,
                      interpolation=interp, shape=list(t.shape),
                      tensor=name + ".f32", rgb=name + ".rgb"))


def pil_squash(name, src, w, h, interp):
    im = Image.open(src).convert("RGB").resize((w, h), INTERP[interp])
    np.asarray(im, dtype=np.uint8).tofile(name + ".rgb")
    cases.append(dict(name=name, src=src, kind="pil", resize="squash",
                      width=w, height=h, interpolation=interp, rgb=name + ".rgb"))


def cv2_area(name, src, w, h):
    """OpenCV INTER_AREA (exact coverage, float weights)."""
    import cv2
    a = np.asarray(Image.open(src).convert("RGB"))
    out = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
    np.ascontiguousarray(out).tofile(name + ".rgb")
    cases.append(dict(name=name, src=src, kind="cv2", resize="squash",
                      width=w, height=h, interpolation="area", rgb=name + ".rgb"))


tv_case("tv_land_64_56_bilinear", "src_landscape.png", 64, 56, "bilinear")
tv_case("tv_land_65_56_bilinear", "src_landscape.png", 65, 56, "bilinear")  # odd offset: round half to even
tv_case("tv_land_256_224_bilinear", "src_landscape.png", 256, 224, "bilinear")  # upscale
tv_case("tv_port_80_64_bicubic", "src_portrait.png", 80, 64, "bicubic")
tv_case("tv_port_100_96_bilinear", "src_portrait.png", 100, 96, "bilinear")
tv_case("tv_grey_40_32_bilinear", "src_grey.png", 40, 32, "bilinear")
tv_case("tv_land_50_48_nearest", "src_landscape.png", 50, 48, "nearest")
cv2_area("cv2_port_50x40_area", "src_portrait.png", 50, 40)
pil_squash("pil_land_37x29_bicubic", "src_landscape.png", 37, 29, "bicubic")
pil_squash("pil_land_300x211_bicubic", "src_landscape.png", 300, 211, "bicubic")  # upscale, overshoot clipping
cv2_area("cv2_land_33x97_area", "src_landscape.png", 33, 97)
cv2_area("cv2_land_128x96_area", "src_landscape.png", 128, 96)  # ~2x: BOX and area nearly agree
pil_squash("pil_port_75x43_box", "src_portrait.png", 75, 43, "area")  # exact 2x/7x: area == PIL BOX
pil_squash("pil_land_80x61_nearest", "src_landscape.png", 80, 61, "nearest")

# --- decoding references -------------------------------------------------
import cv2  # noqa: E402

dec = []
# Lossless formats must decode to exactly the source pixels.
small = photo(61, 47, 4)
Image.fromarray(small).save("src_small.png")
np.asarray(small).tofile("src_small.rgb")
Image.fromarray(small).save("fmt_small.bmp")
Image.fromarray(small).save("fmt_small.tif")
Image.fromarray(small).save("fmt_small_lzw.tif", compression="tiff_lzw")
Image.fromarray(small).save("fmt_small.webp", lossless=True)
for f in ["fmt_small.bmp", "fmt_small.tif", "fmt_small_lzw.tif", "fmt_small.webp"]:
    dec.append(dict(src=f, rgb="src_small.rgb", w=61, h=47, tol=0))
# GIF: palette-quantised; the reference is PIL's decode of the same file.
Image.fromarray(small).quantize(64).save("fmt_small.gif")
np.asarray(Image.open("fmt_small.gif").convert("RGB")).tofile("fmt_small_gif.rgb")
dec.append(dict(src="fmt_small.gif", rgb="fmt_small_gif.rgb", w=61, h=47, tol=0))

# 16-bit PNGs written by OpenCV; reference = high byte.
w16 = (rng.integers(0, 65536, (23, 31, 3))).astype(np.uint16)
cv2.imwrite("fmt_rgb16.png", w16[:, :, ::-1].copy())  # cv2 wants BGR
(w16 >> 8).astype(np.uint8).tofile("fmt_rgb16.rgb")
dec.append(dict(src="fmt_rgb16.png", rgb="fmt_rgb16.rgb", w=31, h=23, tol=0))
g16 = (rng.integers(0, 65536, (19, 27))).astype(np.uint16)
cv2.imwrite("fmt_grey16.png", g16)
np.repeat((g16 >> 8).astype(np.uint8)[:, :, None], 3, axis=2).tofile("fmt_grey16.rgb")
dec.append(dict(src="fmt_grey16.png", rgb="fmt_grey16.rgb", w=27, h=19, tol=0))

# JPEGs: libjpeg (PIL) and image/jpeg differ in IDCT rounding and chroma
# upsampling, so the comparison is statistical (tol = allowed mean abs diff).
photo_big = photo(160, 120, 5)
Image.fromarray(photo_big).save("fmt_photo.jpg", quality=90)
np.asarray(Image.open("fmt_photo.jpg").convert("RGB")).tofile("fmt_photo_jpg.rgb")
# End to end from a JPEG: libjpeg and image/jpeg differ slightly (IDCT), so
# this case is checked with a tolerance (golden_test.go).
tv_case("tv_jpeg_128_112_bilinear", "fmt_photo.jpg", 128, 112, "bilinear")
dec.append(dict(src="fmt_photo.jpg", rgb="fmt_photo_jpg.rgb", w=160, h=120, tol=0.25))
Image.fromarray(photo_big).save("fmt_photo444.jpg", quality=95, subsampling=0)
np.asarray(Image.open("fmt_photo444.jpg").convert("RGB")).tofile("fmt_photo444_jpg.rgb")
dec.append(dict(src="fmt_photo444.jpg", rgb="fmt_photo444_jpg.rgb", w=160, h=120, tol=0.25))
Image.fromarray(photo_big).save("fmt_photo422.jpg", quality=90, subsampling=1)
np.asarray(Image.open("fmt_photo422.jpg").convert("RGB")).tofile("fmt_photo422_jpg.rgb")
dec.append(dict(src="fmt_photo422.jpg", rgb="fmt_photo422_jpg.rgb", w=160, h=120, tol=0.25))
odd = photo(61, 47, 6)  # odd size: chroma edge columns and rows
Image.fromarray(odd).save("fmt_odd420.jpg", quality=90, subsampling=2)
np.asarray(Image.open("fmt_odd420.jpg").convert("RGB")).tofile("fmt_odd420_jpg.rgb")
dec.append(dict(src="fmt_odd420.jpg", rgb="fmt_odd420_jpg.rgb", w=61, h=47, tol=0.25))
Image.fromarray(photo_big[:, :, 0], "L").save("fmt_grey.jpg", quality=90)
np.repeat(np.asarray(Image.open("fmt_grey.jpg"))[:, :, None], 3, axis=2).tofile("fmt_grey_jpg.rgb")
dec.append(dict(src="fmt_grey.jpg", rgb="fmt_grey_jpg.rgb", w=160, h=120, tol=0.25))
Image.fromarray(photo_big).convert("CMYK").save("fmt_cmyk.jpg", quality=95)
np.asarray(Image.open("fmt_cmyk.jpg").convert("RGB")).tofile("fmt_cmyk_jpg.rgb")
dec.append(dict(src="fmt_cmyk.jpg", rgb="fmt_cmyk_jpg.rgb", w=160, h=120, tol=0.25))

# EXIF orientation in PNG (eXIf), WebP (EXIF chunk) and TIFF (IFD0 tag):
# the reference is PIL's ImageOps.exif_transpose.
from PIL import ImageOps  # noqa: E402

exif = Image.Exif()
exif[0x0112] = 6
Image.fromarray(small).save("orient6.png", exif=exif.tobytes())
exif[0x0112] = 8
Image.fromarray(small).save("orient8.webp", lossless=True, exif=exif.tobytes())
exif[0x0112] = 3
Image.fromarray(small).save("orient3.tif", exif=exif.tobytes())
# Reference: the displayed image per the EXIF definitions (numpy), checked
# against PIL. PIL's TIFF loader (libtiff) already applies the orientation on
# open, so exif_transpose would apply it twice there; for TIFF the check is
# against the plain open.
displayed = {6: np.rot90(small, k=-1), 8: np.rot90(small, k=1), 3: small[::-1, ::-1]}
for f, o in [("orient6.png", 6), ("orient8.webp", 8), ("orient3.tif", 3)]:
    im = Image.open(f)
    assert im.getexif().get(0x0112) == o, (f, im.getexif())
    pil = im.convert("RGB") if f.endswith(".tif") else ImageOps.exif_transpose(im).convert("RGB")
    want = np.ascontiguousarray(displayed[o])
    assert (np.asarray(pil) == want).all(), f
    want.tofile(f.replace(".", "_") + ".rgb")
    dec.append(dict(src=f, rgb=f.replace(".", "_") + ".rgb", w=want.shape[1], h=want.shape[0], tol=0))

with open("golden.json", "w") as f:
    json.dump(dict(generator="gen.py", pil=Image.__version__ if hasattr(Image, "__version__") else "",
                   torch=torch.__version__, resize=cases, decode=dec), f, indent=1)
print("wrote", len(cases), "resize cases and", len(dec), "decode cases")
