#!/usr/bin/python3
"""Writes tests/fixtures/nn_reference.lua: torch.nn modules run by PyTorch, so the cnn.nn specs
(tests/lua/nn_spec.lua) can check cnnlua's modules against an independent implementation.

- layers: one case per layer configuration: the module's state_dict (random values, loaded into the
  Lua twin with load_state_dict), its inputs, its output, the state after the forward (BatchNorm's
  running statistics move in training mode) and the module's repr.
- lenet5: the full LeNet-5 Sequential's state_dict names and shapes, parameter names and count
  (no values: 61,706 of them would only bloat the file).
- small_lenet: a small LeNet-shaped Sequential with its state_dict values, an input batch, the
  logits, the cross-entropy loss for given labels and the gradient of every parameter.
- tree: a user-defined module (nested Sequentials, BatchNorm, LRN, dropout, an own parameter)
  with names in PyTorch order, the output in training mode, the state after it, and the output in
  eval mode.

Each case has a twin in nn_spec.lua (same name, the same constructor written in Lua with 1-based
dims; labels shift to 1..C there). Inputs are written into the fixture (no RNG matching).
Run from anywhere: /usr/bin/python3 scripts/tools/gen_nn_fixtures.py
"""
import torch
import torch.nn as nn

from fixture_util import Sampler, fixture_path, lua_value

torch.set_default_dtype(torch.float32)
_S = Sampler(20240612)
randn, rand, randint = _S.randn, _S.rand, _S.randint


def tensor_entry(t, one_based=False):
    """{shape, data (nested lists, a number for 0-d), dtype}; int64 labels shift to 1-based."""
    t = t.detach()
    if t.dtype == torch.int64:
        return {"shape": list(t.shape), "data": (t + (1 if one_based else 0)).tolist(), "dtype": "int64"}
    return {"shape": list(t.shape), "data": t.float().tolist(), "dtype": "float32"}


def state_entry(module):
    """The state_dict as an ordered list of {name, tensor} (order matters: it is checked)."""
    return [{"name": k, "tensor": tensor_entry(v)} for k, v in module.state_dict().items()]


def randomise(module):
    """Random values for every parameter and buffer (running_var kept positive), so a state
    loaded in the wrong place cannot pass."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                t.copy_(rand(0.5, 2.0, *t.shape))
            else:
                t.copy_(randn(*t.shape) * 0.5)


# ---- per-layer cases ---------------------------------------------------------------------------

LAYERS = []


def layer(name, make, inputs, train=True, randomise_state=True, setup=None):
    LAYERS.append((name, make, inputs, train, randomise_state, setup))


layer("conv2d_basic", lambda: nn.Conv2d(2, 3, 3), [randn(2, 2, 6, 5)])
layer("conv2d_stride_pad_dilation_groups",
      lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
      [randn(2, 4, 7, 6)])
layer("conv2d_no_bias_1x1", lambda: nn.Conv2d(3, 2, 1, bias=False), [randn(1, 3, 4, 4)])
layer("linear", lambda: nn.Linear(5, 3), [randn(4, 5)])
layer("linear_3d_no_bias", lambda: nn.Linear(5, 3, bias=False), [randn(2, 3, 5)])
layer("max_pool2d_k2", lambda: nn.MaxPool2d(2), [randn(2, 3, 6, 7)])
layer("max_pool2d_k3_s2_p1_ceil", lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
      [randn(1, 2, 8, 7)])
layer("avg_pool2d_k2", lambda: nn.AvgPool2d(2), [randn(2, 3, 6, 7)])
layer("avg_pool2d_k3_s2_p1", lambda: nn.AvgPool2d(3, stride=2, padding=1), [randn(1, 2, 7, 8)])
layer("max_pool2d_dilation", lambda: nn.MaxPool2d(2, stride=1, dilation=2), [randn(1, 2, 5, 6)])
layer("avg_pool2d_ceil_exclude_pad",
      lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), [randn(1, 2, 6, 7)])
layer("avg_pool2d_divisor_override", lambda: nn.AvgPool2d(2, divisor_override=3), [randn(1, 2, 4, 4)])
layer("adaptive_avg_pool2d_3x2", lambda: nn.AdaptiveAvgPool2d((3, 2)), [randn(2, 3, 7, 5)])
layer("adaptive_avg_pool2d_1", lambda: nn.AdaptiveAvgPool2d(1), [randn(2, 3, 5, 4)])
layer("relu", lambda: nn.ReLU(), [randn(3, 4)])
layer("leaky_relu", lambda: nn.LeakyReLU(0.2), [randn(3, 4)])
layer("leaky_relu_default", lambda: nn.LeakyReLU(), [randn(2, 5)])
layer("sigmoid", lambda: nn.Sigmoid(), [randn(3, 4)])
layer("tanh", lambda: nn.Tanh(), [randn(3, 4)])
layer("softmax_dim1", lambda: nn.Softmax(dim=1), [randn(3, 4)])
layer("log_softmax_last", lambda: nn.LogSoftmax(dim=-1), [randn(2, 3, 4)])
layer("dropout_eval", lambda: nn.Dropout(0.5), [randn(3, 4)], train=False)
layer("dropout_p0_train", lambda: nn.Dropout(0.0), [randn(3, 4)])
layer("batch_norm1d_train", lambda: nn.BatchNorm1d(3), [randn(5, 3)])
layer("batch_norm1d_3d_eval", lambda: nn.BatchNorm1d(3), [randn(2, 3, 4)], train=False)
layer("batch_norm2d_train", lambda: nn.BatchNorm2d(3, eps=1e-3, momentum=0.3), [randn(2, 3, 4, 5)])
layer("batch_norm2d_eval", lambda: nn.BatchNorm2d(3), [randn(2, 3, 4, 5)], train=False)


def _nbt2(m):
    m.num_batches_tracked.fill_(2)


layer("batch_norm2d_cumulative_average", lambda: nn.BatchNorm2d(2, momentum=None), [randn(3, 2, 3, 3)],
      setup=_nbt2)
layer("batch_norm2d_no_affine_no_stats_eval",
      lambda: nn.BatchNorm2d(2, affine=False, track_running_stats=False), [randn(3, 2, 3, 3)], train=False)
layer("local_response_norm", lambda: nn.LocalResponseNorm(3, alpha=1e-2, beta=0.75, k=2.0),
      [randn(2, 5, 3, 3)])
layer("local_response_norm_default", lambda: nn.LocalResponseNorm(2), [randn(1, 4, 2, 3) * 10])
layer("flatten", lambda: nn.Flatten(), [randn(2, 3, 2, 2)])
layer("flatten_dims_2_3", lambda: nn.Flatten(1, 2), [randn(2, 3, 2, 2)])
layer("identity", lambda: nn.Identity(), [randn(2, 3)])
layer("cross_entropy_loss", lambda: nn.CrossEntropyLoss(), [randn(5, 4), randint(0, 4, 5)])
layer("cross_entropy_loss_sum_smoothing", lambda: nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.1),
      [randn(5, 4), randint(0, 4, 5)])
layer("cross_entropy_loss_none", lambda: nn.CrossEntropyLoss(reduction="none"), [randn(3, 4), randint(0, 4, 3)])
layer("cross_entropy_loss_weight_ignore",
      lambda: nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2.0, 1.0, 1.5]), ignore_index=2),
      [randn(5, 4), torch.tensor([0, 2, 1, 3, 2])], randomise_state=False)
layer("nll_loss_weight_sum", lambda: nn.NLLLoss(weight=torch.tensor([1.0, 0.25, 3.0]), reduction="sum"),
      [torch.log_softmax(randn(4, 3), 1), torch.tensor([2, 0, 1, 2])], randomise_state=False)
layer("nll_loss", lambda: nn.NLLLoss(), [torch.log_softmax(randn(5, 4), 1), randint(0, 4, 5)])
layer("mse_loss", lambda: nn.MSELoss(), [randn(3, 4), randn(3, 4)])
layer("mse_loss_sum", lambda: nn.MSELoss(reduction="sum"), [randn(3, 4), randn(3, 4)])


def run_layer(name, make, inputs, train, randomise_state, setup):
    m = make()
    if randomise_state:
        randomise(m)
    if setup is not None:
        with torch.no_grad():
            setup(m)
    m.train(train)
    entry = {"name": name, "train": train, "state": state_entry(m)}
    entry["inputs"] = [tensor_entry(x, one_based=True) for x in inputs]
    with torch.no_grad():
        out = m(*inputs)
    entry["output"] = tensor_entry(out)
    entry["state_after"] = state_entry(m)
    entry["repr"] = repr(m)
    return entry


# ---- networks ----------------------------------------------------------------------------------

def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def small_lenet():
    # 1x12x12 -> conv pad 2 -> 4x12x12 -> pool -> 4x6x6 -> conv 3 -> 6x4x4 -> avg pool -> 6x2x2 = 24
    return nn.Sequential(
        nn.Conv2d(1, 4, 5, padding=2), nn.Tanh(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 16), nn.Sigmoid(),
        nn.Linear(16, 10))


class Tree(nn.Module):
    """Nested containers, every norm layer, and an own parameter assigned after the children
    (PyTorch still lists it first: own parameters come before the children's)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2), nn.BatchNorm2d(8, momentum=0.2),
            nn.LeakyReLU(0.1), nn.LocalResponseNorm(3),
            nn.AdaptiveAvgPool2d((2, 2)))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(32, 10), nn.BatchNorm1d(10), nn.Tanh(),
            nn.Linear(10, 5))
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.head(self.features(x)) * self.scale


def main():
    path = fixture_path("nn_reference.lua")
    fixture = {}
    fixture["layers"] = [run_layer(*c) for c in LAYERS]

    net = lenet5()
    fixture["lenet5"] = {
        "state_dict": [{"name": k, "shape": list(v.shape)} for k, v in net.state_dict().items()],
        "named_parameters": [k for k, _ in net.named_parameters()],
        "num_parameters": sum(p.numel() for p in net.parameters()),
        "repr": repr(net),
    }

    net = small_lenet()
    randomise(net)
    x = randn(3, 1, 12, 12)
    y = randint(0, 10, 3)
    out = net(x)
    loss = nn.functional.cross_entropy(out, y)
    loss.backward()
    fixture["small_lenet"] = {
        "state": state_entry(net),
        "input": tensor_entry(x),
        "labels": tensor_entry(y, one_based=True),
        "output": tensor_entry(out),
        "loss": tensor_entry(loss),
        "grads": [{"name": k, "tensor": tensor_entry(p.grad)} for k, p in net.named_parameters()],
    }

    net = Tree()
    randomise(net)
    net.head[1].eval()  # dropout off in the training pass: its mask is random
    state = state_entry(net)
    x = randn(4, 3, 8, 8)
    with torch.no_grad():
        out_train = net(x)
        state_after = state_entry(net)
        net.eval()
        out_eval = net(x)
    fixture["tree"] = {
        "named_parameters": [k for k, _ in net.named_parameters()],
        "named_buffers": [k for k, _ in net.named_buffers()],
        "named_children": [k for k, _ in net.named_children()],
        "named_modules": [k for k, _ in net.named_modules()],
        "num_parameters": sum(p.numel() for p in net.parameters()),
        "state": state,
        "input": tensor_entry(x),
        "output_train": tensor_entry(out_train),
        "state_after_train": state_after,
        "output_eval": tensor_entry(out_eval),
        "repr": repr(net),
    }

    with open(path, "w") as f:
        f.write("-- Generated by scripts/tools/gen_nn_fixtures.py with PyTorch %s; do not edit.\n"
                % torch.__version__)
        f.write("-- torch.nn modules: state_dicts (ordered {name, tensor} lists), inputs, outputs and\n")
        f.write("-- reprs. Tensors are {shape, data, dtype}; int64 labels are already 1-based.\n")
        f.write("return %s\n" % lua_value(fixture, 0))
    print("wrote %d layer cases to %s" % (len(LAYERS), path))


if __name__ == "__main__":
    main()
