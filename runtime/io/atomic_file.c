/* Temporary-file-then-rename writes (see atomic_file.h). The temporary name carries the pid and
 * a counter and is created with O_EXCL, so concurrent writers (search workers, ranks) never
 * share one; rename within a folder is atomic on POSIX file systems. */
#include "io/atomic_file.h"
#include "cnn/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A writer killed mid-write (kill -9, a power cut) leaves its whole temporary file behind, a
 * checkpoint's size each time. The next write to the same path removes those of processes that no
 * longer run and that nothing has written for a minute (a live writer on another machine sharing
 * the folder, whose pid means nothing here, keeps writing its file). Best effort: errors ignored. */
static void remove_leftovers(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
  if (!slash) strcpy(dir, ".");
  else if (slash == path) strcpy(dir, "/");
  else {
    size_t n = (size_t)(slash - path);
    if (n >= sizeof dir) return;
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  DIR *d = opendir(dir);
  if (!d) return;
  const size_t blen = strlen(base);
  const time_t now = time(NULL);
  for (struct dirent *e; (e = readdir(d));) {
    const char *name = e->d_name;
    if (strncmp(name, base, blen) != 0 || strncmp(name + blen, ".tmp-", 5) != 0) continue;
    char *end;
    long pid = strtol(name + blen + 5, &end, 10);
    if (end == name + blen + 5 || *end != '-' || pid <= 0 || pid == (long)getpid()) continue;
    strtoul(end + 1, &end, 10);
    if (*end != '\0' || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    struct stat st;
    if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) || now - st.st_mtime < 60)
      continue;
    unlinkat(dirfd(d), name, 0);
  }
  closedir(d);
}

int cnn_atomic_open(cnn_atomic_file *af, const char *path) {
  static unsigned counter;
  remove_leftovers(path);
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
