/* Temporary-file-then-rename writes (see atomic_file.h). Where the file system has O_TMPFILE
 * (ext4, xfs, btrfs, tmpfs) the file has no name while it is written, so a writer killed
 * mid-write (kill -9, a power cut) leaves nothing behind; at commit it is linked under a
 * temporary name and renamed over the destination at once. Elsewhere it is created under that
 * temporary name, and a killed writer leaves it. The temporary name carries the pid and a counter
 * and is made with O_EXCL (or linkat, which fails on a name that exists), so concurrent writers
 * (search workers, ranks) never share one; rename within a folder is atomic on POSIX file
 * systems. */
#define _GNU_SOURCE /* O_TMPFILE */
#include "io/atomic_file.h"
#include "cnn/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned counter;

static void next_tmp_name(cnn_atomic_file *af, size_t n) {
  snprintf(af->tmp, n, "%s.tmp-%ld-%u", af->path, (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
}

/* An unnamed file in path's folder (O_TMPFILE), or -1 where the kernel or file system has none. */
static int open_unnamed(const char *path) {
#ifdef O_TMPFILE
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
  if (!dir) return -1;
  int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
  free(dir);
  return fd;
#else
  (void)path;
  return -1;
#endif
}

int cnn_atomic_open(cnn_atomic_file *af, const char *path) {
  af->f = NULL;
  af->path = path;
  af->unnamed = false;
  size_t n = strlen(path) + 48;
  af->tmp = malloc(n);
  if (!af->tmp) return cnn_error_set("out of memory");
  int fd = open_unnamed(path);
  af->unnamed = fd >= 0;
  for (int attempt = 0; fd < 0 && attempt < 100; attempt++) {
    next_tmp_name(af, n);
    fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) {
      int e = errno;
      free(af->tmp);
      af->tmp = NULL;
      return cnn_error_set("%s: cannot create (%s)", path, strerror(e));
    }
  }
  if (fd < 0) {
    free(af->tmp);
    af->tmp = NULL;
    return cnn_error_set("%s: cannot create a temporary file beside it", path);
  }
  af->f = fdopen(fd, "wb");
  if (!af->f) {
    int e = errno;
    close(fd);
    if (!af->unnamed) unlink(af->tmp);
    free(af->tmp);
    af->tmp = NULL;
    return cnn_error_set("%s: cannot create (%s)", path, strerror(e));
  }
  return 0;
}

void cnn_atomic_abort(cnn_atomic_file *af) {
  if (af->f) fclose(af->f); /* an unnamed file vanishes with its last descriptor */
  if (af->tmp && !af->unnamed) unlink(af->tmp);
  free(af->tmp);
  af->f = NULL;
  af->tmp = NULL;
}

/* The unnamed file linked under a new temporary name (through /proc/self/fd, which needs no
 * privilege): 0 or an errno. */
static int link_unnamed(cnn_atomic_file *af) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fileno(af->f));
  for (int attempt = 0; attempt < 100; attempt++) {
    next_tmp_name(af, strlen(af->path) + 48);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, af->tmp, AT_SYMLINK_FOLLOW) == 0) return 0;
    /* no /proc: the descriptor itself, which needs CAP_DAC_READ_SEARCH */
    if (errno == ENOENT && linkat(fileno(af->f), "", AT_FDCWD, af->tmp, AT_EMPTY_PATH) == 0) return 0;
    if (errno != EEXIST) return errno;
  }
  return EEXIST;
}

int cnn_atomic_commit(cnn_atomic_file *af) {
  int e = 0;
  if (fflush(af->f) != 0 || ferror(af->f)) e = errno ? errno : EIO;
  if (!e && fsync(fileno(af->f)) != 0 && errno != EINVAL && errno != EROFS) e = errno;
  bool named = !af->unnamed;
  if (!e && af->unnamed && (e = link_unnamed(af)) == 0) named = true;
  int rc = fclose(af->f);
  af->f = NULL;
  if (!e && rc != 0) e = errno ? errno : EIO;
  if (!e && rename(af->tmp, af->path) != 0) e = errno;
  if (e) {
    if (named) unlink(af->tmp);
    free(af->tmp);
    af->tmp = NULL;
    return cnn_error_set("%s: write failed (%s)", af->path, strerror(e));
  }
  free(af->tmp);
  af->tmp = NULL;
  return 0;
}
