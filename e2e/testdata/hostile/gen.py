#!/usr/bin/python3
"""Writes the hostile-image files Go's standard encoders cannot make (run
with Debian's /usr/bin/python3 and PIL 9; the outputs are committed):

  ok.webp            40x32 lossy WebP
  anim.webp          animated WebP, 3 frames
  cmyk.jpg           40x32 CMYK JPEG (Adobe APP14, inverted as Photoshop writes it)
  cmyk.tif           40x32 CMYK TIFF
  exif6.jpg          32x40 pixels stored, EXIF Orientation 6 (display 40x32)
  progressive.jpg    progressive JPEG
  la.png             grey + alpha PNG
  i16.tif            16-bit grey TIFF
"""
import io
from PIL import Image, ImageDraw

def base(w=40, h=32):
    im = Image.new("RGB", (w, h), (200, 40, 40))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, w // 2, h // 3], fill=(20, 200, 20))
    d.line([0, h - 1, w - 1, 0], fill=(20, 20, 220), width=3)
    return im

im = base()
im.save("ok.webp", quality=80)
frames = [base(), base().transpose(Image.FLIP_LEFT_RIGHT), base().transpose(Image.FLIP_TOP_BOTTOM)]
frames[0].save("anim.webp", save_all=True, append_images=frames[1:], duration=100, loop=0)
im.convert("CMYK").save("cmyk.jpg", quality=90)
im.convert("CMYK").save("cmyk.tif")
rot = im.transpose(Image.ROTATE_90)  # stored pixels; orientation 6 rotates them back for display
exif = Image.Exif()
exif[0x0112] = 6
rot.save("exif6.jpg", quality=90, exif=exif.tobytes())
im.save("progressive.jpg", quality=90, progressive=True)
im.convert("LA").save("la.png")
Image.new("I;16", (40, 32), 30000).save("i16.tif")
