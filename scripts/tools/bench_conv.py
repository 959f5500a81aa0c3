#!/usr/bin/python3
"""PyTorch's side of scripts/tools/bench_conv.lua: the same layers, the same measurements
(forward; forward + backward with input, weight and bias gradients; one per-image forward GEMM
via torch.mm), median (or --stat min) wall time of --reps runs after --warmup, same output format.
    /usr/bin/python3 scripts/tools/bench_conv.py [--threads 2] [--reps 7] [--warmup 2] [--only NAME]
                                                  [--stat median|min] [--clock wall|cpu]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

LAYERS = [  # name, batch, in channels, H (= W), out channels, kernel, stride, padding
    ("lenet_conv1", 64, 1, 28, 6, 5, 1, 2),
    ("lenet_conv2", 64, 6, 14, 16, 5, 1, 0),
    ("resnet_16x32x32", 128, 16, 32, 16, 3, 1, 1),
    ("resnet_32x16x16", 128, 32, 16, 32, 3, 1, 1),
    ("resnet_64x8x8", 128, 64, 8, 64, 3, 1, 1),
    ("alexnet_conv1", 16, 3, 227, 96, 11, 4, 0),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--only")
    ap.add_argument("--stat", choices=["median", "min"], default="median")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    clock = time.process_time if a.clock == "cpu" else time.perf_counter

    def timed(fn):
        for _ in range(a.warmup):
            fn()
        t_end = clock() + 0.2  # and at least 0.2 s of warm-up, as bench_conv.lua
        while clock() < t_end:
            fn()
        ts = []
        for _ in range(a.reps):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
        return min(ts) if a.stat == "min" else statistics.median(ts)

    # convolutions first, GEMMs after (a threaded sgemm leaves OpenBLAS's workers spinning)
    results = []
    for name, N, C, H, O, k, s, p in LAYERS:
        if a.only and a.only not in name:
            continue
        x = torch.randn(N, C, H, H, requires_grad=True)
        w = (torch.randn(O, C, k, k) * 0.1).requires_grad_()
        b = torch.zeros(O, requires_grad=True)
        o = (H + 2 * p - k) // s + 1
        gy = torch.randn(N, O, o, o)

        def fwd():
            with torch.no_grad():
                F.conv2d(x, w, b, stride=s, padding=p)

        def both():
            x.grad = w.grad = b.grad = None
            F.conv2d(x, w, b, stride=s, padding=p).backward(gy)

        results.append((name, C, O, k, o, 2.0 * N * O * o * o * C * k * k, timed(fwd), timed(both)))
    print("# torch %s conv2d, %d threads, %s of %d, %s time" % (torch.__version__, a.threads, a.stat, a.reps, a.clock))
    print("# layer fwd_ms fwdbwd_ms fwd_gflops fwdbwd_gflops gemm_gflops")
    for name, C, O, k, o, flop, tf, tb in results:
        A, B = torch.randn(O, C * k * k), torch.randn(C * k * k, o * o)
        tg = timed(lambda: torch.mm(A, B))
        print("%s %.3f %.3f %.1f %.1f %.1f" % (name, tf * 1e3, tb * 1e3, flop / tf * 1e-9, 3 * flop / tb * 1e-9,
                                              2.0 * O * C * k * k * o * o / tg * 1e-9))


if __name__ == "__main__":
    main()
