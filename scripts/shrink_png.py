#!/usr/bin/env python3
"""Copies report PNGs into docs/ at a small size (width 560 px, 64-colour
palette): python3 scripts/shrink_png.py SRC.png DST.png [SRC DST ...]
Needs Pillow (installed in the test venv by ./landscape-dev setup)."""
import sys
from PIL import Image

args = sys.argv[1:]
for src, dst in zip(args[::2], args[1::2]):
    im = Image.open(src).convert("RGB")
    w, h = im.size
    im = im.resize((560, round(h * 560 / w)), Image.LANCZOS)
    im.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
    print(dst)
