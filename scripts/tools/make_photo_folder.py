#!/usr/bin/python3
"""Makes an ImageFolder of real photographs (one sub-folder per class) from the pictures that
python3-skimage ships: each class is one photograph, each sample a random crop of it (random
position, scale and aspect), flipped at random and saved as a JPEG (sometimes progressive, grey,
4:4:4 or a PNG in --mixed mode). For examples/finetune_resnet18.lua's smoke test and the photo
loader row of scripts/tools/bench; nothing here is committed (tests keep a few KB of fixtures).

  make_photo_folder.py OUT                          # 4 classes x 24 images, mixed sizes and kinds
  make_photo_folder.py OUT --size 500x375 --per-class 160 --classes 4 --plain
                                                    # the benchmark's folder: ~500x375 baseline JPEGs
  make_photo_folder.py OUT --split                  # OUT/train and OUT/val (every 4th image)

Run with Debian's /usr/bin/python3 (python3-skimage, python3-pil). The same arguments and --seed
give the same files.
"""
import argparse
import os
import random
import sys

import numpy as np
import skimage.data
from PIL import Image

# photographs that ship with python3-skimage (no download): name -> class
SOURCES = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
           "stereo_motorcycle", "retina"]


def photo(name):
    a = getattr(skimage.data, name)()
    if isinstance(a, tuple):  # stereo pairs
        a = a[0]
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(a[..., :3]).astype(np.uint8), "RGB")


def sample(src, rng, size):
    """A random crop of src (40-100% of its shorter side, aspect 3/4..4/3) resized to size (w, h)."""
    w, h = src.size
    side = rng.uniform(0.4, 1.0) * min(w, h)
    aspect = rng.uniform(3 / 4, 4 / 3)
    cw, ch = min(w, int(side * aspect ** 0.5)), min(h, int(side / aspect ** 0.5))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = src.crop((x, y, x + cw, y + ch)).resize(size, Image.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=4, help="classes (one photograph each; at most %d)" % len(SOURCES))
    ap.add_argument("--per-class", type=int, default=24)
    ap.add_argument("--size", help="WxH for every image (default: mixed sizes, 120..640 a side)")
    ap.add_argument("--plain", action="store_true", help="baseline 4:2:0 JPEGs only (quality 90)")
    ap.add_argument("--split", action="store_true", help="OUT/train and OUT/val (every 4th image to val)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if not 1 <= a.classes <= len(SOURCES) or a.per_class < 1:
        ap.error("--classes must be 1..%d and --per-class positive" % len(SOURCES))
    fixed = None
    if a.size:
        try:
            fixed = tuple(int(v) for v in a.size.lower().split("x"))
            assert len(fixed) == 2 and min(fixed) > 0
        except (ValueError, AssertionError):
            ap.error("--size must be WxH")
    rng = random.Random(a.seed)
    count, total = 0, 0
    for c, name in enumerate(SOURCES[:a.classes]):
        src = photo(name)
        for k in range(a.per_class):
            size = fixed or (rng.randint(120, 640), rng.randint(120, 640))
            img = sample(src, rng, size)
            split = ("val" if k % 4 == 3 else "train") if a.split else ""
            folder = os.path.join(a.out, split, name)
            os.makedirs(folder, exist_ok=True)
            kind = "jpeg" if a.plain else rng.choice(["jpeg", "jpeg", "jpeg", "progressive", "444", "gray", "png"])
            path = os.path.join(folder, "%s_%03d.%s" % (name, k, "png" if kind == "png" else "jpg"))
            if kind == "png":
                img.save(path)
            elif kind == "gray":
                img.convert("L").save(path, quality=85)
            else:
                img.save(path, quality=90 if a.plain else rng.randint(70, 95), progressive=kind == "progressive",
                         subsampling="4:4:4" if kind == "444" else "4:2:0")
            count += 1
            total += os.path.getsize(path)
    print("wrote %d images (%.1f MB) in %d classes under %s" % (count, total / 2**20, a.classes, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
