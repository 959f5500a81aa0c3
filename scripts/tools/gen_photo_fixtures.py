#!/usr/bin/python3
"""Writes the photo fixtures under tests/fixtures/photos/ and what PIL and torchvision make of them:

  *.jpg, *.png       small crops of skimage's photographs (astronaut, coffee) saved by PIL
                     (baseline 4:2:0 / 4:2:2 / 4:4:4, progressive, grey, CMYK, EXIF orientations
                     1-8, a PNG with an eXIf chunk) and by libjpeg-turbo's cjpeg (4:1:1, 4:4:0,
                     arithmetic coding, restart markers, an RGB-colourspace file)
  expected.lua       for each file and load mode ("auto", "gray", "rgb"): PIL's pixels after
                     ImageOps.exif_transpose and convert(), as hex bytes in (C, H, W) order; and
                     torchvision 0.14's results on tensors for the deterministic transforms: resize
                     in every mode (antialias on and off, up and down), crops, resized_crop, the
                     colour adjustments, rotation, grayscale, flips and normalize

Run with Debian's /usr/bin/python3 (python3-pil, python3-skimage, python3-torch, torchvision) and
cjpeg from libjpeg-turbo-progs (apt-get install libjpeg-turbo-progs); tests never need any of them:
  /usr/bin/python3 scripts/tools/gen_photo_fixtures.py
"""
import io
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import skimage.data
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "photos")


def hexbytes(a):
    return np.ascontiguousarray(a, dtype=np.uint8).tobytes().hex()


def chw(img):
    """A PIL image as a (C, H, W) uint8 array."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[:, :, None]
    return a.transpose(2, 0, 1)


def pil_expected(path):
    """{mode: {shape, hex}} as cnn.image.load must decode path."""
    out = {}
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        auto = im.convert("L") if im.mode in ("L", "LA", "I;16") else im.convert("RGB")
        for mode, img in (("auto", auto), ("gray", im.convert("L")), ("rgb", im.convert("RGB"))):
            a = chw(img)
            out[mode] = (list(a.shape), hexbytes(a))
    return out


def crop(name, top, left, h, w):
    return Image.fromarray(getattr(skimage.data, name)()[top:top + h, left:left + w])


def write_jpegs():
    os.makedirs(OUT, exist_ok=True)
    files = []
    face = crop("astronaut", 60, 170, 21, 27)  # odd sizes: partial MCUs on both edges
    cup = crop("coffee", 120, 200, 19, 33)

    def save(name, img, **kw):
        path = os.path.join(OUT, name)
        img.save(path, **kw)
        files.append(name)

    save("rgb_420.jpg", face, quality=90, subsampling="4:2:0")
    save("rgb_422.jpg", face, quality=90, subsampling="4:2:2")
    save("rgb_444.jpg", cup, quality=90, subsampling="4:4:4")
    save("progressive.jpg", cup, quality=85, progressive=True)
    save("gray.jpg", face.convert("L"), quality=90)
    # PIL writes CMYK inverted (Adobe's convention) with an Adobe marker; its reader inverts back
    cmyk = Image.fromarray(np.dstack([255 - np.asarray(face)[..., i] for i in range(3)] +
                                     [np.asarray(face.convert("L")) // 3]).astype(np.uint8), "CMYK")
    save("cmyk.jpg", cmyk, quality=90)

    # EXIF orientations on an asymmetric 7x11 image: orientation n must come back upright
    small = crop("astronaut", 100, 200, 7, 11)
    for n in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = n
        save("exif_%d.jpg" % n, small, quality=95, subsampling="4:4:4", exif=exif.tobytes())
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif_6.png", small, exif=exif.tobytes())

    # libjpeg-turbo's cjpeg for what PIL cannot write
    with tempfile.TemporaryDirectory() as tmp:
        ppm = os.path.join(tmp, "face.ppm")
        face.save(ppm)
        for name, flags in (("rgb_411.jpg", ["-sample", "4x1,1x1,1x1"]),
                            ("rgb_440.jpg", ["-sample", "1x2,1x1,1x1"]),
                            ("arithmetic.jpg", ["-arithmetic"]),
                            ("restart.jpg", ["-restart", "1"]),
                            ("rgb_colorspace.jpg", ["-rgb"])):
            path = os.path.join(OUT, name)
            subprocess.run(["cjpeg", "-quality", "90"] + flags + ["-outfile", path, ppm], check=True)
            files.append(name)
    return sorted(files)


# ---- Lua literals --------------------------------------------------------------------------------

def lua_num(v):
    text = "%.7g" % v
    return text if any(c in text for c in ".enai") else text + ".0"


def lua_floats(t):
    t = t.detach().float().contiguous().flatten().tolist()
    lines = [", ".join(lua_num(v) for v in t[i:i + 8]) for i in range(0, len(t), 8)]
    return "{\n      " + ",\n      ".join(lines) + "}"


def lua_tensor(t):
    return "{shape = {%s}, data = %s}" % (", ".join(str(s) for s in t.shape), lua_floats(t))


def lua_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return lua_num(v) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua_value(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join("%s = %s" % (k, lua_value(x)) for k, x in v.items()) + "}"
    raise TypeError(type(v))


# ---- transforms ----------------------------------------------------------------------------------

def u8_input(path):
    """A fixture decoded by PIL as a (3, H, W) float tensor in [0, 1] (x / 255)."""
    with Image.open(path) as im:
        a = chw(im.convert("RGB"))
    return torch.from_numpy(a.copy()).float().div(255)


def transform_cases(x, p):
    """(name, args for the Lua side, expected tensor) for each deterministic operation. x is a
    3x9x11 image, p a 1x13x17 plane; both in [0, 1]."""
    cases = []
    I = TF.InterpolationMode
    modes = {"bilinear": I.BILINEAR, "bicubic": I.BICUBIC, "nearest": I.NEAREST}
    for size in ([9, 13], [20, 11], [5, 8], [13, 40], 7, 25):
        for mode in ("bilinear", "bicubic", "nearest"):
            for aa in ((True, False) if mode != "nearest" else (False,)):
                out = TF.resize(p, size if isinstance(size, list) else [size], interpolation=modes[mode],
                                antialias=aa)
                cases.append(("resize", {"input": "p", "size": size, "interpolation": mode, "antialias": aa}, out))
    batch = torch.stack([x, x.flip(-1)])
    cases.append(("resize", {"input": "batch", "size": [6, 5], "interpolation": "bilinear", "antialias": True},
                  TF.resize(batch, [6, 5], antialias=True)))
    cases.append(("resize", {"input": "p", "size": 6, "max_size": 7, "interpolation": "bilinear", "antialias": True},
                  TF.resize(p, [6], max_size=7, antialias=True)))
    for size in ([5, 7], [9, 11], [12, 10], [14, 15], 4):
        cases.append(("center_crop", {"size": size}, TF.center_crop(x, size)))
    for (top, left, h, w) in ((2, 3, 5, 6), (-2, 8, 5, 6), (6, -4, 5, 5)):
        cases.append(("crop", {"top": top, "left": left, "height": h, "width": w}, TF.crop(x, top, left, h, w)))
    for (top, left, h, w, size, mode) in ((1, 2, 7, 8, [4, 4], "bilinear"), (0, 0, 9, 11, [12, 8], "bicubic"),
                                           (3, 4, 4, 6, [7, 5], "bilinear")):
        out = TF.resized_crop(x, top, left, h, w, size, interpolation=modes[mode], antialias=True)
        cases.append(("resized_crop", {"top": top, "left": left, "height": h, "width": w, "size": size,
                                       "interpolation": mode}, out))
    for f in (0.0, 0.4, 1.7):
        cases.append(("adjust_brightness", {"factor": f}, TF.adjust_brightness(x, f)))
        cases.append(("adjust_contrast", {"factor": f}, TF.adjust_contrast(x, f)))
        cases.append(("adjust_saturation", {"factor": f}, TF.adjust_saturation(x, f)))
    for f in (-0.5, -0.23, 0.0, 0.1, 0.37, 0.5):
        cases.append(("adjust_hue", {"factor": f}, TF.adjust_hue(x, f)))
    g1 = TF.rgb_to_grayscale(x, 1)
    cases.append(("rgb_to_grayscale", {"num_output_channels": 1}, g1))
    cases.append(("rgb_to_grayscale", {"num_output_channels": 3}, TF.rgb_to_grayscale(x, 3)))
    cases.append(("adjust_contrast", {"input": "gray", "factor": 0.6}, TF.adjust_contrast(g1, 0.6)))
    cases.append(("hflip", {}, TF.hflip(x)))
    cases.append(("vflip", {}, TF.vflip(x)))
    cases.append(("normalize", {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                  TF.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])))
    for (angle, mode, expand, center, fill) in ((17.3, "nearest", False, None, None),
                                                (-41.7, "bilinear", False, None, None),
                                                (33.1, "bilinear", True, None, [0.2, 0.5, 0.9]),
                                                (71.9, "nearest", True, None, [1.0, 0.0, 0.5]),
                                                (12.4, "bilinear", False, [4, 6], [0.0, 0.0, 0.0])):
        out = TF.rotate(x, angle, interpolation=modes[mode], expand=expand, center=center, fill=fill)
        args = {"angle": angle, "interpolation": mode, "expand": expand}
        if center is not None:
            args["center"] = center
        if fill is not None:
            args["fill"] = fill
        cases.append(("rotate", args, out))
    return cases


# files checked in every load mode; the others in mode "auto" only (the conversions are the same code)
FULL_MODES = ("gray.jpg", "cmyk.jpg", "rgb_420.jpg", "exif_6.png")


def main():
    files = write_jpegs()
    lines = ["-- Generated by scripts/tools/gen_photo_fixtures.py with Pillow %s, torch %s, torchvision %s;"
             " do not edit." % (Image.__version__, torch.__version__, torchvision.__version__),
             "-- decode: for each file under tests/fixtures/photos/, PIL's pixels after exif_transpose and",
             "-- convert() per load mode: {shape = {C, H, W}, hex = bytes in (C, H, W) order}.",
             "-- Values: 7 significant digits.",
             "-- input: the crops the transforms read (1-based top/left), of two files as PIL decodes them, / 255.",
             "-- transforms: {op, args, expected {shape, data}} from torchvision.transforms.functional on tensors.",
             "return {", "  decode = {"]
    for name in files:
        exp = pil_expected(os.path.join(OUT, name))
        lines.append('    ["%s"] = {' % name)
        for mode in (("auto", "gray", "rgb") if name in FULL_MODES else ("auto",)):
            shape, hx = exp[mode]
            lines.append('      %s = {shape = {%s}, hex = "%s"},' % (mode, ", ".join(map(str, shape)), hx))
        lines.append("    },")
    lines.append("  },")
    x = u8_input(os.path.join(OUT, "rgb_420.jpg"))[:, 5:14, 8:19]
    p = u8_input(os.path.join(OUT, "rgb_444.jpg"))[1:2, 3:16, 9:26]
    lines.append('  input = {x = {file = "rgb_420.jpg", top = 6, left = 9, height = 9, width = 11},')
    lines.append('           p = {file = "rgb_444.jpg", channel = 2, top = 4, left = 10, height = 13, width = 17}},')
    lines.append("  transforms = {")
    torch.set_num_threads(1)
    for op, args, out in transform_cases(x, p):
        lines.append('    {op = "%s", args = %s,\n     expected = %s},' % (op, lua_value(args), lua_tensor(out)))
    lines.append("  },")
    lines.append("}")
    path = os.path.join(OUT, "expected.lua")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print("wrote %d images and expected.lua under %s (%d bytes in all)" % (len(files), os.path.relpath(OUT, ROOT), total))


if __name__ == "__main__":
    sys.exit(main())
