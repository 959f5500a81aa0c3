/* Temporary-file-then-rename writes (see atomic_file.h). The temporary name carries the pid and
 * a counter and is created with O_EXCL, so concurrent writers (search workers, ranks) never
 * share one; rename within a folder is atomic on POSIX file systems. */
#include "io/atomic_file.h"
#include "cnn/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cnn_atomic_open(cnn_atomic_file *af, const char *path) {
  static unsigned counter;
  af->f = NULL;
  af->tmp = NULL;
  af->path = path;
  size_t n = strlen(path) + 48;
  af->tmp = malloc(n);
  if (!af->tmp) return cnn_error_set("out of memory");
  for (int attempt = 0; attempt < 100; attempt++) {
    snprintf(af->tmp, n, "%s.tmp-%ld-%u", path, (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    int fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0) {
      int e = errno;
      free(af->tmp);
      af->tmp = NULL;
      return cnn_error_set("%s: cannot create (%s)", path, strerror(e));
    }
    af->f = fdopen(fd, "wb");
    if (!af->f) {
      int e = errno;
      close(fd);
      unlink(af->tmp);
      free(af->tmp);
      af->tmp = NULL;
      return cnn_error_set("%s: cannot create (%s)", path, strerror(e));
    }
    return 0;
  }
  free(af->tmp);
  af->tmp = NULL;
  return cnn_error_set("%s: cannot create a temporary file beside it", path);
}

void cnn_atomic_abort(cnn_atomic_file *af) {
  if (af->f) fclose(af->f);
  if (af->tmp) {
    unlink(af->tmp);
    free(af->tmp);
  }
  af->f = NULL;
  af->tmp = NULL;
}

int cnn_atomic_commit(cnn_atomic_file *af) {
  int e = 0;
  if (fflush(af->f) != 0 || ferror(af->f)) e = errno ? errno : EIO;
  if (!e && fsync(fileno(af->f)) != 0 && errno != EINVAL && errno != EROFS) e = errno;
  int rc = fclose(af->f);
  af->f = NULL;
  if (!e && rc != 0) e = errno ? errno : EIO;
  if (!e && rename(af->tmp, af->path) != 0) e = errno;
  if (e) {
    cnn_atomic_abort(af);
    return cnn_error_set("%s: write failed (%s)", af->path, strerror(e));
  }
  free(af->tmp);
  af->tmp = NULL;
  return 0;
}
