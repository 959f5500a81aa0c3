#!/usr/bin/python3
"""Writes tests/fixtures/functional_reference.lua: PyTorch's values and gradients for the
functional ops of cnn.F written in C (leaky_relu, softmax, log_softmax, cross_entropy, nll_loss,
mse_loss, batch_norm, local_response_norm), so tests/lua/functional_spec.lua checks cnnlua against
an independent implementation. Inputs are written into the fixture (no RNG matching).

Everything in the fixture is in Lua's terms: dims are 1-based (negative counts from the end),
class labels are 1..C, ignore_index is a label value. Each case names its op and options; the
spec calls the same op with the same options. For batch_norm training cases two steps run: the
first is differentiated, and the running statistics are recorded after each.

Run from anywhere: /usr/bin/python3 scripts/tools/gen_functional_fixtures.py
"""
import warnings

import torch
import torch.nn.functional as F

from fixture_util import Sampler, fixture_path, lua_value, nested

torch.set_default_dtype(torch.float32)
warnings.filterwarnings("ignore", message="Using a target size")  # mse_loss_broadcast is deliberate
_S = Sampler(20240612)
GEN = _S.gen
randn, rand = _S.randn, _S.rand


def labels(C, *shape):
    """0-based class indices for PyTorch (the fixture stores them + 1)."""
    return torch.randint(0, C, shape, generator=GEN)


spread = _S.spread  # distinct values, shuffled: no value sits on a kink (leaky_relu at 0)


def torch_dim(d):
    return d - 1 if d > 0 else d


CASES = []


def add(name, op, inputs, opts, fn, extra=None):
    """inputs: [(tensor, requires_grad, kind)] with kind "float" or "label" (0-based in PyTorch);
    fn(*tensors) -> output; extra(*tensors) -> dict of more tensors to record."""
    CASES.append((name, op, inputs, opts, fn, extra))


# ---- activations ----

add("leaky_relu_default", "leaky_relu", [(spread(-3, 3, 4, 5), True, "float")], {},
    lambda x: F.leaky_relu(x))
add("leaky_relu_slope", "leaky_relu", [(spread(-2, 2, 2, 3, 4), True, "float")], {"slope": 0.2},
    lambda x: F.leaky_relu(x, 0.2))

for name, shape, d in [("2d_dim2", (4, 6), 2), ("2d_dim1", (4, 6), 1), ("3d_mid", (2, 5, 3), 2),
                       ("4d_last", (2, 3, 2, 4), -1), ("4d_channels", (2, 3, 2, 4), 2), ("1d", (7,), 1)]:
    for op, f in [("softmax", F.softmax), ("log_softmax", F.log_softmax)]:
        add("%s_%s" % (op, name), op, [(randn(*shape) * 2, True, "float")], {"dim": d},
            lambda x, f=f, d=d: f(x, dim=torch_dim(d)))

# logits near 1000 with a spread of +-60: exp overflows unless the max is subtracted
for op, f in [("softmax", F.softmax), ("log_softmax", F.log_softmax)]:
    add("%s_large_logits" % op, op, [(1000 + 20 * randn(3, 6), True, "float")], {"dim": -1},
        lambda x, f=f: f(x, dim=-1))
    add("%s_large_negative" % op, op, [(-5000 + 10 * randn(2, 5, 3), True, "float")], {"dim": 2},
        lambda x, f=f: f(x, dim=1))


# ---- cross-entropy and nll ----

def ce_opts_torch(opts):
    o = {}
    if "reduction" in opts:
        o["reduction"] = opts["reduction"]
    if "label_smoothing" in opts:
        o["label_smoothing"] = opts["label_smoothing"]
    if "ignore_index" in opts:
        o["ignore_index"] = opts["ignore_index"] - 1
    return o


def ce_case(name, op, x, y, opts, weight=None):
    f = F.cross_entropy if op == "cross_entropy" else F.nll_loss
    inputs = [(x, True, "float"), (y, False, "label")]
    if weight is not None:
        inputs.append((weight, False, "float"))
        add(name, op, inputs, dict(opts, weight=True),
            lambda a, b, w: f(a, b, weight=w, **ce_opts_torch(opts)))
    else:
        add(name, op, inputs, opts, lambda a, b: f(a, b, **ce_opts_torch(opts)))


for red in ["mean", "sum", "none"]:
    ce_case("cross_entropy_%s" % red, "cross_entropy", randn(6, 5) * 2, labels(5, 6), {"reduction": red})
    ce_case("cross_entropy_smoothing_%s" % red, "cross_entropy", randn(6, 5) * 2, labels(5, 6),
            {"reduction": red, "label_smoothing": 0.1})
ce_case("cross_entropy_default_opts", "cross_entropy", randn(4, 10), labels(10, 4), {})
ce_case("cross_entropy_weight_mean", "cross_entropy", randn(6, 4), labels(4, 6), {"reduction": "mean"},
        weight=rand(0.2, 2.0, 4))
ce_case("cross_entropy_weight_smoothing", "cross_entropy", randn(6, 4), labels(4, 6),
        {"reduction": "mean", "label_smoothing": 0.2}, weight=rand(0.2, 2.0, 4))
ce_case("cross_entropy_weight_none", "cross_entropy", randn(5, 4), labels(4, 5), {"reduction": "none"},
        weight=rand(0.2, 2.0, 4))
# labels 2 (Lua) are ignored: left out of the mean, zero gradient rows
ce_case("cross_entropy_ignore_mean", "cross_entropy", randn(6, 3), torch.tensor([1, 0, 2, 1, 1, 0]),
        {"reduction": "mean", "ignore_index": 2})
ce_case("cross_entropy_ignore_smoothing", "cross_entropy", randn(6, 3), torch.tensor([1, 0, 2, 1, 1, 0]),
        {"reduction": "mean", "ignore_index": 2, "label_smoothing": 0.1})
ce_case("cross_entropy_unbatched", "cross_entropy", randn(5), torch.tensor(3), {})
ce_case("cross_entropy_unbatched_none", "cross_entropy", randn(5), torch.tensor(0), {"reduction": "none"})
ce_case("cross_entropy_spatial_mean", "cross_entropy", randn(2, 4, 3, 3), labels(4, 2, 3, 3), {})
ce_case("cross_entropy_spatial_none", "cross_entropy", randn(2, 4, 3, 2), labels(4, 2, 3, 2),
        {"reduction": "none", "label_smoothing": 0.1})
ce_case("cross_entropy_spatial_3d", "cross_entropy", randn(3, 4, 5), labels(4, 3, 5), {"reduction": "sum"})
ce_case("cross_entropy_large_logits", "cross_entropy", 2000 + 30 * randn(4, 6), labels(6, 4),
        {"reduction": "none"})
ce_case("cross_entropy_large_smoothing", "cross_entropy", -3000 + 50 * randn(4, 6), labels(6, 4),
        {"label_smoothing": 0.1})

for red in ["mean", "sum", "none"]:
    ce_case("nll_loss_%s" % red, "nll_loss", F.log_softmax(randn(6, 5), 1), labels(5, 6), {"reduction": red})
ce_case("nll_loss_weight_mean", "nll_loss", F.log_softmax(randn(6, 4), 1), labels(4, 6), {"reduction": "mean"},
        weight=rand(0.2, 2.0, 4))
ce_case("nll_loss_ignore", "nll_loss", randn(5, 3), torch.tensor([2, 0, 2, 1, 0]),
        {"reduction": "mean", "ignore_index": 3})
ce_case("nll_loss_spatial", "nll_loss", randn(2, 3, 2, 2), labels(3, 2, 2, 2), {"reduction": "sum"})
ce_case("nll_loss_unbatched", "nll_loss", randn(4), torch.tensor(2), {})

for red in ["mean", "sum", "none"]:
    add("mse_loss_%s" % red, "mse_loss", [(randn(3, 4), True, "float"), (randn(3, 4), True, "float")],
        {"reduction": red}, lambda a, b, red=red: F.mse_loss(a, b, reduction=red))
add("mse_loss_default", "mse_loss", [(randn(2, 3, 2), True, "float"), (randn(2, 3, 2), False, "float")], {},
    lambda a, b: F.mse_loss(a, b))
add("mse_loss_broadcast", "mse_loss", [(randn(3, 1), True, "float"), (randn(1, 4), True, "float")],
    {"reduction": "mean"}, lambda a, b: F.mse_loss(a, b))


# ---- batch norm ----

def bn_case(name, shape, training, affine, stats=True, momentum=0.1, eps=1e-5):
    C = shape[1]
    x1 = randn(*shape) * 1.5 + 0.5
    x2 = randn(*shape) * 0.7 - 0.3
    rm = rand(-0.5, 0.5, C) if stats else None
    rv = rand(0.5, 1.5, C) if stats else None
    w = rand(0.5, 1.5, C) if affine else None
    b = randn(C) if affine else None
    inputs = [(x1, True, "float")]
    if stats:
        inputs += [(rm, False, "float"), (rv, False, "float")]
    if affine:
        inputs += [(w, True, "float"), (b, True, "float")]
    opts = {"training": training, "momentum": momentum, "eps": eps, "stats": stats, "affine": affine}

    def unpack(ts):
        ts = list(ts)
        x = ts.pop(0)
        m = v = wt = bs = None
        if stats:
            m, v = ts.pop(0), ts.pop(0)
        if affine:
            wt, bs = ts.pop(0), ts.pop(0)
        return x, m, v, wt, bs

    # step 1 is the differentiated one; the running statistics move (in place) when training
    def fn(*ts):
        x, m, v, wt, bs = unpack(ts)
        return F.batch_norm(x, m, v, wt, bs, training, momentum, eps)

    # after step 1 (fn ran on the clones the runner made): step 2's input, output and the stats
    def extra(*ts):
        x, m, v, wt, bs = unpack(ts)
        m = m.clone() if m is not None else None
        v = v.clone() if v is not None else None
        out = {"x2": x2}
        with torch.no_grad():
            F.batch_norm(x, m, v, wt, bs, training, momentum, eps)
            if stats:
                out["running_mean1"], out["running_var1"] = m.clone(), v.clone()
            out["y2"] = F.batch_norm(x2, m, v, wt, bs, training, momentum, eps)
            if stats:
                out["running_mean2"], out["running_var2"] = m.clone(), v.clone()
        return out

    add(name, "batch_norm", inputs, opts, fn, extra)


bn_case("batch_norm_train_2d_affine", (8, 4), True, True)
bn_case("batch_norm_train_2d_plain", (6, 3), True, False)
bn_case("batch_norm_train_4d_affine", (3, 3, 4, 4), True, True)
bn_case("batch_norm_train_4d_plain", (2, 4, 3, 3), True, False)
bn_case("batch_norm_train_3d_affine", (4, 3, 5), True, True, momentum=0.3, eps=1e-3)
bn_case("batch_norm_train_no_stats", (5, 3, 2, 2), True, True, stats=False)
bn_case("batch_norm_eval_2d_affine", (5, 4), False, True)
bn_case("batch_norm_eval_4d_affine", (2, 3, 3, 3), False, True)
bn_case("batch_norm_eval_4d_plain", (2, 3, 3, 3), False, False)


# ---- local response norm ----

def lrn_case(name, shape, size, alpha=None, beta=None, k=None, scale=1.0):
    kw, opts = {}, {"size": size}
    for key, v in [("alpha", alpha), ("beta", beta), ("k", k)]:
        if v is not None:
            kw[key] = v
            opts[key] = v
    add(name, "local_response_norm", [(randn(*shape) * scale, True, "float")], opts,
        lambda x: F.local_response_norm(x, size, **kw))


lrn_case("lrn_size5_defaults", (2, 7, 3, 3), 5, scale=10.0)
lrn_case("lrn_size5_strong", (2, 7, 3, 3), 5, alpha=0.5, beta=0.75, k=2.0)
lrn_case("lrn_size2_even", (2, 5, 2, 3), 2, alpha=0.3, beta=0.6, k=1.5)
lrn_case("lrn_size4_even", (1, 6, 2, 2), 4, alpha=0.8, beta=0.75, k=1.0)
lrn_case("lrn_size3_3d", (2, 5, 4), 3, alpha=0.4, beta=1.2, k=1.0)
lrn_case("lrn_size_wider_than_channels", (2, 3, 2, 2), 7, alpha=0.6, beta=0.5, k=1.0)


# ---- writing ----

def tensor_entry(t, kind="float"):
    if kind == "label":
        return {"shape": list(t.shape), "dtype": "int64", "data": nested(t + 1)}
    return {"shape": list(t.shape), "data": nested(t)}


def run_case(name, op, inputs, opts, fn, extra):
    xs = [t.detach().clone().requires_grad_(rg) for t, rg, _ in inputs]
    entry = {"name": name, "op": op, "opts": opts}
    entry["inputs"] = [tensor_entry(t, kind) for t, _, kind in inputs]
    entry["requires_grad"] = [rg for _, rg, _ in inputs]
    # the stats a batch_norm step updates in place are recorded before it runs
    out = fn(*xs)
    entry["output"] = tensor_entry(out)
    if out.dim() == 0:
        out.backward()
    else:
        gout = randn(*out.shape)
        entry["grad_output"] = tensor_entry(gout)
        out.backward(gout)
    entry["grads"] = [tensor_entry(x.grad) if rg else False for x, (_, rg, _) in zip(xs, inputs)]
    if extra is not None:
        # from the pristine inputs: step 1 again (no grad), then step 2
        fresh = [t.detach().clone() for t, _, _ in inputs]
        entry["extra"] = {k: tensor_entry(v) for k, v in extra(*fresh).items()}
    return entry


def main():
    path = fixture_path("functional_reference.lua")
    cases = [run_case(*c) for c in CASES]
    with open(path, "w") as f:
        f.write("-- Generated by scripts/tools/gen_functional_fixtures.py with PyTorch %s; do not edit.\n"
                % torch.__version__)
        f.write("-- Each case: op, options (Lua terms: 1-based dims, labels 1..C), inputs, the output,\n")
        f.write("-- the seed gradient (grad_output, absent for 0-d outputs) and every input's gradient\n")
        f.write("-- (false when it needs none). batch_norm cases add extra: a second step's input and\n")
        f.write("-- output and the running statistics after each step.\n")
        f.write("return {\n  cases = %s\n}\n" % lua_value(cases, 1, none="nil"))
    print("wrote %d cases to %s" % (len(cases), path))


if __name__ == "__main__":
    main()
