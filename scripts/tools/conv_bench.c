/* conv_bench: the three passes of conv.c (forward, input gradient, weight gradient) on the
 * convolution shapes of ResNet-20 (batch 128, 32x32) and ResNet-18 (batch 16, 224), direct kernels
 * (AUTO) against im2col + GEMM (IM2COL), interleaved.
 *
 *   build/conv_bench [--threads 1|2] [--rounds 5] [--ms 60] [--only SUBSTRING] [--passes fwd,igrad,wgrad]
 *                    [--im2col 0|1] [--batch N] [--peak GFLOPS] [--bands 1]
 *
 * A round runs one pass back to back for about --ms of CPU time and takes its FLOPs (2 N O oh ow
 * C kh kw) over the process's CPU time (all threads): GFLOP/s per core-second, the rate of the cores
 * while they run, which load on a shared machine distorts least. Prints the median of each side and
 * each as a fraction of --peak (one core's FMA peak, fma_peak's cpu_peak_gflops_1; 255 by default).
 * --bands 1: the second column is AUTO with the batched wide-layer path off (per-image bands, as
 * CNN_CONV_BATCH=0), the first AUTO with it on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cnn/parallel.h"
#include "kernels/conv.h"

typedef struct {
  const char *name;
  int64_t N, C, H, W, O, k, pad, stride; /* stride 0: 1 */
} shape;

static const shape shapes[] = {
    {"r20 3>16 32", 128, 3, 32, 32, 16, 3, 1, 1},         {"r20 16>16 32", 128, 16, 32, 32, 16, 3, 1, 1},
    {"r20 32>32 16", 128, 32, 16, 16, 32, 3, 1, 1},       {"r20 64>64 8", 128, 64, 8, 8, 64, 3, 1, 1},
    {"r20 16>32 32 s2", 128, 16, 32, 32, 32, 3, 1, 2},    {"r20 32>64 16 s2", 128, 32, 16, 16, 64, 3, 1, 2},
    {"r18 64>64 56", 16, 64, 56, 56, 64, 3, 1, 1},        {"r18 128>128 28", 16, 128, 28, 28, 128, 3, 1, 1},
    {"r18 256>256 14", 16, 256, 14, 14, 256, 3, 1, 1},    {"r18 512>512 7", 16, 512, 7, 7, 512, 3, 1, 1},
    {"r18 stem 7x7 s2", 16, 3, 224, 224, 64, 7, 3, 2},    {"r18 64>128 56 s2", 16, 64, 56, 56, 128, 3, 1, 2},
    {"r18 128>256 28 s2", 16, 128, 28, 28, 256, 3, 1, 2}, {"r18 256>512 14 s2", 16, 256, 14, 14, 512, 3, 1, 2},
};

typedef struct {
  cnn_conv2d_shape s;
  cnn_conv2d_params p;
  float *x, *w, *y, *gx, *gw;
} op;

static void run(const op *o, int pass) {
  if (pass == 0) cnn_conv2d_forward_f32(&o->s, &o->p, o->x, o->w, NULL, o->y);
  else if (pass == 1) cnn_conv2d_input_grad_f32(&o->s, &o->p, o->y, o->w, o->gx);
  else cnn_conv2d_weight_grad_f32(&o->s, &o->p, o->y, o->x, o->gw, NULL);
}

static int against_bands; /* --bands 1: the second column is AUTO with the batched path off */

static double round_rate(const op *o, int pass, cnn_conv2d_algorithm a, double flops, double ms) {
  cnn_conv2d_set_algorithm(against_bands ? CNN_CONV2D_AUTO : a);
  cnn_conv2d_set_batched(!against_bands || a == CNN_CONV2D_AUTO);
  double done = 0, t0 = cpu_s(), t;
  do {
    run(o, pass);
    done += flops;
  } while ((t = cpu_s() - t0) < ms * 1e-3);
  return done / t * 1e-9;
}

int main(int argc, char **argv) {
  int threads = 1, rounds = 5, im2col = 1, batch = 0;
  double ms = 60, peak = 255;
  const char *only = NULL, *passes = "fwd,igrad,wgrad";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--ms")) ms = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
    else if (!strcmp(argv[i], "--peak")) peak = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--passes")) passes = argv[i + 1];
    else if (!strcmp(argv[i], "--im2col")) im2col = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--bands")) against_bands = atoi(argv[i + 1]);
  }
  if (cnn_parallel_set_threads(threads) != 0) return 1;
  static const char *pass_name[] = {"fwd", "igrad", "wgrad"};
  printf("%-24s | %7s %7s %6s | %5s %5s\n", "shape pass", "direct", "im2col", "d/i", "%pk_d", "%pk_i");
  unsigned seed = 1;
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    const shape *sh = &shapes[i];
    if (only && !strstr(sh->name, only)) continue;
    const int64_t N = batch > 0 ? batch : sh->N;
    op o = {{N, sh->C, sh->H, sh->W, sh->O, sh->k, sh->k}, cnn_conv2d_default_params(), 0, 0, 0, 0, 0};
    const int64_t st = sh->stride > 0 ? sh->stride : 1;
    o.p.pad_lo[0] = o.p.pad_lo[1] = o.p.pad_hi[0] = o.p.pad_hi[1] = sh->pad;
    o.p.stride[0] = o.p.stride[1] = st;
    int64_t oh = (sh->H + 2 * sh->pad - sh->k) / st + 1, ow = (sh->W + 2 * sh->pad - sh->k) / st + 1;
    size_t nx = (size_t)(N * sh->C * sh->H * sh->W), nw = (size_t)(sh->O * sh->C * sh->k * sh->k),
           ny = (size_t)(N * sh->O * oh * ow);
    o.x = rand_floats(nx, &seed), o.w = rand_floats(nw, &seed), o.y = rand_floats(ny, &seed);
    o.gx = rand_floats(nx, &seed), o.gw = rand_floats(nw, &seed);
    double flops = 2.0 * (double)ny * (double)(sh->C * sh->k * sh->k);
    for (int pass = 0; pass < 3; pass++) {
      if (!strstr(passes, pass_name[pass])) continue;
      double rd[64], ri[64];
      int r = rounds < 64 ? rounds : 64;
      round_rate(&o, pass, CNN_CONV2D_AUTO, flops, ms / 4);
      for (int q = 0; q < r; q++) {
        rd[q] = round_rate(&o, pass, CNN_CONV2D_AUTO, flops, ms);
        ri[q] = im2col ? round_rate(&o, pass, CNN_CONV2D_IM2COL, flops, ms) : 1;
      }
      qsort(rd, (size_t)r, sizeof(double), cmp_double);
      qsort(ri, (size_t)r, sizeof(double), cmp_double);
      double md = rd[r / 2], mi = ri[r / 2];
      char name[64];
      snprintf(name, sizeof name, "%s %s", sh->name, pass_name[pass]);
      printf("%-24s | %7.1f %7.1f %6.2f | %4.0f%% %4.0f%%\n", name, md, mi, md / mi, 100 * md / peak, 100 * mi / peak);
      fflush(stdout);
    }
    cnn_conv2d_set_algorithm(CNN_CONV2D_AUTO);
    free(o.x), free(o.w), free(o.y), free(o.gx), free(o.gw);
  }
  return 0;
}
