/* The data pipeline's C half: epoch orders for a loader (seeded shuffles, shards), gathering
 * dataset rows into batch tensors, and the batch transforms (normalize, random crop with padding,
 * random horizontal flip). Transforms take a float32 (N, C, H, W) batch or one (C, H, W) image
 * and return a new tensor without autograd history; their per-sample random choices come from
 * the runtime's seeded stream (random.h), drawn in sample order before any parallel work, so
 * results depend on the seed and never on the thread count. */
#ifndef CNN_BATCH_H
#define CNN_BATCH_H

#include <stdbool.h>

#include "cnn/tensor.h"

/* Rows of src along dim 0, picked by idx (a 1-d int64 tensor of 0-based indices, any strides):
 * a new contiguous tensor of shape (len(idx), src.size[1:]). */
cnn_tensor *cnn_batch_gather(const cnn_tensor *src, const cnn_tensor *idx);
/* The same rows as float32 divided by divisor (255 maps uint8 images to [0, 1]): for a uint8 src,
 * one parallel pass from the stored bytes, giving the bits of t:float() / divisor. A dataset keeps
 * its images as uint8 (a quarter of float32's memory) and converts only the batch asked for. */
cnn_tensor *cnn_batch_gather_float(const cnn_tensor *src, const cnn_tensor *idx, double divisor);

/* How an epoch of n samples is cut into world strided shards perm[rank], perm[rank + world], ...:
 * DROP gives each rank floor(n / world) samples (the last n mod world positions are skipped, a
 * different few each shuffled epoch); PAD gives each ceil(n / world), positions past the end
 * wrapping to the start of the permutation (PyTorch's DistributedSampler), so every sample is seen
 * and a few twice; EXACT gives each rank its positions below n, every sample once, lengths
 * differing by at most one (for evaluation, where ranks need not step together). */
typedef enum cnn_shard_mode { CNN_SHARD_DROP, CNN_SHARD_PAD, CNN_SHARD_EXACT } cnn_shard_mode;

/* The 0-based sample order of one epoch over n samples, as a new 1-d int64 tensor.
 * Without shuffle: 0..n-1. With shuffle and seeded: a permutation that depends only on (seed,
 * epoch), from a generator of its own (the runtime's stream is left untouched, so every rank
 * and every run computes the same one). With shuffle and not seeded: a permutation drawn from
 * the runtime's stream. With world > 1, this rank's shard of it (see cnn_shard_mode). */
cnn_tensor *cnn_batch_order(int64_t n, bool shuffle, bool seeded, uint64_t seed, int64_t epoch, int64_t rank,
                            int64_t world, cnn_shard_mode mode);

/* (x - mean[c]) / std[c] per channel; nmean and nstd are 1 (every channel) or C. */
cnn_tensor *cnn_batch_normalize(const cnn_tensor *x, int nmean, const double *mean, int nstd, const double *std);

/* Pads each image by pad_h rows above and below and pad_w columns left and right with `fill`,
 * then cuts an (oh, ow) window at a random position (top drawn first, then left, each uniform
 * over the valid range, per sample; as torchvision's RandomCrop). */
cnn_tensor *cnn_batch_random_crop(const cnn_tensor *x, int64_t oh, int64_t ow, int64_t pad_h, int64_t pad_w,
                                  double fill);

/* Mirrors each image left-right with probability p (one uniform draw per sample). */
cnn_tensor *cnn_batch_random_hflip(const cnn_tensor *x, double p);

#endif
