#!/usr/bin/python3
"""The oracle: randomized cases for every op of cnn.F, every tensor method and operator and the
tensor functions of cnn, run through PyTorch, written to tests/fixtures/oracle_cases.lua for
tests/lua/oracle_spec.lua to replay against cnnlua (forward values, dtypes, shapes, NaN/inf
positions, errors, and the gradient of every float input).

Run: /usr/bin/python3 scripts/tools/gen_oracle_fixtures.py   (seeded: the same file every run)

How a case is described
-----------------------
A drawer (a function decorated with @oracle("Tensor.sum", n=...)) is called n times with a Draw
`g` and returns one Case:

    @oracle("Tensor.sum", n=24)
    def _(g):
        x = g.tensor(g.shape())                   # a random input (values, dtype, view recipe)
        if g.coin():
            return Case(M("sum"), [x], lambda x: x.sum())
        d = g.dim(x)                              # a random 0-based dim (may be negative)
        return Case(M("sum"), [x, ld(d)], lambda x: x.sum(d))

- Case(call, args, torch_fn, ...): `call` names what Lua calls -- M(name) a tensor method
  (`args[1]:name(...)`), F(name) cnn.F.name, C(name) cnn.name, OP(name) an operator
  (`__add`: a + b, `__unm`: -a, `__index`: a[i], `__newindex`: a[i] = v, ...). `args` are the Lua
  arguments, already in Lua's conventions (1-based dims through ld(), 1-based indices and labels,
  options as dicts, NIL for a nil in the middle); tensor inputs (g.tensor) may appear anywhere,
  nested in lists or option dicts too. `torch_fn` receives the PyTorch views of the tensor inputs
  in order of first appearance and returns what PyTorch gives: a tensor, a tuple of them, or (with
  kind="number"/"table"/"boolean") what Lua's item()/totable()/allclose give.
- index=(k, ...) marks results holding 0-based positions (max's indices, argmax): stored + 1.
- after=(x, ...) also compares those inputs after the call (in-place writes, running statistics).
- g.tensor(shape, dtype="float32"|"int64"|"uint8"|"bool", profile=..., view=True, rg=None, values=None):
  values come from a random profile ("normal", "ties" (few distinct values), "special" (NaN,
  +-inf, +-0 sprinkled in), "wide" (magnitudes 1e-40 .. 1e36), "large" (1e-15 .. 1e15: products
  stay finite), "positive", "int"; uint8: 0..9 or 0..255 ("wide"), bool: false and true); with view=True
  the input is often a transposed, permuted, narrowed, selected or expanded (stride 0) view of a
  base tensor, and the recipe (base values + steps) is what the fixture stores. Float inputs
  require grad unless rg=False; the gradient compared is that of the base.
- If PyTorch raises, the case expects cnnlua to raise as well.
- Gradients: every float result PyTorch records a graph for is seeded with the fixed pattern
  w[k] = ((5k + 3) mod 8) / 4 - 0.875 (k the 0-based row-major position), which the spec rebuilds.

Adding an op: write its drawer here (a few lines) after the last one registered: every case's seed
comes from one stream in registration order, so a drawer placed earlier re-seeds every later case
(the blocks below marked "last here so earlier cases keep their seeds"). Run this script, commit
the fixture with the op. A public function or tensor method without any case fails oracle_spec
until it has one or an entry in EXEMPT below (non-numeric functions only, each with its reason).

Tolerances (see tolerances()): each float result stores atol = 4 x PyTorch's own float32 error on
the case beyond the relative tolerance (measured by running the same case in float64), plus 32 ulps
of the size of the terms summed into it: for gradients the largest term of the sum (measured in the
float64 run), for the forward results of ops that accumulate the largest input or result; and,
where PyTorch's own relative error exceeds RTOL / 4, rtol = 4 x that. The spec compares
|got - want| <= atol + rtol x |want|.
"""
import base64
import math
import os
import random
import struct
import warnings

import torch
import torch.nn.functional as TF

from fixture_util import fixture_path, lua_string

SEED = 14
# ORACLE_BIG=1 (hunts only, never the committed fixture): half the shapes get one dim of 5..70 and
# conv2d / pooling inputs up to 24 x 24 with kernels up to 7, to reach the kernels' vectorised
# bodies and tails, blocked loops and thread splits that 4-element dims never do. Tolerances do not
# grow with the number of terms summed, so a gradient summed over hundreds of expanded copies with
# cancellation may be reported off by a few times its atol: look at the size of the miss.
BIG = os.environ.get("ORACLE_BIG") == "1"
NAN, INF = float("nan"), float("inf")
torch.set_num_threads(1)
warnings.filterwarnings("ignore")

# Names that have no oracle case on purpose, with the reason. Everything else cnn.F, cnn.Tensor,
# the tensor metatable and cnn's functions hold needs at least one case.
EXEMPT = {
    "Tensor._version": "internal counter of in-place writes, no PyTorch value to compare",
    "Tensor._topk": "t:topk's positions, internal: t:topk's cases compare its values and indices",
    "Tensor.backward": "runs in every case: the gradients it fills are what the oracle compares",
    "Tensor.dim": "inspection: every result's shape is compared",
    "Tensor.dtype": "inspection: every result's dtype is compared",
    "Tensor.is_contiguous": "inspection of the layout, not a value (PyTorch's views differ by design)",
    "Tensor.numel": "inspection: every result's shape is compared",
    "Tensor.shape": "inspection: every result's shape is compared",
    "Tensor.size": "inspection: every result's shape is compared",
    "Tensor.stride": "inspection of the layout, not a value (PyTorch's views differ by design)",
    "Tensor.requires_grad_": "sets the autograd flag: every case sets it on its float inputs",
    "Tensor.normal_": "random: cnn's generator is not PyTorch's (tensor_create_spec checks the moments)",
    "Tensor.uniform_": "random: cnn's generator is not PyTorch's (tensor_create_spec checks the range)",
    "Tensor.__len": "inspection: #t is the size of dim 1",
    "Tensor.__tostring": "text, not a value (tensor_misc_spec checks the format)",
    "Tensor.__gc": "lifetime, not a value",
    "Tensor.__close": "lifetime, not a value",
    "Tensor.__name": "the type's name, not a function",
    "cnn.empty": "the values are unspecified",
    "cnn.rand": "random: cnn's generator is not PyTorch's",
    "cnn.randn": "random: cnn's generator is not PyTorch's",
    "cnn.randint": "random: cnn's generator is not PyTorch's",
    "cnn.randperm": "random: cnn's generator is not PyTorch's",
    "cnn.manual_seed": "state of cnn's generator",
    "cnn.get_rng_state": "state of cnn's generator",
    "cnn.set_rng_state": "state of cnn's generator",
    "cnn.get_num_threads": "runtime setting",
    "cnn.set_num_threads": "runtime setting",
    "cnn.get_conv_algorithm": "runtime setting (the spec runs F.conv2d under every algorithm)",
    "cnn.set_conv_algorithm": "runtime setting (the spec runs F.conv2d under every algorithm)",
    "cnn.is_grad_enabled": "autograd mode",
    "cnn.set_grad_enabled": "autograd mode",
    "cnn.enable_grad": "autograd mode",
    "cnn.no_grad": "autograd mode",
    "cnn.is_tensor": "a type test",
    "cnn.isatty": "terminal test",
    "cnn.empty_cache": "allocator cache",
    "cnn.memory_stats": "allocator statistics",
    "cnn.wall_time": "a clock",
    "cnn.load": "file input (safetensors_spec compares files with PyTorch's)",
    "cnn.save": "file output (safetensors_spec compares files with PyTorch's)",
}


# ---- values and inputs ----

def f32(x):
    """x rounded to float32 (as a Python float)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def ld(d):
    """A 0-based (PyTorch) dim as Lua writes it: 1-based, negative dims unchanged."""
    return d + 1 if d >= 0 else d


class Nil:
    """A nil argument (Lua), None for PyTorch."""


NIL = Nil()


class T:
    """A tensor input: base values (dtype, shape, flat row-major data as Lua sees them) and a view
    recipe of steps in Lua's form, applied in order. offset is subtracted from the values for
    PyTorch (labels and indices are 1-based in Lua)."""

    def __init__(self, dtype, shape, data, view, rg, offset=0):
        self.dtype, self.shape, self.data, self.view, self.rg, self.offset = dtype, shape, data, view, rg, offset

    def make(self, fdtype):
        if self.dtype == "int64":
            base = torch.tensor([v - self.offset for v in self.data], dtype=torch.int64)
        elif self.dtype == "uint8":
            base = torch.tensor(self.data, dtype=torch.uint8)
        elif self.dtype == "bool":
            base = torch.tensor([bool(v) for v in self.data], dtype=torch.bool)
        else:
            base = torch.tensor(self.data, dtype=torch.float64).to(fdtype)
        base = base.reshape(self.shape)
        if self.rg:
            base.requires_grad_()
        v = base
        for step in self.view:
            v = apply_step(v, step)
        return base, v


def apply_step(v, step):
    kind = step[0]
    if kind == "transpose":
        return v.transpose(step[1] - 1, step[2] - 1)
    if kind == "permute":
        return v.permute(*[d - 1 for d in step[1:]])
    if kind == "narrow":
        return v.narrow(step[1] - 1, step[2] - 1, step[3])
    if kind == "select":
        return v.select(step[1] - 1, step[2] - 1)
    if kind == "expand":
        return v.expand(*step[1])
    raise ValueError(kind)


def numel(shape):
    return math.prod(shape) if shape else 1


FLOAT_PROFILES = ("normal", "normal", "ties", "special", "wide", "positive")
SPECIALS = (NAN, INF, -INF, 0.0, -0.0)


class Draw:
    """The random choices of one case (all from one seeded random.Random)."""

    def __init__(self, rng):
        self.r = rng

    def coin(self, p=0.5):
        return self.r.random() < p

    def pick(self, seq):
        return seq[self.r.randrange(len(seq))]

    def int(self, a, b):
        return self.r.randint(a, b)

    def shape(self, min_dim=0, max_dim=4, max_size=4, empty=0.08):
        nd = self.int(min_dim, max_dim)
        s = [self.int(1, max_size) for _ in range(nd)]
        if BIG and nd and self.coin(0.5):
            s[self.int(0, nd - 1)] = self.int(5, 70)
        if nd and self.coin(empty):
            s[self.int(0, nd - 1)] = 0
        return s

    def dim(self, x_or_nd, extra=0):
        """A 0-based dim of a tensor (or of ndim), negative half the time; a 0-d tensor has dim 0."""
        nd = x_or_nd if isinstance(x_or_nd, int) else len(x_or_nd.vshape)
        nd = max(nd + extra, 1)
        d = self.int(0, nd - 1)
        return d - nd if self.coin(0.3) else d

    def broadcast_shapes(self, n=2, max_dim=4):
        """n shapes that broadcast together (leading dims dropped, sizes set to 1)."""
        out = self.shape(0, max_dim, 4)
        shapes = []
        for _ in range(n):
            s = list(out)
            if s and self.coin(0.3):
                s = s[self.int(1, len(s)):]
            s = [1 if (v and self.coin(0.25)) or (v == 0 and self.coin(0.1)) else v for v in s]
            shapes.append(s)
        if self.coin(0.5):  # one side keeps the full shape
            shapes[self.int(0, n - 1)] = list(out)
        return shapes

    def values(self, n, dtype, profile, lo=None, hi=None):
        r = self.r
        if dtype == "uint8":
            top = 255 if profile == "wide" else 9
            return [r.randint(lo if lo is not None else 0, hi if hi is not None else top) for _ in range(n)]
        if dtype == "bool":
            return [r.randint(0, 1) for _ in range(n)]
        if dtype == "int64":
            if profile == "range":
                return [r.randint(lo, hi) for _ in range(n)]
            if profile == "wide":
                return [r.randint(-2 ** 40, 2 ** 40) if r.random() < 0.3 else r.randint(-5, 5) for _ in range(n)]
            return [r.randint(-5, 5) for _ in range(n)]
        out = []
        for _ in range(n):
            if profile == "ties":
                v = self.pick((-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0))
            elif profile == "positive":
                v = r.uniform(0.1, 3.0)
            elif profile == "range":
                v = r.uniform(lo, hi)
            elif profile == "int":
                v = float(r.randint(-3, 3))
            elif profile == "wide":
                # up to 1e36: sums of a few hundred stay finite in float32, products overflow
                v = math.copysign(10 ** r.uniform(-40, 36), r.random() - 0.5)
            elif profile == "large":
                # products of two stay finite: for products that sum them (matmul), where an
                # overflow's inf or NaN would depend on the order of the additions
                v = math.copysign(10 ** r.uniform(-15, 15), r.random() - 0.5)
            else:
                v = r.gauss(0, 1)
                if profile == "special" and r.random() < 0.3:
                    v = self.pick(SPECIALS)
            out.append(f32(v) if math.isfinite(v) else v)
        return out

    def view_for(self, shape, kinds):
        """(base shape, steps): a recipe of 0-2 view steps whose result has `shape`."""
        steps, cur = [], list(shape)
        nsteps = self.pick((0, 0, 0, 1, 1, 1, 2)) if kinds else 0
        for _ in range(nsteps):
            options = [k for k in kinds if k not in ("transpose", "permute") or len(cur) >= 2]
            options = [k for k in options if k != "narrow" or len(cur) >= 1]
            options = [k for k in options if k != "select" or len(cur) < 5]
            if not options:
                break
            kind = self.pick(options)
            nd = len(cur)
            if kind == "transpose":
                a, b = self.r.sample(range(nd), 2)
                prev = list(cur)
                prev[a], prev[b] = cur[b], cur[a]
                step = ("transpose", a + 1, b + 1)
            elif kind == "permute":
                p = list(range(nd))
                self.r.shuffle(p)
                prev = [0] * nd
                for i in range(nd):
                    prev[p[i]] = cur[i]
                step = ("permute",) + tuple(i + 1 for i in p)
            elif kind == "narrow":
                d = self.int(0, nd - 1)
                extra = self.int(1, 2)
                prev = list(cur)
                prev[d] += extra
                step = ("narrow", d + 1, self.int(0, extra) + 1, cur[d])
            elif kind == "select":
                d = self.int(0, nd)
                m = self.int(1, 3)
                prev = cur[:d] + [m] + cur[d:]
                step = ("select", d + 1, self.int(0, m - 1) + 1)
            else:  # expand: some dims from size 1 (stride 0), maybe fewer leading dims
                prev = [1 if self.coin(0.6) else v for v in cur]
                if prev and self.coin(0.3):
                    prev = prev[self.int(1, len(prev)):]
                if prev == cur:
                    continue
                step = ("expand", list(cur))
            steps.insert(0, step)
            cur = prev
        return cur, steps

    def tensor(self, shape, dtype="float32", profile=None, view=True, rg=None, values=None, lo=None, hi=None,
               offset=0, profiles=FLOAT_PROFILES):
        """A tensor input of the given (view) shape; see the module docstring."""
        kinds = ()
        if view is True:
            kinds = ("transpose", "permute", "narrow", "select", "expand")
        elif view == "write":  # in-place targets: PyTorch refuses writes into expanded tensors
            kinds = ("transpose", "permute", "narrow", "select")
        base, steps = self.view_for(shape, kinds)
        if numel(base) > (4096 if BIG else 256):
            base, steps = list(shape), []
        if values is not None:
            base, steps = list(shape), []
            data = list(values)
        else:
            if profile is None:
                profile = self.pick(profiles) if dtype == "float32" else self.pick(("small", "small", "wide"))
            data = self.values(numel(base), dtype, profile, lo, hi)
        if rg is None:
            rg = dtype == "float32"
        t = T(dtype, base, data, steps, rg, offset)
        t.vshape = list(shape)
        return t

    def labels(self, shape, lo, hi, view=True):
        """int64 class labels / indices lo..hi as Lua writes them (PyTorch gets them - 1)."""
        return self.tensor(shape, "int64", "range", view=view, rg=False, lo=lo, hi=hi, offset=1)

    def dtype(self, p_int=0.2, p_small=0.1):
        """float32, or int64 with probability p_int, or uint8 / bool with p_small each."""
        u = self.r.random()
        if u < p_int:
            return "int64"
        if u < p_int + p_small:
            return "uint8"
        if u < p_int + 2 * p_small:
            return "bool"
        return "float32"

    def number(self, dtype="float32", special=True):
        """A Lua number operand: an integer, or a float (sometimes NaN or +-inf); beside a bool
        tensor sometimes a Lua boolean."""
        if dtype == "bool" and self.coin(0.3):
            return self.coin()
        if dtype in ("int64", "uint8") or self.coin(0.25):
            return self.int(-3, 3)
        if special and self.coin(0.1):
            return self.pick((NAN, INF, -INF))
        return f32(self.pick((0.0, 0.5, -1.5, 2.0, self.r.gauss(0, 2))))


# ---- cases ----

def M(name):
    return ("m", name)


def F(name):
    return ("F", name)


def C(name):
    return ("cnn", name)


def OP(name):
    return ("op", name)


class Case:
    def __init__(self, call, args, fn, index=(), after=(), kind="tensor", accumulates=False, layout=False,
                 broadcast=False):
        self.call, self.args, self.fn = call, args, fn
        self.index, self.after, self.kind, self.accumulates = index, after, kind, accumulates
        self.layout = layout  # the op's meaning depends on its input's strides (view)
        self.broadcast = broadcast  # elementwise over the broadcast shape of its tensor arguments

    def inputs(self):
        found = []

        def walk(v):
            if isinstance(v, T):
                if not any(v is f for f in found):
                    found.append(v)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    walk(x)
            elif isinstance(v, dict):
                for k in sorted(v):
                    walk(v[k])

        walk(self.args)
        return found


OPS = []


def oracle(name, n=16, accumulates=False):
    """Registers a drawer of n cases for public name (Tensor.x, F.x, cnn.x)."""
    def wrap(fn):
        OPS.append((name, n, fn, accumulates))
        return fn
    return wrap


# ---- elementwise ----

UNARY = ("exp", "log", "sqrt", "abs", "neg", "relu", "sigmoid", "tanh", "sign")


def _unary(name, via, pick=None):
    def draw(g):
        dtype = pick(g) if pick else "int64" if g.coin(0.2) else "float32"
        x = g.tensor(g.shape(), dtype)
        if via == "m":
            return Case(M(name), [x], lambda x: getattr(x, name)())
        if via == "F":
            return Case(F(name), [x], lambda x: getattr(TF, name)(x) if name != "tanh" else torch.tanh(x))
        return Case(OP("__unm"), [x], lambda x: -x)
    return draw


for _name in UNARY:
    oracle("Tensor." + _name, n=24)(_unary(_name, "m"))
for _name in ("relu", "sigmoid", "tanh"):
    oracle("F." + _name, n=10)(_unary(_name, "F"))
oracle("Tensor.__unm", n=10)(_unary("neg", "op"))


def _clamp_bounds(g, dtype):
    def bound():
        return g.int(-2, 2) if dtype == "int64" and g.coin(0.7) else g.number(special=False)
    lo, hi = bound(), bound()
    if g.coin(0.8) and lo > hi:
        lo, hi = hi, lo
    which = g.pick(("both", "both", "lo", "hi"))
    return (lo if which != "hi" else None), (hi if which != "lo" else None)


@oracle("Tensor.clamp", n=24)
def _(g):
    dtype = "int64" if g.coin(0.2) else "float32"
    x = g.tensor(g.shape(), dtype)
    lo, hi = _clamp_bounds(g, dtype)
    return Case(M("clamp"), [x, NIL if lo is None else lo, NIL if hi is None else hi],
                lambda x: x.clamp(lo, hi))


@oracle("Tensor.clamp_", n=12)
def _(g):
    dtype = "int64" if g.coin(0.2) else "float32"
    x = g.tensor(g.shape(), dtype, view="write", rg=False)
    lo, hi = _clamp_bounds(g, dtype)
    return Case(M("clamp_"), [x, NIL if lo is None else lo, NIL if hi is None else hi],
                lambda x: x.clamp_(lo, hi))


def _dtypes(g):
    return g.pick((("float32", "float32"),) * 6 + (("int64", "int64"),) * 2 +
                  (("float32", "int64"), ("int64", "float32")))


def _pow_tensors(g, sa, sb, da, db):
    """pow's operands: small integer exponents for int64, negative integer powers avoided."""
    a = g.tensor(sa, da, profile=None if da == "float32" else "small")
    if db in ("int64", "uint8"):
        b = g.tensor(sb, db, profile="range", lo=0 if da != "float32" or db == "uint8" else -2, hi=3)
    else:
        b = g.tensor(sb, db, profiles=FLOAT_PROFILES + ("int", "int"))
    return a, b


BINARY_TORCH = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b,
    "eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge,
    "maximum": torch.maximum, "minimum": torch.minimum,
}
RBINARY_TORCH = {
    "add": lambda s, b: s + b, "sub": lambda s, b: s - b, "mul": lambda s, b: s * b,
    "div": lambda s, b: s / b, "pow": lambda s, b: s ** b,
}


def _binary(name, call, number_ok=True, lua_name=None, pick=None):
    fn = BINARY_TORCH[name]

    def draw(g):
        sa, sb = g.broadcast_shapes()
        da, db = (pick or _dtypes)(g)
        if name == "pow":
            a, b = _pow_tensors(g, sa, sb, da, db)
        else:
            a, b = g.tensor(sa, da), g.tensor(sb, db)
        if number_ok and g.coin(0.3):
            s = g.number(da)
            if name == "pow" and da in ("int64", "uint8", "bool"):
                s = g.int(0, 3)
            if call[0] == "op" and name in RBINARY_TORCH and g.coin(0.5):  # number on the left
                if name == "pow" and isinstance(s, int) and s <= 0:
                    s = 2
                return Case(call, [s, b], lambda b: RBINARY_TORCH[name](s, b))
            return Case(call, [a, s], lambda a: fn(a, s))
        if g.coin(0.08):  # the same tensor on both sides
            return Case(call, [a, a], lambda a: fn(a, a))
        return Case(call, [a, b], fn, broadcast=True)
    return draw


for _name in ("add", "sub", "mul", "div", "pow", "eq", "ne", "lt", "le", "gt", "ge"):
    oracle("Tensor." + _name, n=24)(_binary(_name, M(_name)))
for _name, _meta in (("add", "__add"), ("sub", "__sub"), ("mul", "__mul"), ("div", "__div"), ("pow", "__pow")):
    oracle("Tensor." + _meta, n=16)(_binary(_name, OP(_meta)))
for _name in ("maximum", "minimum"):
    oracle("Tensor." + _name, n=20)(_binary(_name, M(_name), number_ok=False))
    oracle("cnn." + _name, n=8)(_binary(_name, C(_name), number_ok=False))


def _inplace_binary(name, pick=None):
    def draw(g):
        s = g.shape()
        sb = [v if not g.coin(0.3) else 1 for v in s]
        if sb and g.coin(0.3):
            sb = sb[g.int(1, len(sb)):]
        da, db = (pick or _dtypes)(g)
        x = g.tensor(s, da, view="write", rg=False)
        alpha = None
        if g.coin(0.3):
            o = g.number(da)
        else:
            o = g.tensor(sb, db, rg=False)
        if name == "add_" and g.coin(0.3):
            alpha = g.number(da if da != "bool" else "int64", special=False)
        torch_name = name
        if alpha is None:
            return Case(M(name), [x, o], lambda x, *o2: getattr(x, torch_name)(o2[0] if o2 else o))
        return Case(M(name), [x, o, alpha], lambda x, *o2: x.add_(o2[0] if o2 else o, alpha=alpha))
    return draw


for _name in ("add_", "sub_", "mul_", "div_"):
    oracle("Tensor." + _name, n=16)(_inplace_binary(_name))


@oracle("Tensor.fill_", n=10)
def _(g):
    dtype = "int64" if g.coin(0.3) else "float32"
    x = g.tensor(g.shape(), dtype, view="write", rg=False)
    v = g.int(-3, 3) if dtype == "int64" or g.coin(0.3) else g.number()
    return Case(M("fill_"), [x, v], lambda x: x.fill_(v))


@oracle("Tensor.zero_", n=6)
def _(g):
    x = g.tensor(g.shape(), "int64" if g.coin(0.3) else "float32", view="write", rg=False)
    return Case(M("zero_"), [x], lambda x: x.zero_())


@oracle("Tensor.copy_", n=12)
def _(g):
    s = g.shape()
    sb = [v if not g.coin(0.3) else 1 for v in s]
    if sb and g.coin(0.3):
        sb = sb[g.int(1, len(sb)):]
    da, db = _dtypes(g)
    x = g.tensor(s, da, view="write", rg=False)
    # a float source into int64 truncates; NaN, inf or values past 2^63 are undefined in C and PyTorch
    src = g.tensor(sb, db, rg=False, profiles=("normal", "ties", "positive") if da == "int64" else FLOAT_PROFILES)
    return Case(M("copy_"), [x, src], lambda x, s: x.copy_(s))


# ---- reductions ----

def _reduction(name, int_ok, pick=None):
    def draw(g):
        dtype = "int64" if int_ok and g.coin(0.2) else "float32"
        if name in ("mean", "var", "std") and g.coin(0.05):
            dtype = "int64"  # refused by both
        if pick:
            dtype = pick(g)
        x = g.tensor(g.shape(), dtype)
        if g.coin(0.3):
            return Case(M(name), [x], lambda x: getattr(x, name)())
        d = g.dim(x)
        if g.coin(0.5):
            return Case(M(name), [x, ld(d)], lambda x: getattr(x, name)(d))
        keep = g.coin()
        return Case(M(name), [x, ld(d), keep], lambda x: getattr(x, name)(d, keepdim=keep))
    return draw


oracle("Tensor.sum", n=30, accumulates=True)(_reduction("sum", True))
oracle("Tensor.mean", n=30, accumulates=True)(_reduction("mean", False))


def _var_like(name):
    def draw(g):
        x = g.tensor(g.shape(), "int64" if g.coin(0.05) else "float32")
        unbiased = g.coin()
        opts = {} if g.coin(0.3) and unbiased else {"unbiased": unbiased}
        if g.coin(0.35):
            args = [x, opts] if opts else [x]
            return Case(M(name), args, lambda x: getattr(x, name)(unbiased=unbiased))
        d, keep = g.dim(x), g.coin()
        args = [x, ld(d), keep] + ([opts] if opts else [])
        return Case(M(name), args, lambda x: getattr(x, name)(d, unbiased=unbiased, keepdim=keep))
    return draw


oracle("Tensor.var", n=30, accumulates=True)(_var_like("var"))
oracle("Tensor.std", n=30, accumulates=True)(_var_like("std"))


def _extreme(name, pick=None):
    elementwise = {"max": torch.maximum, "min": torch.minimum}[name]

    def draw(g):
        dtype = "int64" if g.coin(0.2) else "float32"
        if pick:
            dtype = pick(g)
        x = g.tensor(g.shape(), dtype, profiles=FLOAT_PROFILES + ("ties", "special"))
        u = g.r.random()
        if u < 0.3:
            return Case(M(name), [x], lambda x: getattr(x, name)())
        if u < 0.4:
            sa, sb = g.broadcast_shapes()
            a, b = g.tensor(sa, dtype), g.tensor(sb, dtype)
            return Case(M(name), [a, b], elementwise, broadcast=True)
        d = g.dim(x)
        if g.coin(0.5):
            return Case(M(name), [x, ld(d)], lambda x: tuple(getattr(x, name)(d)), index=(1,))
        keep = g.coin()
        return Case(M(name), [x, ld(d), keep], lambda x: tuple(getattr(x, name)(d, keepdim=keep)), index=(1,))
    return draw


oracle("Tensor.max", n=36)(_extreme("max"))
oracle("Tensor.min", n=36)(_extreme("min"))


def _arg_extreme(name, pick=None):
    def draw(g):
        dtype = "int64" if g.coin(0.2) else "float32"
        if pick:
            dtype = pick(g)
        x = g.tensor(g.shape(), dtype, profiles=FLOAT_PROFILES + ("ties", "special"))
        if g.coin(0.3):
            return Case(M(name), [x], lambda x: getattr(x, name)(), index=(0,))
        d = g.dim(x)
        keep = g.coin()
        return Case(M(name), [x, ld(d), keep], lambda x: getattr(x, name)(d, keepdim=keep), index=(0,))
    return draw


oracle("Tensor.argmax", n=20)(_arg_extreme("argmax"))
oracle("Tensor.argmin", n=20)(_arg_extreme("argmin"))


# ---- matrix products ----

def _matmul_shapes(g, mm=False):
    n, k, m, b = g.int(1, 4), g.int(0, 4) if g.coin(0.1) else g.int(1, 4), g.int(1, 4), g.int(1, 3)
    if mm:
        return [n, k], [k, m]
    return g.pick((([k], [k]), ([k], [k, m]), ([n, k], [k]), ([n, k], [k, m]), ([b, n, k], [b, k, m]),
                   ([b, n, k], [k, m]), ([n, k], [b, k, m]), ([b, n, k], [k]), ([k], [b, k, m]),
                   ([1, n, k], [b, k, m]), ([b, n, k], [1, k, m])))


def _matmul(call, mm=False, pick=None):
    def draw(g):
        sa, sb = _matmul_shapes(g, mm)
        dtype = pick(g) if pick else "int64" if g.coin(0.1) else "float32"
        a = g.tensor(sa, dtype, profiles=("normal", "normal", "ties", "special", "large"))
        b = g.tensor(sb, dtype, profiles=("normal", "normal", "ties", "special", "large"))
        return Case(call, [a, b], torch.mm if mm else torch.matmul)
    return draw


oracle("Tensor.matmul", n=24, accumulates=True)(_matmul(M("matmul")))
oracle("cnn.matmul", n=10, accumulates=True)(_matmul(C("matmul")))
oracle("Tensor.mm", n=12, accumulates=True)(_matmul(M("mm"), mm=True))
oracle("cnn.mm", n=6, accumulates=True)(_matmul(C("mm"), mm=True))


# ---- views, shapes, copies, conversions ----

def _any(g, **kw):
    return g.tensor(g.shape(), "int64" if g.coin(0.15) else "float32", **kw)


@oracle("Tensor.select", n=16)
def _(g):
    x = _any(g)
    if not x.vshape or 0 in x.vshape:
        return Case(M("select"), [x, 1, 1], lambda x: x.select(0, 0))
    d = g.dim(x)
    n = x.vshape[d]
    i = g.int(-n, n - 1)
    return Case(M("select"), [x, ld(d), i + 1 if i >= 0 else i], lambda x: x.select(d, i))


@oracle("Tensor.narrow", n=16)
def _(g):
    x = _any(g)
    if not x.vshape:
        return Case(M("narrow"), [x, 1, 1, 1], lambda x: x.narrow(0, 0, 1))
    d = g.dim(x)
    n = x.vshape[d]
    start = g.int(0, n)
    length = g.int(0, n - start)
    lua_start = start + 1 if g.coin(0.7) or start == n else start - n
    return Case(M("narrow"), [x, ld(d), lua_start, length], lambda x: x.narrow(d, start, length))


@oracle("Tensor.transpose", n=12)
def _(g):
    x = _any(g)
    a, b = g.dim(x), g.dim(x)
    return Case(M("transpose"), [x, ld(a), ld(b)], lambda x: x.transpose(a, b))


@oracle("Tensor.t", n=8)
def _(g):
    x = g.tensor(g.shape(0, 3), "int64" if g.coin(0.15) else "float32")
    return Case(M("t"), [x], lambda x: x.t())


@oracle("Tensor.permute", n=12)
def _(g):
    x = _any(g)
    p = list(range(len(x.vshape)))
    g.r.shuffle(p)
    lua = [ld(d) if g.coin(0.8) else d - len(p) for d in p]
    args = [x] + lua if g.coin(0.7) else [x, lua]
    return Case(M("permute"), args, lambda x: x.permute(p))


@oracle("Tensor.unsqueeze", n=10)
def _(g):
    x = _any(g)
    d = g.dim(len(x.vshape), extra=1)
    return Case(M("unsqueeze"), [x, ld(d)], lambda x: x.unsqueeze(d))


@oracle("Tensor.squeeze", n=12)
def _(g):
    s = [g.pick((1, 1, 2, 3, 0)) for _ in range(g.int(0, 4))]
    x = g.tensor(s, "int64" if g.coin(0.15) else "float32")
    if g.coin(0.3):
        return Case(M("squeeze"), [x], lambda x: x.squeeze())
    d = g.dim(x)
    return Case(M("squeeze"), [x, ld(d)], lambda x: x.squeeze(d))


@oracle("Tensor.flatten", n=12)
def _(g):
    x = _any(g)
    if g.coin(0.2):
        return Case(M("flatten"), [x], lambda x: x.flatten())
    a = g.dim(x)
    if g.coin(0.4):
        return Case(M("flatten"), [x, ld(a)], lambda x: x.flatten(a))
    b = g.dim(x)
    return Case(M("flatten"), [x, ld(a), ld(b)], lambda x: x.flatten(a, b))


@oracle("F.flatten", n=8)
def _(g):
    x = _any(g)
    if g.coin(0.3):
        return Case(F("flatten"), [x], lambda x: torch.flatten(x))
    a, b = g.dim(x), g.dim(x)
    return Case(F("flatten"), [x, ld(a), ld(b)], lambda x: torch.flatten(x, a, b))


def _new_shape(g, shape):
    """A shape with the same number of elements (one size maybe -1), or sometimes a wrong one."""
    n = numel(shape)
    if g.coin(0.1):
        return [n + 1]
    if n == 0:
        out = [g.pick((0, 2, 3)) for _ in range(g.int(1, 3))]
        out[g.int(0, len(out) - 1)] = 0
        return out
    out = []
    rest = n
    for _ in range(g.int(0, 3)):
        divs = [v for v in range(1, rest + 1) if rest % v == 0]
        v = g.pick(divs)
        out.append(v)
        rest //= v
    out.append(rest)
    if g.coin(0.3) and rest:
        out[g.int(0, len(out) - 1)] = -1
    if n == 1 and g.coin(0.3):
        out = []
    return out


def _reshape_like(name):
    def draw(g):
        x = _any(g)
        s = _new_shape(g, x.vshape)
        args = [x] + s if s and g.coin(0.6) else [x, s]
        return Case(M(name), args, lambda x: getattr(x, name)(s), layout=name == "view")
    return draw


oracle("Tensor.view", n=16)(_reshape_like("view"))
oracle("Tensor.reshape", n=16)(_reshape_like("reshape"))


@oracle("Tensor.expand", n=16)
def _(g):
    s = g.shape(0, 3)
    base = [1 if g.coin(0.5) else v for v in s]
    if base and g.coin(0.3):
        base = base[g.int(1, len(base)):]
    x = g.tensor(base, "int64" if g.coin(0.15) else "float32")
    target = list(s)
    off = len(s) - len(base)
    for i in range(len(base)):
        if g.coin(0.2):
            target[off + i] = -1
    if g.coin(0.05):
        target = [v + 1 for v in target]  # not expandable: both refuse
    args = [x] + target if target and g.coin(0.6) else [x, target]
    return Case(M("expand"), args, lambda x: x.expand(target))


for _name in ("contiguous", "clone", "detach"):
    oracle("Tensor." + _name, n=8)(lambda g, name=_name: Case(M(name), [_any(g)], lambda x: getattr(x, name)()))


@oracle("Tensor.float", n=8)
def _(g):
    x = g.tensor(g.shape(), "int64" if g.coin(0.6) else "float32", profile=None)
    return Case(M("float"), [x], lambda x: x.float())


def _to_int_source(g):
    # converting NaN, inf or a value past 2^63 to int64 is undefined in C and in PyTorch
    if g.coin(0.4):
        return g.tensor(g.shape(), "int64")
    return g.tensor(g.shape(), "float32", profiles=("normal", "ties", "positive", "int"))


@oracle("Tensor.long", n=10)
def _(g):
    x = _to_int_source(g)
    return Case(M("long"), [x], lambda x: x.long())


@oracle("Tensor.to", n=10)
def _(g):
    x = _to_int_source(g)
    dt = g.pick(("float32", "int64"))
    return Case(M("to"), [x, dt], lambda x: x.to(torch.float32 if dt == "float32" else torch.int64))


@oracle("Tensor.index_select", n=16)
def _(g):
    x = _any(g, view=True)
    if not x.vshape:
        # (an empty index into a 0-d tensor gives PyTorch uninitialised memory: not drawn)
        idx = g.labels(g.pick(([], [1], [2])), 1, 1)
        return Case(M("index_select"), [x, 1, idx], lambda x, i: x.index_select(0, i))
    d = g.dim(x)
    n = x.vshape[d]
    shape = [] if g.coin(0.2) else [g.int(0, 5)]
    idx = g.labels(shape, 1, max(n, 1)) if n else g.labels(shape if shape == [0] else [0], 1, 1)
    if g.coin(0.05):
        idx = g.labels(shape or [1], n + 1, n + 2)  # out of range: both refuse
    return Case(M("index_select"), [x, ld(d), idx], lambda x, i: x.index_select(d, i))


@oracle("Tensor.item", n=8)
def _(g):
    x = g.tensor(g.pick(([], [1], [1, 1], [2], [0])), "int64" if g.coin(0.3) else "float32")
    return Case(M("item"), [x], lambda x: x.reshape(-1)[0] if x.numel() == 1 else x.item(), kind="number")


@oracle("Tensor.totable", n=8)
def _(g):
    x = _any(g)
    return Case(M("totable"), [x], lambda x: x, kind="table")


@oracle("Tensor.__index", n=16)
def _(g):
    x = _any(g)
    n = x.vshape[0] if x.vshape else 0
    i = g.int(-n, n - 1) if n else 0
    if g.coin(0.08):
        i = n  # out of range: both refuse
    lua_i = i + 1 if i >= 0 else i
    kind = "number" if len(x.vshape) == 1 else "tensor"
    return Case(OP("__index"), [x, lua_i], lambda x: x[i], kind=kind)


@oracle("Tensor.__newindex", n=12)
def _(g):
    x = g.tensor(g.shape(1, 4), "int64" if g.coin(0.3) else "float32", view="write", rg=False)
    n = x.vshape[0]
    i = g.int(-n, n - 1) if n else 0
    lua_i = i + 1 if i >= 0 else i
    if g.coin(0.5) or len(x.vshape) == 1:
        v = g.int(-3, 3) if x.dtype == "int64" else g.number()

        def fn(x):
            x[i] = v
            return x
        return Case(OP("__newindex"), [x, lua_i, v], fn)
    row = x.vshape[1:]
    src = g.tensor([1 if g.coin(0.3) else v for v in row], x.dtype, rg=False)

    def fn2(x, s):
        x[i] = s
        return x
    return Case(OP("__newindex"), [x, lua_i, src], fn2)


# ---- constructors and joins ----

def _dtype_opts(g, allow_none=True):
    if allow_none and g.coin(0.4):
        return None
    return g.pick(("float32", "int64"))


TORCH_DTYPES = {"float32": torch.float32, "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool}


def _tdt(dt):
    return TORCH_DTYPES[dt] if dt else None


def _shape_args(g, s, opts):
    """cnn.zeros(2, 3, opts) or cnn.zeros({2, 3}, opts)."""
    if s and g.coin(0.5):
        return list(s) + ([opts] if opts else [])
    return [s] + ([opts] if opts else [])


for _name in ("zeros", "ones"):
    def _draw(g, name=_name):
        s = g.shape(0, 3)
        dt = _dtype_opts(g)
        opts = {"dtype": dt} if dt else None
        return Case(C(name), _shape_args(g, s, opts), lambda: getattr(torch, name)(s, dtype=_tdt(dt)))
    oracle("cnn." + _name, n=6)(_draw)


@oracle("cnn.full", n=16)
def _(g):
    s = g.shape(0, 3)
    v = g.int(-3, 3) if g.coin(0.5) else g.number()
    dt = _dtype_opts(g, allow_none=True)
    if dt == "int64" and isinstance(v, float) and not math.isfinite(v):
        dt = None
    size = s[0] if len(s) == 1 and g.coin(0.4) else s
    args = [size, v] + ([{"dtype": dt}] if dt else [])
    return Case(C("full"), args, lambda: torch.full(s, v, dtype=_tdt(dt)))


@oracle("cnn.arange", n=16)
def _(g):
    u = g.r.random()
    if u < 0.3:
        n = g.int(0, 6)
        return Case(C("arange"), [n], lambda: torch.arange(n))
    if u < 0.6:
        a, b = g.int(-4, 4), g.int(-4, 6)
        step = g.pick((1, 2, 3)) if a <= b else g.pick((-1, -2))
        return Case(C("arange"), [a, b, step], lambda: torch.arange(a, b, step))
    a = f32(g.r.uniform(-2, 2))
    step = f32(g.pick((0.25, 0.5, 0.3, -0.5, 1.0)))
    b = f32(a + step * g.int(0, 6) + g.pick((0.0, 0.1)))
    dt = g.pick((None, "float32"))
    args = [a, b, step] + ([{"dtype": dt}] if dt else [])
    return Case(C("arange"), args, lambda: torch.arange(a, b, step, dtype=_tdt(dt)))


@oracle("cnn.linspace", n=10)
def _(g):
    a, b = f32(g.r.uniform(-3, 3)), f32(g.r.uniform(-3, 3))
    if g.coin(0.3):
        a, b = float(g.int(-3, 3)), float(g.int(-3, 3))
    n = g.int(0, 7)
    return Case(C("linspace"), [a, b, n], lambda: torch.linspace(a, b, n))


@oracle("cnn.eye", n=6)
def _(g):
    n = g.int(0, 4)
    if g.coin(0.5):
        return Case(C("eye"), [n], lambda: torch.eye(n))
    m = g.int(0, 4)
    return Case(C("eye"), [n, m], lambda: torch.eye(n, m))


for _name in ("zeros_like", "ones_like"):
    def _draw_like(g, name=_name):
        x = _any(g)
        dt = _dtype_opts(g)
        args = [x] + ([{"dtype": dt}] if dt else [])
        return Case(C(name), args, lambda x: getattr(torch, name)(x, dtype=_tdt(dt)))
    oracle("cnn." + _name, n=6)(_draw_like)


@oracle("cnn.tensor", n=12)
def _(g):
    u = g.r.random()
    if u < 0.3:  # a tensor is copied (keeping its dtype unless one is given)
        dt = _dtype_opts(g)
        # NaN, inf or values past 2^63 converted to int64 are undefined in C and PyTorch: not drawn
        x = _any(g, rg=False) if dt != "int64" else _to_int_source(g)
        x.rg = False
        args = [x] + ([{"dtype": dt}] if dt else [])
        return Case(C("tensor"), args, lambda x: x.detach().clone().to(_tdt(dt) or x.dtype))
    s = g.shape(0, 3, 3)
    dt = g.pick(("float32", "int64", None))
    if dt == "int64":
        flat = [g.int(-5, 5) for _ in range(numel(s))]
    else:  # Lua floats (1.0, not 1): cnn.tensor{1, 2} is float32 by design, see docs/API.md
        flat = g.values(numel(s), "float32", g.pick(("normal", "ties", "special")))

    def nest(vals, shape):
        if not shape:
            return vals[0]
        step = numel(shape[1:])
        return [nest(vals[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
    data = nest(flat, s)
    if 0 in s:
        data = nest([], s[:s.index(0) + 1])
        s = s[:s.index(0) + 1]
    args = [data] + ([{"dtype": dt}] if dt else [])
    return Case(C("tensor"), args, lambda: torch.tensor(data, dtype=_tdt(dt) or torch.float32))


def _join(name, pick=None):
    def draw(g):
        k = g.int(1, 3)
        s = g.shape(1 if name == "cat" else 0, 3)
        dtype = "int64" if g.coin(0.15) else "float32"
        if pick:
            dtype = pick(g)
        if name == "cat":
            d = g.dim(len(s))
            shapes = []
            for _ in range(k):
                t = list(s)
                t[d] = g.int(0, 3)
                shapes.append(t)
        else:
            d = g.dim(len(s), extra=1)
            shapes = [list(s)] * k
        ts = [g.tensor(sh, dtype) for sh in shapes]
        if k >= 2 and g.coin(0.1):
            ts[1] = ts[0]  # the same tensor twice
        if g.coin(0.1):  # mixed dtypes
            other = "int64" if dtype == "float32" else "float32"
            if pick:
                other = g.pick([d2 for d2 in TORCH_DTYPES if d2 != dtype])
            ts[-1] = g.tensor(shapes[-1], other)
        fn = torch.cat if name == "cat" else torch.stack
        uniq = []
        for t in ts:
            if not any(t is u for u in uniq):
                uniq.append(t)

        def torch_fn(*views):
            return fn([views[next(i for i, u in enumerate(uniq) if u is t)] for t in ts], d)
        args = [list(ts)] if g.coin(0.2) and d == 0 else [list(ts), ld(d)]
        return Case(C(name), args, torch_fn)
    return draw


oracle("cnn.cat", n=20)(_join("cat"))
oracle("cnn.stack", n=16)(_join("stack"))


@oracle("cnn.allclose", n=12)
def _(g):
    sa, sb = g.broadcast_shapes()
    dtype = "int64" if g.coin(0.2) else "float32"
    a = g.tensor(sa, dtype, rg=False)
    b = g.tensor(sb, dtype, rg=False) if g.coin(0.5) else a
    if g.coin(0.5):
        return Case(C("allclose"), [a, b], lambda a, b=None: torch.allclose(a, a if b is None else b),
                    kind="boolean")
    rtol, atol = g.pick((0.0, 1e-5, 0.1)), g.pick((0.0, 1e-8, 0.5))
    return Case(C("allclose"), [a, b, rtol, atol],
                lambda a, b=None: torch.allclose(a, a if b is None else b, rtol, atol), kind="boolean")


# ---- cnn.F ----

def INT_REFUSED(g, shape):
    """int64 now and then for the F ops that PyTorch refuses for integers too (both must raise).
    Not for empty tensors: PyTorch passes those without reaching the kernel that refuses."""
    return "int64" if g.coin(0.05) and numel(shape) > 0 else "float32"


@oracle("F.leaky_relu", n=12)
def _(g):
    s = g.shape()
    x = g.tensor(s, INT_REFUSED(g, s))
    if g.coin(0.3):
        return Case(F("leaky_relu"), [x], lambda x: TF.leaky_relu(x))
    s = f32(g.pick((0.01, 0.2, -0.5, 1.5, 0.0)))
    return Case(F("leaky_relu"), [x, s], lambda x: TF.leaky_relu(x, s))


def _softmax(name):
    def draw(g):
        s = g.shape()
        x = g.tensor(s, INT_REFUSED(g, s), profiles=FLOAT_PROFILES + ("ties",))
        d = g.dim(x)
        return Case(F(name), [x, ld(d)], lambda x: getattr(TF, name)(x, d), accumulates=True)
    return draw


oracle("F.softmax", n=20, accumulates=True)(_softmax("softmax"))


# The activations and losses cnn.F composes in Lua: float32 inputs (the compositions promote an
# int64 input where PyTorch's kernels refuse it; see README).
@oracle("F.silu", n=12)
def _(g):
    return Case(F("silu"), [g.tensor(g.shape())], TF.silu)


@oracle("F.softplus", n=12)
def _(g):
    x = g.tensor(g.shape())
    if g.coin(0.4):
        return Case(F("softplus"), [x], TF.softplus)
    beta, th = f32(g.pick((0.5, 2.0, 1.0))), f32(g.pick((20.0, 1.0, 5.0)))
    return Case(F("softplus"), [x, beta, th], lambda x: TF.softplus(x, beta, th))


def scalar_path(fn):
    """fn element by element. PyTorch 1.13's CPU elu_backward and hardtanh_backward give a NaN input
    the gradient g (their formulas' comparisons are false) in the scalar loop but NaN (elu) or 0
    (hardtanh) in the SIMD one (blocks of 16 floats), so the answer depends on the tensor's size and
    layout; one-element calls always take the scalar loop, i.e. ATen's formula, which cnnlua follows."""
    def run(x):
        flat = x.reshape(-1)
        if flat.numel() == 0:
            return fn(x)
        return torch.cat([fn(flat[i:i + 1]) for i in range(flat.numel())]).reshape(x.shape)
    return run


def elu_scalar_path(x, a=1.0):
    return scalar_path(lambda t: TF.elu(t, a))(x)


@oracle("F.elu", n=12)
def _(g):
    x = g.tensor(g.shape())
    if g.coin(0.4):
        return Case(F("elu"), [x], elu_scalar_path)
    a = f32(g.pick((0.5, 2.0, 1.0)))
    return Case(F("elu"), [x, a], lambda x: elu_scalar_path(x, a))


@oracle("F.hardtanh", n=12)
def _(g):
    x = g.tensor(g.shape(), profiles=FLOAT_PROFILES + ("ties",))
    if g.coin(0.4):
        return Case(F("hardtanh"), [x], scalar_path(TF.hardtanh))
    lo, hi = f32(g.pick((-0.5, -2.0, 0.0))), f32(g.pick((0.5, 1.0, 3.0)))
    return Case(F("hardtanh"), [x, lo, hi], scalar_path(lambda x: TF.hardtanh(x, lo, hi)))


@oracle("F.relu6", n=8)
def _(g):
    return Case(F("relu6"), [g.tensor(g.shape())], scalar_path(TF.relu6))


def _pair_loss(name, key=None, values=()):
    def draw(g):
        sa, sb = g.broadcast_shapes()
        a, b = g.tensor(sa), g.tensor(sb)
        opts, kw = {}, {}
        red = g.pick((None, "mean", "sum", "none"))
        if red is not None:
            opts["reduction"] = kw["reduction"] = red
        if key and g.coin(0.5):
            opts[key] = kw[key] = f32(g.pick(values))
        if not opts:
            return Case(F(name), [a, b], getattr(TF, name), broadcast=True)
        return Case(F(name), [a, b, opts], lambda a, b: getattr(TF, name)(a, b, **kw), broadcast=True)
    return draw


oracle("F.l1_loss", n=12, accumulates=True)(_pair_loss("l1_loss"))
oracle("F.smooth_l1_loss", n=12, accumulates=True)(_pair_loss("smooth_l1_loss", "beta", (0.5, 1.0, 2.0, 0.0)))
oracle("F.huber_loss", n=12, accumulates=True)(_pair_loss("huber_loss", "delta", (0.5, 1.0, 2.0)))


@oracle("F.binary_cross_entropy_with_logits", n=16, accumulates=True)
def _(g):
    s = g.shape()
    x = g.tensor(s)
    y = g.tensor(s, profile="positive", rg=False, view=False)
    return Case(F("binary_cross_entropy_with_logits"), [x, y],
                lambda x, y: TF.binary_cross_entropy_with_logits(x, y))
oracle("F.log_softmax", n=20, accumulates=True)(_softmax("log_softmax"))


@oracle("F.linear", n=16, accumulates=True)
def _(g):
    i, o = g.int(1, 4), g.int(1, 4)
    lead = g.pick(([], [2], [3], [2, 2], [0]))
    dx = "int64" if g.coin(0.1) else "float32"  # integer products, as PyTorch's
    dw = dx if g.coin(0.95) else "float32"      # mixed dtypes: refused by both
    x = g.tensor(lead + [i], dx, profiles=("normal", "normal", "ties", "special", "large"))
    w = g.tensor([o, i], dw, profiles=("normal", "normal", "ties", "large"))
    if g.coin(0.3):
        return Case(F("linear"), [x, w], lambda x, w: TF.linear(x, w))
    b = g.tensor([o], dw, profiles=("normal", "ties"))
    return Case(F("linear"), [x, w, b], TF.linear)


@oracle("F.mse_loss", n=16, accumulates=True)
def _(g):
    sa, sb = g.broadcast_shapes()
    a, b = g.tensor(sa, INT_REFUSED(g, sa)), g.tensor(sb)
    red = g.pick((None, "mean", "sum", "none"))
    if red is None:
        return Case(F("mse_loss"), [a, b], TF.mse_loss, broadcast=True)
    return Case(F("mse_loss"), [a, b, {"reduction": red}], lambda a, b: TF.mse_loss(a, b, reduction=red),
                broadcast=True)


def _class_loss(name):
    def draw(g):
        n, c = g.int(0, 4) if g.coin(0.1) else g.int(1, 4), g.int(1, 5)
        u = g.r.random()
        if u < 0.7:  # (N, C) scores, (N) labels
            xs, ys = [n, c], [n]
        elif u < 0.88:  # (N, C, d...) scores, (N, d...) labels
            d = [g.int(1, 3) for _ in range(g.int(1, 2))]
            xs, ys = [n, c] + d, [n] + d
        else:  # unbatched: (C) scores, a 0-d label
            xs, ys = [c], []
        dtype = "int64" if g.coin(0.04) else "float32"  # refused by both
        x = g.tensor(xs, dtype, profiles=("normal", "normal", "ties", "special", "wide"))
        y = g.labels(ys, 1, c + 1 if g.coin(0.04) else c)  # sometimes out of range: refused by both
        opts, kw = {}, {}
        if g.coin(0.5):
            kw["reduction"] = opts["reduction"] = g.pick(("mean", "sum", "none"))
        if name == "cross_entropy" and g.coin(0.3):
            kw["label_smoothing"] = opts["label_smoothing"] = g.pick((0.1, 0.5, 1.0))
        w = None
        if g.coin(0.3):
            w = opts["weight"] = g.tensor([c], profile="positive", rg=False)
        if g.coin(0.3):
            opts["ignore_index"] = g.int(1, c)
            kw["ignore_index"] = opts["ignore_index"] - 1
        fn = getattr(TF, name)
        args = [x, y] + ([opts] if opts else [])
        if w is None:
            return Case(F(name), args, lambda x, y: fn(x, y, **kw), accumulates=True)
        return Case(F(name), args, lambda x, y, w: fn(x, y, weight=w, **kw), accumulates=True)
    return draw


oracle("F.cross_entropy", n=24, accumulates=True)(_class_loss("cross_entropy"))
oracle("F.nll_loss", n=20, accumulates=True)(_class_loss("nll_loss"))


@oracle("F.dropout", n=8)
def _(g):
    # the mask is random: only the deterministic settings (not training, p = 0, p = 1) compare
    x = g.tensor(g.shape(), "int64" if g.coin(0.1) else "float32")
    setting = g.pick(("eval", "p0", "p1", "default_eval", "bad_p"))
    if setting == "bad_p":  # refused by both
        p = g.pick((1.5, -0.5))
        return Case(F("dropout"), [x, p, False], lambda x: TF.dropout(x, p, False))
    if setting == "eval":
        p = f32(g.r.uniform(0, 1))
        return Case(F("dropout"), [x, p, False], lambda x: TF.dropout(x, p, False))
    if setting == "default_eval":
        return Case(F("dropout"), [x, NIL, False], lambda x: TF.dropout(x, 0.5, False))
    p = 0.0 if setting == "p0" else 1.0
    return Case(F("dropout"), [x, p, True], lambda x: TF.dropout(x, p, True))


def _pair(g, lo, hi):
    if g.coin(0.7):
        v = g.int(lo, hi)
        return v, v, v
    a, b = g.int(lo, hi), g.int(lo, hi)
    return [a, b], a, b


@oracle("F.conv2d", n=40, accumulates=True)
def _(g):
    groups = g.pick((1, 1, 1, 2))
    n, cg, og = g.int(1, 2), g.int(1, 3), g.int(1, 3)
    c, o = cg * groups, og * groups
    kh, kw = g.int(1, 3), g.int(1, 3)
    h, w = g.int(1, 6), g.int(1, 6)
    if BIG:
        n, cg, og = g.int(1, 3), g.int(1, 9), g.int(1, 9)
        c, o = cg * groups, og * groups
        kh, kw, h, w = g.int(1, 7), g.int(1, 7), g.int(1, 24), g.int(1, 24)
    batched = g.coin(0.85)
    dx = "int64" if g.coin(0.1) else "float32"  # PyTorch convolves integers exactly
    dw = dx if g.coin(0.95) else "float32"      # mixed dtypes: refused by both
    x = g.tensor(([n] if batched else []) + [c, h, w], dx, profiles=("normal", "normal", "ties", "special", "large"))
    wt = g.tensor([o, cg, kh, kw], dw, profiles=("normal", "normal", "ties"))
    bias = g.tensor([o], dw, profiles=("normal",)) if g.coin(0.6) else None
    opts, kwargs = {}, {}
    if g.coin(0.5):
        opts["stride"], sh, sw = _pair(g, 1, 2)
        kwargs["stride"] = (sh, sw)
    if g.coin(0.4):
        opts["dilation"], dh, dw = _pair(g, 1, 2)
        kwargs["dilation"] = (dh, dw)
    u = g.r.random()
    if u < 0.4:
        opts["padding"], ph, pw = _pair(g, 0, 2)
        kwargs["padding"] = (ph, pw)
    elif u < 0.6:
        opts["padding"] = kwargs["padding"] = g.pick(("same", "valid"))
    if groups > 1:
        opts["groups"] = kwargs["groups"] = groups
    args = [x, wt] + ([bias] if bias is not None else [NIL] if opts and g.coin(0.5) else [])
    if opts:
        args.append(opts)
    if bias is None:
        return Case(F("conv2d"), args, lambda x, w: TF.conv2d(x, w, None, **kwargs), accumulates=True)
    return Case(F("conv2d"), args, lambda x, w, b: TF.conv2d(x, w, b, **kwargs), accumulates=True)


def _pool_input(g, int_refused=False):
    """int_refused: int64 now and then, refused by both; else int64 more often (an integer average)."""
    batched = g.coin(0.8)
    s = ([g.int(1, 2)] if batched else []) + [g.int(1, 3), g.int(1, 6), g.int(1, 6)]
    if BIG:
        s = s[:-3] + [g.int(1, 5), g.int(1, 24), g.int(1, 24)]
    dtype = INT_REFUSED(g, s) if int_refused else "int64" if g.coin(0.1) else "float32"
    return g.tensor(s, dtype, profiles=("normal", "ties", "ties", "special"))


def _windows_touch_input(shape, kernel, kw):
    """Whether every max_pool2d window holds at least one input element."""
    stride = kw.get("stride", kernel)
    pad, dil = kw.get("padding", (0, 0)), kw.get("dilation", (1, 1))
    for d in range(2):
        n, k, s, p, e = shape[-2 + d], kernel[d], stride[d], pad[d], dil[d]
        span = e * (k - 1) + 1
        num = n + 2 * p - span
        if num < 0:
            return True  # no output at all: both refuse
        out = (num + (s - 1 if kw.get("ceil_mode") else 0)) // s + 1
        if kw.get("ceil_mode") and (out - 1) * s >= n + p:
            out -= 1
        for o in range(out):
            if not any(0 <= o * s - p + t * e < n for t in range(k)):
                return False
    return True


@oracle("F.max_pool2d", n=30)
def _(g):
    x = _pool_input(g, int_refused=True)
    k, kh, kw = _pair(g, 1, 3)
    opts, kwargs = {}, {}
    if g.coin(0.5):
        opts["stride"], sh, sw = _pair(g, 1, 3)
        kwargs["stride"] = (sh, sw)
    if g.coin(0.4):
        ph, pw = g.int(0, kh // 2), g.int(0, kw // 2)
        opts["padding"] = [ph, pw] if ph != pw or g.coin(0.5) else ph
        kwargs["padding"] = (ph, pw)
    if g.coin(0.3):
        opts["dilation"], dh, dw = _pair(g, 1, 2)
        kwargs["dilation"] = (dh, dw)
    if g.coin(0.3):
        opts["ceil_mode"] = kwargs["ceil_mode"] = True
    if not _windows_touch_input(x.vshape, (kh, kw), kwargs):
        # a dilated window that holds only padding gives -inf with, in PyTorch, the "index" of an
        # element outside the window (or the plane), where its backward writes: not drawn
        opts.pop("padding", None)
        kwargs.pop("padding", None)
    ret = g.coin(0.4)
    if ret:
        opts["return_indices"] = True
    args = [x, k] + ([opts] if opts else [])
    if ret:
        return Case(F("max_pool2d"), args, lambda x: tuple(TF.max_pool2d(x, (kh, kw), return_indices=True, **kwargs)),
                    index=(1,))
    return Case(F("max_pool2d"), args, lambda x: TF.max_pool2d(x, (kh, kw), **kwargs))


@oracle("F.avg_pool2d", n=30, accumulates=True)
def _(g):
    x = _pool_input(g)
    k, kh, kw = _pair(g, 1, 3)
    opts, kwargs = {}, {}
    if g.coin(0.5):
        opts["stride"], sh, sw = _pair(g, 1, 3)
        kwargs["stride"] = (sh, sw)
    if g.coin(0.4):
        ph, pw = g.int(0, kh // 2), g.int(0, kw // 2)
        opts["padding"] = [ph, pw]
        kwargs["padding"] = (ph, pw)
    if g.coin(0.3):
        opts["ceil_mode"] = kwargs["ceil_mode"] = True
    if g.coin(0.3):
        opts["count_include_pad"] = kwargs["count_include_pad"] = False
    if g.coin(0.2):
        opts["divisor_override"] = kwargs["divisor_override"] = g.int(1, 5)
    args = [x, k] + ([opts] if opts else [])
    return Case(F("avg_pool2d"), args, lambda x: TF.avg_pool2d(x, (kh, kw), **kwargs), accumulates=True)


@oracle("F.adaptive_avg_pool2d", n=16, accumulates=True)
def _(g):
    x = _pool_input(g, int_refused=True)
    oh, ow = g.int(1, 7), g.int(1, 7)
    size = oh if g.coin(0.3) else [oh, ow]
    ts = (oh, oh) if not isinstance(size, list) else (oh, ow)
    return Case(F("adaptive_avg_pool2d"), [x, size], lambda x: TF.adaptive_avg_pool2d(x, ts), accumulates=True)


@oracle("F.batch_norm", n=36, accumulates=True)
def _(g):
    c = g.int(1, 3)
    n = g.pick((0, 1, 2, 3, 4))
    rest = g.pick(([], [g.int(1, 3)], [g.int(1, 3), g.int(1, 3)]))
    x = g.tensor([n, c] + rest, INT_REFUSED(g, [n, c] + rest), profiles=("normal", "normal", "ties", "special"))
    training = g.coin(0.6)
    rm = rv = None
    if not training or g.coin(0.6):
        rm = g.tensor([c], rg=False, view=False)
        rv = g.tensor([c], profile="positive", rg=False, view=False)
    w = g.tensor([c], profiles=("normal", "ties")) if g.coin(0.7) else None
    b = g.tensor([c], profiles=("normal",)) if g.coin(0.7) else None
    momentum = f32(g.pick((0.1, 0.5, 1.0, 0.0)))
    eps = g.pick((1e-5, 1e-3, 0.5))
    relu = g.coin(0.2)

    def fn(*views):
        it = iter(views)
        vx = next(it)
        vrm = next(it) if rm is not None else None
        vrv = next(it) if rv is not None else None
        vw = next(it) if w is not None else None
        vb = next(it) if b is not None else None
        y = TF.batch_norm(vx, vrm, vrv, vw, vb, training, momentum, eps)
        return TF.relu(y) if relu else y
    args = [x, rm or NIL, rv or NIL, w or NIL, b or NIL, training, momentum, eps]
    if relu:
        args.append({"relu": True})
    after = tuple(t for t in (rm, rv) if t is not None)
    return Case(F("batch_norm"), args, fn, after=after, accumulates=True)


@oracle("F.local_response_norm", n=16, accumulates=True)
def _(g):
    s = [g.int(0, 2), g.int(1, 5)] + g.pick(([g.int(1, 3)], [g.int(1, 3), g.int(1, 3)]))
    # int64 gives float32, from an integer mean of squares, as PyTorch
    x = g.tensor(s, "int64" if g.coin(0.1) else "float32", profiles=("normal", "normal", "ties", "special"))
    size = g.int(1, 5)
    if g.coin(0.3):
        return Case(F("local_response_norm"), [x, size], lambda x: TF.local_response_norm(x, size),
                    accumulates=True)
    alpha, beta, k = f32(g.pick((1e-4, 0.1, 1.0))), f32(g.pick((0.75, 0.5, 1.0))), f32(g.pick((1.0, 2.0, 0.5)))
    return Case(F("local_response_norm"), [x, size, {"alpha": alpha, "beta": beta, "k": k}],
                lambda x: TF.local_response_norm(x, size, alpha, beta, k), accumulates=True)


# ---- uint8 and bool (issue 14): PyTorch's promotion and the ops that give bool ----
# Registered after every other drawer, so the cases above keep their seeds.

def _small(g):
    """uint8 or bool."""
    return g.pick(("uint8", "bool"))


def _dtypes_small(g):
    """Two operands' dtypes, one of them uint8 or bool, the other any."""
    a = _small(g)
    b = g.pick(("uint8", "bool", "int64", "float32", a))
    return (a, b) if g.coin() else (b, a)


for _name in ("add", "sub", "mul", "div", "pow", "eq", "ne", "lt", "le", "gt", "ge"):
    oracle("Tensor." + _name, n=10)(_binary(_name, M(_name), pick=_dtypes_small))
for _name, _meta in (("add", "__add"), ("sub", "__sub"), ("mul", "__mul"), ("div", "__div"), ("pow", "__pow")):
    oracle("Tensor." + _meta, n=6)(_binary(_name, OP(_meta), pick=_dtypes_small))
for _name in ("maximum", "minimum"):
    oracle("Tensor." + _name, n=8)(_binary(_name, M(_name), number_ok=False, pick=_dtypes_small))
for _name in UNARY:
    oracle("Tensor." + _name, n=6)(_unary(_name, "m", pick=_small))
for _name in ("add_", "sub_", "mul_", "div_"):
    oracle("Tensor." + _name, n=8)(_inplace_binary(_name, pick=_dtypes_small))
oracle("Tensor.sum", n=12, accumulates=True)(_reduction("sum", True, pick=_small))
oracle("Tensor.mean", n=4, accumulates=True)(_reduction("mean", False, pick=_small))
oracle("Tensor.max", n=10)(_extreme("max", pick=_small))
oracle("Tensor.min", n=10)(_extreme("min", pick=_small))
oracle("Tensor.argmax", n=8)(_arg_extreme("argmax", pick=_small))
oracle("Tensor.argmin", n=8)(_arg_extreme("argmin", pick=_small))
oracle("cnn.cat", n=10)(_join("cat", pick=_small))
oracle("cnn.stack", n=8)(_join("stack", pick=_small))
oracle("Tensor.matmul", n=6, accumulates=True)(_matmul(M("matmul"), pick=_small))


@oracle("Tensor.clamp", n=8)
def _(g):
    x = g.tensor(g.shape(), _small(g))
    lo, hi = _clamp_bounds(g, "int64")
    if x.dtype == "uint8" and g.coin(0.2):
        hi = 300  # past 255: both refuse
    return Case(M("clamp"), [x, NIL if lo is None else lo, NIL if hi is None else hi], lambda x: x.clamp(lo, hi))


@oracle("Tensor.fill_", n=10)
def _(g):
    x = g.tensor(g.shape(), _small(g), view="write", rg=False)
    v = g.pick((g.int(-300, 300), g.int(0, 9), g.number(x.dtype), g.coin()))
    return Case(M("fill_"), [x, v], lambda x: x.fill_(v))


for _name in ("zeros", "ones", "zeros_like", "ones_like"):
    def _draw_small(g, name=_name):
        dt = _small(g)
        if name.endswith("_like"):
            x = g.tensor(g.shape(), g.dtype(0.3, 0.2), rg=False)
            return Case(C(name), [x, {"dtype": dt}], lambda x: getattr(torch, name)(x, dtype=_tdt(dt)))
        s = g.shape(0, 3)
        return Case(C(name), _shape_args(g, s, {"dtype": dt}), lambda: getattr(torch, name)(s, dtype=_tdt(dt)))
    oracle("cnn." + _name, n=4)(_draw_small)


@oracle("cnn.full", n=8)
def _(g):
    s = g.shape(0, 3)
    v = g.pick((g.coin(), g.int(-3, 3), g.number(special=False)))
    dt = g.pick((None, "uint8", "bool"))
    args = [s, v] + ([{"dtype": dt}] if dt else [])
    return Case(C("full"), args, lambda: torch.full(s, v, dtype=_tdt(dt)))


@oracle("cnn.tensor", n=8)
def _(g):
    s = g.shape(1, 3, 3)
    if g.coin(0.5):  # booleans: a bool tensor
        flat, dt = [g.coin() for _ in range(numel(s))], g.pick((None, "bool", "float32"))
    else:
        flat, dt = [g.int(-255, 300) if g.coin(0.3) else g.int(0, 9) for _ in range(numel(s))], "uint8"

    def nest(vals, shape):
        if not shape:
            return vals[0]
        step = numel(shape[1:])
        return [nest(vals[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
    if 0 in s:
        s = [1]
        flat = flat[:1] or [True]
    data = nest(flat, s)
    default = torch.bool if isinstance(flat[0], bool) else torch.float32
    args = [data] + ([{"dtype": dt}] if dt else [])
    return Case(C("tensor"), args, lambda: torch.tensor(data, dtype=_tdt(dt) or default))


@oracle("Tensor.to", n=10)
def _(g):
    x = _to_int_source(g) if g.coin(0.6) else g.tensor(g.shape(), _small(g))
    dt = g.pick(("float32", "int64", "uint8", "bool"))
    return Case(M("to"), [x, dt], lambda x: x.to(TORCH_DTYPES[dt]))


@oracle("Tensor.float", n=4)
def _(g):
    x = g.tensor(g.shape(), _small(g))
    return Case(M("float"), [x], lambda x: x.float())


@oracle("Tensor.long", n=4)
def _(g):
    x = g.tensor(g.shape(), _small(g))
    return Case(M("long"), [x], lambda x: x.long())


@oracle("Tensor.byte", n=10)
def _(g):
    x = _to_int_source(g) if g.coin(0.8) else g.tensor(g.shape(), "bool")
    return Case(M("byte"), [x], lambda x: x.byte())


@oracle("Tensor.bool", n=10)
def _(g):
    x = g.tensor(g.shape(), g.dtype(0.3, 0.15), profiles=FLOAT_PROFILES + ("ties",))
    return Case(M("bool"), [x], lambda x: x.bool())


@oracle("Tensor.item", n=6)
def _(g):
    x = g.tensor(g.pick(([], [1], [1, 1])), _small(g))
    return Case(M("item"), [x], lambda x: x.reshape(-1)[0], kind="number")


@oracle("Tensor.totable", n=4)
def _(g):
    return Case(M("totable"), [g.tensor(g.shape(), _small(g))], lambda x: x, kind="table")


@oracle("Tensor.index_select", n=6)
def _(g):
    x = g.tensor(g.shape(1, 3), _small(g))
    d = g.dim(x)
    n = x.vshape[d]
    idx = g.labels([g.int(0, 4)], 1, max(n, 1)) if n else g.labels([0], 1, 1)
    return Case(M("index_select"), [x, ld(d), idx], lambda x, i: x.index_select(d, i))


for _name in ("t", "contiguous", "clone"):
    oracle("Tensor." + _name, n=3)(lambda g, name=_name: Case(M(name), [g.tensor(g.shape(0, 2), _small(g))],
                                                               lambda x: getattr(x, name)()))


# ---- bool results: logical and bitwise ops, predicates, any / all, masks ----

def _logical(name, call, bitwise=False):
    fn = {"logical_and": torch.logical_and, "logical_or": torch.logical_or, "logical_xor": torch.logical_xor,
          "bitwise_and": torch.bitwise_and, "bitwise_or": torch.bitwise_or, "bitwise_xor": torch.bitwise_xor}[name]

    def draw(g):
        sa, sb = g.broadcast_shapes()
        if bitwise:  # bool and integers (a float raises in both, now and then)
            da = g.pick(("bool", "bool", "uint8", "int64", "float32" if g.coin(0.1) else "bool"))
            db = g.pick((da, da, "bool", "uint8", "int64"))
        else:
            da, db = g.dtype(0.2, 0.3), g.dtype(0.2, 0.3)
        a = g.tensor(sa, da, profiles=("ties", "special", "int"))
        if g.coin(0.3):
            v = g.number(da) if not bitwise or da == "bool" else g.int(0, 9)
            # a Python scalar, as Lua's number (the logical ops take only tensors: their result is bool anyway)
            return Case(call, [a, v], lambda a: fn(a, v) if bitwise else fn(a, torch.tensor(v)))
        b = g.tensor(sb, db, profiles=("ties", "special", "int"))
        return Case(call, [a, b], fn)
    return draw


for _name in ("logical_and", "logical_or", "logical_xor"):
    oracle("Tensor." + _name, n=16)(_logical(_name, M(_name)))
for _name, _meta in (("bitwise_and", "__band"), ("bitwise_or", "__bor"), ("bitwise_xor", "__bxor")):
    oracle("Tensor." + _name, n=12)(_logical(_name, M(_name), bitwise=True))
    oracle("Tensor." + _meta, n=10)(_logical(_name, OP(_meta), bitwise=True))


def _bitwise_not(call):
    def draw(g):
        x = g.tensor(g.shape(), g.pick(("bool", "bool", "uint8", "int64", "float32")))
        return Case(call, [x], torch.bitwise_not)
    return draw


oracle("Tensor.bitwise_not", n=10)(_bitwise_not(M("bitwise_not")))
oracle("Tensor.__bnot", n=8)(_bitwise_not(OP("__bnot")))


def _predicate(name):
    def draw(g):
        x = g.tensor(g.shape(), g.dtype(0.15, 0.1), profiles=("special", "special", "wide", "ties"))
        return Case(M(name), [x], lambda x: getattr(x, name)())
    return draw


for _name in ("isnan", "isinf", "isfinite", "isposinf", "isneginf", "logical_not"):
    oracle("Tensor." + _name, n=10)(_predicate(_name))


def _any_all(name):
    def draw(g):
        x = g.tensor(g.shape(), g.pick(("bool", "bool", "uint8", "float32", "int64")), profiles=("ties", "special"))
        if g.coin(0.4):
            return Case(M(name), [x], lambda x: getattr(x, name)())
        d, keep = g.dim(x), g.coin()
        return Case(M(name), [x, ld(d), keep], lambda x: getattr(x, name)(d, keepdim=keep))
    return draw


oracle("Tensor.any", n=14)(_any_all("any"))
oracle("Tensor.all", n=14)(_any_all("all"))


@oracle("Tensor.nonzero", n=10)
def _(g):
    x = g.tensor(g.shape(), g.dtype(0.2, 0.2), profiles=("ties", "special"))
    return Case(M("nonzero"), [x], lambda x: torch.nonzero(x), index=(0,))


def _mask_for(g, shape, full=None):
    """A bool mask of the shape of shape's first k dims (k random, or all when full)."""
    k = len(shape) if full else g.int(0, len(shape))
    return g.tensor(shape[:k], "bool", view=g.coin(0.3))


@oracle("cnn.where", n=20)
def _(g):
    sc, sa, sb = g.broadcast_shapes(3)
    da, db = _dtypes(g)
    cond = g.tensor(sc, "bool" if g.coin(0.9) else g.pick(("float32", "uint8")))
    a, b = g.tensor(sa, da), g.tensor(sb, db)
    u = g.r.random()
    if u < 0.2:
        v = g.number(db)
        return Case(C("where"), [cond, v, b], lambda c, b: torch.where(c, v, b))
    if u < 0.35:
        v = g.number(da)
        return Case(C("where"), [cond, a, v], lambda c, a: torch.where(c, a, v))
    return Case(C("where"), [cond, a, b], torch.where)


def _masked_fill(name):
    def draw(g):
        s = g.shape()
        dtype = g.dtype(0.2, 0.1)
        x = g.tensor(s, dtype, view="write" if name.endswith("_") else True, rg=None if name == "masked_fill" else False)
        ms = [v if not g.coin(0.3) else 1 for v in s]
        if ms and g.coin(0.3):
            ms = ms[g.int(1, len(ms)):]
        if name == "masked_fill" and g.coin(0.1):
            ms = [2] + ms  # larger than x: the out-of-place form broadcasts, the in-place one refuses
        mask = g.tensor(ms, "bool")
        if g.coin(0.3) and dtype == "float32":
            v = g.tensor([], "float32", rg=name == "masked_fill")  # (in place: cnnlua refuses a value needing grad)
            return Case(M(name), [x, mask, v], lambda x, m, v: getattr(x, name)(m, v))
        v = g.number(dtype, special=dtype == "float32")
        if dtype == "uint8" and isinstance(v, int):
            v = g.int(-3, 260) if g.coin(0.2) else g.int(0, 9)  # past 255: both refuse
        return Case(M(name), [x, mask, v], lambda x, m: getattr(x, name)(m, v))
    return draw


oracle("Tensor.masked_fill", n=20)(_masked_fill("masked_fill"))
oracle("Tensor.masked_fill_", n=12)(_masked_fill("masked_fill_"))


@oracle("Tensor.__index", n=12)
def _(g):  # boolean masks: t[mask]
    x = g.tensor(g.shape(), g.dtype(0.15, 0.05))
    mask = _mask_for(g, x.vshape)
    if g.coin(0.05):
        mask = g.tensor([v + 1 for v in x.vshape[:1]] or [2], "bool")  # the wrong shape: both refuse
    return Case(OP("__index"), [x, mask], lambda x, m: x[m])


@oracle("Tensor.__newindex", n=10)
def _(g):  # t[mask] = v
    x = g.tensor(g.shape(1, 4), g.dtype(0.2, 0.05), view="write", rg=False)
    mask = _mask_for(g, x.vshape)
    if g.coin(0.5):
        v = g.int(-3, 3) if x.dtype == "int64" else g.int(0, 9) if x.dtype == "uint8" else g.number(x.dtype)

        def fn(x, m):
            x[m] = v
            return x
        return Case(OP("__newindex"), [x, mask, v], fn)
    rest = x.vshape[len(mask.vshape):]
    src = g.tensor([1 if g.coin(0.3) else d for d in rest], x.dtype, rg=False)

    def fn2(x, m, s):
        x[m] = s
        return x
    return Case(OP("__newindex"), [x, mask, src], fn2)


# The ops composed in Lua beyond the activations and losses (float32 inputs, as above).
def _softmax_method(name):
    def draw(g):
        x = g.tensor(g.shape(), profiles=FLOAT_PROFILES + ("ties",))
        d = g.dim(x)
        return Case(M(name), [x, ld(d)], lambda x: getattr(x, name)(d), accumulates=True)
    return draw


oracle("Tensor.softmax", n=10, accumulates=True)(_softmax_method("softmax"))
oracle("Tensor.log_softmax", n=10, accumulates=True)(_softmax_method("log_softmax"))


@oracle("F.gelu", n=16)
def _(g):
    # one element at a time: PyTorch's SIMD loop (contiguous, 2+ elements) takes erf from
    # Abramowitz-Stegun 7.1.26 (absolute error 1.5e-7), its scalar loop from the C library, as cnnlua
    x = g.tensor(g.shape())
    if g.coin(0.5):
        return Case(F("gelu"), [x], scalar_path(TF.gelu))
    return Case(F("gelu"), [x, {"approximate": "tanh"}], scalar_path(lambda x: TF.gelu(x, approximate="tanh")))


def _logsumexp(call):
    def draw(g):
        s = g.shape()
        while not s or 0 in s:
            s = g.shape()
        x = g.tensor(s, profiles=FLOAT_PROFILES + ("ties",))
        d = g.dim(x)
        if g.coin(0.5):
            return Case(call, [x, ld(d)], lambda x: torch.logsumexp(x, d), accumulates=True)
        keep = g.coin()
        return Case(call, [x, ld(d), keep], lambda x: torch.logsumexp(x, d, keepdim=keep), accumulates=True)
    return draw


oracle("F.logsumexp", n=12, accumulates=True)(_logsumexp(F("logsumexp")))
oracle("Tensor.logsumexp", n=12, accumulates=True)(_logsumexp(M("logsumexp")))


@oracle("Tensor.rsqrt", n=12)
def _(g):
    s = g.shape()
    return Case(M("rsqrt"), [g.tensor(s, "int64" if g.coin(0.1) else "float32")], torch.rsqrt)


@oracle("F.layer_norm", n=16, accumulates=True)
def _(g):
    s = [g.int(1, 3) for _ in range(g.int(1, 3))] + [g.int(2, 5)]
    k = g.int(1, min(2, len(s)))
    ns = s[len(s) - k:]
    x = g.tensor(s, profiles=("normal", "normal", "ties", "special", "positive"))
    if g.coin(0.4):
        return Case(F("layer_norm"), [x, ns], lambda x: TF.layer_norm(x, ns), accumulates=True)
    w, b = g.tensor(ns, view=False), g.tensor(ns, view=False)
    return Case(F("layer_norm"), [x, ns, w, b, 1e-3], lambda x, w, b: TF.layer_norm(x, ns, w, b, 1e-3),
                accumulates=True)


@oracle("F.group_norm", n=16, accumulates=True)
def _(g):
    groups = g.int(1, 3)
    c = groups * g.int(1, 2)
    s = [g.int(1, 3), c] + [g.int(1, 3) for _ in range(g.int(0, 2))]
    x = g.tensor(s, profiles=("normal", "normal", "ties", "special", "positive"))
    if g.coin(0.4):
        return Case(F("group_norm"), [x, groups], lambda x: TF.group_norm(x, groups), accumulates=True)
    w, b = g.tensor([c], view=False), g.tensor([c], view=False)
    return Case(F("group_norm"), [x, groups, w, b], lambda x, w, b: TF.group_norm(x, groups, w, b),
                accumulates=True)


@oracle("F.one_hot", n=8)
def _(g):
    c = g.int(1, 5)
    y = g.labels([g.int(0, 3) for _ in range(g.int(0, 2))], 1, c)
    return Case(F("one_hot"), [y, c], lambda y: TF.one_hot(y, c))



@oracle("F.binary_cross_entropy", n=12, accumulates=True)
def _(g):
    s = g.shape()
    # now and then inputs above 1: refused by both
    x = g.tensor(s, profile="positive") if g.coin(0.15) else g.tensor(s, profile="range", lo=0.0, hi=1.0)
    y = g.tensor(s, profile="range", lo=0.0, hi=1.0, rg=False, view=False)
    return Case(F("binary_cross_entropy"), [x, y], lambda x, y: TF.binary_cross_entropy(x, y))


@oracle("F.kl_div", n=12, accumulates=True)
def _(g):
    s = g.shape()
    x = g.tensor(s)
    y = g.tensor(s, profile="positive", rg=False, view=False)
    red = g.pick(("sum", "none", "batchmean"))
    log_target = g.coin(0.3)
    return Case(F("kl_div"), [x, y, {"reduction": red, "log_target": log_target}],
                lambda x, y: TF.kl_div(x, y, reduction=red, log_target=log_target))


@oracle("Tensor.cumsum", n=20, accumulates=True)
def _(g):
    x = g.tensor(g.shape(0, 4), g.dtype(0.15, 0.1))
    d = g.dim(x)
    return Case(M("cumsum"), [x, ld(d)], lambda x: x.cumsum(d))


@oracle("F.pad", n=40)
def _(g):
    mode = g.pick(("constant", "constant", "reflect", "replicate", "circular"))
    if mode == "constant":
        x = g.tensor(g.shape(1, 4))
        k = g.int(1, min(2, len(x.vshape)))
        pad = [g.int(-1, 2) for _ in range(2 * k)]
        v = f32(g.pick((0.0, 1.5, -2.0)))
        return Case(F("pad"), [x, pad, "constant", v], lambda x: TF.pad(x, pad, "constant", v))
    # k padded dims of an input with k + 1 or k + 2 dims (circular: k + 2); sometimes a wrong
    # count, an empty dim or a reflect padding as large as the size (both refuse)
    k = g.int(1, 3)
    nd = k + 2 if mode == "circular" or g.coin() else k + 1
    if g.coin(0.1):
        nd = g.pick((k, k + 3))
    x = g.tensor(g.shape(nd, nd, 4, empty=0.04))
    pad = []
    for j in range(k):
        n = x.vshape[-1 - j] if j < len(x.vshape) else 1
        top = n - 1 if mode == "reflect" else n
        b, a = g.int(-1, max(top, 0)), g.int(-1, max(top, 0))
        if mode == "circular" and min(b, a) < 0:
            # PyTorch 1.13 crops first and wraps what is left, reading uninitialised memory when a
            # padding exceeds that (cnnlua refuses it: docs/PYTORCH.md)
            b, a = min(b, n - 1), min(a, n - 1)
        pad += [b, a]
    if g.coin(0.08):
        pad[g.int(0, len(pad) - 1)] = (x.vshape[-1] if x.vshape else 1) + (0 if mode == "reflect" else 1)
    return Case(F("pad"), [x, pad, mode], lambda x: TF.pad(x, pad, mode))


def _scatter_index(g, s, dd, n_src, distinct):
    """A 1-based index for scatter into shape s along dd: sizes at most s's (and n_src's), entries
    distinct along dd when distinct (PyTorch leaves repeated scatter writes unordered)."""
    si = [g.int(1, min(n, m)) if k != dd else g.int(1, min(s[dd], m) if distinct else m)
          for k, (n, m) in enumerate(zip(s, n_src))]
    cols = {}
    vals = []
    for flat in range(numel(si)):
        pos, rest = [], flat
        for n in reversed(si):
            pos.insert(0, rest % n)
            rest //= n
        key = tuple(p for k, p in enumerate(pos) if k != dd)
        if distinct:
            if key not in cols:
                cols[key] = g.r.sample(range(1, s[dd] + 1), si[dd])
            vals.append(cols[key][pos[dd]])
        else:
            vals.append(g.int(1, s[dd]))
    return g.tensor(si, "int64", values=vals, rg=False, offset=1)


def _scatter(name, add):
    def draw(g):
        s = g.shape(1, 3)
        while 0 in s:
            s = g.shape(1, 3)
        dt = g.dtype(0.15, 0.05)
        inplace = name.endswith("_")
        x = g.tensor(s, dt, view="write" if inplace else True, rg=False if inplace else None)
        d = g.dim(x)
        dd = d % len(s)
        n_src = [n + g.int(0, 1) for n in s]
        i = _scatter_index(g, s, dd, n_src, not add)
        if not add and g.coin(0.3):  # the value form
            v = g.number(dt, special=False)
            if dt == "uint8" and g.coin(0.4):
                v = g.int(-300, 300)  # past +-255: both refuse
            elif dt in ("int64", "uint8") and g.coin(0.2):
                v = g.pick((NAN, 2.75, -1.5))  # NaN: both refuse; fractions truncate
            return Case(M(name), [x, ld(d), i, v], lambda x, i: getattr(x, name)(d, i, v))
        src = g.tensor(n_src, dt if not g.coin(0.05) else ("int64" if dt != "int64" else "float32"),
                       rg=False if inplace else None)
        if g.coin(0.05):  # an index past the end: both refuse
            i = g.labels(i.vshape, s[dd] + 1, s[dd] + 1)
        return Case(M(name), [x, ld(d), i, src], lambda x, i, src: getattr(x, name)(d, i, src))
    return draw


oracle("Tensor.scatter", n=24, accumulates=False)(_scatter("scatter", False))
oracle("Tensor.scatter_", n=14)(_scatter("scatter_", False))
oracle("Tensor.scatter_add_", n=10, accumulates=True)(_scatter("scatter_add_", True))


@oracle("Tensor.gather", n=12, accumulates=True)
def _(g):
    s = g.shape(1, 3)
    while 0 in s:
        s = g.shape(1, 3)
    x = g.tensor(s, "int64" if g.coin(0.1) else "float32")
    d = g.dim(x)
    dd = d % len(s)
    si = [g.int(1, 4) if k == dd else g.int(1, n) for k, n in enumerate(s)]
    i = g.labels(si, 1, s[dd])
    return Case(M("gather"), [x, ld(d), i], lambda x, i: torch.gather(x, d, i))



@oracle("Tensor.scatter_add", n=12, accumulates=True)
def _(g):
    s = g.shape(1, 3)
    while 0 in s:
        s = g.shape(1, 3)
    dt = "int64" if g.coin(0.1) else "float32"
    x = g.tensor(s, dt)
    d = g.dim(x)
    dd = d % len(s)
    si = [g.int(1, 4) if k == dd else g.int(1, n) for k, n in enumerate(s)]
    i = g.labels(si, 1, s[dd])
    src = g.tensor([n + g.int(0, 1) for n in si], dt)
    return Case(M("scatter_add"), [x, ld(d), i, src], lambda x, i, src: x.scatter_add(d, i, src))



# sort compares as PyTorch's stable sort (ties keep their order, NaN above everything)
@oracle("Tensor.sort", n=18)
def _(g):
    x = g.tensor(g.shape(0, 3), g.dtype(0.1, 0.05), profiles=FLOAT_PROFILES + ("ties",))
    d, desc = g.dim(x), g.coin()
    return Case(M("sort"), [x, ld(d), desc], lambda x: tuple(torch.sort(x, dim=d, descending=desc, stable=True)),
                index=(1,))


@oracle("Tensor.argsort", n=8)
def _(g):
    x = g.tensor(g.shape(1, 3), profiles=FLOAT_PROFILES + ("ties",))
    d, desc = g.dim(x), g.coin()
    return Case(M("argsort"), [x, ld(d), desc],
                lambda x: torch.sort(x, dim=d, descending=desc, stable=True).indices, index=(0,))


# topk on distinct values (no expanded views either): PyTorch's order among ties is unspecified,
# cnnlua's is stable (docs/PYTORCH.md)
@oracle("Tensor.topk", n=10)
def _(g):
    x = g.tensor(g.shape(1, 3), profile="normal", view="write")
    d = g.dim(x)
    k = g.int(0, x.vshape[d])
    largest = g.coin()
    return Case(M("topk"), [x, k, ld(d), largest], lambda x: tuple(torch.topk(x, k, d, largest=largest)),
                index=(1,))


# add_ with alpha into a bool tensor: PyTorch ors in other where alpha is nonzero (other must be
# bool and alpha an integer, else both refuse)
@oracle("Tensor.add_", n=16)
def _(g):
    s = g.shape()
    x = g.tensor(s, "bool", view="write", rg=False)
    o = g.tensor([v if not g.coin(0.3) else 1 for v in s], "bool" if g.coin(0.8) else "int64", rg=False)
    alpha = g.pick((0, 0, 2, -1, 1, 0.5)) if g.coin(0.8) else True
    if alpha is True:
        o, alpha = g.coin(), g.pick((0, 3))
        return Case(M("add_"), [x, o, alpha], lambda x: x.add_(o, alpha=alpha))
    return Case(M("add_"), [x, o, alpha], lambda x, o: x.add_(o, alpha=alpha))


# argmax / argmin of bool: PyTorch refuses them except over a dim of size 1 (index 0 each)
def _bool_arg(name):
    def draw(g):
        s = g.shape(1, 4)
        d = g.dim(len(s))
        if g.coin(0.8):
            s[d] = 1
        x = g.tensor(s, "bool")
        keep = g.coin()
        return Case(M(name), [x, ld(d), keep], lambda x: getattr(x, name)(d, keepdim=keep), index=(0,))
    return draw


oracle("Tensor.argmax", n=6)(_bool_arg("argmax"))
oracle("Tensor.argmin", n=6)(_bool_arg("argmin"))


# a Lua float into uint8 must lie in 0..255, an integer in -255..255 (PyTorch's overflow checks)
@oracle("cnn.full", n=8)
def _(g):
    v = g.pick((-1.5, -0.5, -0.0, 255.5, 255.0, 2.75, -1, 300, -255, 7))
    s = g.shape(0, 2)
    return Case(C("full"), [s, v, {"dtype": "uint8"}], lambda: torch.full(s, v, dtype=torch.uint8))



# ResNet's option A shortcut: a strided slice between zero channels (PyTorch CIFAR ResNets write
# F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))); last here so earlier cases keep their seeds.
@oracle("F.pad_channels", n=10)
def _(g):
    x = g.tensor(g.shape(4, 4, 5, empty=0))  # PyTorch 1.13 refuses to pad around an empty dim
    before, after, stride = g.int(0, 2), g.int(0, 2), g.int(1, 3)
    return Case(F("pad_channels"), [x, before, after, {"stride": stride}],
                lambda x: TF.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, before, after)))


# relu in place (t:relu_(), F.relu_, F.relu(x, true)): written views, an expanded one refused;
# last here so earlier cases keep their seeds.
@oracle("Tensor.relu_", n=8)
def _(g):
    x = g.tensor(g.shape(), view="write", rg=False)
    return Case(M("relu_"), [x], lambda x: x.relu_())


@oracle("F.relu_", n=6)
def _(g):
    x = g.tensor(g.shape(), view="write", rg=False)
    return Case(F("relu_"), [x], lambda x: TF.relu_(x))


# Rounding, floor division and remainder (the third fuzzing round found // and % missing); last
# here so earlier cases keep their seeds.
for _name in ("floor", "ceil", "round", "trunc"):
    oracle("Tensor." + _name, n=16)(_unary(_name, "m"))


def _rounded(call, fn, ints=True):
    """a op b for floor division and remainder: int64 pairs with no zero divisor (PyTorch's
    integer division by zero raises, as cnnlua's does), float pairs of any values; the inputs
    carry no gradient when the op is floor division (PyTorch has no derivative for it)."""
    def draw(g):
        sa, sb = g.broadcast_shapes()
        dt = "int64" if ints and g.coin(0.3) else "float32"
        rg = None if fn is torch.remainder else False
        a = g.tensor(sa, dt, rg=rg)
        if dt == "int64":
            b = g.tensor(sb, dt, values=[g.int(1, 9) * g.pick((1, -1)) for _ in range(numel(sb))])
        else:
            b = g.tensor(sb, dt, rg=rg)
        if g.coin(0.3):
            s = g.pick((2, -3)) if dt == "int64" else g.pick((2.0, -0.75, 0.1, 7.5))
            return Case(call, [a, s], lambda a: fn(a, s))
        return Case(call, [a, b], fn, broadcast=True)
    return draw


def _floor_div(a, b):
    return torch.div(a, b, rounding_mode="floor")


oracle("Tensor.floor_divide", n=20)(_rounded(M("floor_divide"), _floor_div))
oracle("Tensor.__idiv", n=12)(_rounded(OP("__idiv"), _floor_div))
oracle("Tensor.remainder", n=20)(_rounded(M("remainder"), torch.remainder))
oracle("Tensor.__mod", n=12)(_rounded(OP("__mod"), torch.remainder))


# nan_to_num and nan_to_num_ (added in the twelfth sitting); last here so earlier cases keep their
# seeds. PyTorch's posinf and neginf default to the dtype's extremes: float32's are passed
# explicitly, so the float64 reference run replaces infinities with the same values.
F32_MAX = float(torch.finfo(torch.float32).max)


def _nan_to_num(name):
    def draw(g):
        dt = "int64" if g.coin(0.15) else "float32"
        x = g.tensor(g.shape(), dt, profiles=("special", "special", "wide"),
                     **({"view": "write", "rg": False} if name.endswith("_") else {}))
        keys = ("nan", "posinf", "neginf")
        given = {k: v for k, v in zip(keys, (g.pick((0.0, 1.5, -2.0)), g.pick((1e4, 0.5)), g.pick((-1e4, -0.5))))
                 if g.coin(0.6)}
        form = g.pick(("none", "positional", "table"))
        if form == "none":
            given = {}
        kw = {"nan": given.get("nan", 0.0), "posinf": given.get("posinf", F32_MAX),
              "neginf": given.get("neginf", -F32_MAX)}
        args = [] if form == "none" else [given] if form == "table" else [given.get(k, NIL) for k in keys]
        return Case(M(name), [x] + args, lambda x: getattr(x, name)(**kw))
    return draw


oracle("Tensor.nan_to_num", n=16)(_nan_to_num("nan_to_num"))
oracle("Tensor.nan_to_num_", n=10)(_nan_to_num("nan_to_num_"))

# ---- running the cases in PyTorch ----

def pattern(shape, dtype):
    n = numel(shape)
    w = torch.tensor([((5 * k + 3) % 8) * 0.25 - 0.875 for k in range(n)], dtype=dtype)
    return w.reshape(shape)


class Outcome:
    pass


def written(case):
    """The inputs the call writes into: those compared after it, and the self of an in-place op."""
    out = list(case.after)
    if case.call[1].endswith("_") or case.call[1] == "__newindex":
        out.append(case.args[0])
    return out


def run(case, fdtype, layout=False):
    """Runs the case in PyTorch with float inputs of fdtype. Returns an Outcome: err, or outs
    (tensors or Python values), after (tensors), seeded (bools per out), grads (per input).
    An op's values must not depend on how its inputs are laid out in memory, but some of
    PyTorch's do (1.13's batch_norm backward on a channels-last input in eval mode gives wrong
    gradients), so the reference takes contiguous copies of the views (gradients still reach the
    bases through them); inputs an op writes into, and the ops whose meaning depends on the
    layout (view), get the views themselves. layout=True passes every view as it is (to report
    where PyTorch itself disagrees)."""
    ins = case.inputs()
    made = [t.make(fdtype) for t in ins]
    views = [v for _, v in made]
    if not layout and not case.layout:
        keep = written(case)
        views = [v if any(t is w for w in keep) else v.contiguous() for v, t in zip(views, ins)]
    if fdtype == torch.float64:
        # the float64 run also measures each input's largest gradient term: the gradient with
        # respect to the op's own argument (before the view's backward sums expanded copies), and
        # for broadcasting elementwise ops per broadcast position (before the op sums them)
        if case.broadcast and views:
            shape = torch.broadcast_shapes(*[v.shape for v in views])
            views = [v.expand(shape) if v.dtype.is_floating_point else v for v in views]
        for v in views:
            if v.requires_grad:
                v.retain_grad()
    oc = Outcome()
    oc.err = None
    try:
        res = case.fn(*views)
    except (RuntimeError, IndexError, ValueError, TypeError) as e:
        oc.err = str(e).split("\n")[0]
        return oc
    if case.kind in ("number", "boolean"):
        res = (res,)
    elif not isinstance(res, tuple):
        res = (res,)
    oc.outs = list(res)
    oc.after = [views[[i for i, t in enumerate(ins) if t is a][0]].detach().clone() for a in case.after]
    oc.seeded = [isinstance(o, torch.Tensor) and o.requires_grad and o.grad_fn is not None
                 and (k > 0 or case.kind == "tensor") for k, o in enumerate(oc.outs)]
    seeds = [o for o, s in zip(oc.outs, oc.seeded) if s]
    oc.grad_err = None
    if seeds:
        try:
            torch.autograd.backward(seeds, [pattern(list(o.shape), o.dtype) for o in seeds])
        except (RuntimeError, IndexError) as e:  # PyTorch's own backward fails (e.g. var over an empty dim)
            oc.grad_err = str(e).split("\n")[0]
    oc.grads = [b.grad if t.rg else None for (b, _), t in zip(made, ins)]
    if seeds and oc.grad_err is None and all(o.numel() == 0 for o in seeds):
        # nothing reads the inputs of an empty result: their gradient is 0 (PyTorch 1.13's
        # reflection pad backward leaves it uninitialised, e.g. F.pad(x, (0, 0, -1, -1), "reflect"))
        oc.grads = [torch.zeros_like(gr) if gr is not None else None for gr in oc.grads]
    oc.terms = [finite_max(v.grad) if v.requires_grad and v.grad is not None else 0.0 for v in views]
    return oc


def finite_max(t):
    """The largest finite |value| of t (0 without any)."""
    a = t.detach().double().abs()
    a = a[torch.isfinite(a)]
    return a.max().item() if a.numel() else 0.0


def same_values(a, b):
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype == torch.float32:
            return bool(torch.allclose(a.detach(), b.detach(), rtol=1e-4, atol=1e-6, equal_nan=True))
        return bool(torch.equal(a, b))
    return (a is None) == (b is None)


LAYOUT_NOTES = []


def report_layout_dependence(name, case, oc):
    """Notes the cases where PyTorch gives other values for the views than for their copies."""
    lo = run(case, torch.float32, layout=True)
    if lo.err is not None or oc.err is not None:
        if (lo.err is None) != (oc.err is None):
            LAYOUT_NOTES.append("%s: raises only %s" % (name, "with views" if lo.err else "on copies"))
        return
    diff = [k for k, (a, b) in enumerate(zip(oc.outs, lo.outs)) if not same_values(a, b)]
    gdiff = [k for k, (a, b) in enumerate(zip(oc.grads, lo.grads)) if not same_values(a, b)]
    if diff or gdiff:
        LAYOUT_NOTES.append("%s: results %s, gradients of inputs %s" % (name, diff, [k + 1 for k in gdiff]))


# ---- writing ----

def b64(raw):
    return base64.b64encode(raw).decode("ascii")


def enc_tensor(t, index=False):
    t = t.detach().contiguous()
    flat = t.reshape(-1)
    n = flat.numel()
    if t.dtype == torch.bool:
        dt, raw = "bool", bytes(flat.to(torch.uint8).tolist())
    elif t.dtype == torch.int64:
        vals = flat.tolist()
        if index:
            vals = [v + 1 for v in vals]
        dt, raw = "int64", struct.pack("<%dq" % n, *vals)
    elif t.dtype == torch.float32:
        dt, raw = "float32", struct.pack("<%df" % n, *flat.tolist())
    elif t.dtype == torch.uint8:
        dt, raw = "uint8", bytes(flat.tolist())
    else:
        raise TypeError(t.dtype)
    return {"dt": dt, "shape": list(t.shape), "data": b64(raw)}


RTOL = 4e-6   # must match tests/lua/oracle_spec.lua


def tolerances(r32, r64, scale):
    """(rtol, atol) for a float32 result r32 of PyTorch, r64 the same case in float64:
    rtol is RTOL, or 4 x PyTorch's own worst relative error on the result's larger elements when
    that is more (a derivative that cancels, as tanh's 1 - out^2 near saturation, amplifies
    everyone's rounding of out alike), at most 1e-3; atol is 4 x PyTorch's own error beyond that,
    plus 32 ulps of scale when given: the size of the terms summed into the result, which a sum
    that cancels to ~0 no longer shows."""
    if r64 is None or r32.dtype != torch.float32 or r32.shape != r64.shape:
        return RTOL, 0.0
    a, b = r32.detach().double(), r64.detach().double()
    fin = torch.isfinite(a) & torch.isfinite(b)
    if not bool(fin.any()):
        return RTOL, 0.0
    bb = b.abs()
    floor = 2 ** -18 * max(bb[fin].max().item(), scale) if scale is not None else 0.0
    err = ((a - b).abs() - floor).clamp(min=0)  # what the terms' rounding does not explain
    big = fin & (bb > 0) & (bb >= 1e-3 * bb[fin].max())
    rel = (err / bb.clamp(min=1e-300))[big].max().item() if bool(big.any()) else 0.0
    rtol = min(max(RTOL, 4 * rel), 1e-3)
    atol = floor + 4 * (err - rtol * bb).clamp(min=0)[fin].max().item()
    return float("%.3g" % rtol), (float("%.3g" % atol) if atol else 0.0)


def set_tolerances(e, r32, r64, scale):
    rtol, atol = tolerances(r32, r64, scale)
    e["atol"] = atol
    if rtol != RTOL:
        e["rtol"] = rtol


SEED_MAX = 0.875  # the largest |w[k]| of the gradient seed pattern


def term_scale(ins):
    """The largest finite |value| of the case's float inputs (0 without any)."""
    m = 0.0
    for t in ins:
        if t.dtype == "float32":
            for v in t.data:
                if math.isfinite(v) and abs(v) > m:
                    m = abs(v)
    return m


def lua_num(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return "%d" % v
    if math.isnan(v):
        return "0/0"
    if math.isinf(v):
        return "1/0" if v > 0 else "-1/0"
    text = repr(float(v))
    return text if any(ch in text for ch in ".en") else text + ".0"


def lua(v, ins):
    """A Lua literal; tensor inputs become {T = k}, NIL {N = true}."""
    if isinstance(v, T):
        return "{T=%d}" % ([i for i, t in enumerate(ins) if t is v][0] + 1)
    if v is NIL:
        return "{N=true}"
    if isinstance(v, str):
        return lua_string(v)
    if isinstance(v, (bool, int, float)):
        return lua_num(v)
    if isinstance(v, (list, tuple)):
        return "{" + ",".join(lua(x, ins) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ",".join("%s=%s" % (k, lua(v[k], ins)) for k in sorted(v)) + "}"
    if v is None:
        return "nil"
    raise TypeError(type(v))


def enc_input(t):
    if t.dtype == "int64":
        raw = struct.pack("<%dq" % len(t.data), *t.data)
    elif t.dtype in ("uint8", "bool"):
        raw = struct.pack("<%dB" % len(t.data), *t.data)
    else:
        raw = struct.pack("<%df" % len(t.data), *t.data)
    out = {"dt": t.dtype, "shape": t.shape, "data": b64(raw)}
    if t.view:
        out["view"] = [list(s) for s in t.view]
    if t.rg:
        out["rg"] = True
    return out


def enc_result(v, kind, index, r64, scale):
    if kind == "number":
        t = v.detach() if isinstance(v, torch.Tensor) else torch.tensor(v)
        if t.numel() != 1:
            raise ValueError("number result with %d elements" % t.numel())
        out = enc_tensor(t.reshape(()))
        out["kind"] = "number"
        set_tolerances(out, t, r64, scale)
        return out
    if kind == "boolean":
        return {"kind": "boolean", "value": bool(v)}
    out = enc_tensor(v, index)
    set_tolerances(out, v, r64, scale)
    if kind == "table":
        out["kind"] = "table"
    else:
        out["rg"] = bool(v.requires_grad)
    return out


def lua_table(d):
    """A dict of plain values (str, bool, int, float, list, dict) as a Lua literal."""
    if isinstance(d, dict):
        return "{" + ",".join("%s=%s" % (k, lua_table(d[k])) for k in d) + "}"
    if isinstance(d, list):
        return "{" + ",".join(lua_table(x) for x in d) + "}"
    if isinstance(d, str):
        return lua_string(d)
    return lua_num(d)


def build_case(name, case):
    ins = case.inputs()
    oc = run(case, torch.float32)
    parts = ["op=%s" % lua_string(name), "call={%s,%s}" % (lua_string(case.call[0]), lua_string(case.call[1])),
             "args=%s" % lua(case.args, ins), "nargs=%d" % len(case.args),
             "inputs=%s" % lua_table([enc_input(t) for t in ins])]
    if oc.err is not None:
        parts.append("err=%s" % lua_string(oc.err[:160]))
        return "{" + ",".join(parts) + "}"
    oc64 = run(case, torch.float64)
    if oc64.err is not None:
        oc64 = None
    if not case.layout and any(t.view for t in ins):
        report_layout_dependence(name, case, oc)
    m = term_scale(ins)
    out_scale = m if case.accumulates else None
    grad_scale = m * SEED_MAX if case.accumulates else None
    outs = []
    for k, v in enumerate(oc.outs):
        r64 = oc64.outs[k] if oc64 and isinstance(oc64.outs[k], torch.Tensor) else None
        if case.kind in ("number",) and oc64:
            r64 = oc64.outs[k] if isinstance(oc64.outs[k], torch.Tensor) else torch.tensor(oc64.outs[k])
        kind = case.kind if k == 0 else "tensor"
        e = enc_result(v, kind, k in case.index, r64, out_scale)
        if oc.seeded[k]:
            e["seed"] = True
        outs.append(e)
    parts.append("out=%s" % lua_table(outs))
    if case.after:
        afters = []
        for k, v in enumerate(oc.after):
            e = enc_tensor(v)
            set_tolerances(e, v, oc64.after[k] if oc64 else None, out_scale)
            e["input"] = [i for i, t in enumerate(ins) if t is case.after[k]][0] + 1
            afters.append(e)
        parts.append("after=%s" % lua_table(afters))
    grads = {}
    if oc.grad_err is not None:
        parts.append("torch_backward_failed=%s" % lua_string(oc.grad_err[:160]))
        oc.grads = []
    for i, gr in enumerate(oc.grads):
        if not ins[i].rg:
            continue
        if gr is None:
            grads[str(i + 1)] = "none"
            continue
        e = enc_tensor(gr)
        g64 = oc64.grads[i] if oc64 else None
        # every gradient may be a sum (over expanded or broadcast copies, or inside the op): 32 ulps
        # of its largest term, besides the accumulating ops' own scale
        terms = oc64.terms[i] if oc64 else 0.0
        set_tolerances(e, gr, g64, max(terms, grad_scale or 0.0))
        grads[str(i + 1)] = e
    if grads:
        parts.append("grads={%s}" % ",".join(
            "[%s]=%s" % (k, lua_string(v) if isinstance(v, str) else lua_table(v)) for k, v in grads.items()))
    return "{" + ",".join(parts) + "}"


def main():
    # a longer hunt, not committed: ORACLE_SEED=7 ORACLE_SCALE=5 ORACLE_OUT=/tmp/o.lua (ORACLE_BIG=1
    # for large dims, see BIG), then
    # ORACLE_FIXTURE=/tmp/o.lua busted tests/lua/oracle_spec.lua
    seed = int(os.environ.get("ORACLE_SEED", SEED))
    scale = float(os.environ.get("ORACLE_SCALE", 1))
    rng = random.Random(seed)
    lines = []
    counts = {}
    for name, n, drawer, accumulates in OPS:
        for _ in range(max(1, round(n * scale))):
            case = drawer(Draw(random.Random(rng.getrandbits(64))))
            case.accumulates = case.accumulates or accumulates
            lines.append(build_case(name, case))
            counts[name] = counts.get(name, 0) + 1
    path = os.environ.get("ORACLE_OUT") or fixture_path("oracle_cases.lua")
    with open(path, "w") as f:
        f.write("-- Generated by scripts/tools/gen_oracle_fixtures.py (seed %d) with PyTorch %s; do not edit.\n"
                % (seed, torch.__version__))
        f.write("-- One case a line: the Lua call, its inputs (base values + view recipe, base64 of\n")
        f.write("-- little-endian float32/int64), and PyTorch's results, inputs after the call and gradients.\n")
        f.write("return {\ntorch=%s,\nexempt={\n" % lua_string(torch.__version__))
        for k in sorted(EXEMPT):
            f.write("[%s]=%s,\n" % (lua_string(k), lua_string(EXEMPT[k])))
        f.write("},\ncases={\n")
        for line in lines:
            f.write(line + ",\n")
        f.write("}}\n")
    print("wrote %d cases of %d ops to %s" % (len(lines), len(counts), path))
    for note in LAYOUT_NOTES:
        print("PyTorch gives views other values than their contiguous copies (the copies are used):", note)


if __name__ == "__main__":
    main()
