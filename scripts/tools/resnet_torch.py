#!/usr/bin/python3
"""PyTorch twin of examples/train_resnet.lua (with cnn.trainer's loop): the same CIFAR ResNet
(He et al. 2016, option A shortcuts, torchvision's initialisation, cnnlua's parameter names), the
same data and augmentation, optimiser, schedule and per-epoch measurements, for accuracy and
per-epoch time comparisons. Reads CIFAR-10's binary files or MNIST-layout IDX files directly (no
torchvision). Prints one line per epoch and, last, a JSON summary. bench_torch.py imports
resnet_cifar from here.

    /usr/bin/python3 scripts/tools/resnet_torch.py --epochs 10 --threads 2
    /usr/bin/python3 scripts/tools/resnet_torch.py --limit 2000 --epochs 1
Run it as issue 8 measures PyTorch: OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=2 (set here if unset).
"""
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before torch loads OpenBLAS
sys.dont_write_bytecode = True  # no __pycache__ in scripts/tools from the sibling imports

import argparse, json, math, resource, time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lenet_torch import read_idx, find  # noqa: E402  (same folder: scripts/tools)


# ---- network ------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    """conv3x3(stride), bn, relu, conv3x3, bn, + shortcut, relu. x: (N, cin, H, W) -> (N, planes, H/s, W/s)"""

    def __init__(self, inplanes, planes, stride, shortcut):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            if shortcut == "A":
                self.downsample = ShortcutA(inplanes, planes, stride)
            else:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                                nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ShortcutA(nn.Module):
    """Option A: x[:, :, ::s, ::s] with (cout - cin) / 2 zero channels before and the rest after."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride, self.before = stride, (cout - cin) // 2
        self.after = cout - cin - self.before

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.before, self.after))


class CifarResNet(nn.Module):
    """cnn.models.resnet_cifar: conv1 3x3 16, bn1, relu; 3 stages of n blocks (16, 32, 64 planes;
    strides 1, 2, 2); adaptive average pool; fc 64 -> num_classes. (N, C, 32, 32) -> (N, classes)"""

    def __init__(self, depth=20, num_classes=10, in_channels=3, shortcut="A"):
        super().__init__()
        assert depth >= 8 and (depth - 2) % 6 == 0, "depth must be 6n+2"
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        w = 16
        for i, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(w, planes, stride if j == 0 else 1, shortcut))
                w = planes
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w, num_classes)
        for m in self.modules():  # torchvision's ResNet initialisation, as cnnlua's
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet_cifar(depth=20, num_classes=10, in_channels=3, shortcut="A"):
    return CifarResNet(depth, num_classes, in_channels, shortcut)


# ---- data ---------------------------------------------------------------------------------------

def cifar_folder(d):
    for f in (d, os.path.join(d, "cifar-10-batches-bin")):
        if os.path.exists(os.path.join(f, "data_batch_1.bin")):
            return f
    return None


def load_cifar(folder, split):
    """(N, 3, 32, 32) uint8 images and int64 labels 0..9 of CIFAR-10's binary version."""
    names = ["data_batch_%d.bin" % i for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    raw = np.concatenate([np.fromfile(os.path.join(folder, n), dtype=np.uint8).reshape(-1, 3073) for n in names])
    return torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(raw[:, 0].astype(np.int64))


def load_mnist(folder, split):
    """(N, 1, 28, 28) uint8 images and int64 labels 0..9 of an MNIST-layout folder."""
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(find(folder, prefix + "-images-idx3-ubyte"))
    y = read_idx(find(folder, prefix + "-labels-idx1-ubyte"))
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


class Augment:
    """Per-batch transforms as train_resnet.lua's: images stay uint8 and become float per batch.
    MNIST layout: zero-pad 2 (to 32x32), random crop 32 with padding 4, normalise (no flip).
    CIFAR-10: random crop 32 with padding 4, random horizontal flip, normalise per channel."""

    def __init__(self, cifar, gen):
        self.cifar, self.gen = cifar, gen
        if cifar:
            self.mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
            self.std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
        else:
            self.mean, self.std = torch.tensor(0.2860), torch.tensor(0.3530)
        self.pre = 0 if cifar else 2  # the fixed zero padding to 32x32

    def train(self, xb):
        # zero padding of pre + 4 on each side, then one random 32x32 window per sample (one gather)
        p = self.pre + 4
        x = F.pad(xb.float().div_(255), (p, p, p, p))
        n, c = x.shape[0], x.shape[1]
        oy = torch.randint(0, 9, (n,), generator=self.gen)
        ox = torch.randint(0, 9, (n,), generator=self.gen)
        r = torch.arange(32)
        x = x[torch.arange(n).view(n, 1, 1, 1), torch.arange(c).view(1, c, 1, 1),
              (oy.view(n, 1) + r).view(n, 1, 32, 1), (ox.view(n, 1) + r).view(n, 1, 1, 32)]
        if self.cifar:
            flip = torch.rand(n, generator=self.gen) < 0.5
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
        return (x - self.mean) / self.std

    def test(self, xb):
        x = xb.float().div_(255)
        if self.pre:
            x = F.pad(x, (self.pre,) * 4)
        return (x - self.mean) / self.std


def lr_at(kind, lr, epochs, epoch):
    """cnn.trainer.schedule: cosine from lr towards 0, or step x0.1 after 50% and 75% of the epochs."""
    if kind == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))
    r = lr
    for m in (0.5, 0.75):
        if epoch > math.floor(m * epochs) and math.floor(m * epochs) > 0:
            r *= 0.1
    return r


def main():
    ap = argparse.ArgumentParser(description="PyTorch twin of examples/train_resnet.lua")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--schedule", choices=["step", "cosine"], default="step")
    ap.add_argument("--limit", type=int, help="only the first N training images and N/5 test images")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.limit is not None and a.limit < 5:
        ap.error("--limit must be at least 5")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    cf = cifar_folder(a.data)
    if cf:
        (xtr, ytr), (xte, yte), what = load_cifar(cf, "train"), load_cifar(cf, "test"), "CIFAR-10"
    else:
        (xtr, ytr), (xte, yte) = load_mnist(a.data, "train"), load_mnist(a.data, "test")
        what = "MNIST-layout data padded to 32x32"
    if a.limit:
        xtr, ytr, xte, yte = xtr[:a.limit], ytr[:a.limit], xte[:a.limit // 5], yte[:a.limit // 5]
    gen = torch.Generator().manual_seed(a.seed)
    aug = Augment(cf is not None, gen)
    model = resnet_cifar(a.depth, 10, xtr.shape[1])
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    n, bs = xtr.shape[0], a.batch_size
    nb = n // bs if n > bs else 1  # drop_last when there is more than one batch, as the example
    print("ResNet-%d, %d parameters; %d training and %d test images of %s from %s; %s schedule; %d threads"
          % (a.depth, sum(p.numel() for p in model.parameters()), n, xte.shape[0], what, a.data, a.schedule,
             torch.get_num_threads()), flush=True)

    history = []
    for epoch in range(1, a.epochs + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(a.schedule, a.lr, a.epochs, epoch)
        model.train()
        perm = torch.randperm(n, generator=gen)
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(nb):
            idx = perm[b * bs:(b + 1) * bs]
            x, y = aug.train(xtr[idx]), ytr[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * y.shape[0]
            correct += (logits.argmax(1) == y).sum().item()
            seen += y.shape[0]
        elapsed = time.perf_counter() - t0
        model.eval()
        test_loss, test_correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, xte.shape[0], 250):
                logits = model(aug.test(xte[i:i + 250]))
                test_loss += F.cross_entropy(logits, yte[i:i + 250], reduction="sum").item()
                test_correct += (logits.argmax(1) == yte[i:i + 250]).sum().item()
        nt = max(xte.shape[0], 1)
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum / max(seen, 1),
               "train_acc": correct / max(seen, 1), "test_loss": test_loss / nt, "test_acc": test_correct / nt,
               "seconds": elapsed, "images_per_s": seen / max(elapsed, 1e-9),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        history.append(row)
        print("epoch %d/%d  lr %.4g  train loss %.4f  train acc %.2f%%  test loss %.4f  test acc %.2f%%  "
              "%.1f s  %.0f img/s  peak RSS %.0f MB"
              % (epoch, a.epochs, row["lr"], row["train_loss"], 100 * row["train_acc"], row["test_loss"],
                 100 * row["test_acc"], elapsed, row["images_per_s"], row["peak_rss_mb"]), flush=True)
    last = history[-1] if history else {}
    print(json.dumps({"framework": "pytorch " + torch.__version__, "depth": a.depth, "epochs": a.epochs,
                      "threads": torch.get_num_threads(), "test_accuracy": 100 * last.get("test_acc", 0.0),
                      "seconds_per_epoch": [r["seconds"] for r in history],
                      "images_per_s": max((r["images_per_s"] for r in history), default=0.0),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
