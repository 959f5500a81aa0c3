/* gemm_bench: cnn_gemm's two backends (OpenBLAS and the AVX-512 kernel of gemm_avx512.c) on the
 * products the networks of scripts/tools/bench issue, as conv.c and the linear layers cut them.
 *
 *   build/gemm_bench [--threads 1|2] [--rounds 5] [--ms 40] [--only SUBSTRING] [--peak GFLOPS]
 *
 * For each shape, rounds alternate the backends (OpenBLAS, own, OpenBLAS, own, ...); a round runs
 * the product back to back for about --ms of CPU time and takes the FLOPs (2 m n k) over the CPU
 * time of the process (both threads at 2): the rate of the cores while they run, which load on a
 * shared machine distorts least. Prints the median GFLOP/s of each side (per core-second: FLOPs over
 * the CPU time of all threads), own / OpenBLAS, and each as a fraction of --peak (one core's peak,
 * fma_peak's cpu_peak_gflops_1; 255 by default), then which one cnn_gemm's AUTO picks. Operands
 * are random, C is overwritten (beta 0) unless the shape accumulates (the weight gradients, beta
 * 1), as in conv.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cnn/parallel.h"
#include "core/gemm.h"

typedef struct {
  const char *name;
  bool ta, tb;
  int64_t m, n, k;
  float beta;
} shape;

/* conv.c's products, per band of output rows (BAND_FLOATS 128K: Lt = output rows fitting 128K
 * floats of columns, times ow): fwd (Og, Lt, K) NN; wgrad (Og, K, Lt) NT beta 1; igrad (K, Lt, Og)
 * TN. 1x1 stride-1 convolutions use the image in place (Lt = the whole image). 3x3 stride-1 layers
 * take the direct kernels (conv_direct.c), not GEMM. Linear layers at batch B: fwd (B, out, in) NT,
 * igrad (B, in, out) NN, wgrad (out, in, B) TN. */
static const shape shapes[] = {
    /* ResNet-20, batch 128, 32x32: the two stride-2 3x3 convolutions */
    {"r20 16>32 3x3/2 fwd", 0, 0, 32, 256, 144, 0},
    {"r20 16>32 3x3/2 wgrad", 0, 1, 32, 144, 256, 1},
    {"r20 16>32 3x3/2 igrad", 1, 0, 144, 256, 32, 0},
    {"r20 32>64 3x3/2 fwd", 0, 0, 64, 64, 288, 0},
    {"r20 32>64 3x3/2 wgrad", 0, 1, 64, 288, 64, 1},
    {"r20 32>64 3x3/2 igrad", 1, 0, 288, 64, 64, 0},
    /* ResNet-18/50 stem 7x7/2 3>64 at 224 (K 147, ow 112, 7 rows) */
    {"r18 stem 7x7/2 fwd", 0, 0, 64, 784, 147, 0},
    {"r18 stem 7x7/2 wgrad", 0, 1, 64, 147, 784, 1},
    /* ResNet-18 stride-2 3x3 and 1x1 downsamples */
    {"r18 64>128 3x3/2 fwd", 0, 0, 128, 224, 576, 0},
    {"r18 64>128 3x3/2 wgrad", 0, 1, 128, 576, 224, 1},
    {"r18 64>128 3x3/2 igrad", 1, 0, 576, 224, 128, 0},
    {"r18 128>256 3x3/2 fwd", 0, 0, 256, 112, 1152, 0},
    {"r18 128>256 3x3/2 wgrad", 0, 1, 256, 1152, 112, 1},
    {"r18 128>256 3x3/2 igrad", 1, 0, 1152, 112, 256, 0},
    {"r18 256>512 3x3/2 fwd", 0, 0, 512, 49, 2304, 0},
    {"r18 256>512 3x3/2 wgrad", 0, 1, 512, 2304, 49, 1},
    {"r18 256>512 3x3/2 igrad", 1, 0, 2304, 49, 512, 0},
    {"r18 ds 64>128 1x1/2 fwd", 0, 0, 128, 784, 64, 0},
    {"r18 ds 64>128 1x1/2 wgrad", 0, 1, 128, 64, 784, 1},
    {"r18 ds 64>128 1x1/2 igrad", 1, 0, 64, 784, 128, 0},
    {"r18 ds 256>512 1x1/2 fwd", 0, 0, 512, 49, 256, 0},
    /* ResNet-50 1x1 stride-1 convolutions (whole images) */
    {"r50 64>256 1x1 56 fwd", 0, 0, 256, 3136, 64, 0},
    {"r50 64>256 1x1 56 wgrad", 0, 1, 256, 64, 3136, 1},
    {"r50 64>256 1x1 56 igrad", 1, 0, 64, 3136, 256, 0},
    {"r50 256>64 1x1 56 fwd", 0, 0, 64, 3136, 256, 0},
    {"r50 256>64 1x1 56 wgrad", 0, 1, 64, 256, 3136, 1},
    {"r50 256>64 1x1 56 igrad", 1, 0, 256, 3136, 64, 0},
    {"r50 512>128 1x1 28 fwd", 0, 0, 128, 784, 512, 0},
    {"r50 128>512 1x1 28 fwd", 0, 0, 512, 784, 128, 0},
    {"r50 128>512 1x1 28 igrad", 1, 0, 128, 784, 512, 0},
    {"r50 1024>256 1x1 14 fwd", 0, 0, 256, 196, 1024, 0},
    {"r50 256>1024 1x1 14 fwd", 0, 0, 1024, 196, 256, 0},
    {"r50 256>1024 1x1 14 wgrad", 0, 1, 1024, 256, 196, 1},
    {"r50 256>1024 1x1 14 igrad", 1, 0, 256, 196, 1024, 0},
    {"r50 2048>512 1x1 7 fwd", 0, 0, 512, 49, 2048, 0},
    {"r50 512>2048 1x1 7 fwd", 0, 0, 2048, 49, 512, 0},
    {"r50 512>2048 1x1 7 wgrad", 0, 1, 2048, 512, 49, 1},
    {"r50 512>2048 1x1 7 igrad", 1, 0, 512, 49, 2048, 0},
    {"r50 512 3x3/2 14>7 fwd", 0, 0, 512, 28, 4608, 0},
    {"r50 512 3x3/2 14>7 igrad", 1, 0, 4608, 28, 512, 0},
    /* AlexNet (2012) stem 11x11/4 3>64 at 224 (K 363, ow 55, 6 rows); its gx takes the rows form */
    {"alex stem 11x11/4 fwd", 0, 0, 64, 330, 363, 0},
    {"alex stem 11x11/4 wgrad", 0, 1, 64, 363, 330, 1},
    /* AlexNet's 13x13 layers: a 5-row band (128K floats of columns) against the whole image */
    {"alex 192>384 13 band fwd", 0, 0, 384, 65, 1728, 0},
    {"alex 192>384 13 whole fwd", 0, 0, 384, 169, 1728, 0},
    {"alex 192>384 13 band wgrad", 0, 1, 384, 1728, 65, 1},
    {"alex 192>384 13 whole wgrad", 0, 1, 384, 1728, 169, 1},
    {"alex 192>384 13 band igrad", 1, 0, 1728, 65, 384, 0},
    {"alex 192>384 13 whole igrad", 1, 0, 1728, 169, 384, 0},
    {"r18 512 7 band fwd", 0, 0, 512, 28, 4608, 0},
    {"r18 512 7 whole fwd", 0, 0, 512, 49, 4608, 0},
    {"r18 256 14 band fwd", 0, 0, 256, 56, 2304, 0},
    {"r18 256 14 whole fwd", 0, 0, 256, 196, 2304, 0},
    /* im2col GEMMs of wide 3x3 stride-1 layers (today direct kernels): VGG-16 at 56, 28 and 14 */
    {"vgg 128>256 3x3 56 fwd", 0, 0, 256, 224, 1152, 0},
    {"vgg 256>512 3x3 28 fwd", 0, 0, 512, 112, 2304, 0},
    {"vgg 512>512 3x3 14 fwd", 0, 0, 512, 56, 4608, 0},
    {"vgg 512>512 3x3 14 wgrad", 0, 1, 512, 4608, 56, 1},
    {"vgg 512>512 3x3 14 igrad", 1, 0, 4608, 56, 512, 0},
    /* linear layers, batch 16 (AlexNet, VGG) and 128 (alexnet_cifar-like) */
    {"fc 9216>4096 b16 fwd", 0, 1, 16, 4096, 9216, 0},
    {"fc 9216>4096 b16 igrad", 0, 0, 16, 9216, 4096, 0},
    {"fc 9216>4096 b16 wgrad", 1, 0, 4096, 9216, 16, 0},
    {"fc 4096>4096 b16 fwd", 0, 1, 16, 4096, 4096, 0},
    {"fc 4096>4096 b16 igrad", 0, 0, 16, 4096, 4096, 0},
    {"fc 4096>4096 b16 wgrad", 1, 0, 4096, 4096, 16, 0},
    {"fc 4096>4096 b128 fwd", 0, 1, 128, 4096, 4096, 0},
    {"fc 4096>4096 b128 wgrad", 1, 0, 4096, 4096, 128, 0},
    {"square 1024", 0, 0, 1024, 1024, 1024, 0},
};

/* GFLOP/s of one round: the product repeated for about ms of CPU time */
static double round_rate(const shape *s, cnn_gemm_backend be, const float *a, const float *b, float *c, double ms) {
  cnn_gemm_set_backend(be);
  int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
  double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k, done = 0;
  double t0 = cpu_s(), t;
  do {
    cnn_gemm(s->ta, s->tb, s->m, s->n, s->k, 1, a, lda, b, ldb, s->beta, c, s->n);
    done += flops;
  } while ((t = cpu_s() - t0) < ms * 1e-3);
  return done / t * 1e-9;
}

int main(int argc, char **argv) {
  int threads = 1, rounds = 5;
  double ms = 40, peak = 255;
  const char *only = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--ms")) ms = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
    else if (!strcmp(argv[i], "--peak")) peak = atof(argv[i + 1]);
  }
  if (cnn_parallel_set_threads(threads) != 0) return 1;
  printf("%-28s %2s %5s %5s %5s | %7s %7s %6s | %5s %5s | auto\n", "shape", "tr", "m", "n", "k", "blas", "own",
         "own/bl", "%pk_b", "%pk_o");
  unsigned seed = 1;
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    const shape *s = &shapes[i];
    if (only && !strstr(s->name, only)) continue;
    float *a = rand_floats((size_t)(s->m * s->k), &seed), *b = rand_floats((size_t)(s->k * s->n), &seed);
    float *c = rand_floats((size_t)(s->m * s->n), &seed);
    double rb[64], ro[64];
    int r = rounds < 64 ? rounds : 64;
    round_rate(s, CNN_GEMM_OWN, a, b, c, ms / 4); /* warm: packing buffers, caches */
    for (int q = 0; q < r; q++) {
      rb[q] = round_rate(s, CNN_GEMM_OPENBLAS, a, b, c, ms);
      ro[q] = round_rate(s, CNN_GEMM_OWN, a, b, c, ms);
    }
    qsort(rb, (size_t)r, sizeof(double), cmp_double);
    qsort(ro, (size_t)r, sizeof(double), cmp_double);
    double mb = rb[r / 2], mo = ro[r / 2];
    cnn_gemm_set_backend(CNN_GEMM_AUTO);
    printf("%-28s %c%c %5lld %5lld %5lld | %7.1f %7.1f %6.2f | %4.0f%% %4.0f%% | %s\n", s->name, s->ta ? 'T' : 'N',
           s->tb ? 'T' : 'N', (long long)s->m, (long long)s->n, (long long)s->k, mb, mo, mo / mb, 100 * mb / peak,
           100 * mo / peak, cnn_gemm_picks_own(s->ta, s->tb, s->m, s->n, s->k) ? "own" : "openblas");
    fflush(stdout);
    free(a);
    free(b);
    free(c);
  }
  return 0;
}
