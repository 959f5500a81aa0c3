#!/usr/bin/python3
"""Writes tests/fixtures/conv_reference.lua: PyTorch's conv2d, max_pool2d, avg_pool2d and
adaptive_avg_pool2d outputs and gradients (w.r.t. every float input, for a random grad_output) over
many configurations, so tests/lua/conv_spec.lua and pool_spec.lua check cnnlua against an
independent implementation. Inputs are written into the fixture (no RNG matching needed); shapes
are kept small so the file stays well under 1.5 MB.

Options are written as the Lua table cnnlua takes (a tuple becomes {a, b}); the Python side calls
torch.nn.functional with the same keywords. Run: /usr/bin/python3 scripts/tools/gen_conv_fixtures.py
"""
import math
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)
GEN = torch.Generator().manual_seed(20240612)


def randn(*shape):
    return torch.randn(*shape, generator=GEN)


# (name, x shape, w shape, bias?, opts); every input requires grad
CONV = [
    ("basic_3x3", (2, 3, 6, 6), (4, 3, 3, 3), True, {}),
    ("stride2_pad1", (2, 3, 7, 7), (4, 3, 3, 3), True, {"stride": 2, "padding": 1}),
    ("rect_kernel_pair_opts", (1, 2, 7, 9), (3, 2, 2, 4), True, {"stride": (2, 1), "padding": (1, 2)}),
    ("stride3_pad2_5x5", (2, 2, 10, 9), (3, 2, 5, 5), True, {"stride": 3, "padding": 2}),
    ("dilation2", (1, 2, 9, 9), (3, 2, 3, 3), True, {"dilation": 2, "padding": 2}),
    ("dilation_rect_stride", (2, 2, 9, 10), (2, 2, 3, 2), True,
     {"dilation": (2, 1), "padding": (0, 1), "stride": (1, 2)}),
    ("groups2", (2, 4, 6, 6), (6, 2, 3, 3), True, {"groups": 2, "padding": 1}),
    ("groups3_stride2", (1, 6, 7, 7), (3, 2, 3, 3), False, {"groups": 3, "stride": 2}),
    ("depthwise", (2, 4, 6, 6), (4, 1, 3, 3), True, {"groups": 4, "stride": 2, "padding": 1}),
    ("depthwise_multiplier2", (1, 3, 5, 5), (6, 1, 3, 3), True, {"groups": 3, "padding": 1}),
    ("alexnet_conv1_11x11_s4", (1, 3, 35, 35), (8, 3, 11, 11), True, {"stride": 4, "padding": 2}),
    ("one_by_one", (2, 5, 4, 4), (3, 5, 1, 1), True, {}),
    ("one_by_one_groups2", (2, 4, 3, 5), (6, 2, 1, 1), True, {"groups": 2}),
    ("one_by_one_stride2", (2, 3, 5, 5), (4, 3, 1, 1), True, {"stride": 2}),
    ("one_by_one_padded", (1, 2, 3, 3), (2, 2, 1, 1), True, {"padding": 1}),
    ("batch3_no_bias", (3, 2, 5, 5), (2, 2, 3, 3), False, {"padding": 1}),
    ("kernel_equals_input", (2, 3, 4, 5), (2, 3, 4, 5), True, {}),
    ("padding_same_even_kernel", (1, 2, 5, 6), (3, 2, 2, 4), True, {"padding": "same"}),
    ("padding_same_dilation", (1, 2, 7, 7), (2, 2, 3, 3), True, {"padding": "same", "dilation": 2}),
    ("padding_valid", (1, 2, 6, 6), (2, 2, 3, 3), True, {"padding": "valid"}),
    ("unbatched_chw", (3, 6, 5), (2, 3, 3, 3), True, {"padding": 1}),
    ("lenet_conv1_shape", (2, 1, 12, 12), (6, 1, 5, 5), True, {"padding": 2}),
    ("resnet_3x3_16ch", (2, 16, 6, 6), (16, 16, 3, 3), True, {"padding": 1}),
]

# (name, op, x shape, second argument (kernel or output size), opts)
POOL = [
    ("max_k2", "max_pool2d", (2, 3, 6, 6), 2, {}),
    ("max_overlap_3_2", "max_pool2d", (2, 2, 9, 9), 3, {"stride": 2}),
    ("max_overlap_3_2_ceil", "max_pool2d", (1, 2, 8, 8), 3, {"stride": 2, "ceil_mode": True}),
    ("max_pad1", "max_pool2d", (1, 2, 7, 6), 3, {"stride": 2, "padding": 1}),
    ("max_pad_ceil_last_window_dropped", "max_pool2d", (2, 2, 5, 5), 2, {"stride": 2, "padding": 1, "ceil_mode": True}),
    ("max_rect_ceil", "max_pool2d", (1, 3, 7, 10), (2, 3), {"stride": (2, 3), "padding": 1, "ceil_mode": True}),
    ("max_dilation2", "max_pool2d", (2, 2, 9, 8), (3, 2), {"stride": (1, 2), "padding": 1, "dilation": (2, 3)}),
    ("max_stride1", "max_pool2d", (1, 2, 5, 5), 2, {"stride": 1}),
    ("max_unbatched", "max_pool2d", (3, 6, 6), 2, {}),
    ("max_return_indices", "max_pool2d", (1, 2, 6, 7), 3, {"stride": 2, "padding": 1, "return_indices": True}),
    ("avg_k2", "avg_pool2d", (2, 3, 6, 6), 2, {}),
    ("avg_overlap_3_2", "avg_pool2d", (2, 2, 9, 9), 3, {"stride": 2}),
    ("avg_pad_include", "avg_pool2d", (1, 2, 7, 6), 3, {"stride": 2, "padding": 1}),
    ("avg_pad_exclude", "avg_pool2d", (1, 2, 7, 6), 3, {"stride": 2, "padding": 1, "count_include_pad": False}),
    ("avg_ceil_clipped", "avg_pool2d", (2, 2, 8, 7), 3, {"stride": 2, "ceil_mode": True}),
    ("avg_ceil_pad", "avg_pool2d", (2, 2, 5, 5), 2, {"stride": 2, "padding": 1, "ceil_mode": True}),
    ("avg_ceil_pad_exclude_rect", "avg_pool2d", (1, 2, 6, 9), (4, 3),
     {"stride": (3, 2), "padding": (2, 1), "ceil_mode": True, "count_include_pad": False}),
    ("avg_divisor_override", "avg_pool2d", (1, 2, 6, 6), 3, {"stride": 2, "padding": 1, "divisor_override": 5}),
    ("avg_unbatched", "avg_pool2d", (2, 5, 5), 2, {"stride": 1}),
    ("adaptive_7x5_to_3x2", "adaptive_avg_pool2d", (2, 3, 7, 5), (3, 2), {}),
    ("adaptive_10_to_4", "adaptive_avg_pool2d", (1, 2, 10, 10), 4, {}),
    ("adaptive_identity", "adaptive_avg_pool2d", (1, 2, 4, 3), (4, 3), {}),
    ("adaptive_global", "adaptive_avg_pool2d", (2, 4, 5, 6), 1, {}),
    ("adaptive_upsample_3x4_to_5x7", "adaptive_avg_pool2d", (1, 1, 3, 4), (5, 7), {}),
    ("adaptive_unbatched", "adaptive_avg_pool2d", (3, 9, 6), (2, 4), {}),
]


def lua_number(v):
    if math.isnan(v) or math.isinf(v):
        raise ValueError("non-finite value in fixture")
    text = "%.9g" % v
    return text if any(c in text for c in ".en") else text + ".0"


def lua_nested(v):
    """A nested list as a Lua table, one innermost row per line."""
    if not isinstance(v, list):
        return lua_number(v)
    if not v or not isinstance(v[0], list):
        return "{" + ", ".join(lua_number(x) for x in v) + "}"
    return "{\n" + ",\n".join(lua_nested(x) for x in v) + "}"


def lua_opt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return "%d" % v
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, tuple):
        return "{" + ", ".join(lua_opt(x) for x in v) + "}"
    raise TypeError(type(v))


def lua_opts(d):
    return "{" + ", ".join("%s = %s" % (k, lua_opt(v)) for k, v in d.items()) + "}"


def tensor(t):
    return "{shape = {%s}, data = %s}" % (", ".join(str(s) for s in t.shape), lua_nested(t.detach().tolist()))


def conv_case(name, xs, ws, bias, opts):
    x = randn(*xs).requires_grad_()
    w = (randn(*ws) * 0.5).requires_grad_()
    b = randn(ws[0]).requires_grad_() if bias else None
    y = F.conv2d(x, w, b, **opts)
    gy = randn(*y.shape)
    y.backward(gy)
    fields = [
        'name = "%s"' % name,
        "opts = %s" % lua_opts(opts),
        "x = %s" % tensor(x),
        "w = %s" % tensor(w),
        "b = %s" % (tensor(b) if bias else "false"),
        "output = %s" % tensor(y),
        "grad_output = %s" % tensor(gy),
        "grad_x = %s" % tensor(x.grad),
        "grad_w = %s" % tensor(w.grad),
        "grad_b = %s" % (tensor(b.grad) if bias else "false"),
    ]
    return "{\n" + ",\n".join(fields) + "}"


def pool_case(name, op, xs, arg, opts):
    x = randn(*xs).requires_grad_()
    fn = getattr(F, op)
    res = fn(x, arg, **opts)
    y, idx = res if isinstance(res, tuple) else (res, None)
    gy = randn(*y.shape)
    y.backward(gy)
    fields = [
        'name = "%s"' % name,
        'op = "%s"' % op,
        "arg = %s" % lua_opt(arg),
        "opts = %s" % lua_opts(opts),
        "x = %s" % tensor(x),
        "output = %s" % tensor(y),
        "grad_output = %s" % tensor(gy),
        "grad_x = %s" % tensor(x.grad),
    ]
    if idx is not None:  # 1-based, as cnnlua returns them
        fields.append("indices = %s" % tensor((idx + 1).double()))
    return "{\n" + ",\n".join(fields) + "}"


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "tests", "fixtures", "conv_reference.lua")
    conv = [conv_case(*c) for c in CONV]
    pool = [pool_case(*c) for c in POOL]
    with open(path, "w") as f:
        f.write("-- Generated by scripts/tools/gen_conv_fixtures.py with PyTorch %s; do not edit.\n"
                % torch.__version__)
        f.write("-- conv: x, w, b (false when absent), opts as cnnlua takes them, the output, a random\n")
        f.write("-- grad_output and the gradients w.r.t. x, w, b. pool: x, the kernel or output size (arg),\n")
        f.write("-- opts, output, grad_output, grad_x and, with return_indices, 1-based indices.\n")
        f.write("return {\nconv = {\n%s},\npool = {\n%s}\n}\n" % (",\n".join(conv), ",\n".join(pool)))
    print("wrote %d conv and %d pool cases to %s (%d bytes)" % (len(conv), len(pool), path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
