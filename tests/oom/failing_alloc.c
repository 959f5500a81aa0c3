/* failing_alloc: an LD_PRELOAD library that makes one chosen allocation of the process fail, for
 * tests/oom/oom.lua (out-of-memory paths: every failure must be an error, never a crash, a
 * corrupt file or a wrong result).
 *
 * It replaces malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign, counting the
 * calls made while it is armed, and fails the n-th (NULL, or ENOMEM) once. A script arms it
 * through getenv, which it also replaces for names beginning "failalloc:":
 *   os.getenv("failalloc:arm N")  the N-th allocation from now fails; returns "armed"
 *   os.getenv("failalloc:off")    disarms; returns "calls=C failed=F" (C counted since the arm)
 * Only for unsanitized builds: the sanitizers' allocators are not glibc's __libc_* functions. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_bool armed;
static atomic_long calls, failed, target;

/* True for the one call to fail: the target-th since the arm. */
static bool fail_now(void) {
  if (!atomic_load_explicit(&armed, memory_order_relaxed)) return false;
  long k = atomic_fetch_add(&calls, 1) + 1;
  if (k != atomic_load(&target)) return false;
  atomic_fetch_add(&failed, 1);
  return true;
}

void *malloc(size_t n) {
  if (fail_now()) return errno = ENOMEM, NULL;
  return __libc_malloc(n);
}

void *calloc(size_t count, size_t n) {
  if (fail_now()) return errno = ENOMEM, NULL;
  return __libc_calloc(count, n);
}

void *realloc(void *p, size_t n) {
  if (n && fail_now()) return errno = ENOMEM, NULL;
  return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n) {
  if (fail_now()) return errno = ENOMEM, NULL;
  return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void **out, size_t align, size_t n) {
  if (fail_now()) return ENOMEM;
  void *p = __libc_memalign(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

char *getenv(const char *name) {
  static char reply[64];
  if (strncmp(name, "failalloc:", 10) == 0) {
    const char *cmd = name + 10;
    if (strncmp(cmd, "arm ", 4) == 0) {
      atomic_store(&armed, false);
      atomic_store(&calls, 0);
      atomic_store(&failed, 0);
      atomic_store(&target, strtol(cmd + 4, NULL, 10));
      atomic_store(&armed, true);
      return strcpy(reply, "armed");
    }
    atomic_store(&armed, false);
    snprintf(reply, sizeof reply, "calls=%ld failed=%ld", atomic_load(&calls), atomic_load(&failed));
    return reply;
  }
  static char *(*real)(const char *);
  if (!real) real = (char *(*)(const char *))dlsym(RTLD_NEXT, "getenv");
  return real(name);
}
