#!/usr/bin/python3
"""PyTorch's side of scripts/tools/bench: runs ONE benchmark row in this process and prints one
`RESULT key=value ...` line, exactly as bench_suite.lua does for cnnlua (same rows, networks, data,
optimiser settings, loop, warm-up and time-boxed window). Run it with OPENBLAS_NUM_THREADS=1 and
OMP_NUM_THREADS=THREADS (the driver does; set here if unset), PyTorch's fastest setting on 2 cores.
    /usr/bin/python3 scripts/tools/bench_torch.py ROW [--threads 2] [--seconds 3] [--warmup 2]
                                                      [--min-steps 3] [--data DIR]
"""
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before torch loads OpenBLAS
sys.dont_write_bytecode = True  # no __pycache__ in scripts/tools from the sibling imports

import argparse, re, time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lenet_torch import lenet5, forward as lenet_forward, load as load_mnist  # noqa: E402
from resnet_torch import resnet_cifar  # noqa: E402


class AlexNetCifar(nn.Module):
    """cnn.models.alexnet_cifar layer for layer (same indices, hence the same parameter names).
    (N, C, 32, 32) -> (N, num_classes). With imagenet=True, cnn.models.alexnet: the 2012 paper's one
    tower (96/256/384/384/256 channels, 11x11 stride-4 first convolution, 4096-wide FCs), for
    3x224x224 or 3x227x227."""

    def __init__(self, num_classes=10, in_channels=3, imagenet=False):
        super().__init__()

        def lrn():
            return nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)  # the paper's alpha 1e-4 per neighbour

        w = (96, 256, 384, 384, 256) if imagenet else (48, 128, 192, 192, 128)
        k1, s1, p1, pooled, fc = (11, 4, 0, 6, 4096) if imagenet else (5, 1, 2, 3, 2048)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w[0], k1, stride=s1, padding=p1), nn.ReLU(inplace=True), lrn(),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(w[0], w[1], 5, padding=2), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(w[1], w[2], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w[2], w[3], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w[3], w[4], 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(w[4] * pooled * pooled, fc), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(fc, fc), nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def train_step(model, fwd, opt, x, y):
    """One SGD step as cnn.trainer's (the loss read back every step)."""
    loss = F.cross_entropy(fwd(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def synthetic(n, shape, classes, count):
    xs = [torch.randn(n, *shape) for _ in range(count)]
    ys = [torch.randint(0, classes, (n,)) for _ in range(count)]
    k = [0]

    def next_batch():
        k[0] = (k[0] + 1) % count
        return xs[k[0]], ys[k[0]]
    return next_batch


def have_fmnist(d):
    return any(os.path.exists(os.path.join(d, "train-images-idx3-ubyte" + s)) for s in ("", ".gz"))


def row_lenet_train(a):
    model = lenet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    fwd = lambda x: lenet_forward(model, x)  # noqa: E731
    if have_fmnist(a.data):
        xtr, ytr = load_mnist(a.data, "train")  # the whole set as float, as lenet_torch.py
        n, bs = xtr.shape[0], 64
        state = {"perm": None, "b": n // bs, "epoch": 0}

        def next_batch():  # shuffled batches, a new permutation per epoch (drop_last)
            if state["b"] >= n // bs:
                state["epoch"] += 1
                state["perm"] = torch.randperm(n, generator=torch.Generator().manual_seed(1000 + state["epoch"]))
                state["b"] = 0
            idx = state["perm"][state["b"] * bs:(state["b"] + 1) * bs]
            state["b"] += 1
            return xtr[idx], ytr[idx]
        what = "fashion-mnist"
    else:
        next_batch, what = synthetic(64, (1, 28, 28), 10, 8), "synthetic"
    ROW_STATE["flops"] = (model, fwd, (1, 28, 28), "train")
    return (lambda: train_step(model, fwd, opt, *next_batch())), 64, what


def row_lenet_infer(a):
    model = lenet5()
    model.eval()
    if have_fmnist(a.data):
        xte, _ = load_mnist(a.data, "test")
        xs, what = [xte[k * 1000:(k + 1) * 1000] for k in range(10)], "fashion-mnist"
    else:
        xs, what = [torch.rand(1000, 1, 28, 28) for _ in range(10)], "synthetic"
    k = [0]
    ROW_STATE["flops"] = (model, lambda x: lenet_forward(model, x), (1, 28, 28), "infer")

    def step():
        k[0] = (k[0] + 1) % len(xs)
        with torch.inference_mode():  # PyTorch's fastest no-autograd mode
            lenet_forward(model, xs[k[0]]).argmax(1)
    return step, 1000, what


def row_resnet20_train(a):
    model = resnet_cifar(20)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    nb = synthetic(128, (3, 32, 32), 10, 4)
    ROW_STATE["flops"] = (model, model, (3, 32, 32), "train")
    return (lambda: train_step(model, model, opt, *nb())), 128, "synthetic"


def row_alexnet_train(a):
    model = AlexNetCifar()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    nb = synthetic(128, (3, 32, 32), 10, 4)
    ROW_STATE["flops"] = (model, model, (3, 32, 32), "train")
    return (lambda: train_step(model, model, opt, *nb())), 128, "synthetic"


# ImageNet-size rows (scripts/tools/bench --imagenet): torchvision's ResNet-18/50 and VGG-16, the
# 2012 AlexNet above; batch 16 of synthetic 3x224x224 images, 1000 classes; SGD momentum 0.9
# (weight decay 1e-4; 5e-4 for AlexNet and VGG as their papers), as bench_suite.lua.
IMAGENET_BATCH = 16


def imagenet_model(name):
    import torchvision
    return {"resnet18": lambda: torchvision.models.resnet18(), "resnet50": lambda: torchvision.models.resnet50(),
            "vgg16": lambda: torchvision.models.vgg16(),
            "alexnet224": lambda: AlexNetCifar(1000, imagenet=True)}[name]()


def row_imagenet(name, train):
    def make(a):
        model = imagenet_model(name)
        nb = synthetic(IMAGENET_BATCH, (3, 224, 224), 1000, 2)
        ROW_STATE["flops"] = (model, model, (3, 224, 224), "train" if train else "infer")
        if train:
            wd = 1e-4 if name.startswith("resnet") else 5e-4
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=wd)
            return (lambda: train_step(model, model, opt, *nb())), IMAGENET_BATCH, "synthetic"
        model.eval()

        def step():
            with torch.inference_mode():
                model(nb()[0]).argmax(1)
        return step, IMAGENET_BATCH, "synthetic"
    return make


CONVS = {  # N, C, H (= W), O, k, stride, padding, bias: as bench_suite.lua
    "conv_lenet1": (64, 1, 28, 6, 5, 1, 2, True),
    "conv_lenet2": (64, 6, 14, 16, 5, 1, 0, True),
    "conv_resnet16": (128, 16, 32, 16, 3, 1, 1, False),
    "conv_resnet32": (128, 32, 16, 32, 3, 1, 1, False),
    "conv_resnet64": (128, 64, 8, 64, 3, 1, 1, False),
}


def row_conv(name):
    def make(a):
        N, C, H, O, k, s, p, bias = CONVS[name]
        conv = nn.Conv2d(C, O, k, stride=s, padding=p, bias=bias)
        x = torch.randn(N, C, H, H, requires_grad=True)
        o = (H + 2 * p - k) // s + 1
        gy = torch.randn(N, O, o, o)
        ROW_STATE["flops"] = (conv, conv, (C, H, H), "conv")

        def step():
            x.grad = None
            conv.zero_grad(set_to_none=True)
            conv(x).backward(gy)
        return step, N, "synthetic"
    return make


def row_photo_loader(a):
    """torchvision's ImageFolder + DataLoader(num_workers=2) on the same folder and transforms (PIL
    decoding, RandomResizedCrop(224), RandomHorizontalFlip, ToTensor, Normalize), batches of 64;
    workers persistent across epochs (not restarted: their start-up would count against torch)."""
    import torchvision
    import torchvision.transforms as T
    ds = torchvision.datasets.ImageFolder(a.photos, transform=T.Compose([
        T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]))
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, drop_last=True, num_workers=2,
                                         persistent_workers=True)
    state = {"it": iter(loader)}
    ROW_STATE["loader"] = state

    def step():
        try:
            x, _ = next(state["it"])
        except StopIteration:
            state["it"] = iter(loader)
            x, _ = next(state["it"])
        assert x.shape[0] == 64
    return step, 64, "photos"


def sum_over_workers(proc_file, value):
    """value(text of /proc/PID/<proc_file>) summed over the row's DataLoader worker processes (0 for
    a worker that has gone or a file that does not parse)."""
    state = ROW_STATE.get("loader")
    it = state and state["it"]
    total = 0
    for w in getattr(it, "_workers", []) or []:
        try:
            with open("/proc/%d/%s" % (w.pid, proc_file)) as f:
                total += value(f.read())
        except (OSError, AttributeError, IndexError, ValueError):
            pass
    return total


def worker_hwm_kb():
    """The worker processes' peak RSS (their VmHWM, summed): the DataLoader's own processes."""
    return sum_over_workers("status", lambda text: int(re.search(r"VmHWM:\s*(\d+)", text).group(1)))


def worker_cpu_s():
    """CPU seconds the loader's worker processes have used so far (utime + stime of /proc/PID/stat)."""
    def cpu(text):
        fields = text.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float(sum_over_workers("stat", cpu))


ROW_STATE = {}


def count_flops(model, fwd, shape, kind):
    """FLOPs per image of a row's network: its convolutions' and linear layers' multiply-adds (MACs),
    counted by forward hooks on one image, 2 FLOPs a MAC; BatchNorm, ReLU, pooling, the loss and the
    optimiser are not counted (a few % of a step's arithmetic). Inference ('infer'): the forward, 2 MACs.
    Training ('train'): forward, input gradient and weight gradient, each as many MACs as the forward,
    less the first layer's input gradient, which no framework computes (the images need none):
    2 * (3 * MACs - MACs of the first layer). 'conv' rows time the input gradient too: 2 * 3 * MACs."""
    macs = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
            macs.append(out.numel() // out.shape[0] * k)
        else:
            macs.append(out.numel() // out.shape[0] * m.in_features)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()  # one image through BatchNorm; dropout off
    with torch.no_grad():
        fwd(torch.zeros(1, *shape))
    model.train(was_training)
    for h in handles:
        h.remove()
    total = sum(macs)
    if kind == "infer":
        return 2 * total
    if kind == "train":
        return 2 * (3 * total - macs[0])
    return 2 * 3 * total

ROWS = {"lenet_train": row_lenet_train, "lenet_infer": row_lenet_infer, "resnet20_train": row_resnet20_train,
        "alexnet_train": row_alexnet_train, "photo_loader": row_photo_loader}
ROWS.update({name: row_conv(name) for name in CONVS})
ROWS.update({"resnet18_train": row_imagenet("resnet18", True), "resnet18_infer": row_imagenet("resnet18", False),
             "resnet50_train": row_imagenet("resnet50", True), "resnet50_infer": row_imagenet("resnet50", False),
             "alexnet224_train": row_imagenet("alexnet224", True), "vgg16_train": row_imagenet("vgg16", True)})


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--count-flops":
        # `bench_torch.py --count-flops ROW,ROW,...`: one `FLOPS row=N` line a row (none for rows
        # without a network: the photo loader)
        a = argparse.Namespace(data="/nonexistent", photos="", threads=1)  # synthetic data is enough
        for row in sys.argv[2].split(","):
            ROW_STATE.clear()
            if row in ROWS and row != "photo_loader":
                ROWS[row](a)
                print("FLOPS %s=%d" % (row, count_flops(*ROW_STATE["flops"])))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("row", choices=sorted(ROWS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-steps", type=int, default=3)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--photos", default="/tmp/cnnlua_bench_photos")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    step, batch, what = ROWS[a.row](a)
    now = time.perf_counter
    t_end, w = now() + 0.3, 0  # warm-up: --warmup steps and at least 0.3 s
    while w < a.warmup or now() < t_end:
        step()
        w += 1
    steps, t0, c0 = 0, now(), time.process_time() + worker_cpu_s()
    while True:  # at least --min-steps steps and --seconds of wall time
        step()
        steps += 1
        elapsed = now() - t0
        if steps >= a.min_steps and elapsed >= a.seconds:
            break
    cpu = time.process_time() + worker_cpu_s() - c0
    hwm = -1  # this process image's peak RSS, as bench_suite.lua reads it
    try:
        with open("/proc/self/status") as f:
            hwm = int(re.search(r"VmHWM:\s*(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        pass
    if hwm > 0:
        hwm += worker_hwm_kb()  # the loader's worker processes count too
    print("RESULT images_per_s=%.3f steps=%d seconds=%.3f warmup_steps=%d data=%s threads=%d vmhwm_kb=%d "
          "cpu_ms_per_image=%.4f" % (steps * batch / elapsed, steps, elapsed, w, what, torch.get_num_threads(), hwm,
                                     1000 * cpu / (steps * batch)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
