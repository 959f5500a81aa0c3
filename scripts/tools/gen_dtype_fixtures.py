#!/usr/bin/python3
"""The rules of the bool and uint8 dtypes as PyTorch 1.13 applies them, for tests/lua/dtypes_spec.lua:
each case is one expression written twice, in Lua (cnnlua) and in Python (PyTorch), over the same
inputs; the fixture stores what PyTorch gives (dtype, shape, values) or that it raises. Promotion
(bool < uint8 < int64 < float32, 0-d tensors and numbers only raising the category), conversions,
arithmetic modulo 256, bool arithmetic, comparisons and predicates, reductions, masks, where,
masked_fill, printing.

Run: /usr/bin/python3 scripts/tools/gen_dtype_fixtures.py   (writes tests/fixtures/dtype_rules.lua)
"""
import math
import warnings

import torch

from fixture_util import fixture_path, lua_string, lua_value

warnings.filterwarnings("ignore")  # uint8 masks and conditions: deprecated in PyTorch, still applied

# The inputs every expression sees, in both languages.
INPUTS_LUA = """local b = cnn.tensor({true, false})
local u = cnn.tensor({200, 3}, {dtype = "uint8"})
local i = cnn.tensor({5, -2}, {dtype = "int64"})
local f = cnn.tensor({1.5, -2.0})
local u0 = cnn.tensor(5, {dtype = "uint8"})
local b0 = cnn.tensor(true)
local i0 = cnn.tensor(5, {dtype = "int64"})
local f0 = cnn.tensor(2.5)
local m = cnn.arange(6.0):view(2, 3)
local mi = cnn.arange(6):view(2, 3)
local B = function(t) return cnn.tensor(t) end
local U = function(t) return cnn.tensor(t, {dtype = "uint8"}) end
"""


def inputs_py():
    return dict(
        b=torch.tensor([True, False]), u=torch.tensor([200, 3], dtype=torch.uint8), i=torch.tensor([5, -2]),
        f=torch.tensor([1.5, -2.0]), u0=torch.tensor(5, dtype=torch.uint8), b0=torch.tensor(True),
        i0=torch.tensor(5), f0=torch.tensor(2.5), m=torch.arange(6.0).view(2, 3), mi=torch.arange(6).view(2, 3),
        B=lambda v: torch.tensor(v), U=lambda v: torch.tensor(v, dtype=torch.uint8), torch=torch, nan=math.nan,
        math=math,
    )


# (what, Lua expression, Python expression)
CASES = [
    # promotion: tensors of dimensions, 0-d tensors and numbers (PyTorch's result_type)
    ("bool + bool is or", "b + B{false, false}", "b + torch.tensor([False, False])"),
    ("bool * bool is and", "b * B{true, true}", "b * torch.tensor([True, True])"),
    ("bool + integer number", "b + 1", "b + 1"),
    ("bool + float number", "b + 1.5", "b + 1.5"),
    ("bool + boolean", "b + true", "b + True"),
    ("bool * float number", "b * 2.5", "b * 2.5"),
    ("uint8 + int64", "u + i", "u + i"),
    ("uint8 + float32", "u + f", "u + f"),
    ("bool + uint8", "b + u", "b + u"),
    ("uint8 + 0-d int64 keeps uint8", "u + i0", "u + i0"),
    ("uint8 + 0-d float32 is float32", "u + f0", "u + f0"),
    ("int64 + 0-d float32", "i + f0", "i + f0"),
    ("0-d bool + uint8", "b0 + u", "b0 + u"),
    ("0-d uint8 + number stays uint8", "u0 + 2", "u0 + 2"),
    ("0-d uint8 + 0-d int64 is int64", "u0 + i0", "u0 + i0"),
    ("uint8 + number wraps", "u + 300", "u + 300"),
    ("uint8 + negative number wraps", "u + (-1)", "u + (-1)"),
    ("uint8 * number wraps", "u * 1000", "u * 1000"),
    ("uint8 - number wraps", "u - 5", "u - 5"),
    ("uint8 + float number", "u + 2.5", "u + 2.5"),
    ("uint8 + boolean", "u + true", "u + True"),
    ("uint8 + uint8 wraps", "u + U{100, 1}", "u + torch.tensor([100, 1], dtype=torch.uint8)"),
    ("int64 + float number", "i + 2.0", "i + 2.0"),
    ("negated uint8 wraps", "-u", "-u"),
    ("uint8 / uint8 is float32", "u / U{2, 2}", "u / torch.tensor([2, 2], dtype=torch.uint8)"),
    ("bool / bool is float32", "b / B{true, true}", "b / torch.tensor([True, True])"),
    ("uint8 ^ 2 stays uint8", "u ^ 2", "u ** 2"),
    ("uint8 ^ 0.5 is float32", "u ^ 0.5", "u ** 0.5"),
    ("uint8 ^ uint8", "U{3} ^ U{2}", "torch.tensor([3], dtype=torch.uint8) ** torch.tensor([2], dtype=torch.uint8)"),
    ("2 ^ uint8", "2 ^ U{3}", "2 ** torch.tensor([3], dtype=torch.uint8)"),
    ("bool ^ 2 is int64", "b ^ 2", "b ** 2"),
    ("2 ^ bool is int64", "2 ^ B{true}", "2 ** torch.tensor([True])"),
    ("bool - bool raises", "b - b", "b - b"),
    ("int64 - bool raises", "i - b", "i - b"),
    ("bool - number raises", "b:sub(1)", "b.sub(1)"),
    ("-bool raises", "-b", "-b"),
    ("bool ^ bool raises", "b ^ b", "b ** b"),
    ("maximum of uint8 and bool", "cnn.maximum(B{true, false}, U{3, 4})",
     "torch.maximum(torch.tensor([True, False]), torch.tensor([3, 4], dtype=torch.uint8))"),
    ("maximum of bools is or", "cnn.maximum(b, B{false, true})", "torch.maximum(b, torch.tensor([False, True]))"),
    ("minimum of bools is and", "cnn.minimum(b, B{false, true})", "torch.minimum(b, torch.tensor([False, True]))"),
    # unary ops
    ("abs of uint8", "u:abs()", "u.abs()"),
    ("abs of bool raises", "b:abs()", "b.abs()"),
    ("relu of uint8", "u:relu()", "u.relu()"),
    ("relu of bool raises", "b:relu()", "b.relu()"),
    ("sign of uint8", "U{0, 7}:sign()", "torch.tensor([0, 7], dtype=torch.uint8).sign()"),
    ("sign of bool", "b:sign()", "b.sign()"),
    ("exp of uint8 is float32", "u:exp()", "u.exp()"),
    ("exp of bool is float32", "b:exp()", "b.exp()"),
    ("sqrt of uint8", "u:sqrt()", "u.sqrt()"),
    ("sigmoid of bool", "b:sigmoid()", "b.sigmoid()"),
    ("clamp of uint8 with integer bounds", "u:clamp(0, 100)", "u.clamp(0, 100)"),
    ("clamp of uint8 with a negative bound wraps it", "u:clamp(-5, 100)", "u.clamp(-5, 100)"),
    ("clamp of uint8 past 255 raises", "u:clamp(0, 300)", "u.clamp(0, 300)"),
    ("clamp of uint8 with a float bound", "u:clamp(2.5, 100)", "u.clamp(2.5, 100)"),
    ("clamp of uint8 with one bound", "u:clamp(10)", "u.clamp(min=10)"),
    ("clamp of bool is int64", "b:clamp(0, 1)", "b.clamp(0, 1)"),
    # conversions
    ("float to uint8: truncate, then the low byte", "cnn.tensor({300, -1, 255.9, 0/0, 1e10, -3.9, 511}):byte()",
     "torch.tensor([300., -1., 255.9, nan, 1e10, -3.9, 511.]).byte()"),
    ("int64 to uint8: the low byte", "cnn.tensor({300, -1, 256}, {dtype = 'int64'}):byte()",
     "torch.tensor([300, -1, 256]).byte()"),
    ("float to bool: nonzero, NaN true", "cnn.tensor({0, 0.1, 0/0, -0.0}):bool()",
     "torch.tensor([0., 0.1, nan, -0.0]).bool()"),
    ("uint8 to bool", "U{0, 7}:bool()", "torch.tensor([0, 7], dtype=torch.uint8).bool()"),
    ("bool to float32", "b:float()", "b.float()"),
    ("bool to int64", "b:long()", "b.long()"),
    ("uint8 to int64", "u:long()", "u.long()"),
    ("to('uint8')", "i:to('uint8')", "i.to(torch.uint8)"),
    ("to('bool')", "f:to('bool')", "f.to(torch.bool)"),
    ("a table of booleans is bool", "cnn.tensor({{true}, {false}})", "torch.tensor([[True], [False]])"),
    ("a boolean is a 0-d bool", "cnn.tensor(true)", "torch.tensor(True)"),
    ("uint8 from values: negatives wrap", "cnn.tensor({-1, 2.7}, {dtype = 'uint8'})",
     "torch.tensor([-1, 2.7], dtype=torch.uint8)"),
    ("uint8 from 300 raises", "cnn.tensor({300}, {dtype = 'uint8'})", "torch.tensor([300], dtype=torch.uint8)"),
    ("bool from numbers", "cnn.tensor({0, 2.5}, {dtype = 'bool'})", "torch.tensor([0, 2.5], dtype=torch.bool)"),
    ("full of true", "cnn.full({2}, true)", "torch.full((2,), True)"),
    ("ones of uint8", "cnn.ones(2, {dtype = 'uint8'})", "torch.ones(2, dtype=torch.uint8)"),
    ("zeros of bool", "cnn.zeros(2, {dtype = 'bool'})", "torch.zeros(2, dtype=torch.bool)"),
    ("arange of uint8", "cnn.arange(3, {dtype = 'uint8'})", "torch.arange(3, dtype=torch.uint8)"),
    ("arange of bool raises", "cnn.arange(3, {dtype = 'bool'})", "torch.arange(3, dtype=torch.bool)"),
    ("fill_ of uint8 with -1", "U{1, 2}:fill_(-1)", "torch.tensor([1, 2], dtype=torch.uint8).fill_(-1)"),
    ("fill_ of uint8 with 3.7", "U{1, 2}:fill_(3.7)", "torch.tensor([1, 2], dtype=torch.uint8).fill_(3.7)"),
    ("fill_ of uint8 with 256 raises", "U{1, 2}:fill_(256)", "torch.tensor([1, 2], dtype=torch.uint8).fill_(256)"),
    ("fill_ of uint8 with NaN raises", "U{1, 2}:fill_(0/0)", "torch.tensor([1, 2], dtype=torch.uint8).fill_(nan)"),
    ("fill_ of bool with 2", "B{true, false}:fill_(2)", "torch.tensor([True, False]).fill_(2)"),
    ("fill_ of bool with NaN", "B{false}:fill_(0/0)", "torch.tensor([False]).fill_(nan)"),
    ("a bool tensor cannot require grad", "cnn.tensor({true}):requires_grad_()",
     "torch.tensor([True]).requires_grad_()"),
    ("a uint8 tensor cannot require grad", "U{1}:requires_grad_()",
     "torch.tensor([1], dtype=torch.uint8).requires_grad_()"),
    # in place
    ("uint8 add_ of a float raises", "U{1}:add_(1.5)", "torch.tensor([1], dtype=torch.uint8).add_(1.5)"),
    ("bool add_ of an integer raises", "B{true}:add_(1)", "torch.tensor([True]).add_(1)"),
    ("bool mul_ of bool", "B{true, false}:mul_(B{true, true})",
     "torch.tensor([True, False]).mul_(torch.tensor([True, True]))"),
    ("uint8 add_ of int64 wraps", "U{250, 1}:add_(i)", "torch.tensor([250, 1], dtype=torch.uint8).add_(i)"),
    ("float add_ of bool", "cnn.tensor({1.5, -2}):add_(b)", "torch.tensor([1.5, -2.]).add_(b)"),
    ("uint8 mul_ wraps", "U{200, 3}:mul_(2)", "torch.tensor([200, 3], dtype=torch.uint8).mul_(2)"),
    # comparisons and predicates
    ("uint8 == number", "u:eq(200)", "u == 200"),
    ("uint8 == a number past 255 compares its low byte", "u:eq(456)", "u == 456"),
    ("uint8 < -1 compares with 255", "u:lt(-1)", "u < -1"),
    ("uint8 > 2.5 compares in float", "u:gt(2.5)", "u > 2.5"),
    ("bool == 1", "b:eq(1)", "b == 1"),
    ("bool == true", "b:eq(true)", "b == True"),
    ("bool == 0.5", "b:eq(0.5)", "b == 0.5"),
    ("float > bool", "f:gt(b)", "f > b"),
    ("uint8 == bool", "U{1, 2}:eq(b)", "torch.tensor([1, 2], dtype=torch.uint8) == b"),
    ("int64 ne float", "i:ne(f)", "i != f"),
    ("isnan", "cnn.tensor({1, 0/0, 1/0}):isnan()", "torch.tensor([1., nan, math.inf]).isnan()"),
    ("isinf", "cnn.tensor({-1/0, 1, 1/0}):isinf()", "torch.tensor([-math.inf, 1., math.inf]).isinf()"),
    ("isposinf", "cnn.tensor({-1/0, 1/0}):isposinf()", "torch.tensor([-math.inf, math.inf]).isposinf()"),
    ("isneginf", "cnn.tensor({-1/0, 1/0}):isneginf()", "torch.tensor([-math.inf, math.inf]).isneginf()"),
    ("isfinite", "cnn.tensor({1.5, 1/0, 0/0}):isfinite()", "torch.tensor([1.5, math.inf, nan]).isfinite()"),
    ("isnan of uint8", "u:isnan()", "u.isnan()"),
    ("isfinite of bool", "b:isfinite()", "b.isfinite()"),
    ("isinf of int64", "i:isinf()", "i.isinf()"),
    ("logical_not of floats", "cnn.tensor({0, 2}):logical_not()", "torch.tensor([0., 2.]).logical_not()"),
    ("logical_and of bool and uint8", "b:logical_and(U{1, 1})",
     "torch.logical_and(b, torch.tensor([1, 1], dtype=torch.uint8))"),
    ("logical_or", "b:logical_or(cnn.tensor({0, 0}))", "torch.logical_or(b, torch.tensor([0., 0.]))"),
    ("logical_xor of float and bool", "cnn.tensor({0, 2}):logical_xor(B{true, true})",
     "torch.logical_xor(torch.tensor([0., 2.]), torch.tensor([True, True]))"),
    ("~ of bool", "~b", "~b"),
    ("~ of uint8", "~u", "~u"),
    ("& of bools", "b & B{true, true}", "b & torch.tensor([True, True])"),
    ("| of bools", "b | B{false, true}", "b | torch.tensor([False, True])"),
    ("~ (xor) of bools", "b ~ B{true, true}", "b ^ torch.tensor([True, True])"),
    ("& of uint8 and a number", "u & 15", "u & 15"),
    ("& of int64", "i & cnn.tensor({3, 3}, {dtype = 'int64'})", "i & torch.tensor([3, 3])"),
    ("& of float raises", "f & f", "f & f"),
    # reductions
    ("sum of bool is int64", "b:sum()", "b.sum()"),
    ("sum of uint8 is int64 (no wrap)", "U{255, 255}:sum()", "torch.tensor([255, 255], dtype=torch.uint8).sum()"),
    ("sum of bool over a dim", "B{{true, false}, {true, true}}:sum(1)",
     "torch.tensor([[True, False], [True, True]]).sum(0)"),
    ("sum of uint8 keepdim", "U{{255, 1}, {3, 4}}:sum(2, true)",
     "torch.tensor([[255, 1], [3, 4]], dtype=torch.uint8).sum(1, keepdim=True)"),
    ("mean of bool raises", "b:mean()", "b.mean()"),
    ("mean of uint8 raises", "u:mean()", "u.mean()"),
    ("var of uint8 raises", "u:var()", "u.var()"),
    ("max of uint8", "u:max()", "u.max()"),
    ("max of bool", "b:max()", "b.max()"),
    ("min of uint8 over a dim", "U{{3, 1}, {0, 9}}:min(2)",
     "torch.tensor([[3, 1], [0, 9]], dtype=torch.uint8).min(1).values"),
    ("argmax of uint8", "U{3, 4}:argmax()", "torch.tensor([3, 4], dtype=torch.uint8).argmax() + 1"),
    ("any of bool", "b:any()", "b.any()"),
    ("all of bool", "b:all()", "b.all()"),
    ("all of an empty bool", "cnn.zeros(0, {dtype = 'bool'}):all()", "torch.zeros(0, dtype=torch.bool).all()"),
    ("any of uint8 is uint8", "U{1, 0}:any()", "torch.tensor([1, 0], dtype=torch.uint8).any()"),
    ("any of float", "cnn.tensor({1, 0}):any()", "torch.tensor([1., 0.]).any()"),
    ("all over a dim", "B{{true, false}, {true, true}}:all(2)", "torch.tensor([[True, False], [True, True]]).all(1)"),
    ("nonzero (1-based)", "cnn.tensor({{1, 0}, {0, 3}}):nonzero()", "torch.tensor([[1, 0], [0, 3]]).nonzero() + 1"),
    ("nonzero of bool (1-based)", "B{true, false, true}:nonzero()", "torch.tensor([True, False, True]).nonzero() + 1"),
    # joins and matrix products
    ("cat of uint8 and bool", "cnn.cat({u, b})", "torch.cat([u, b])"),
    ("cat of uint8 and int64", "cnn.cat({u, i})", "torch.cat([u, i])"),
    ("cat of bool and float32", "cnn.cat({b, f})", "torch.cat([b, f])"),
    ("stack of bools", "cnn.stack({b, b})", "torch.stack([b, b])"),
    ("stack of uint8 and bool", "cnn.stack({U{1}, B{true}})",
     "torch.stack([torch.tensor([1], dtype=torch.uint8), torch.tensor([True])])"),
    ("matmul of uint8 wraps", "u:matmul(u)", "u.matmul(u)"),
    ("matmul of bool raises", "B{{true}}:matmul(B{{true}})", "torch.tensor([[True]]) @ torch.tensor([[True]])"),
    ("index_select of uint8", "u:index_select(1, cnn.tensor({2}, {dtype = 'int64'}))",
     "u.index_select(0, torch.tensor([1]))"),
    # masks, where, masked_fill
    ("a 1-d mask selects rows", "m[B{true, false}]", "m[torch.tensor([True, False])]"),
    ("a full mask selects elements", "m[m:gt(2)]", "m[m > 2]"),
    ("a uint8 mask selects too", "m[U{0, 1}]", "m[torch.tensor([0, 1], dtype=torch.uint8)]"),
    ("a 0-d true mask adds a dimension", "mi[cnn.tensor(true)]", "mi[torch.tensor(True)]"),
    ("a 0-d false mask selects nothing", "mi[cnn.tensor(false)]", "mi[torch.tensor(False)]"),
    ("a mask of the wrong shape raises", "m[B{true, false, true}]", "m[torch.tensor([True, False, True])]"),
    ("masked_fill with a number", "m:masked_fill(B{true, false, true}, -1)",
     "m.masked_fill(torch.tensor([True, False, True]), -1)"),
    ("masked_fill with a column mask", "m:masked_fill(B{{true}, {false}}, -1)",
     "m.masked_fill(torch.tensor([[True], [False]]), -1)"),
    ("masked_fill of int64 with a float truncates", "mi:masked_fill(B{true, false, false}, 2.5)",
     "mi.masked_fill(torch.tensor([True, False, False]), 2.5)"),
    ("masked_fill of uint8 with 300 raises", "u:masked_fill(B{true, false}, 300)",
     "u.masked_fill(torch.tensor([True, False]), 300)"),
    ("masked_fill with a 0-d tensor", "m:masked_fill(m:gt(3), cnn.tensor(9.0))", "m.masked_fill(m > 3, torch.tensor(9.))"),
    ("masked_fill with a 1-d value raises", "m:masked_fill(m:gt(3), cnn.tensor({9.0}))",
     "m.masked_fill(m > 3, torch.tensor([9.]))"),
    ("masked_fill with NaN", "f:masked_fill(b, 0/0)", "f.masked_fill(b, nan)"),
    ("masked_fill broadcasts the tensor with a larger mask", "f:masked_fill(B{{true, false}, {true, true}}, 0)",
     "f.masked_fill(torch.tensor([[True, False], [True, True]]), 0)"),
    ("where with a tensor and a number", "cnn.where(b, f, 5)", "torch.where(b, f, 5)"),
    ("where with two integers", "cnn.where(b, 1, 0)", "torch.where(b, 1, 0)"),
    ("where with an integer and a float", "cnn.where(b, 2, 5.5)", "torch.where(b, 2, 5.5)"),
    ("where keeps uint8 beside a 0-d int64", "cnn.where(b, U{3, 4}, i0)",
     "torch.where(b, torch.tensor([3, 4], dtype=torch.uint8), i0)"),
    ("where of uint8 and float32", "cnn.where(b, u, f)", "torch.where(b, u, f)"),
    ("where broadcasts", "cnn.where(B{{true}, {false}}, f, i)", "torch.where(torch.tensor([[True], [False]]), f, i)"),
    ("where with a float condition raises", "cnn.where(f, 1, 0)", "torch.where(f, 1, 0)"),
    ("masked_fill_ in place", "m:clone():masked_fill_(m:gt(3), 0)", "m.clone().masked_fill_(m > 3, 0)"),
    ("masked_fill_ with a larger mask raises", "f:clone():masked_fill_(B{{true, false}, {true, true}}, 0)",
     "f.clone().masked_fill_(torch.tensor([[True, False], [True, True]]), 0)"),
]

PRINTS = [
    ("bool", "b", "b"),
    ("bool 2-d", "B{{true, false}, {false, true}}", "torch.tensor([[True, False], [False, True]])"),
    ("all true", "B{true, true}", "torch.tensor([True, True])"),
    ("0-d bool", "cnn.tensor(true)", "torch.tensor(True)"),
    ("empty bool", "cnn.zeros(0, {dtype = 'bool'})", "torch.zeros(0, dtype=torch.bool)"),
    ("uint8", "u", "u"),
    ("long uint8", "cnn.arange(2000):byte()", "torch.arange(2000).byte()"),
    ("long bool", "(function() local t = {} for k = 1, 2000 do t[k] = k % 2 == 1 end return cnn.tensor(t) end)()",
     "torch.arange(2000) % 2 == 0"),
]


def encode(v):
    """A value as the fixture stores it: numbers, booleans, and non-finite floats as strings."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def describe(r):
    if isinstance(r, torch.Tensor):
        dt = {torch.float32: "float32", torch.int64: "int64", torch.uint8: "uint8", torch.bool: "bool"}[r.dtype]
        flat = r.detach().reshape(-1).tolist()
        return {"dtype": dt, "shape": list(r.shape), "values": [encode(v) for v in flat]}
    raise TypeError(type(r))


def values_text(t):
    """PyTorch's text of t's values, without the dtype suffix cnnlua prints on its own line."""
    s = str(t)
    for suffix in (", dtype=torch.uint8)", ", dtype=torch.bool)"):
        if s.endswith(suffix):
            s = s[: -len(suffix)] + ")"
    return s


def main():
    out = []
    for what, lua, py in CASES:
        try:
            r = eval(py, inputs_py())
            e = describe(r)
        except (RuntimeError, IndexError, TypeError) as err:
            e = {"error": str(err).split("\n")[0][:120]}
        e.update({"what": what, "lua": lua})
        out.append(e)
    prints = []
    for what, lua, py in PRINTS:
        prints.append({"what": what, "lua": lua, "text": values_text(eval(py, inputs_py()))})
    path = fixture_path("dtype_rules.lua")
    with open(path, "w") as f:
        f.write("-- Generated by scripts/tools/gen_dtype_fixtures.py with PyTorch %s; do not edit.\n" % torch.__version__)
        f.write("return {\n")
        f.write("inputs = %s,\n" % lua_string(INPUTS_LUA))
        f.write("cases = %s,\n" % lua_value(out, 0))
        f.write("prints = %s,\n" % lua_value(prints, 0))
        f.write("}\n")
    print("wrote %d cases and %d prints to %s" % (len(out), len(prints), path))


if __name__ == "__main__":
    main()
