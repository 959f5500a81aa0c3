/* Storage allocator (see alloc.h). Blocks are rounded up to a size class (4 per power of two, so
 * at most 25% slack) and released blocks wait on their class's free list until reused or until
 * the cache exceeds its limit. Invariant: live + cached bytes are exact counts of class sizes and
 * requested sizes; one mutex guards the lists because kernels may allocate from worker threads. */
#include "core/alloc.h"
#include "cnn/error.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define ALIGN 64
#define NCLASSES 256

typedef struct block {
  struct block *next;
} block;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static block *freelist[NCLASSES];
static size_t live_bytes, cached_bytes;
/* Upper bound on cached bytes; beyond it, released blocks go back to the OS. */
static const size_t cache_limit = (size_t)1 << 30;

/* Class of n bytes: sizes up to 256 share class 0; above, 4 classes per power of two. */
static int size_class(size_t n, size_t *class_size) {
  if (n <= 256) {
    *class_size = 256;
    return 0;
  }
  int lg = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^lg < n <= 2^(lg+1) */
  size_t base = (size_t)1 << lg, quarter = base / 4;
  size_t steps = (n - base + quarter - 1) / quarter; /* 1..4 */
  *class_size = base + steps * quarter;
  return (lg - 8) * 4 + (int)steps;
}

static size_t phys_bytes;
static pthread_once_t phys_once = PTHREAD_ONCE_INIT;

static void read_physical_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
  phys_bytes = pages <= 0 || psize <= 0 ? SIZE_MAX : (size_t)pages * (size_t)psize;
}

/* Asked once: sysconf(_SC_PHYS_PAGES) is a sysinfo system call (it was 40% of a tiny op's time). */
static size_t physical_memory(void) {
  pthread_once(&phys_once, read_physical_memory);
  return phys_bytes;
}

void *cnn_alloc(size_t nbytes) {
  size_t csize;
  if (nbytes > physical_memory()) {
    cnn_error_set("cannot allocate %zu bytes: more than the machine's memory", nbytes);
    return NULL;
  }
  int c = size_class(nbytes, &csize);
  void *p = NULL;
  pthread_mutex_lock(&lock);
  if (c < NCLASSES && freelist[c]) {
    p = freelist[c];
    freelist[c] = freelist[c]->next;
    cached_bytes -= csize;
  }
  if (p) live_bytes += nbytes;
  pthread_mutex_unlock(&lock);
  if (p) return p;
  p = aligned_alloc(ALIGN, csize);
  if (!p) {
    cnn_alloc_trim(); /* the cache may be what stands between us and success */
    p = aligned_alloc(ALIGN, csize);
  }
  if (!p) {
    cnn_error_set("out of memory allocating %zu bytes", nbytes);
    return NULL;
  }
  pthread_mutex_lock(&lock);
  live_bytes += nbytes;
  pthread_mutex_unlock(&lock);
  return p;
}

void cnn_free(void *p, size_t nbytes) {
  if (!p) return;
  size_t csize;
  int c = size_class(nbytes, &csize);
  pthread_mutex_lock(&lock);
  live_bytes -= nbytes;
  if (c < NCLASSES && cached_bytes + csize <= cache_limit) {
    block *b = p;
    b->next = freelist[c];
    freelist[c] = b;
    cached_bytes += csize;
    p = NULL;
  }
  pthread_mutex_unlock(&lock);
  free(p);
}

size_t cnn_alloc_live_bytes(void) {
  pthread_mutex_lock(&lock);
  size_t n = live_bytes;
  pthread_mutex_unlock(&lock);
  return n;
}

size_t cnn_alloc_cached_bytes(void) {
  pthread_mutex_lock(&lock);
  size_t n = cached_bytes;
  pthread_mutex_unlock(&lock);
  return n;
}

void cnn_alloc_trim(void) {
  pthread_mutex_lock(&lock);
  for (int c = 0; c < NCLASSES; c++) {
    while (freelist[c]) {
      block *b = freelist[c];
      freelist[c] = b->next;
      free(b);
    }
  }
  cached_bytes = 0;
  pthread_mutex_unlock(&lock);
}
