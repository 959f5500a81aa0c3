#!/usr/bin/python3
"""Writes tests/fixtures/optim_reference.lua: PyTorch's optimisers (SGD, Adam, AdamW, RMSprop,
Adagrad) and lr schedules run for a few steps on a fixed problem, so tests/lua/optim_spec.lua can
replay each case with cnn.optim and compare the parameters after every step and the lr after every
schedule step.

The problem: a linear layer W (3x4), b (3), fixed inputs X (5x4) and targets Y (5x3), and the loss
mean((X @ W^T + b - Y)^2); its gradients come from each library's own autograd. Every tensor is
written into the fixture (no RNG matching). Options are written as Lua tables in cnn.optim's
spelling, which for these optimisers is PyTorch's keyword names.

Run from anywhere: /usr/bin/python3 scripts/tools/gen_optim_fixtures.py
"""
import os

import torch

torch.set_default_dtype(torch.float32)
GEN = torch.Generator().manual_seed(20240612)

W0 = torch.randn(3, 4, generator=GEN)
B0 = torch.randn(3, generator=GEN)
X = torch.randn(5, 4, generator=GEN)
Y = torch.randn(5, 3, generator=GEN)


def loss_of(w, b):
    return ((X @ w.t() + b - Y) ** 2).mean()


# name, optimiser, options, groups (None: one list of params) or [(param name, group options)],
# schedule (None or (class, options)), metrics for ReduceLROnPlateau, steps
CASES = [
    ("sgd_plain", "SGD", {"lr": 0.1}, None, None, None, 5),
    ("sgd_momentum", "SGD", {"lr": 0.1, "momentum": 0.9}, None, None, None, 5),
    ("sgd_dampening", "SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}, None, None, None, 5),
    ("sgd_nesterov", "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, None, None, None, 5),
    ("sgd_weight_decay", "SGD", {"lr": 0.1, "weight_decay": 0.1}, None, None, None, 5),
    ("sgd_momentum_weight_decay", "SGD", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.2}, None, None, None, 5),
    ("sgd_maximize", "SGD", {"lr": 0.05, "momentum": 0.9, "maximize": True}, None, None, None, 5),
    ("sgd_groups", "SGD", {"momentum": 0.9}, [("W", {"lr": 0.1}), ("b", {"lr": 0.01, "momentum": 0.0})],
     None, None, 5),
    ("adam_default", "Adam", {}, None, None, None, 5),
    ("adam_lr_betas_eps", "Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6}, None, None, None, 5),
    ("adam_weight_decay", "Adam", {"lr": 0.05, "weight_decay": 0.1}, None, None, None, 5),
    # beta2 = 0.5 lets exp_avg_sq fall as the gradient shrinks, so the running max matters
    ("adam_amsgrad", "Adam", {"lr": 0.2, "betas": (0.9, 0.5), "amsgrad": True}, None, None, None, 8),
    ("adam_maximize", "Adam", {"lr": 0.05, "maximize": True}, None, None, None, 5),
    ("adamw", "AdamW", {"lr": 0.05, "weight_decay": 0.1}, None, None, None, 5),
    ("adamw_default", "AdamW", {}, None, None, None, 5),
    ("adamw_amsgrad", "AdamW", {"lr": 0.2, "betas": (0.9, 0.5), "weight_decay": 0.05, "amsgrad": True},
     None, None, None, 8),
    ("adam_groups", "Adam", {"lr": 0.05}, [("W", {}), ("b", {"lr": 0.01, "betas": (0.5, 0.9)})], None, None, 5),
    ("rmsprop_default", "RMSprop", {}, None, None, None, 5),
    ("rmsprop_alpha_eps", "RMSprop", {"lr": 0.02, "alpha": 0.9, "eps": 1e-3}, None, None, None, 5),
    ("rmsprop_weight_decay", "RMSprop", {"lr": 0.02, "weight_decay": 0.1}, None, None, None, 5),
    ("rmsprop_momentum", "RMSprop", {"lr": 0.01, "momentum": 0.9}, None, None, None, 5),
    ("rmsprop_centered", "RMSprop", {"lr": 0.01, "centered": True}, None, None, None, 5),
    ("rmsprop_maximize", "RMSprop", {"lr": 0.01, "momentum": 0.5, "maximize": True}, None, None, None, 5),
    ("rmsprop_all", "RMSprop", {"lr": 0.005, "alpha": 0.95, "eps": 1e-5, "weight_decay": 0.05, "momentum": 0.5,
                                "centered": True}, None, None, None, 5),
    ("rmsprop_groups", "RMSprop", {"lr": 0.01}, [("W", {"momentum": 0.9}), ("b", {"lr": 0.05, "centered": True})],
     None, None, 5),
    ("adagrad_default", "Adagrad", {}, None, None, None, 5),
    ("adagrad_lr_decay", "Adagrad", {"lr": 0.1, "lr_decay": 0.5}, None, None, None, 5),
    ("adagrad_weight_decay", "Adagrad", {"lr": 0.1, "weight_decay": 0.1}, None, None, None, 5),
    ("adagrad_initial_accumulator", "Adagrad", {"lr": 0.1, "initial_accumulator_value": 0.5}, None, None, None, 5),
    ("adagrad_eps", "Adagrad", {"lr": 0.1, "eps": 0.1}, None, None, None, 5),
    ("adagrad_maximize", "Adagrad", {"lr": 0.1, "maximize": True}, None, None, None, 5),
    ("adagrad_all", "Adagrad", {"lr": 0.2, "lr_decay": 0.1, "weight_decay": 0.05, "initial_accumulator_value": 0.1,
                                "eps": 1e-3}, None, None, None, 5),
    ("adagrad_groups", "Adagrad", {"lr": 0.1}, [("W", {"lr_decay": 0.2}), ("b", {"lr": 0.3})], None, None, 5),
    ("steplr", "SGD", {"lr": 0.1, "momentum": 0.9}, None, ("StepLR", {"step_size": 2, "gamma": 0.5}), None, 6),
    ("cosine", "SGD", {"momentum": 0.9}, [("W", {"lr": 0.1}), ("b", {"lr": 0.05})],
     ("CosineAnnealingLR", {"T_max": 4, "eta_min": 0.001}), None, 10),
    ("cosine_adam", "Adam", {"lr": 0.05}, None, ("CosineAnnealingLR", {"T_max": 4}), None, 5),
    ("plateau_min", "SGD", {"lr": 0.1},
     None, ("ReduceLROnPlateau", {"factor": 0.5, "patience": 1, "cooldown": 1, "threshold": 0.01}),
     [1.0, 0.9, 0.95, 0.9, 0.895, 0.891, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6], 12),
    ("plateau_max_abs", "Adam", {"lr": 0.05},
     None, ("ReduceLROnPlateau", {"mode": "max", "factor": 0.5, "patience": 0, "cooldown": 2,
                                  "threshold": 0.05, "threshold_mode": "abs", "min_lr": 0.01}),
     [0.1, 0.2, 0.22, 0.23, 0.24, 0.3, 0.3, 0.3, 0.3, 0.3], 10),
]


def run(case):
    name, opt_name, options, groups, schedule, metrics, steps = case
    w = W0.clone().requires_grad_()
    b = B0.clone().requires_grad_()
    named = {"W": w, "b": b}
    opt_cls = getattr(torch.optim, opt_name)
    if groups is None:
        opt = opt_cls([w, b], **options)
    else:
        opt = opt_cls([dict(params=[named[p]], **g) for p, g in groups], **options)
    sched = None
    if schedule:
        sched = getattr(torch.optim.lr_scheduler, schedule[0])(opt, **schedule[1])
    out = []
    for k in range(steps):
        opt.zero_grad()
        loss_of(w, b).backward()
        opt.step()
        rec = {"W": w.detach().clone(), "b": b.detach().clone()}
        if sched is not None:
            if metrics is not None:
                sched.step(metrics[k])
            else:
                sched.step()
            rec["lr"] = [g["lr"] for g in opt.param_groups]
        out.append(rec)
    return out


def lua_value(v, indent=""):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if v == v and abs(v) != float("inf") else ("0/0" if v != v else ("math.huge" if v > 0 else "-math.huge"))
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, torch.Tensor):
        return lua_tensor(v)
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua_value(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join("%s = %s" % (k, lua_value(x)) for k, x in v.items()) + "}"
    raise TypeError(type(v))


def lua_tensor(t):
    if t.dim() == 1:
        return "{" + ", ".join("%.9g" % x for x in t.tolist()) + "}"
    return "{" + ", ".join(lua_tensor(r) for r in t) + "}"


def main():
    lines = [
        "-- Generated by scripts/tools/gen_optim_fixtures.py with PyTorch %s; do not edit." % torch.__version__,
        "-- W0, b0: the starting parameters; X, Y: the data of loss = mean((X W^T + b - Y)^2).",
        "-- Each case: the optimiser and its options (groups name the parameter each group holds),",
        "-- an optional schedule and the metric given to each of its steps, and after every step",
        "-- the parameters and (with a schedule) every group's lr after sched:step().",
        "return {",
        "  W0 = %s," % lua_tensor(W0),
        "  b0 = %s," % lua_tensor(B0),
        "  X = %s," % lua_tensor(X),
        "  Y = %s," % lua_tensor(Y),
        "  cases = {",
    ]
    results = {}
    for case in CASES:
        name, opt_name, options, groups, schedule, metrics, steps = case
        recs = run(case)
        results[name] = recs
        lines.append("    {")
        lines.append('      name = "%s", optimizer = "%s", options = %s,' % (name, opt_name, lua_value(options)))
        if groups is not None:
            lines.append("      groups = {%s}," % ", ".join(
                "{param = \"%s\", options = %s}" % (p, lua_value(g)) for p, g in groups))
        if schedule is not None:
            lines.append('      schedule = "%s", schedule_options = %s,' % (schedule[0], lua_value(schedule[1])))
        if metrics is not None:
            lines.append("      metrics = %s," % lua_value(metrics))
        lines.append("      steps = {")
        for r in recs:
            extra = (", lr = %s" % lua_value(r["lr"])) if "lr" in r else ""
            lines.append("        {W = %s, b = %s%s}," % (lua_tensor(r["W"]), lua_tensor(r["b"]), extra))
        lines.append("      },")
        lines.append("    },")
    lines.append("  },")
    lines.append("}")

    # the cases must exercise what they are named for
    def differs(a, b):
        return any(not torch.allclose(x["W"], y["W"], rtol=1e-4, atol=1e-6) for x, y in zip(a, b))
    for name in ("adam_amsgrad", "adamw_amsgrad"):
        assert differs(results[name], run(without_amsgrad(name))), name + ": amsgrad made no difference"
    lrs = [r["lr"][0] for r in results["plateau_min"]]
    assert len(set(lrs)) >= 3, "plateau_min must reduce the lr at least twice: %s" % lrs
    lrs = [r["lr"][0] for r in results["plateau_max_abs"]]
    assert len(set(lrs)) >= 3 and lrs[-1] == 0.01, "plateau_max_abs must reach min_lr: %s" % lrs

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                        "optim_reference.lua")
    with open(os.path.normpath(path), "w") as f:
        f.write("\n".join(lines) + "\n")


def without_amsgrad(name):
    """The named case with amsgrad off, to check that amsgrad changes its trajectory."""
    case = next(c for c in CASES if c[0] == name)
    options = dict(case[2], amsgrad=False)
    return (name + "_off", case[1], options) + tuple(case[3:])


if __name__ == "__main__":
    main()
