#!/usr/bin/python3
"""Regenerates the small test JPEGs in this directory from Debian darknet's
sample photos (apt-get download darknet && dpkg -x darknet_*.deb DIR).

usage: /usr/bin/python3 gen.py DIR/usr/share/darknet/data
"""
import os, sys
from PIL import Image

src = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
dog = Image.open(os.path.join(src, "dog.jpg")).convert("RGB")
eagle = Image.open(os.path.join(src, "eagle.jpg")).convert("RGB")

# Odd sizes exercise partial MCUs and the ceil() of scaled sizes.
a = dog.resize((203, 157), Image.BILINEAR)
b = eagle.crop((0, 0, 600, 600)).resize((128, 97), Image.BILINEAR)
a.save(os.path.join(here, "dog_420.jpg"), quality=90, subsampling=2)
a.save(os.path.join(here, "dog_422.jpg"), quality=90, subsampling=1)
a.save(os.path.join(here, "dog_444.jpg"), quality=90, subsampling=0)
a.save(os.path.join(here, "dog_progressive.jpg"), quality=85, progressive=True)
b.convert("L").save(os.path.join(here, "eagle_grey.jpg"), quality=90)
b.convert("CMYK").save(os.path.join(here, "eagle_cmyk.jpg"), quality=90)
# EXIF orientation 6 (rotate 90 CW to display): stored 203x157, shown 157x203.
exif = Image.Exif()
exif[0x0112] = 6
a.save(os.path.join(here, "dog_orient6.jpg"), quality=90, exif=exif.tobytes())
