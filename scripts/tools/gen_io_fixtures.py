#!/usr/bin/python3
"""Writes the small committed files under tests/fixtures/io/ that the file-format specs read,
and a Lua table of what each must decode to:

  png/*.png          every PNG colour type and bit depth, interlaced or not, with tRNS, written
                     by the encoder below (stdlib zlib + struct, all five row filters, Adam7), then
                     checked against PIL's decoder when PIL is installed
  idx/*              IDX files of every element type, raw and gzip
  mnist/*.gz         a 5-image MNIST-layout test split (t10k-*) and a 6-image train split
  st/*.safetensors   safetensors files laid out as huggingface's writer does (metadata first,
                     data ordered by dtype alignment then name, header padded with spaces),
                     F16/BF16 bit patterns from PyTorch's own conversions
  expected.lua       the decoded values, loaded by the specs with dofile

Run from anywhere: /usr/bin/python3 scripts/tools/gen_io_fixtures.py
"""
import gzip
import json
import os
import random
import struct
import sys
import zlib

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "io")

# ---------------------------------------------------------------------------------------------
# PNG encoder

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def pack_row(samples, depth):
    """samples: flat list of ints for one row -> bytes (MSB-first packing below 8 bits)."""
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    out, acc, nbits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp, first_filter):
    """Filters packed rows, cycling through filter types 0..4 starting at first_filter."""
    out, prev = bytearray(), bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        ft = (first_filter + i) % 5
        f = bytearray()
        for x in range(len(row)):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
            f.append((row[x] - pred) & 0xFF)
        out.append(ft)
        out += f
        prev = row
    return bytes(out)


def write_png(path, width, height, color, depth, pixels, palette=None, trns=None, interlace=False):
    """pixels[y][x] is a tuple of channel samples (a 1-tuple of the index for palette images)."""
    ch = CHANNELS[color]
    bpp = max(1, ch * depth // 8)
    if interlace:
        raw = b""
        for p, (x0, y0, dx, dy) in enumerate(ADAM7):
            xs, ys = list(range(x0, width, dx)), list(range(y0, height, dy))
            if not xs or not ys:
                continue  # an empty pass has no rows, not even filter bytes
            rows = [pack_row([s for x in xs for s in pixels[y][x]], depth) for y in ys]
            raw += filter_rows(rows, bpp, p)
    else:
        rows = [pack_row([s for x in range(width) for s in pixels[y][x]], depth) for y in range(height)]
        raw = filter_rows(rows, bpp, 0)
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 1 if interlace else 0))
    if palette is not None:
        png += chunk(b"PLTE", b"".join(bytes(rgb) for rgb in palette))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    # split the image data over two IDAT chunks: decoders must join them
    z = zlib.compress(raw, 9)
    half = len(z) // 2
    png += chunk(b"IDAT", z[:half]) + chunk(b"IDAT", z[half:])
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


# ---------------------------------------------------------------------------------------------
# Lua output helpers


def lua_num(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if v != v:
        return "0/0"
    if v in (float("inf"), float("-inf")):
        return "math.huge" if v > 0 else "-math.huge"
    return repr(float(v))


def lua_value(v, indent=""):
    if isinstance(v, dict):
        inner = indent + "  "
        parts = []
        for k in sorted(v):
            key = k if k.isidentifier() else "[%s]" % lua_str(k)
            parts.append("%s%s = %s" % (inner, key, lua_value(v[k], inner)))
        return "{\n" + ",\n".join(parts) + "\n" + indent + "}"
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, (int, float)) for x in v):
            return "{" + ", ".join(lua_num(x) for x in v) + "}"
        return "{" + ", ".join(lua_value(x, indent) for x in v) + "}"
    if isinstance(v, str):
        return lua_str(v)
    return lua_num(v)


def lua_str(s):
    """A Lua string literal of s's UTF-8 bytes (non-ASCII as decimal escapes)."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        out.append(c if 32 <= b < 127 and c not in '"\\' else "\\%03d" % b)
    return '"' + "".join(out) + '"'


# ---------------------------------------------------------------------------------------------
# PNG cases


def png_cases(rng):
    W, H = 7, 5  # odd sizes: Adam7 passes of uneven widths, one empty-ish pass
    cases = []

    def image(ch, maxv):
        return [[tuple(rng.randint(0, maxv) for _ in range(ch)) for _ in range(W)] for _ in range(H)]

    for depth in (1, 2, 4, 8, 16):
        cases.append(dict(name="gray%d" % depth, color=0, depth=depth, px=image(1, 2 ** depth - 1)))
    cases.append(dict(name="gray8_interlaced", color=0, depth=8, px=image(1, 255), interlace=True))
    cases.append(dict(name="gray2_interlaced", color=0, depth=2, px=image(1, 3), interlace=True))
    cases.append(dict(name="gray16_interlaced", color=0, depth=16, px=image(1, 65535), interlace=True))
    g = image(1, 255)
    cases.append(dict(name="gray8_trns", color=0, depth=8, px=g, trns=struct.pack(">H", g[0][0][0])))
    for depth in (8, 16):
        cases.append(dict(name="gray_alpha%d" % depth, color=4, depth=depth, px=image(2, 2 ** depth - 1)))
    for depth in (8, 16):
        cases.append(dict(name="rgb%d" % depth, color=2, depth=depth, px=image(3, 2 ** depth - 1)))
    cases.append(dict(name="rgb8_interlaced", color=2, depth=8, px=image(3, 255), interlace=True))
    c = image(3, 255)
    cases.append(dict(name="rgb8_trns", color=2, depth=8, px=c, trns=struct.pack(">HHH", *c[1][1])))
    for depth in (8, 16):
        cases.append(dict(name="rgba%d" % depth, color=6, depth=depth, px=image(4, 2 ** depth - 1)))
    cases.append(dict(name="rgba8_interlaced", color=6, depth=8, px=image(4, 255), interlace=True))
    for depth in (1, 2, 4, 8):
        n = min(2 ** depth, 20)
        pal = [tuple(rng.randint(0, 255) for _ in range(3)) for _ in range(n)]
        cases.append(dict(name="palette%d" % depth, color=3, depth=depth, px=image(1, n - 1), palette=pal))
    pal = [tuple(rng.randint(0, 255) for _ in range(3)) for _ in range(6)]
    cases.append(dict(name="palette4_trns", color=3, depth=4, px=image(1, 5), palette=pal,
                      trns=bytes([0, 128, 255])))
    cases.append(dict(name="palette8_interlaced", color=3, depth=8, px=image(1, 5), palette=pal, interlace=True))
    return W, H, cases


def decoded(case, W, H, mode):
    """What cnn.image.load must give: (shape, values in C,H,W order as fractions num/den)."""
    color, depth, px = case["color"], case["depth"], case["px"]
    maxv = 2 ** depth - 1
    pal, trns = case.get("palette"), case.get("trns")
    rgba = []  # per pixel (r, g, b, a) in [0, 1] plus whether the source is colour
    for y in range(H):
        for x in range(W):
            p = px[y][x]
            if color == 3:
                r, g, b = (v / 255 for v in pal[p[0]])
                a = trns[p[0]] / 255 if trns and p[0] < len(trns) else 1.0
                rgba.append((r, g, b, a, [pal[p[0]][0], pal[p[0]][1], pal[p[0]][2]], 255))
            elif color in (0, 4):
                v = p[0] / maxv
                a = p[1] / maxv if color == 4 else (0.0 if trns and struct.pack(">H", p[0]) == trns else 1.0)
                rgba.append((v, v, v, a, [p[0]] * 3, maxv))
            else:
                r, g, b = (s / maxv for s in p[:3])
                a = p[3] / maxv if color == 6 else (0.0 if trns and struct.pack(">HHH", *p[:3]) == trns else 1.0)
                rgba.append((r, g, b, a, list(p[:3]), maxv))
    colour = color in (2, 3, 6)
    if mode == "auto":
        mode = "rgb" if colour else "gray"
    if mode == "gray":
        vals = []
        for r, g, b, a, ints, mx in rgba:
            if not colour:
                vals.append(r)
            elif mx == 255:
                vals.append(((19595 * ints[0] + 38470 * ints[1] + 7471 * ints[2] + 0x8000) >> 16) / 255)
            else:
                vals.append(0.299 * r + 0.587 * g + 0.114 * b)
        return [1, H, W], vals
    nc = 3 if mode == "rgb" else 4
    planes = [[px_[c] for px_ in rgba] for c in range(nc)]
    return [nc, H, W], [v for pl in planes for v in pl]


def make_pngs(rng, expected):
    d = os.path.join(OUT, "png")
    os.makedirs(d, exist_ok=True)
    W, H, cases = png_cases(rng)
    out = {}
    for case in cases:
        path = os.path.join(d, case["name"] + ".png")
        write_png(path, W, H, case["color"], case["depth"], case["px"], case.get("palette"), case.get("trns"),
                  case.get("interlace", False))
        entry = {}
        for mode in ("auto", "gray", "rgb", "rgba"):
            shape, vals = decoded(case, W, H, mode)
            entry[mode] = {"shape": shape, "data": [float("%.9g" % v) for v in vals]}
        out[case["name"]] = entry
        check_with_pil(path, case, entry)
    expected["png"] = out


def check_with_pil(path, case, entry):
    """An independent decoder (PIL) must agree with the encoder and the expected values."""
    try:
        from PIL import Image
    except ImportError:
        return

    def same(got, want, what):
        if len(got) != len(want) or any(abs(a - b) > 1e-9 for a, b in zip(got, want)):
            sys.exit("PIL disagrees with the expected %s values for %s" % (what, path))

    im = Image.open(path)
    if case["depth"] == 16:
        if case["color"] == 0:  # PIL keeps 16-bit grey; it reduces 16-bit colour to 8 bits
            same([v / 65535 for v in im.getdata()], entry["auto"]["data"], "16-bit grey")
        return
    pix = list(im.convert("RGBA").getdata())
    same([p[c] / 255 for c in range(4) for p in pix], entry["rgba"]["data"], "RGBA")
    if case["color"] in (2, 3, 6):
        same([v / 255 for v in im.convert("RGB").convert("L").getdata()], entry["gray"]["data"], "L")


# ---------------------------------------------------------------------------------------------
# IDX

IDX_FMT = {0x08: "B", 0x09: "b", 0x0B: "h", 0x0C: "i", 0x0D: "f", 0x0E: "d"}


def idx_bytes(code, shape, values):
    head = struct.pack(">BBBB", 0, 0, code, len(shape)) + b"".join(struct.pack(">I", s) for s in shape)
    return head + b"".join(struct.pack(">" + IDX_FMT[code], v) for v in values)


def make_idx(rng, expected):
    d = os.path.join(OUT, "idx")
    os.makedirs(d, exist_ok=True)
    cases = {
        "images_ubyte": (0x08, [3, 4, 5], [rng.randint(0, 255) for _ in range(60)]),
        "labels_ubyte": (0x08, [6], [3, 0, 9, 255, 1, 7]),
        "sbyte_2d": (0x09, [2, 3], [-128, -1, 0, 1, 64, 127]),
        "short_2d": (0x0B, [3, 2], [-32768, -2, 0, 300, 12345, 32767]),
        "int_1d": (0x0C, [4], [-2147483648, -5, 70000, 2147483647]),
        "float_2d": (0x0D, [2, 2], [0.5, -1.25, 3.0e10, 1.0e-3]),
        "double_1d": (0x0E, [3], [0.1, -2.5, 1.0e30]),
        "ubyte_3d_empty": (0x08, [0, 28, 28], []),
    }
    out = {}
    for name, (code, shape, values) in cases.items():
        raw = idx_bytes(code, shape, values)
        with open(os.path.join(d, name + ".idx"), "wb") as f:
            f.write(raw)
        with open(os.path.join(d, name + ".idx.gz"), "wb") as f:
            f.write(gzip.compress(raw, mtime=0))
        as_float = code in (0x0D, 0x0E) or len(shape) >= 2
        if code == 0x0D:
            values = [struct.unpack("<f", struct.pack("<f", v))[0] for v in values]
        if code == 0x0E:  # stored as float32
            values = [struct.unpack("<f", struct.pack("<f", v))[0] if abs(v) < 3e38 else float("inf") for v in values]
        out[name] = {"shape": shape, "dtype": "float32" if as_float else "int64", "data": values}
    expected["idx"] = out


def make_mnist(expected):
    """Pixel (i, r, c) of image i (0-based) = (37 i + 5 r + 3 c) mod 256: the spec recomputes it."""
    d = os.path.join(OUT, "mnist")
    os.makedirs(d, exist_ok=True)
    labels = {"t10k": [7, 2, 1, 0, 9], "train": [5, 0, 4, 1, 9, 2]}
    for prefix, labs in labels.items():
        n = len(labs)
        px = [(37 * i + 5 * r + 3 * c) % 256 for i in range(n) for r in range(28) for c in range(28)]
        for kind, code, shape, vals in (("images-idx3-ubyte", 0x08, [n, 28, 28], px),
                                        ("labels-idx1-ubyte", 0x08, [n], labs)):
            with open(os.path.join(d, "%s-%s.gz" % (prefix, kind)), "wb") as f:
                f.write(gzip.compress(idx_bytes(code, shape, vals), mtime=0))
    expected["mnist"] = {"test_labels": labels["t10k"], "train_labels": labels["train"]}


# ---------------------------------------------------------------------------------------------
# safetensors

ALIGN = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
         "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def st_file(path, tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw little-endian bytes). Layout as huggingface's writer:
    data sorted by alignment (largest first) then name; header {"__metadata__", names...} padded
    with spaces to a multiple of 8."""
    order = sorted(tensors, key=lambda k: (-ALIGN[tensors[k][0]], k))
    header, off, blob = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for k in order:
        dt, shape, raw = tensors[k]
        header[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blob)


def make_safetensors(rng, expected):
    import torch  # PyTorch's own float16/bfloat16 rounding and bit patterns

    d = os.path.join(OUT, "st")
    os.makedirs(d, exist_ok=True)
    f32 = torch.randn(2, 3, generator=torch.Generator().manual_seed(7))
    f16 = torch.tensor([1.0, -2.5, 65504.0, 6.0e-8, float("inf"), -0.0, 0.1, 1e-5], dtype=torch.float16)
    bf16 = torch.tensor([1.0, -3.140625, 1e30, 1e-30], dtype=torch.bfloat16)
    f64 = [0.1, -1e-40, 12345.678]
    i64 = [-(2 ** 63), -1, 2 ** 62 + 3]
    i32 = [-2 ** 31, 5, 2 ** 31 - 1]
    i16 = [-32768, 7, 32767]
    i8 = [-128, -1, 127]
    u8 = [0, 200, 255]
    u16 = [0, 65535]
    u32 = [4294967295, 1]
    u64 = [2 ** 63 - 1, 0]
    bools = [1, 0, 1]
    # F8_E4M3 (fn): 0x38 = 2^0 * 1.0 = 1; 0x44 = 2^(8-7) * 1.5 = 3; 0xC0 = -2^1 = -2; 0x01 = 2^-9
    # (subnormal); 0x7E = 2^8 * 1.75 = 448 (the largest). F8_E5M2 (top byte of F16): 0x3C = 1.0,
    # 0xC2 = -3.0, 0x7C = +inf, 0x01 = 2^-16.
    e4m3 = (bytes([0x38, 0x44, 0xC0, 0x01, 0x7E]), [1.0, 3.0, -2.0, 2.0 ** -9, 448.0])
    e5m2 = (bytes([0x3C, 0xC2, 0x7C, 0x01]), [1.0, -3.0, float("inf"), 2.0 ** -16])

    def pack(fmt, vals):
        return b"".join(struct.pack("<" + fmt, v) for v in vals)

    tensors = {
        "f32": ("F32", [2, 3], f32.numpy().astype("<f4").tobytes()),
        "f16": ("F16", [8], f16.view(torch.int16).numpy().astype("<i2").tobytes()),
        "bf16": ("BF16", [2, 2], bf16.view(torch.int16).numpy().astype("<i2").tobytes()),
        "f64": ("F64", [3], pack("d", f64)),
        "i64": ("I64", [3], pack("q", i64)),
        "i32": ("I32", [3, 1], pack("i", i32)),
        "i16": ("I16", [3], pack("h", i16)),
        "i8": ("I8", [3], pack("b", i8)),
        "u8": ("U8", [3], pack("B", u8)),
        "u16": ("U16", [2], pack("H", u16)),
        "u32": ("U32", [2], pack("I", u32)),
        "u64": ("U64", [2], pack("Q", u64)),
        "mask": ("BOOL", [3], bytes(bools)),
        "e4m3": ("F8_E4M3", [5], e4m3[0]),
        "e5m2": ("F8_E5M2", [4], e5m2[0]),
        "empty": ("F32", [0, 3], b""),
        "scalar": ("F32", [], pack("f", [2.5])),
        "layer.0.weight": ("F32", [1, 1, 2, 2], pack("f", [1.0, 2.0, 3.0, 4.0])),
    }
    st_file(os.path.join(d, "dtypes.safetensors"), tensors, {"format": "pt", "note": "fixture \u00e9"})
    st_file(os.path.join(d, "no_metadata.safetensors"), {"w": ("F32", [2], pack("f", [1.5, -1.5]))})
    st_file(os.path.join(d, "empty.safetensors"), {})

    def f32r(vals):
        return [struct.unpack("<f", struct.pack("<f", v))[0] if abs(v) < 3.5e38 else v for v in vals]

    expected["safetensors"] = {
        "metadata": {"format": "pt", "note": "fixture \u00e9"},
        "tensors": {
            "f32": {"dtype": "float32", "shape": [2, 3], "data": [float(v) for v in f32.flatten()]},
            "f16": {"dtype": "float32", "shape": [8], "data": [float(v) for v in f16.float()]},
            "bf16": {"dtype": "float32", "shape": [2, 2], "data": [float(v) for v in bf16.float()]},
            "f64": {"dtype": "float32", "shape": [3], "data": f32r(f64)},
            "i64": {"dtype": "int64", "shape": [3], "data": i64},
            "i32": {"dtype": "int64", "shape": [3, 1], "data": i32},
            "i16": {"dtype": "int64", "shape": [3], "data": i16},
            "i8": {"dtype": "int64", "shape": [3], "data": i8},
            "u8": {"dtype": "uint8", "shape": [3], "data": u8},
            "u16": {"dtype": "int64", "shape": [2], "data": u16},
            "u32": {"dtype": "int64", "shape": [2], "data": u32},
            "u64": {"dtype": "int64", "shape": [2], "data": u64},
            "mask": {"dtype": "bool", "shape": [3], "data": [b != 0 for b in bools]},
            "e4m3": {"dtype": "float32", "shape": [5], "data": e4m3[1]},
            "e5m2": {"dtype": "float32", "shape": [4], "data": e5m2[1]},
            "empty": {"dtype": "float32", "shape": [0, 3], "data": []},
            "scalar": {"dtype": "float32", "shape": [], "data": [2.5]},
            "layer.0.weight": {"dtype": "float32", "shape": [1, 1, 2, 2], "data": [1.0, 2.0, 3.0, 4.0]},
        },
    }


def make_grids(expected):
    """torchvision.utils.make_grid on small batches: the reference for cnn.image.grid. make_grid
    repeats 1-channel images to 3 channels; image.grid keeps 1, so those keep channel 1 only."""
    import torch
    from torchvision.utils import make_grid

    out = {}
    x1 = (torch.arange(5 * 1 * 2 * 3, dtype=torch.float32) / 30).reshape(5, 1, 2, 3)
    x3 = (torch.arange(4 * 3 * 3 * 2, dtype=torch.float32) * 0.37 - 5).reshape(4, 3, 3, 2)
    cases = {
        "gray_nrow3_pad1": (x1, dict(nrow=3, padding=1, pad_value=0.5), True),
        "gray_default": (x1, dict(), True),
        "rgb_nrow2_normalize": (x3, dict(nrow=2, padding=2, normalize=True), False),
        "rgb_scale_each": (x3, dict(nrow=4, padding=0, normalize=True, scale_each=True), False),
        "rgb_value_range": (x3, dict(nrow=3, padding=1, normalize=True, value_range=(-2.0, 3.0), pad_value=1.0), False),
    }
    for name, (x, kw, gray) in cases.items():
        g = make_grid(x.clone(), **kw)
        if gray:
            g = g[:1]
        opts = dict(kw)
        if "value_range" in opts:
            opts["value_range"] = list(opts["value_range"])
        opts = {k: (int(v) if isinstance(v, bool) else v) for k, v in opts.items()}
        out[name] = {"input": {"shape": list(x.shape), "data": [float(v) for v in x.flatten()]},
                     "opts": opts, "shape": list(g.shape), "data": [float("%.9g" % v) for v in g.flatten()]}
    expected["grid"] = out


def main():
    rng = random.Random(1234)
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    make_pngs(rng, expected)
    make_idx(rng, expected)
    make_mnist(expected)
    make_safetensors(rng, expected)
    make_grids(expected)
    with open(os.path.join(OUT, "expected.lua"), "w") as f:
        f.write("-- Generated by scripts/tools/gen_io_fixtures.py: what each file under tests/fixtures/io\n")
        f.write("-- must decode to. PNG values are per load mode, in C,H,W order, in [0, 1].\n")
        f.write("return " + lua_value(expected) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
