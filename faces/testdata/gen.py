# Makes cmyk_sample1.jpg: face-api's demo/sample1.jpg (@vladmandic/face-api
# 1.7.15, MIT) reduced to 640x427 and saved as a CMYK JPEG, which Go's
# encoder cannot write. Run with Debian's python3-pil:
#   /usr/bin/python3 gen.py path/to/sample1.jpg
import sys
from PIL import Image

im = Image.open(sys.argv[1]).convert("RGB").resize((640, 427), Image.BILINEAR)
im.convert("CMYK").save("cmyk_sample1.jpg", quality=70)
