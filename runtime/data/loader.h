/* Image datasets decoded ahead of training: an image source (the files of an ImageFolder, their
 * labels, how to decode them, the transform pipeline and an optional cache of decoded bytes) and a
 * loader that runs one epoch over it in batches, decoding and transforming on worker threads of
 * its own (pthreads, not the compute pool) while the caller trains.
 *
 * Determinism: sample i of epoch e gets a generator seeded from (seed, e, i), whichever thread runs
 * it and in whatever order, so a run gives the same batches with any number of workers. Batches
 * come out in order; an error (a corrupt file, a transform an image cannot take) is reported with
 * the file's path at the batch that holds it, the same batch whatever the worker count.
 *
 * Threads: a loader's workers exist from cnn_loader_start to cnn_loader_free. They run no Lua and no
 * OpenMP, block every signal, and, when fork() is called while they run (pthread_atfork), finish the
 * sample in hand and wait, holding no lock, until fork returns: the child has no workers, and a
 * loader it inherited reports an error instead of waiting for them. At process exit (atexit)
 * running loaders are stopped and joined. */
#ifndef CNN_LOADER_H
#define CNN_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnn/image_io.h"
#include "cnn/tensor.h"
#include "data/transforms.h"

typedef struct cnn_image_source cnn_image_source;

/* A source of n images: paths[i] (copied) with labels[i] (copied; any int64, e.g. 1-based
 * classes), decoded in mode with or without EXIF orientation, then run through ops[0..nops)
 * (copied). With cache, the decoded images (before the transforms) are kept as bytes (value * 255:
 * exact for 8-bit files; 16-bit PNGs lose their extra precision) the first time each is read, by
 * whichever thread reads it. Returns a new source, or NULL with the error set. */
cnn_image_source *cnn_image_source_new(int64_t n, const char *const *paths, const int64_t *labels, cnn_image_mode mode,
                                       bool exif, const cnn_tf *ops, int nops, bool cache);
/* Frees the source; no loader may be running over it. NULL is a no-op. */
void cnn_image_source_free(cnn_image_source *s);

int64_t cnn_image_source_size(const cnn_image_source *s);
const char *cnn_image_source_path(const cnn_image_source *s, int64_t i);
int64_t cnn_image_source_label(const cnn_image_source *s, int64_t i);
/* Bytes the cache holds, and how many images it holds. */
size_t cnn_image_source_cache_bytes(const cnn_image_source *s);
int64_t cnn_image_source_cached(const cnn_image_source *s);

/* Image i (0-based), decoded (or from the cache) and transformed with a generator seeded by seed:
 * a new reference, or NULL with an error that starts with the file's path. Safe on any thread. */
cnn_tensor *cnn_image_source_get(cnn_image_source *s, int64_t i, uint64_t seed);

/* The seed cnn_loader gives sample i of an epoch. */
uint64_t cnn_loader_sample_seed(uint64_t seed, int64_t epoch, int64_t i);

typedef struct cnn_loader cnn_loader;

/* One epoch over src (borrowed: it must outlive the loader): the samples order[0..m) (0-based,
 * copied) in batches of batch_size (the last one shorter). workers 0 runs every batch on the
 * caller's thread when it is asked for; n >= 1 starts n threads that work up to prefetch batches
 * ahead of the caller (prefetch >= 1). With stack, a batch is one (N, C, H, W) tensor (the images
 * must come out of the transforms with one shape); without, the images are returned one by one.
 * Returns the running loader, or NULL with the error set. */
cnn_loader *cnn_loader_start(cnn_image_source *src, const int64_t *order, int64_t m, int64_t batch_size, uint64_t seed,
                             int64_t epoch, int workers, int prefetch, bool stack);

typedef struct cnn_loader_batch {
  cnn_tensor *x;       /* stacked images (N, C, H, W) when stacking, else NULL */
  cnn_tensor **images; /* otherwise N images (malloc'd array of new references) */
  cnn_tensor *labels;  /* int64 (N) */
  int64_t n;
} cnn_loader_batch;

/* The next batch, in order; blocks until it is ready. Returns 1 with *out filled (new references
 * for the caller: cnn_loader_batch_clear releases them), 0 after the last batch, -1 with the error
 * set (the failing file's path first; the loader goes on to the next batch if asked). */
int cnn_loader_next(cnn_loader *l, cnn_loader_batch *out);
void cnn_loader_batch_clear(cnn_loader_batch *b);

/* Batches in the epoch, and how many cnn_loader_next has returned. */
int64_t cnn_loader_batches(const cnn_loader *l);
int64_t cnn_loader_position(const cnn_loader *l);

/* Stops the workers (each finishes the sample in hand), joins them and frees everything. NULL is
 * a no-op. In a child process forked while the loader ran, only the memory is freed. */
void cnn_loader_free(cnn_loader *l);

/* The worker threads this process's loaders are running now (for a binding that frees abandoned
 * loaders through a garbage collector, which counts no threads). */
int cnn_loader_live_threads(void);

#endif
