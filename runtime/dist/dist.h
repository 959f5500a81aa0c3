/* Collectives across the processes of one job, over MPI when the build has it (CNN_HAVE_MPI).
 * Without MPI, or when the process was not started by an MPI launcher, init gives a world of one
 * and every collective is the identity, so a script written for many ranks runs unchanged on one.
 * Only the thread that called init may call these (MPI_THREAD_FUNNELED). Tensors are float32 or
 * int64, any shape and strides; results are written in place (a contiguous staging copy is used
 * for views). Every call first compares a header (collective, dtype, shape, root) across ranks,
 * so mismatched calls fail on every rank alike, with an error, not a hang; so does a call that
 * meets a rank which has ended (see cnn_dist_finalize). */
#ifndef CNN_DIST_H
#define CNN_DIST_H

#include <stdbool.h>

#include "cnn/tensor.h"

typedef enum cnn_dist_op { CNN_DIST_SUM, CNN_DIST_MEAN, CNN_DIST_MAX, CNN_DIST_MIN } cnn_dist_op;

/* Idempotent. Joins the launcher's job (mpirun, srun) when the environment shows one. */
int cnn_dist_init(void);
bool cnn_dist_is_initialized(void);
bool cnn_dist_has_mpi(void);        /* built with MPI */
int cnn_dist_rank(void);            /* 0 before init */
int cnn_dist_world_size(void);      /* 1 before init */
const char *cnn_dist_backend(void); /* "mpi" or "none" */

int cnn_dist_barrier(void);
int cnn_dist_all_reduce(cnn_tensor *t, cnn_dist_op op);
int cnn_dist_broadcast(cnn_tensor *t, int root);
/* (world, *t->size): rank r's tensor at index r. */
cnn_tensor *cnn_dist_all_gather(const cnn_tensor *t);

/* DataParallel's gradient averaging. grad_mask: the element-wise maximum of has (1-d int64: which
 * parameters hold a gradient) across ranks, as its own collective, so that a rank averaging
 * gradients while another calls all_reduce is told so. all_reduce_many: the n float32 tensors
 * are packed into one staging buffer, summed across ranks in one call, multiplied by scale and
 * unpacked: one message instead of n, after a header that compares the element count. */
int cnn_dist_grad_mask(cnn_tensor *has);
int cnn_dist_all_reduce_many(cnn_tensor *const *ts, int n, float scale);

/* Leaves the job: MPI_Abort when failed (so the other ranks do not wait forever for a rank that
 * died); else it waits until every rank has ended, failing the collectives the others still call
 * (they may catch that and go on), then MPI_Finalize. Safe to call more than once; also
 * registered with atexit by init; does nothing in a process forked after init. */
void cnn_dist_finalize(bool failed);

#endif
