/* Image sources and the loader that decodes them ahead of training (see loader.h). Workers claim
 * samples in epoch order under one mutex, process them unlocked (decode, cache, transforms: no
 * lock, no Lua, no OpenMP) and put each result in its batch's slot; the worker that finishes a
 * batch stacks it. A ring of `prefetch` slots bounds the work ahead of the caller: sample t may be
 * claimed only when its batch t / batch_size is fewer than prefetch batches past the caller's.
 * Invariants: a slot holds one batch from the claim of its first sample until the caller takes it;
 * `busy` counts workers between a claim and the end of its work, so a fork can wait for zero. */
#include "data/loader.h"
#include "cnn/error.h"
#include "cnn/jpeg_io.h"
#include "cnn/rng.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- sources ---- */

struct cnn_image_source {
  int64_t n;
  char **paths;
  int64_t *labels;
  cnn_image_mode mode;
  bool exif;
  cnn_tf *ops;
  int nops;
  bool cache;
  _Atomic(cnn_tensor *) *cached; /* n uint8 (h, w, c) entries, NULL until image i is decoded (with cache);
                                  * workers only read them (never retain), so their counts stay put */
  atomic_size_t cache_bytes;
  atomic_int_fast64_t cached_count;
};

cnn_image_source *cnn_image_source_new(int64_t n, const char *const *paths, const int64_t *labels, cnn_image_mode mode,
                                       bool exif, const cnn_tf *ops, int nops, bool cache) {
  if (n < 0 || nops < 0) return cnn_error_set("invalid image source size"), NULL;
  cnn_image_source *s = calloc(1, sizeof *s);
  if (!s) return cnn_error_set("out of memory"), NULL;
  s->n = n;
  s->mode = mode;
  s->exif = exif;
  s->nops = nops;
  s->cache = cache;
  size_t count = (size_t)(n ? n : 1);
  s->paths = calloc(count, sizeof *s->paths);
  s->labels = malloc(count * sizeof *s->labels);
  s->ops = malloc(sizeof *s->ops * (size_t)(nops ? nops : 1));
  s->cached = cache ? calloc(count, sizeof *s->cached) : NULL;
  bool ok = s->paths && s->labels && s->ops && (!cache || s->cached);
  for (int64_t i = 0; ok && i < n; i++) {
    s->paths[i] = strdup(paths[i]);
    ok = s->paths[i] != NULL;
    s->labels[i] = labels[i];
  }
  if (!ok) {
    cnn_image_source_free(s);
    return cnn_error_set("out of memory"), NULL;
  }
  if (nops) memcpy(s->ops, ops, sizeof *s->ops * (size_t)nops);
  return s;
}

void cnn_image_source_free(cnn_image_source *s) {
  if (!s) return;
  for (int64_t i = 0; s->paths && i < s->n; i++) free(s->paths[i]);
  for (int64_t i = 0; s->cached && i < s->n; i++) cnn_tensor_release(atomic_load(&s->cached[i]));
  free(s->paths);
  free(s->labels);
  free(s->ops);
  free(s->cached);
  free(s);
}

int64_t cnn_image_source_size(const cnn_image_source *s) { return s->n; }
const char *cnn_image_source_path(const cnn_image_source *s, int64_t i) { return s->paths[i]; }
int64_t cnn_image_source_label(const cnn_image_source *s, int64_t i) { return s->labels[i]; }
size_t cnn_image_source_cache_bytes(const cnn_image_source *s) { return atomic_load(&s->cache_bytes); }
int64_t cnn_image_source_cached(const cnn_image_source *s) { return atomic_load(&s->cached_count); }

/* Keeps a decoded image as a uint8 (h, w, c) tensor (copied: interleaved channels); another thread
 * may have cached it first, and then ours is dropped. Out of memory only means the image is decoded
 * again next time. */
static void cache_put(cnn_image_source *s, int64_t i, const cnn_image8 *im) {
  int64_t size[3] = {im->h, im->w, im->c};
  cnn_tensor *b = cnn_tensor_empty(CNN_UINT8, 3, size);
  if (!b) {
    cnn_error_clear();
    return;
  }
  size_t nbytes = (size_t)cnn_tensor_numel(b);
  memcpy(cnn_tensor_u8(b), im->data, nbytes);
  cnn_tensor *expected = NULL;
  if (atomic_compare_exchange_strong(&s->cached[i], &expected, b)) {
    atomic_fetch_add(&s->cache_bytes, nbytes);
    atomic_fetch_add(&s->cached_count, 1);
  } else {
    cnn_tensor_release(b);
  }
}

/* A float image (C, H, W) as interleaved bytes (round(v * 255): exact for what an 8-bit file
 * decodes to). 0, or -1 with the error set. */
static int to_bytes(const cnn_tensor *t, cnn_image8 *im) {
  int64_t c = t->size[0], h = t->size[1], w = t->size[2];
  im->h = h, im->w = w, im->c = (int)c, im->top = im->left = 0;
  im->data = malloc((size_t)(c * h * w) + 1);
  if (!im->data) return cnn_error_set("out of memory");
  const float *f = cnn_tensor_f32(t);
  for (int64_t k = 0; k < c; k++)
    for (int64_t i = 0; i < h * w; i++) {
      float v = f[k * h * w + i] * 255.0f + 0.5f;
      im->data[i * c + k] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
    }
  return 0;
}

/* A JPEG through its first operation: the header first, then only the window that operation
 * reads (a random crop's rectangle, drawn now as cnn_tf_run would draw it), then the rest. */
static cnn_tensor *jpeg_sample(cnn_image_source *s, int64_t i, cnn_rng *g) {
  cnn_jpeg_reader *r = cnn_jpeg_open(s->paths[i], s->exif);
  if (!r) return NULL;
  int64_t h, w, box[4], oh, ow;
  bool resize;
  cnn_jpeg_size(r, &h, &w);
  cnn_image8 im;
  cnn_tensor *out = NULL;
  if (s->nops && cnn_tf_window(&s->ops[0], h, w, g, box, &oh, &ow, &resize)) {
    int rc = cnn_jpeg_read8(r, s->mode, box, &im);
    cnn_jpeg_close(r);
    if (rc) return NULL;
    cnn_tensor *first = cnn_tf_window8(&im, h, w, box, oh, ow, resize, s->ops[0].interp, s->ops[0].antialias);
    cnn_image8_free(&im);
    if (!first) return NULL;
    out = cnn_tf_run(s->ops + 1, s->nops - 1, first, g);
    cnn_tensor_release(first);
    return out;
  }
  int rc = cnn_jpeg_read8(r, s->mode, NULL, &im);
  cnn_jpeg_close(r);
  if (rc) return NULL;
  out = cnn_tf_run8(s->ops, s->nops, &im, g);
  cnn_image8_free(&im);
  return out;
}

cnn_tensor *cnn_image_source_get(cnn_image_source *s, int64_t i, uint64_t seed) {
  if (i < 0 || i >= s->n)
    return cnn_error_set("image %lld is out of range for %lld", (long long)i, (long long)s->n), NULL;
  cnn_rng g;
  cnn_rng_seed(&g, seed);
  cnn_tensor *out = NULL;
  const cnn_tensor *b = s->cache ? atomic_load(&s->cached[i]) : NULL;
  if (b) { /* decoded before: the bytes straight into the first operation */
    cnn_image8 im = {b->size[0], b->size[1], (int)b->size[2], 0, 0, cnn_tensor_u8(b)};
    out = cnn_tf_run8(s->ops, s->nops, &im, &g);
  } else if (cnn_image_sniff_file(s->paths[i]) == CNN_IMAGE_JPEG) {
    if (!s->cache) {
      out = jpeg_sample(s, i, &g);
    } else { /* the whole image, kept as bytes */
      cnn_jpeg_reader *r = cnn_jpeg_open(s->paths[i], s->exif);
      cnn_image8 im;
      if (!r || cnn_jpeg_read8(r, s->mode, NULL, &im)) {
        cnn_jpeg_close(r);
        return NULL; /* the reader's message starts with the path */
      }
      cnn_jpeg_close(r);
      cache_put(s, i, &im);
      out = cnn_tf_run8(s->ops, s->nops, &im, &g);
      cnn_image8_free(&im);
    }
    if (!out && strncmp(cnn_error_get(), s->paths[i], strlen(s->paths[i])) == 0) return NULL; /* names the file */
  } else {
    cnn_tensor *img = cnn_image_load(s->paths[i], s->mode, s->exif);
    if (!img) return NULL; /* the reader's message starts with the path */
    cnn_image8 im;
    if (s->cache && to_bytes(img, &im) == 0) {
      cache_put(s, i, &im);
      cnn_image8_free(&im);
    }
    out = cnn_tf_run(s->ops, s->nops, img, &g);
    cnn_tensor_release(img);
  }
  if (!out) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", cnn_error_get());
    cnn_error_set("%s: %s", s->paths[i], msg);
  }
  return out;
}

uint64_t cnn_loader_sample_seed(uint64_t seed, int64_t epoch, int64_t i) {
  return cnn_rng_derive(seed, (uint64_t)epoch, (uint64_t)i);
}

/* ---- batches ---- */

typedef struct {
  int64_t batch; /* the batch held, -1 when free */
  int64_t n;     /* its samples */
  int64_t remaining;
  bool ready;
  cnn_tensor **images; /* not stacking: the n results (NULL where a sample failed) */
  cnn_tensor *x;       /* stacking: (n, C, H, W), shaped by the first sample to finish */
  int64_t (*shape)[3]; /* stacking: each sample's (C, H, W), to report a mismatch the same way always */
  bool mismatch;       /* stacking: a sample did not fit x */
  int64_t err_pos;     /* the first failing sample of the batch, -1 for none */
  char err[1024];
} slot;

struct cnn_loader {
  cnn_image_source *src;
  int64_t *order, m, bs, nb, epoch;
  uint64_t seed;
  int workers, prefetch;
  bool stack;
  pthread_mutex_t mu;
  pthread_cond_t work_cv; /* workers: a slot freed, stop, or the end of a pause */
  pthread_cond_t done_cv; /* the caller: a batch ready; a fork: busy reached 0 */
  int64_t next_task;      /* the next sample position to claim */
  int64_t consumed;       /* batches handed out */
  bool stop, paused;
  int busy;
  slot *slots;
  pthread_t *threads;
  int nthreads;
  pid_t pid; /* the process that started the workers */
  struct cnn_loader *next_live, *prev_live;
};

/* ---- the live loaders, for fork and exit ---- */

static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static cnn_loader *live;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

/* Before fork: every running loader's workers finish the sample in hand and park; the loaders'
 * mutexes stay locked across the fork so no worker starts another sample. */
static void before_fork(void) {
  pthread_mutex_lock(&live_mu);
  for (cnn_loader *l = live; l; l = l->next_live) {
    pthread_mutex_lock(&l->mu);
    if (l->pid != getpid() || !l->nthreads) continue;
    l->paused = true;
    while (l->busy > 0) pthread_cond_wait(&l->done_cv, &l->mu);
  }
}

static void after_fork_parent(void) {
  for (cnn_loader *l = live; l; l = l->next_live) {
    if (l->paused) {
      l->paused = false;
      pthread_cond_broadcast(&l->work_cv);
    }
    pthread_mutex_unlock(&l->mu);
  }
  pthread_mutex_unlock(&live_mu);
}

/* In the child the workers do not exist: the loaders it inherited only free their memory. */
static void after_fork_child(void) {
  for (cnn_loader *l = live; l; l = l->next_live) {
    l->paused = false;
    pthread_mutex_unlock(&l->mu);
  }
  pthread_mutex_unlock(&live_mu);
}

int cnn_loader_live_threads(void) {
  int n = 0;
  pthread_mutex_lock(&live_mu);
  for (cnn_loader *l = live; l; l = l->next_live)
    if (l->pid == getpid()) n += l->nthreads;
  pthread_mutex_unlock(&live_mu);
  return n;
}

static void stop_and_join(cnn_loader *l);

/* At exit, before the C library tears itself down, the workers stop (lua_close has usually freed
 * the loaders already; os.exit without closing the state has not). */
static void at_exit(void) {
  pthread_mutex_lock(&live_mu);
  for (cnn_loader *l = live; l; l = l->next_live)
    if (l->pid == getpid()) stop_and_join(l);
  pthread_mutex_unlock(&live_mu);
}

static void install_hooks(void) {
  pthread_atfork(before_fork, after_fork_parent, after_fork_child);
  atexit(at_exit);
}

/* ---- workers ---- */

static void init_slot(cnn_loader *l, slot *s, int64_t b) {
  s->batch = b;
  s->n = (b + 1) * l->bs <= l->m ? l->bs : l->m - b * l->bs;
  s->remaining = s->n;
  s->ready = false;
  s->x = NULL;
  s->mismatch = false;
  s->err_pos = -1;
  s->err[0] = '\0';
  for (int64_t k = 0; k < s->n; k++) s->images[k] = NULL;
}

/* Records sample pos's failure if it is the batch's first so far (the report then names the same
 * file whatever the order the samples finished in). */
static void record_error(slot *s, int64_t pos, const char *msg) {
  if (s->err_pos >= 0 && s->err_pos < pos) return;
  s->err_pos = pos;
  snprintf(s->err, sizeof s->err, "%s", msg);
}

/* Puts sample pos's result y (a new reference; NULL when it failed, the error set) into slot s.
 * Stacking, it is copied straight into the batch tensor, made with the first result's shape by
 * whoever finishes first; a result of another shape is a mismatch, reported at the end. With mu
 * (workers), called and returning with it held; the copy itself runs unlocked (the tensor stays
 * until the batch is taken or the loader stops, and the rows are this sample's alone). */
static void deliver(cnn_loader *l, slot *s, int64_t pos, cnn_tensor *y, pthread_mutex_t *mu) {
  if (!y) {
    record_error(s, pos, cnn_error_get());
    return;
  }
  if (!l->stack) {
    s->images[pos] = y;
    return;
  }
  memcpy(s->shape[pos], y->size, sizeof s->shape[pos]);
  if (!s->x && !s->mismatch) {
    int64_t size[4] = {s->n, y->size[0], y->size[1], y->size[2]};
    s->x = cnn_tensor_empty(CNN_FLOAT32, 4, size);
    if (!s->x) record_error(s, pos, cnn_error_get());
  }
  bool fits = s->x && s->x->size[1] == y->size[0] && s->x->size[2] == y->size[1] && s->x->size[3] == y->size[2];
  if (!fits) s->mismatch = true;
  if (fits) {
    int64_t per = y->size[0] * y->size[1] * y->size[2];
    if (mu) pthread_mutex_unlock(mu);
    memcpy(cnn_tensor_f32(s->x) + pos * per, cnn_tensor_f32(y), sizeof(float) * (size_t)per);
    if (mu) pthread_mutex_lock(mu);
  }
  cnn_tensor_release(y);
}

/* A finished batch: a shape mismatch becomes the error naming the first sample (in batch order)
 * whose shape differs from the first's, so the report is the same whoever finished first. */
static void finish_batch(cnn_loader *l, slot *s) {
  if (!l->stack || !s->mismatch || s->err_pos >= 0) return;
  const int64_t *idx = l->order + s->batch * l->bs;
  int64_t k = 1;
  while (k < s->n && memcmp(s->shape[k], s->shape[0], sizeof s->shape[0]) == 0) k++;
  if (k == s->n) k = 0; /* cannot happen: a mismatch means two shapes differ */
  const int64_t *a = s->shape[k], *f = s->shape[0];
  char msg[1024];
  snprintf(msg, sizeof msg,
           "%s: transformed to %lldx%lldx%lld, but %s to %lldx%lldx%lld: a batch needs one size (end the transform "
           "with a resize or a crop to one size)",
           l->src->paths[idx[k]], (long long)a[0], (long long)a[1], (long long)a[2], l->src->paths[idx[0]],
           (long long)f[0], (long long)f[1], (long long)f[2]);
  record_error(s, k, msg);
}

static void *worker(void *arg) {
  cnn_loader *l = arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && (l->paused || l->next_task >= l->m || l->next_task / l->bs >= l->consumed + l->prefetch))
      pthread_cond_wait(&l->work_cv, &l->mu);
    if (l->stop) break;
    int64_t t = l->next_task++, b = t / l->bs, pos = t % l->bs;
    slot *s = &l->slots[b % l->prefetch];
    if (pos == 0) init_slot(l, s, b);
    l->busy++;
    pthread_mutex_unlock(&l->mu);

    int64_t i = l->order[t];
    cnn_tensor *y = cnn_image_source_get(l->src, i, cnn_loader_sample_seed(l->seed, l->epoch, i));

    pthread_mutex_lock(&l->mu);
    deliver(l, s, pos, y, &l->mu);
    if (--s->remaining == 0) {
      pthread_mutex_unlock(&l->mu);
      finish_batch(l, s);
      pthread_mutex_lock(&l->mu);
      s->ready = true;
      pthread_cond_broadcast(&l->done_cv);
    }
    if (--l->busy == 0 && l->paused) pthread_cond_broadcast(&l->done_cv);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

/* ---- the caller's side ---- */

cnn_loader *cnn_loader_start(cnn_image_source *src, const int64_t *order, int64_t m, int64_t batch_size, uint64_t seed,
                             int64_t epoch, int workers, int prefetch, bool stack_batches) {
  if (batch_size < 1 || m < 0 || workers < 0 || prefetch < 1)
    return cnn_error_set("invalid loader settings (batch size %lld, workers %d, prefetch %d)", (long long)batch_size,
                         workers, prefetch),
           NULL;
  for (int64_t t = 0; t < m; t++)
    if (order[t] < 0 || order[t] >= src->n)
      return cnn_error_set("sample %lld is out of range for %lld images", (long long)order[t], (long long)src->n), NULL;
  pthread_once(&hooks_once, install_hooks);
  cnn_loader *l = calloc(1, sizeof *l);
  if (!l) return cnn_error_set("out of memory"), NULL;
  l->src = src;
  l->m = m;
  /* a batch size past the epoch's samples is one batch of them all: the slots below hold bs images
   * each, so they are sized to the batch, not to the request (1e9 took 8 GB for 40 images) */
  l->bs = batch_size < m ? batch_size : m > 0 ? m : 1;
  l->nb = (m + l->bs - 1) / l->bs;
  l->epoch = epoch;
  l->seed = seed;
  l->workers = workers;
  l->prefetch = workers ? prefetch : 1;
  l->stack = stack_batches;
  l->pid = getpid();
  l->order = malloc(sizeof *l->order * (size_t)(m ? m : 1));
  l->slots = calloc((size_t)l->prefetch, sizeof *l->slots);
  bool ok = l->order && l->slots;
  for (int k = 0; ok && k < l->prefetch; k++) {
    l->slots[k].batch = -1;
    l->slots[k].images = calloc((size_t)l->bs, sizeof(cnn_tensor *));
    l->slots[k].shape = calloc((size_t)l->bs, sizeof *l->slots[k].shape);
    ok = l->slots[k].images != NULL && l->slots[k].shape != NULL;
  }
  if (ok && workers) {
    l->threads = calloc((size_t)workers, sizeof *l->threads);
    ok = l->threads != NULL;
  }
  if (!ok || pthread_mutex_init(&l->mu, NULL) || pthread_cond_init(&l->work_cv, NULL) ||
      pthread_cond_init(&l->done_cv, NULL)) {
    for (int k = 0; l->slots && k < l->prefetch; k++) {
      free(l->slots[k].images);
      free(l->slots[k].shape);
    }
    free(l->slots);
    free(l->order);
    free(l->threads);
    free(l);
    return cnn_error_set("out of memory"), NULL;
  }
  if (m) memcpy(l->order, order, sizeof *l->order * (size_t)m);
  pthread_mutex_lock(&live_mu);
  l->next_live = live;
  if (live) live->prev_live = l;
  live = l;
  /* workers start with every signal blocked: signals are the caller's thread's business */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int err = 0;
  for (int k = 0; k < workers && !err; k++) {
    err = pthread_create(&l->threads[k], NULL, worker, l);
    if (!err) l->nthreads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_mutex_unlock(&live_mu);
  if (err) {
    cnn_loader_free(l);
    return cnn_error_set("cannot start a loader thread (%s)", strerror(err)), NULL;
  }
  return l;
}

int64_t cnn_loader_batches(const cnn_loader *l) { return l->nb; }
int64_t cnn_loader_position(const cnn_loader *l) { return l->consumed; }

void cnn_loader_batch_clear(cnn_loader_batch *b) {
  cnn_tensor_release(b->x);
  cnn_tensor_release(b->labels);
  for (int64_t k = 0; b->images && k < b->n; k++) cnn_tensor_release(b->images[k]);
  free(b->images);
  memset(b, 0, sizeof *b);
}

/* Hands the finished slot s to out (or sets the error), leaving s free. */
static int take(cnn_loader *l, slot *s, cnn_loader_batch *out) {
  int rc = 1;
  if (s->err_pos >= 0) {
    cnn_error_set("%s", s->err);
    rc = -1;
  } else {
    out->n = s->n;
    out->labels = cnn_tensor_empty(CNN_INT64, 1, &s->n);
    if (!l->stack) out->images = malloc(sizeof(cnn_tensor *) * (size_t)s->n);
    if (!out->labels || (!l->stack && !out->images)) {
      cnn_loader_batch_clear(out);
      cnn_error_set("out of memory");
      rc = -1;
    } else {
      const int64_t *idx = l->order + s->batch * l->bs;
      for (int64_t k = 0; k < s->n; k++) cnn_tensor_i64(out->labels)[k] = l->src->labels[idx[k]];
      if (l->stack) {
        out->x = s->x;
        s->x = NULL;
      } else {
        for (int64_t k = 0; k < s->n; k++) {
          out->images[k] = s->images[k];
          s->images[k] = NULL;
        }
      }
    }
  }
  for (int64_t k = 0; k < s->n; k++) {
    cnn_tensor_release(s->images[k]);
    s->images[k] = NULL;
  }
  cnn_tensor_release(s->x);
  s->x = NULL;
  s->batch = -1;
  s->ready = false;
  return rc;
}

int cnn_loader_next(cnn_loader *l, cnn_loader_batch *out) {
  memset(out, 0, sizeof *out);
  if (l->pid != getpid())
    return cnn_error_set("this epoch's loader was started in the parent process, before fork(): start a new "
                         "iteration in the child");
  if (l->consumed >= l->nb) return 0;
  int64_t b = l->consumed;
  slot *s = &l->slots[b % l->prefetch];
  if (!l->workers) { /* every sample of the batch on this thread, as a worker would */
    init_slot(l, s, b);
    for (int64_t pos = 0; pos < s->n; pos++) {
      int64_t i = l->order[b * l->bs + pos];
      deliver(l, s, pos, cnn_image_source_get(l->src, i, cnn_loader_sample_seed(l->seed, l->epoch, i)), NULL);
    }
    finish_batch(l, s);
    l->consumed++;
    return take(l, s, out);
  }
  pthread_mutex_lock(&l->mu);
  while (!(s->batch == b && s->ready)) pthread_cond_wait(&l->done_cv, &l->mu);
  int rc = take(l, s, out);
  l->consumed++;
  pthread_cond_broadcast(&l->work_cv);
  pthread_mutex_unlock(&l->mu);
  return rc;
}

/* Stops and joins the workers (each finishes the sample in hand). Called with live_mu held. */
static void stop_and_join(cnn_loader *l) {
  if (!l->nthreads) return;
  pthread_mutex_lock(&l->mu);
  l->stop = true;
  pthread_cond_broadcast(&l->work_cv);
  pthread_mutex_unlock(&l->mu);
  for (int k = 0; k < l->nthreads; k++) pthread_join(l->threads[k], NULL);
  l->nthreads = 0;
}

void cnn_loader_free(cnn_loader *l) {
  if (!l) return;
  pthread_mutex_lock(&live_mu);
  if (l->pid == getpid()) stop_and_join(l); /* a forked child has no workers to join */
  if (l->prev_live) l->prev_live->next_live = l->next_live;
  else live = l->next_live;
  if (l->next_live) l->next_live->prev_live = l->prev_live;
  pthread_mutex_unlock(&live_mu);
  for (int k = 0; k < l->prefetch; k++) {
    slot *s = &l->slots[k];
    for (int64_t i = 0; s->images && i < l->bs; i++) cnn_tensor_release(s->images[i]);
    cnn_tensor_release(s->x);
    free(s->images);
    free(s->shape);
  }
  if (l->pid == getpid()) {
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->done_cv);
    pthread_mutex_destroy(&l->mu);
  }
  free(l->slots);
  free(l->order);
  free(l->threads);
  free(l);
}
