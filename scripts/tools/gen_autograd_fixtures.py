#!/usr/bin/python3
"""Writes tests/fixtures/autograd_reference.lua: composite expressions evaluated with PyTorch's
autograd, so tests/lua/autograd_reference_spec.lua can check cnnlua's forward values and gradients
against an independent implementation. Inputs are written into the fixture (no RNG matching).

Each case below has a twin in autograd_reference_spec.lua (same name, same expression written in
Lua with 1-based dims and indices). Run from anywhere: /usr/bin/python3 scripts/tools/gen_autograd_fixtures.py
"""
import torch

from fixture_util import Sampler, fixture_path, lua_value, nested

torch.set_default_dtype(torch.float32)
_S = Sampler(20240611)
randn, rand, spread = _S.randn, _S.rand, _S.spread


# name -> (inputs [(tensor, requires_grad)], fn(*inputs) -> output tensor, extra outputs fn or None)
CASES = []


def case(name, inputs, extra=None):
    def wrap(fn):
        CASES.append((name, inputs, fn, extra))
        return fn
    return wrap


@case("broadcast_mul_sum", [(randn(2, 3, 4), True), (randn(3, 1), True), (randn(4), True)])
def _(a, b, c):
    # (2,3,4) * (3,1) + (4): both broadcast, gradients must be summed back to (3,1) and (4)
    return (a * b + c).sum()


@case("broadcast_sub_div", [(randn(3, 1), True), (rand(0.5, 2.0, 1, 4), True)])
def _(a, b):
    return (a - b) / b - 1.5 / (b + a * a + 3.0)


@case("matmul_2d", [(randn(3, 4), True), (randn(4, 5), True)])
def _(a, b):
    return a.matmul(b)


@case("matmul_batched_broadcast", [(randn(2, 3, 4), True), (randn(4, 5), True)])
def _(a, b):
    # batched (2,3,4) @ (4,5): b is broadcast over the batch, its gradient sums the batch
    return torch.matmul(a, b)


@case("matmul_batched_3d", [(randn(2, 3, 4), True), (randn(2, 4, 2), True)])
def _(a, b):
    return torch.matmul(a, b)


@case("matmul_vector", [(randn(4), True), (randn(4, 3), True), (randn(3), True)])
def _(v, m, w):
    # 1-d @ 2-d gives (3); 1-d @ 1-d gives a 0-d dot product
    return torch.matmul(torch.matmul(v, m), w)


@case("mm_transposed", [(randn(4, 3), True), (randn(5, 4), True)])
def _(a, b):
    return a.t().mm(b.t())


@case("softmax_chain", [(randn(3, 5), True), (randn(3, 5), False)])
def _(x, w):
    # softmax over dim 1 written out of primitives, then a weighted log-likelihood
    m = x.max(dim=1, keepdim=True)[0]
    e = (x - m).exp()
    s = e / e.sum(dim=1, keepdim=True)
    return -(w * s.log()).sum() / 3.0


@case("var_std_dims", [(randn(3, 4), True)])
def _(x):
    # (3,1) * (1,4) -> (3,4), plus full-tensor var and std (0-d)
    return x.var(dim=1, keepdim=True) * x.std(dim=0, keepdim=True) + x.var() - x.std()


@case("var_std_nokeep", [(randn(2, 3, 4), True)])
def _(x):
    return x.var(dim=2).sum(0) + x.std(dim=0).mean(1)


@case("mean_dims", [(randn(2, 3, 4), True)])
def _(x):
    return x.mean(dim=1) * x.mean() + x.mean(dim=-1).mean(dim=1, keepdim=True)


@case("max_min_dim", [(spread(-2.0, 2.0, 3, 4), True)],
      extra=lambda x: {"max_indices": x.max(dim=1)[1] + 1, "min_indices": x.min(dim=0)[1] + 1})
def _(x):
    v, _ = x.max(dim=1)
    w, _ = x.min(dim=0)
    return (v * 2.0).sum() + (w * w).sum() + x.max() - x.min()


@case("pow_family", [(rand(0.5, 2.0, 2, 3), True), (rand(-1.0, 2.0, 2, 3), True)])
def _(x, y):
    return x ** 3 + x ** y + 2.0 ** y + x ** 0.5 - x ** -1.5


@case("clamp_relu_abs", [(spread(-2.0, 2.0, 4, 5), True), (randn(4, 5), True)])
def _(x, y):
    return x.clamp(-0.5, 0.5) * y + x.relu() + x.abs() * 0.25 - (-x)


@case("unary_chain", [(rand(0.5, 2.0, 2, 4), True)])
def _(x):
    return (x.sqrt() + x.log()).tanh() * x.sigmoid() + (-x).exp()


@case("cat_stack_index_select", [(randn(2, 3), True), (randn(2, 2), True), (randn(2, 3), True)])
def _(a, b, c):
    ab = torch.cat([a, b], dim=1)                      # (2,5)
    ac = torch.stack([a, c], dim=0)                    # (2,2,3)
    picked = ab.index_select(1, torch.tensor([4, 0, 4]))  # repeated index: gradient accumulates
    return ac.sum(0) * picked + torch.stack([a, c], dim=2).sum(2)


@case("permute_reshape", [(randn(2, 3, 4), True), (randn(6, 2), True)])
def _(x, w):
    y = x.permute(2, 0, 1).reshape(4, 6)   # non-contiguous permute, reshape copies
    return y.matmul(w).t().contiguous().view(-1)


@case("view_ops", [(randn(2, 1, 3), True), (randn(3), True)])
def _(x, b):
    y = x.squeeze(1).unsqueeze(0).expand(4, 2, 3)    # (4,2,3), stride 0 on dim 0
    z = y.transpose(0, 2).flatten(1)                 # (3,8)
    return z * b.unsqueeze(1) + x.flatten().clone().view(3, 2).sum(1, keepdim=True)


@case("select_narrow_index", [(randn(3, 4), True)])
def _(x):
    # x[1] (Python) is the second row; select(1, -1) the last column; narrow(1, 1, 2) columns 2..3
    return x[1] * x.select(1, -1).sum() + x.narrow(1, 1, 2).sum(1).unsqueeze(1) * x[2]


@case("reused_input", [(randn(5), True)])
def _(x):
    # x reaches the output along three paths; its gradient is their sum
    return (x * x + x.exp() * x - x).sum()


@case("scalar_sides", [(rand(0.5, 2.0, 3), True)])
def _(x):
    return 1.0 - x + 2.0 / x - (3.0 * x) / 4.0 + (x + 2.0) * (-x)


@case("zero_dim", [(torch.tensor(1.25), True), (randn(3), True)])
def _(s, v):
    # a 0-d tensor broadcast against a vector
    return (s * v + s ** 2).sum() * s


def tensor_entry(t):
    return {"shape": list(t.shape), "data": nested(t)}


def run_case(name, inputs, fn, extra):
    xs = [t.detach().clone().requires_grad_(rg) for t, rg in inputs]
    out = fn(*xs)
    entry = {"name": name}
    entry["inputs"] = [tensor_entry(x) for x in xs]
    entry["requires_grad"] = [rg for _, rg in inputs]
    entry["output"] = tensor_entry(out)
    if out.dim() == 0:
        out.backward()
    else:
        gout = randn(*out.shape)
        entry["grad_output"] = tensor_entry(gout)
        out.backward(gout)
    entry["grads"] = [tensor_entry(x.grad) if rg else None for x, (_, rg) in zip(xs, inputs)]
    if extra is not None:
        entry["extra"] = {k: tensor_entry(v) for k, v in extra(*[t for t, _ in inputs]).items()}
    return entry


def main():
    path = fixture_path("autograd_reference.lua")
    cases = [run_case(*c) for c in CASES]
    with open(path, "w") as f:
        f.write("-- Generated by scripts/tools/gen_autograd_fixtures.py with PyTorch %s; do not edit.\n"
                % torch.__version__)
        f.write("-- Each case: inputs, the output of the expression, the seed gradient (grad_output,\n")
        f.write("-- absent for 0-d outputs) and the gradient of every input that requires grad\n")
        f.write("-- (false for the others). extra holds 1-based int64 results (e.g. max indices).\n")
        f.write("return {\n  cases = %s\n}\n" % lua_value(cases, 1))
    print("wrote %d cases to %s" % (len(cases), path))


if __name__ == "__main__":
    main()
