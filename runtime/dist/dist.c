/* Collectives over MPI (see dist.h). One duplicated communicator with MPI_ERRORS_RETURN, so an MPI
 * failure becomes an error message instead of killing the job from inside a call. Invariant: every
 * rank makes the same sequence of collective calls; the header check turns a mismatch in what they
 * pass into the same error on every rank, and validation that follows it is therefore unanimous. */
#include "dist/dist.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnn/error.h"

#ifdef CNN_HAVE_MPI
#include <mpi.h>
#endif

static struct {
  bool initialized, finalized, mpi, owns_mpi;
  int rank, world;
  pid_t pid;    /* the process that joined: a forked child must not leave the job in its name */
  float *stage; /* bucket staging buffer, grown on demand and kept */
  size_t stage_len;
#ifdef CNN_HAVE_MPI
  MPI_Comm comm;
#endif
} D = {.world = 1};

bool cnn_dist_has_mpi(void) {
#ifdef CNN_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool cnn_dist_is_initialized(void) { return D.initialized; }
int cnn_dist_rank(void) { return D.rank; }
int cnn_dist_world_size(void) { return D.world; }
const char *cnn_dist_backend(void) { return D.mpi ? "mpi" : "none"; }

#ifdef CNN_HAVE_MPI
static void at_exit(void) { cnn_dist_finalize(false); }

/* Started by a launcher? Open MPI's mpirun, PMIx (srun, prterun), MPICH's hydra. A plain start
 * must not call MPI_Init: a singleton init would spawn a runtime daemon for a world of one. */
static bool launched(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", NULL};
  for (int i = 0; vars[i]; i++)
    if (getenv(vars[i])) return true;
  return false;
}

static int mpi_fail(int rc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  msg[len] = '\0';
  return cnn_error_set("%s failed: %s", what, len ? msg : "unknown MPI error");
}
#endif

int cnn_dist_init(void) {
  if (D.initialized) return 0;
#ifdef CNN_HAVE_MPI
  if (launched()) {
    int already = 0, provided = 0;
    MPI_Initialized(&already);
    if (!already && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return cnn_error_set("MPI_Init failed");
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &D.comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_dup");
    MPI_Comm_set_errhandler(D.comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(D.comm, &D.rank);
    MPI_Comm_size(D.comm, &D.world);
    D.mpi = true;
    D.owns_mpi = !already;
    D.pid = getpid();
    atexit(at_exit);
  }
#endif
  D.initialized = true;
  return 0;
}

#ifdef CNN_HAVE_MPI
static void end_in_step(void);
#endif

void cnn_dist_finalize(bool failed) {
#ifdef CNN_HAVE_MPI
  if (D.mpi && !D.finalized) {
    if (getpid() != D.pid) return; /* a forked child's exit: the job is its parent's */
    D.finalized = true;
    int done = 0;
    MPI_Finalized(&done);
    if (!done) {
      if (failed && D.world > 1) MPI_Abort(D.comm, 1);
      if (D.world > 1) end_in_step();
      MPI_Comm_free(&D.comm);
      if (D.owns_mpi) MPI_Finalize();
    }
  }
#else
  (void)failed;
#endif
  free(D.stage);
  D.stage = NULL;
  D.stage_len = 0;
}

static int usable(void) {
  if (!D.initialized) return cnn_error_set("the process group is not initialized: call dist.init() first");
  if (D.finalized) return cnn_error_set("the process group has been shut down");
  return 0;
}

#ifdef CNN_HAVE_MPI
/* KIND_END, a rank's exit, is the largest: the header's maximum tells the others it has come. */
enum { KIND_ALL_REDUCE = 1, KIND_BROADCAST, KIND_ALL_GATHER, KIND_BUCKET, KIND_BARRIER, KIND_GRAD_MASK, KIND_END };
static const char *const kind_names[] = {"",
                                         "all_reduce",
                                         "broadcast",
                                         "all_gather",
                                         "a gradient bucket",
                                         "barrier",
                                         "DataParallel's gradient averaging",
                                         "the end of its script"};

/* Header: kind, dtype, ndim, extra (op, root or element count), sizes. One MAX all-reduce over the
 * header and its negation gives every rank the maximum (h[i]) and the minimum (-h[HDR + i]) of
 * each field. */
#define HDR (4 + CNN_MAX_DIMS)
static int exchange_header(int kind, const cnn_tensor *t, int64_t extra, int64_t h[2 * HDR]) {
  memset(h, 0, 2 * HDR * sizeof h[0]);
  h[0] = kind, h[1] = t ? (int64_t)t->dtype : 0, h[2] = t ? t->ndim : 0, h[3] = extra;
  for (int d = 0; t && d < t->ndim; d++) h[4 + d] = t->size[d];
  for (int i = 0; i < HDR; i++) h[HDR + i] = -h[i];
  int rc = MPI_Allreduce(MPI_IN_PLACE, h, 2 * HDR, MPI_INT64_T, MPI_MAX, D.comm);
  return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Allreduce");
}

static int check_header(int kind, const cnn_tensor *t, int64_t extra) {
  int64_t h[2 * HDR];
  if (exchange_header(kind, t, extra, h)) return -1;
  int bad = -1;
  for (int i = 0; i < HDR && bad < 0; i++)
    if (h[i] != -h[HDR + i]) bad = i;
  if (bad < 0) return 0;
  if (bad == 0 && h[0] == KIND_END)
    return cnn_error_set("another rank has ended its script (or called os.exit) while this rank called %s: every rank "
                         "must make the same collective calls",
                         kind_names[kind]);
  if (bad == 0) return cnn_error_set("ranks called different collectives (this rank: %s)", kind_names[kind]);
  if (bad == 1)
    return cnn_error_set("ranks passed tensors of different dtypes (this rank: %s)", cnn_dtype_name(t->dtype));
  if (bad == 3 && kind == KIND_ALL_REDUCE) return cnn_error_set("ranks passed different ops");
  if (bad == 3 && kind == KIND_BROADCAST) return cnn_error_set("ranks passed different roots");
  if (bad == 3)
    return cnn_error_set("ranks hold buckets of different sizes (%lld to %lld elements)", (long long)-h[HDR + 3],
                         (long long)h[3]);
  char shape[32 * CNN_MAX_DIMS] = "(";
  for (int d = 0; d < t->ndim; d++) {
    size_t len = strlen(shape);
    snprintf(shape + len, sizeof shape - len, d ? ", %lld" : "%lld", (long long)t->size[d]);
  }
  strcat(shape, ")");
  return cnn_error_set("the tensors' shapes differ across ranks (this rank has %s)", shape);
}

/* A rank that ends (its script returns, or os.exit) waits here until every rank has: each
 * collective another rank still calls meets this header and fails with an error naming the end,
 * instead of waiting forever for a partner; that rank may catch it and go on until it ends too.
 * (A rank whose script fails does not come here: it aborts the job.) */
static void end_in_step(void) {
  int64_t h[2 * HDR];
  while (exchange_header(KIND_END, NULL, 0, h) == 0 && -h[HDR] != KIND_END) {}
}

static MPI_Datatype mpi_type(cnn_dtype dt) {
  return dt == CNN_FLOAT32 ? MPI_FLOAT : dt == CNN_INT64 ? MPI_INT64_T : MPI_UINT8_T; /* uint8 and bool */
}

/* MPI counts are int: big buffers go in chunks of 2^30 elements. root < 0: an in-place
 * all-reduce with op; else a broadcast from root. */
static int chunked(void *data, int64_t n, cnn_dtype dt, MPI_Op op, int root) {
  const int64_t chunk = (int64_t)1 << 30;
  size_t es = cnn_dtype_size(dt);
  for (int64_t at = 0; at < n; at += chunk) {
    int count = (int)(n - at < chunk ? n - at : chunk);
    void *p = (char *)data + at * es;
    int rc = root < 0 ? MPI_Allreduce(MPI_IN_PLACE, p, count, mpi_type(dt), op, D.comm)
                      : MPI_Bcast(p, count, mpi_type(dt), root, D.comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, root < 0 ? "MPI_Allreduce" : "MPI_Bcast");
  }
  return 0;
}
#endif

/* Writes through overlapping views (expanded dims) would race; refuse them. */
static int writable(const cnn_tensor *t) {
  for (int d = 0; d < t->ndim; d++)
    if (t->stride[d] == 0 && t->size[d] > 1)
      return cnn_error_set("the tensor is an expanded view (its elements overlap): pass a contiguous() copy");
  return 0;
}

/* Runs fn on a contiguous buffer holding t's elements, then writes them back into t's view. */
static int in_place(cnn_tensor *t, int (*fn)(void *data, int64_t n, cnn_dtype dt, void *arg), void *arg) {
  int64_t n = cnn_tensor_numel(t);
  int rc;
  if (cnn_tensor_is_contiguous(t)) {
    rc = fn(cnn_tensor_data(t), n, t->dtype, arg);
  } else {
    cnn_tensor *c = cnn_tensor_clone(t);
    if (!c) return -1;
    rc = fn(cnn_tensor_data(c), n, t->dtype, arg);
    if (rc == 0) rc = cnn_tensor_copy_(t, c);
    cnn_tensor_release(c);
  }
  if (rc == 0) t->storage->version++;
  return rc;
}

static int reduce_buffer(void *data, int64_t n, cnn_dtype dt, void *arg) {
  cnn_dist_op op = *(cnn_dist_op *)arg;
#ifdef CNN_HAVE_MPI
  MPI_Op mop = op == CNN_DIST_MAX ? MPI_MAX : op == CNN_DIST_MIN ? MPI_MIN : MPI_SUM;
  if (dt == CNN_BOOL) mop = op == CNN_DIST_MIN ? MPI_BAND : MPI_BOR; /* a bool sum is "or", as bool + bool */
  if (D.mpi && chunked(data, n, dt, mop, -1)) return -1;
#endif
  if (op == CNN_DIST_MEAN && D.world > 1) {
    float *p = data, inv = 1.0f / (float)D.world;
    for (int64_t i = 0; i < n; i++) p[i] *= inv;
  }
  (void)dt;
  return 0;
}

int cnn_dist_all_reduce(cnn_tensor *t, cnn_dist_op op) {
  if (usable()) return -1;
#ifdef CNN_HAVE_MPI
  if (D.mpi && check_header(KIND_ALL_REDUCE, t, op)) return -1;
#endif
  if (writable(t)) return -1;
  if (op == CNN_DIST_MEAN && t->dtype != CNN_FLOAT32)
    return cnn_error_set("op 'mean' needs a float32 tensor (this one is %s); sum and divide instead",
                         cnn_dtype_name(t->dtype));
  return in_place(t, reduce_buffer, &op);
}

static int bcast_buffer(void *data, int64_t n, cnn_dtype dt, void *arg) {
#ifdef CNN_HAVE_MPI
  if (D.mpi && chunked(data, n, dt, MPI_OP_NULL, *(int *)arg)) return -1;
#else
  (void)data, (void)n, (void)dt, (void)arg;
#endif
  return 0;
}

int cnn_dist_broadcast(cnn_tensor *t, int root) {
  if (usable()) return -1;
#ifdef CNN_HAVE_MPI
  if (D.mpi && check_header(KIND_BROADCAST, t, root)) return -1;
#endif
  if (root < 0 || root >= D.world) return cnn_error_set("root %d is outside the ranks 0..%d", root, D.world - 1);
  if (writable(t)) return -1;
  return in_place(t, bcast_buffer, &root);
}

cnn_tensor *cnn_dist_all_gather(const cnn_tensor *t) {
  if (usable()) return NULL;
#ifdef CNN_HAVE_MPI
  if (D.mpi && check_header(KIND_ALL_GATHER, t, 0)) return NULL;
#endif
  if (t->ndim >= CNN_MAX_DIMS) {
    cnn_error_set("the tensor has %d dimensions; all_gather adds one and the limit is %d", t->ndim, CNN_MAX_DIMS);
    return NULL;
  }
  int64_t size[CNN_MAX_DIMS];
  size[0] = D.world;
  memcpy(size + 1, t->size, (size_t)t->ndim * sizeof size[0]);
  cnn_tensor *out = cnn_tensor_empty(t->dtype, t->ndim + 1, size);
  cnn_tensor *src = out ? cnn_tensor_contiguous(t) : NULL;
  if (!src) {
    cnn_tensor_release(out);
    return NULL;
  }
  int64_t n = cnn_tensor_numel(t);
  size_t bytes = (size_t)n * cnn_dtype_size(t->dtype);
  int rc = 0;
#ifdef CNN_HAVE_MPI
  if (D.mpi) {
    if (n > INT_MAX) {
      rc = cnn_error_set("all_gather of %lld elements per rank is over MPI's limit of %d", (long long)n, INT_MAX);
    } else {
      int mrc = MPI_Allgather(cnn_tensor_data(src), (int)n, mpi_type(t->dtype), cnn_tensor_data(out), (int)n,
                              mpi_type(t->dtype), D.comm);
      if (mrc != MPI_SUCCESS) rc = mpi_fail(mrc, "MPI_Allgather");
    }
  } else
#endif
  {
    memcpy(cnn_tensor_data(out), cnn_tensor_data(src), bytes);
  }
  cnn_tensor_release(src);
  if (rc) {
    cnn_tensor_release(out);
    return NULL;
  }
  return out;
}

int cnn_dist_barrier(void) {
  if (usable()) return -1;
#ifdef CNN_HAVE_MPI
  /* the header's all-reduce is the barrier (no rank leaves before all have entered), and a rank
   * in another collective meets it there: an error on every rank, not MPI_Barrier's hang */
  if (D.mpi && check_header(KIND_BARRIER, NULL, 0)) return -1;
#endif
  return 0;
}

int cnn_dist_grad_mask(cnn_tensor *has) {
  if (usable()) return -1;
  if (has->dtype != CNN_INT64 || has->ndim != 1 || !cnn_tensor_is_contiguous(has))
    return cnn_error_set("the gradient mask must be a contiguous 1-d int64 tensor");
#ifdef CNN_HAVE_MPI
  if (D.mpi && check_header(KIND_GRAD_MASK, has, 0)) return -1;
#endif
  cnn_dist_op op = CNN_DIST_MAX;
  return in_place(has, reduce_buffer, &op);
}

int cnn_dist_all_reduce_many(cnn_tensor *const *ts, int n, float scale) {
  if (usable()) return -1;
  int64_t total = 0;
  for (int i = 0; i < n; i++) total += cnn_tensor_numel(ts[i]);
#ifdef CNN_HAVE_MPI
  if (D.mpi && check_header(KIND_BUCKET, NULL, total)) return -1;
#endif
  for (int i = 0; i < n; i++) {
    if (ts[i]->dtype != CNN_FLOAT32)
      return cnn_error_set("bucket tensor %d is %s; buckets hold float32 gradients", i + 1,
                           cnn_dtype_name(ts[i]->dtype));
    if (writable(ts[i])) return -1;
  }
  if ((size_t)total > D.stage_len) {
    float *p = realloc(D.stage, (size_t)total * sizeof *p);
    if (!p) return cnn_error_set("out of memory for a gradient bucket of %lld elements", (long long)total);
    D.stage = p;
    D.stage_len = (size_t)total;
  }
  int64_t at = 0;
  for (int i = 0; i < n; i++) {
    cnn_tensor *c = cnn_tensor_contiguous(ts[i]);
    if (!c) return -1;
    int64_t k = cnn_tensor_numel(c);
    memcpy(D.stage + at, cnn_tensor_f32(c), (size_t)k * sizeof(float));
    cnn_tensor_release(c);
    at += k;
  }
#ifdef CNN_HAVE_MPI
  if (D.mpi && chunked(D.stage, total, CNN_FLOAT32, MPI_SUM, -1)) return -1;
#endif
  at = 0;
  for (int i = 0; i < n; i++) {
    cnn_tensor *t = ts[i];
    int64_t k = cnn_tensor_numel(t);
    const float *src = D.stage + at;
    if (cnn_tensor_is_contiguous(t)) {
      float *dst = cnn_tensor_f32(t);
      for (int64_t j = 0; j < k; j++) dst[j] = src[j] * scale;
    } else {
      cnn_tensor *c = cnn_tensor_empty_like(t);
      if (!c) return -1;
      float *dst = cnn_tensor_f32(c);
      for (int64_t j = 0; j < k; j++) dst[j] = src[j] * scale;
      int rc = cnn_tensor_copy_(t, c);
      cnn_tensor_release(c);
      if (rc) return -1;
    }
    t->storage->version++;
    at += k;
  }
  return 0;
}
