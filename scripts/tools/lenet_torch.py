#!/usr/bin/python3
"""PyTorch reference for examples/train_lenet.lua: the same LeNet-5, data, hyperparameters and
loop, for accuracy and speed comparisons. Reads the MNIST-layout IDX files directly (no
torchvision), like cnnlua does. Prints one line per epoch and, last, a JSON summary.

    /usr/bin/python3 scripts/tools/lenet_torch.py --epochs 10 --threads 2
"""
import argparse, gzip, json, os, resource, struct, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, path
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(folder, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(os.path.join(folder, stem))


def load(folder, split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(find(folder, prefix + "-images-idx3-ubyte"))
    y = read_idx(find(folder, prefix + "-labels-idx1-ubyte"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(y.astype(np.int64))


def lenet5(classes=10):
    features = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
    classifier = nn.Sequential(nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                               nn.Linear(84, classes))
    return nn.ModuleDict({"features": features, "classifier": classifier})


def forward(m, x):
    return m["classifier"](torch.flatten(m["features"](x), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batches", type=int, default=0, help="stop each epoch early (benchmarks)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "test")
    model = lenet5()
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    n = xtr.shape[0]
    nb = n // a.batch_size if a.max_batches == 0 else min(a.max_batches, n // a.batch_size)
    images_per_s, acc = [], 0.0
    for epoch in range(1, a.epochs + 1):
        g = torch.Generator().manual_seed(a.seed * 1000 + epoch)
        perm = torch.randperm(n, generator=g)
        model.train()
        t0 = time.perf_counter()
        total_loss = 0.0
        for b in range(nb):
            idx = perm[b * a.batch_size:(b + 1) * a.batch_size]
            x, y = xtr[idx], ytr[idx]
            loss = F.cross_entropy(forward(model, x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item()
        dt = time.perf_counter() - t0
        images_per_s.append(nb * a.batch_size / dt)
        model.eval()
        with torch.no_grad():
            correct = 0
            for i in range(0, xte.shape[0], 1000):
                correct += (forward(model, xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
        acc = 100.0 * correct / xte.shape[0]
        print(f"epoch {epoch}: train loss {total_loss / nb:.4f}, test accuracy {acc:.2f}%, "
              f"{images_per_s[-1]:.0f} images/s", flush=True)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"framework": "pytorch " + torch.__version__, "test_accuracy": acc,
                      "images_per_s": max(images_per_s), "peak_rss_mb": peak_kb / 1024}))


if __name__ == "__main__":
    main()
