/* Storage allocator (see alloc.h). Small blocks (under 1 MB) are rounded up to a size class (4 per
 * power of two, so at most 25% slack) and released blocks wait on their class's free list until
 * reused or until the cache exceeds its limit. Large blocks come from reserved address ranges
 * (segments, reserved as the heap grows), first fit over their free extents (merged with their
 * neighbours when released), so memory released by a layer serves the next layer's outputs
 * whatever their sizes: ResNet-50 inference (51, 26, 13, 6 MB activations) peaks near its live
 * peak instead of a cached set of blocks per size (RSS 540 MB to 292), and a steady loop touches
 * no new pages. Invariant: live bytes count requested
 * sizes, cached bytes the classes on the free lists and the heap's free extents below the tops;
 * one mutex guards it all because kernels may allocate from worker threads. */
#include "core/alloc.h"
#include "cnn/error.h"

#include <pthread.h>
#include <stdint.h>
#include <malloc.h> /* malloc_usable_size */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ALIGN 64
#define NCLASSES 256

typedef struct block {
  struct block *next;
} block;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static block *freelist[NCLASSES];
static size_t live_bytes, cached_bytes, peak_live_bytes;
static size_t heap_free_bytes; /* the large-block heap's free extents (see below) */
/* The part of heap_free_bytes whose pages were kept when released: an estimate (a block taken from
 * a free extent is assumed to take resident pages first), kept so a process that once held
 * gigabytes does not keep them resident after their release. */
static size_t heap_resident_bytes;
/* Upper bound on cached bytes (the free lists and the heap's resident free bytes together);
 * beyond it, released blocks go back to the OS. It starts at BASE_LIMIT and follows the reuse:
 * bytes given back past it (released_bytes) that a later request takes again (a refault: the pages
 * are touched anew) raise it by twice that, to at most BASE_LIMIT + the most bytes ever live, so a
 * training step whose activations exceed it (VGG-16: 1.2 GB freed at each step's end, ~50k page
 * faults a step faulting them in again) stops refaulting after a step or two. The raise decays when
 * a window of requests (WINDOW_FACTOR times the limit in bytes) leaves part of the cache unused,
 * and cnn_alloc_idle (the REPL's prompt) drops it, so a user's memory still comes back. */
#define BASE_LIMIT ((size_t)1 << 30)
#define WINDOW_FACTOR 16
static size_t cache_limit = BASE_LIMIT;
static size_t released_bytes, most_live_bytes;
static size_t window_bytes, window_min_cache = SIZE_MAX;

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

/* Under AddressSanitizer the heap's free extents and the slack after each block are poisoned, so
 * reads past a tensor or after its release are still caught as with malloc. */
#if defined(__SANITIZE_ADDRESS__)
#define HEAP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_ASAN 1
#endif
#endif
#ifdef HEAP_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* ---- the large-block heap ----
 * Segments of reserved address space (MAP_NORESERVE: pages exist once touched), reserved as the
 * heap grows: 256 MiB first, then as much again as all before (so the reserved total stays within
 * twice what was needed), halved down to the request when the OS refuses (an address-space limit,
 * `ulimit -v`), never more in all than the machine's memory. Growth extends the last segment in
 * place when the range above it is free (the usual case), so the heap is mostly one range. [base, base + top) of a
 * segment has been handed out at least once. Free extents below the tops are kept sorted by address
 * and never adjacent within a segment (released blocks merge). Sizes are multiples of GRAIN. */
#define LARGE ((size_t)1 << 20)
#define GRAIN ((size_t)64 << 10)
#define MAX_EXTENTS 4096
#define MAX_SEGMENTS 48
#define FIRST_SEGMENT ((size_t)256 << 20)

typedef struct extent {
  char *p;
  size_t len;
  int seg;
} extent;

typedef struct segment {
  char *base;
  size_t cap, top;
} segment;

static segment segs[MAX_SEGMENTS];
static int n_segs;
static size_t reserved_bytes;
static extent ext[MAX_EXTENTS];
static int n_ext;

static size_t physical_memory(void);

/* Where the first segment is asked for: far from the libraries and thread stacks that mmap places
 * top-down near the top of the address space, so the range above it stays free and the heap grows
 * in place (one range: no free tail stranded below a new segment). Only a hint. */
#if UINTPTR_MAX > 0xffffffffu
#define HEAP_HINT ((void *)((uintptr_t)1 << 45))
#else
#define HEAP_HINT NULL
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0 /* then the address asked for is a hint, checked below */
#endif

/* Reserves at least len more bytes (under the lock): right above the last segment when that range
 * is free (the segment grows), else a new segment; false when the OS refuses. */
static bool heap_grow(size_t len) {
  size_t phys = physical_memory(), want = reserved_bytes > FIRST_SEGMENT ? reserved_bytes : FIRST_SEGMENT;
  if (phys != SIZE_MAX && want > phys - (reserved_bytes < phys ? reserved_bytes : phys))
    want = phys - (reserved_bytes < phys ? reserved_bytes : phys);
  want = want / GRAIN * GRAIN;
  if (want < len) want = len;
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  for (;;) {
    segment *last = n_segs ? &segs[n_segs - 1] : NULL;
    if (last) {
      char *end = last->base + last->cap;
      void *p = mmap(end, want, PROT_READ | PROT_WRITE, flags | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == end) {
        last->cap += want;
        reserved_bytes += want;
        return true;
      }
      if (p != MAP_FAILED) munmap(p, want); /* placed elsewhere (an old kernel took it as a hint) */
    }
    if (n_segs < MAX_SEGMENTS) {
      void *p = mmap(last ? NULL : HEAP_HINT, want, PROT_READ | PROT_WRITE, flags, -1, 0);
      if (p != MAP_FAILED) {
        segs[n_segs++] = (segment){p, want, 0};
        reserved_bytes += want;
        return true;
      }
    }
    if (want == len) return false;
    want = want / 2 / GRAIN * GRAIN;
    if (want < len) want = len;
  }
}

static void ext_remove(int i) {
  for (int j = i; j + 1 < n_ext; j++) ext[j] = ext[j + 1];
  n_ext--;
}

/* A block of len bytes from the heap (under the lock), or NULL when no segment can be had: the
 * lowest free extent that fits (first fit keeps the live blocks low: ResNet-18 training at batch
 * 16 held 501 MB against best fit's 578, for 470 MB live), else the top of the first segment with
 * room, taking its last free extent along when it ends there, else a new segment. *fresh: the bytes
 * past the old top. */
static void *heap_take(size_t len, size_t *fresh) {
  *fresh = 0;
  for (int i = 0; i < n_ext; i++)
    if (ext[i].len >= len) {
      char *p = ext[i].p;
      ext[i].p += len, ext[i].len -= len;
      if (ext[i].len == 0) ext_remove(i);
      return p;
    }
  for (int pass = 0; pass < 2; pass++) {
    for (int s = 0; s < n_segs; s++) {
      segment *g = &segs[s];
      int last = -1; /* the free extent ending at the top, if any */
      for (int i = 0; i < n_ext; i++)
        if (ext[i].seg == s && ext[i].p + ext[i].len == g->base + g->top) last = i;
      size_t start = last >= 0 ? (size_t)(ext[last].p - g->base) : g->top;
      if (start + len > g->cap) continue;
      if (last >= 0) ext_remove(last);
      *fresh = start + len - g->top;
      g->top = start + len;
      return g->base + start;
    }
    if (pass == 0 && !heap_grow(len)) return NULL;
  }
  return NULL;
}

static int segment_of(const void *p) {
  for (int s = 0; s < n_segs; s++)
    if ((const char *)p >= segs[s].base && (const char *)p < segs[s].base + segs[s].cap) return s;
  return -1;
}

/* Returns [p, p + len) of segment s to the heap's free extents (under the lock). */
static void heap_give(char *p, size_t len, int s) {
  int i = 0; /* the first extent past p */
  while (i < n_ext && ext[i].p < p) i++;
  bool prev = i > 0 && ext[i - 1].seg == s && ext[i - 1].p + ext[i - 1].len == p;
  bool next = i < n_ext && ext[i].seg == s && p + len == ext[i].p;
  if (prev && next) {
    ext[i - 1].len += len + ext[i].len;
    ext_remove(i);
  } else if (prev) {
    ext[i - 1].len += len;
  } else if (next) {
    ext[i].p = p, ext[i].len += len;
  } else if (n_ext < MAX_EXTENTS) {
    for (int j = n_ext; j > i; j--) ext[j] = ext[j - 1];
    ext[i] = (extent){p, len, s};
    n_ext++;
  } /* else the extent is lost to reuse (thousands of holes: not seen in practice) */
}

static size_t large_len(size_t nbytes) { return (nbytes + GRAIN - 1) / GRAIN * GRAIN; }

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

/* Gives the heap's free pages back to the OS until the cache fits in limit (under the lock): the
 * lowest free extents (first fit takes those first) keep what fits, every page above is released,
 * so whatever the resident estimate, the pages past it do go back. */
static void shrink_to(size_t limit) {
  size_t keep = limit > cached_bytes ? limit - cached_bytes : 0, kept = 0;
  if (heap_resident_bytes <= keep) return;
  for (int i = 0; i < n_ext; i++) {
    size_t k = keep - kept < ext[i].len ? keep - kept : ext[i].len;
    k = k / GRAIN * GRAIN;
    kept += k;
    if (k < ext[i].len) madvise(ext[i].p + k, ext[i].len - k, MADV_DONTNEED);
  }
  released_bytes += heap_resident_bytes - kept;
  heap_resident_bytes = kept;
}

static void window_reset(void) { window_bytes = 0, window_min_cache = SIZE_MAX; }

/* Under the lock, after live_bytes grew by nbytes: the peaks, and the window over which a raised
 * cache limit decays. The cache never fell below window_min_cache during the window, so that much
 * of it served no request: the limit drops by it (when it is worth a release). */
static void note_alloc(size_t nbytes) {
  if (live_bytes > peak_live_bytes) peak_live_bytes = live_bytes;
  if (live_bytes > most_live_bytes) most_live_bytes = live_bytes;
  if (cache_limit == BASE_LIMIT) return;
  size_t cache = cached_bytes + heap_resident_bytes;
  if (cache < window_min_cache) window_min_cache = cache;
  window_bytes += nbytes;
  if (window_bytes / WINDOW_FACTOR < cache_limit) return;
  size_t unused = window_min_cache, raise = cache_limit - BASE_LIMIT;
  window_reset();
  if (unused < raise / 2) return;
  cache_limit = raise > unused ? cache_limit - unused : BASE_LIMIT;
  shrink_to(cache_limit);
}

void *cnn_alloc(size_t nbytes) {
  size_t csize;
  if (nbytes > physical_memory()) {
    cnn_error_set("cannot allocate %zu bytes: more than the machine's memory", nbytes);
    return NULL;
  }
  if (nbytes >= LARGE) {
    size_t len = large_len(nbytes), fresh = 0;
    void *p = NULL;
    pthread_mutex_lock(&lock);
    p = heap_take(len, &fresh);
    if (p) {
      UNPOISON(p, nbytes);
      POISON((char *)p + nbytes, len - nbytes);
      /* the part of the block not from resident free pages is touched anew: when the limit gave
       * it back, the program wanted it after all, and the limit grows by it */
      size_t taken = len - fresh, resident = taken < heap_resident_bytes ? taken : heap_resident_bytes;
      heap_free_bytes -= taken;
      heap_resident_bytes -= resident;
      live_bytes += nbytes;
      note_alloc(nbytes);
      size_t refault = taken - resident < released_bytes ? taken - resident : released_bytes;
      if (refault) { /* a raise past the most ever live would serve no step */
        size_t cap = BASE_LIMIT + most_live_bytes;
        released_bytes -= refault;
        cache_limit = cache_limit + 2 * refault < cap ? cache_limit + 2 * refault : cap;
        window_reset();
      }
    }
    pthread_mutex_unlock(&lock);
    if (p) return p;
  }
  int c = size_class(nbytes, &csize);
  void *p = NULL;
  pthread_mutex_lock(&lock);
  if (c < NCLASSES && freelist[c]) {
    p = freelist[c];
    freelist[c] = freelist[c]->next;
    cached_bytes -= csize;
  }
  if (p) {
    live_bytes += nbytes;
    note_alloc(nbytes);
  }
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
  note_alloc(nbytes);
  pthread_mutex_unlock(&lock);
  return p;
}

void cnn_free(void *p, size_t nbytes) {
  if (!p) return;
  if (nbytes >= LARGE) {
    pthread_mutex_lock(&lock);
    int seg = segment_of(p);
    bool ours = seg >= 0;
    if (ours) {
      size_t len = large_len(nbytes);
      POISON(p, len);
      heap_give(p, len, seg);
      live_bytes -= nbytes;
      heap_free_bytes += len;
      /* past the cache limit the pages go back to the OS now; the range stays reserved and
       * serves the next request (fresh zero pages, faulted in as touched) */
      if (cached_bytes + heap_resident_bytes + len > cache_limit) {
        madvise(p, len, MADV_DONTNEED);
        released_bytes += len;
      } else {
        heap_resident_bytes += len;
      }
    }
    pthread_mutex_unlock(&lock);
    if (ours) return;
  }
  size_t csize;
  int c = size_class(nbytes, &csize);
  pthread_mutex_lock(&lock);
  live_bytes -= nbytes;
  if (c < NCLASSES && cached_bytes + heap_resident_bytes + csize <= cache_limit) {
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

size_t cnn_alloc_peak_live_bytes(bool reset) {
  pthread_mutex_lock(&lock);
  size_t n = peak_live_bytes;
  if (reset) peak_live_bytes = live_bytes;
  pthread_mutex_unlock(&lock);
  return n;
}

size_t cnn_alloc_cached_bytes(void) {
  pthread_mutex_lock(&lock);
  size_t n = cached_bytes + heap_free_bytes;
  pthread_mutex_unlock(&lock);
  return n;
}

/* ---- small structs ----
 * glibc's per-thread cache keeps 7 blocks a size: a training step lets go of its tensors and graph
 * nodes in one collection and asks for as many again, so most of those requests took malloc's slow
 * path (_int_malloc and its bins: 2% of a one-thread LeNet-5 step). Blocks up to SMALL_MAX bytes
 * wait here on lists per SMALL_STEP bytes, up to SMALL_KEEP bytes in all (with 256 blocks a size,
 * a third of a LeNet-5 step's requests still missed: the collector frees in bursts); under
 * AddressSanitizer they go straight back to free(), so a use after release is still caught. */
#define SMALL_STEP 32
#define SMALL_MAX 1024
#define SMALL_KEEP ((size_t)4 << 20) /* bytes kept in all */
static block *small[SMALL_MAX / SMALL_STEP + 1];
static size_t small_bytes;
static pthread_mutex_t small_lock = PTHREAD_MUTEX_INITIALIZER;

/* A block of at least n bytes, zeroed when asked. */
static void *small_get(size_t n, bool zero) {
#ifndef HEAP_ASAN
  if (n <= SMALL_MAX) {
    const size_t c = (n + SMALL_STEP - 1) / SMALL_STEP;
    pthread_mutex_lock(&small_lock);
    block *b = small[c];
    if (b) small[c] = b->next, small_bytes -= c * SMALL_STEP;
    pthread_mutex_unlock(&small_lock);
    if (b) return zero ? memset(b, 0, n) : (void *)b;
    n = c ? c * SMALL_STEP : SMALL_STEP;
  }
#endif
  return zero ? calloc(1, n ? n : 1) : malloc(n ? n : 1);
}

void *cnn_small_alloc(size_t n) { return small_get(n, true); }

/* Takes back any block of malloc's (not only small_get's): it waits on the list of the size it can
 * hold (malloc_usable_size, rounded down to a class). */
void cnn_small_free(void *p) {
  if (!p) return;
#ifndef HEAP_ASAN
  const size_t usable = malloc_usable_size(p);
  if (usable >= SMALL_STEP && usable <= SMALL_MAX + SMALL_STEP - 1) {
    const size_t c = usable / SMALL_STEP < SMALL_MAX / SMALL_STEP ? usable / SMALL_STEP : SMALL_MAX / SMALL_STEP;
    pthread_mutex_lock(&small_lock);
    if (small_bytes < SMALL_KEEP) {
      ((block *)p)->next = small[c];
      small[c] = p, small_bytes += c * SMALL_STEP;
      p = NULL;
    }
    pthread_mutex_unlock(&small_lock);
  }
#endif
  free(p);
}

/* Lua's allocator (lua_Alloc) over the small structs' lists: a step's tables, closures and tensor
 * boxes are as many small blocks let go of in bulk by the collector as the tensors themselves. */
void *cnn_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    cnn_small_free(ptr);
    return NULL;
  }
  if (!ptr) return small_get(nsize, false);
  if (nsize > SMALL_MAX && osize > SMALL_MAX) return realloc(ptr, nsize);
  void *q = small_get(nsize, false);
  if (!q) return nsize <= osize ? ptr : NULL; /* a shrink keeps its block (freed by its usable size) */
  memcpy(q, ptr, osize < nsize ? osize : nsize);
  cnn_small_free(ptr);
  return q;
}

/* The small structs' lists back to malloc. */
static void small_trim(void) {
  pthread_mutex_lock(&small_lock);
  for (size_t c = 0; c < sizeof small / sizeof *small; c++)
    while (small[c]) {
      block *b = small[c];
      small[c] = b->next;
      free(b);
    }
  small_bytes = 0;
  pthread_mutex_unlock(&small_lock);
}

/* fork() from one thread while another (a data loader's, a kernel's) holds a lock would leave the
 * child's copy locked forever: both are taken around fork, released on both sides. Registered
 * before main, so these run after the thread pool's handler takes its lock (prepare handlers run
 * last-registered first); nothing holds an allocator lock while waiting for the pool's. */
static void fork_prepare(void) {
  pthread_mutex_lock(&lock);
  pthread_mutex_lock(&small_lock);
}
static void fork_release(void) {
  pthread_mutex_unlock(&small_lock);
  pthread_mutex_unlock(&lock);
}
__attribute__((constructor)) static void fork_handlers(void) {
  pthread_atfork(fork_prepare, fork_release, fork_release);
}

void cnn_alloc_trim(void) {
  small_trim();
  pthread_mutex_lock(&lock);
  for (int c = 0; c < NCLASSES; c++) {
    while (freelist[c]) {
      block *b = freelist[c];
      freelist[c] = b->next;
      free(b);
    }
  }
  cached_bytes = 0;
  /* the heap's free pages back to the OS (the range stays reserved); a free extent at the top
   * lowers the top */
  for (int i = 0; i < n_ext; i++) madvise(ext[i].p, ext[i].len, MADV_DONTNEED);
  heap_resident_bytes = 0;
  released_bytes = 0, cache_limit = BASE_LIMIT;
  window_reset();
  for (int i = n_ext - 1; i >= 0; i--) {
    segment *g = &segs[ext[i].seg];
    if (ext[i].p + ext[i].len == g->base + g->top) {
      heap_free_bytes -= ext[i].len;
      g->top = (size_t)(ext[i].p - g->base);
      ext_remove(i);
    }
  }
  pthread_mutex_unlock(&lock);
}

void cnn_alloc_idle(void) {
  pthread_mutex_lock(&lock);
  if (cache_limit > BASE_LIMIT) {
    cache_limit = BASE_LIMIT;
    window_reset();
    shrink_to(cache_limit);
  }
  pthread_mutex_unlock(&lock);
}
