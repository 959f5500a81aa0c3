/* Temporary-file-then-rename writes (see atomic_file.h). Where the file system has O_TMPFILE
 * (ext4, xfs, btrfs, tmpfs) the file has no name while it is written, so a writer killed
 * mid-write (kill -9, a power cut) leaves nothing behind; at commit it is linked under a
 * temporary name and renamed over the destination at once. Elsewhere it is created under that
 * temporary name, and a killed writer leaves it. The temporary name carries the pid and a counter
 * and is made with O_EXCL (or linkat, which fails on a name that exists), so concurrent writers
 * (search workers, ranks) never share one; rename within a folder is atomic on POSIX file
 * systems. A symlink keeps pointing at the new file (a dangling one at the file it names, now
 * made); a device or a pipe is written as it is. */
#define _GNU_SOURCE /* O_TMPFILE */
#include "io/atomic_file.h"
#include "cnn/error.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned counter;

/* the file renamed over: path, or the one a symlink at path points to */
static const char *target(const cnn_atomic_file *af) { return af->resolved ? af->resolved : af->path; }

static size_t tmp_size(const cnn_atomic_file *af) { return strlen(target(af)) + 48; }

static void next_tmp_name(cnn_atomic_file *af) {
  snprintf(af->tmp, tmp_size(af), "%s.tmp-%ld-%u", target(af), (long)getpid(),
           __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
}

/* Frees af's names; returns rc. */
static int done(cnn_atomic_file *af, int rc) {
  free(af->tmp);
  free(af->resolved);
  af->tmp = af->resolved = NULL;
  return rc;
}

/* An unnamed file in path's folder (O_TMPFILE), or -1 where the kernel or the file system has
 * none, or where /proc, through which commit names it, is missing (a chroot). */
static int open_unnamed(const char *path) {
#ifdef O_TMPFILE
  if (access("/proc/self/fd", X_OK) != 0) return -1;
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

/* Where the dangling symlink path points (its text, relative to the link's folder unless absolute),
 * as the file to create: a shell's `> link` writes there too. NULL when that cannot be read. */
static char *dangling_target(const char *path) {
  char link[4096];
  ssize_t n = readlink(path, link, sizeof link - 1);
  if (n <= 0) return NULL;
  link[n] = '\0';
  const char *slash = strrchr(path, '/');
  if (link[0] == '/' || !slash) return strdup(link);
  size_t dir = (size_t)(slash - path) + 1, len = dir + (size_t)n + 1;
  char *out = malloc(len);
  if (out) snprintf(out, len, "%.*s%s", (int)dir, path, link);
  return out;
}

int cnn_atomic_open(cnn_atomic_file *af, const char *path) {
  *af = (cnn_atomic_file){.path = path};
  struct stat st, lst;
  const bool exists = stat(path, &st) == 0;
  /* refused before anything is written: the rename at the end would fail after the whole file */
  const size_t len = strlen(path);
  if ((exists && S_ISDIR(st.st_mode)) || (len > 0 && path[len - 1] == '/'))
    return cnn_error_set("%s: is a %s, not a file name", path, exists ? "directory" : "folder path (it ends with /)");
  if (exists && !S_ISREG(st.st_mode)) {
    /* a device or a pipe (/dev/null, a FIFO): written as it is, as open(path, "w") writes it (a
     * rename would put a file in its place) */
    af->f = fopen(path, "wb");
    if (!af->f) return cnn_error_set("%s: cannot open (%s)", path, strerror(errno));
    af->direct = true;
    return 0;
  }
  if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
    af->resolved = exists ? realpath(path, NULL) : dangling_target(path); /* the link stays a link */
  af->tmp = malloc(tmp_size(af));
  if (!af->tmp) return done(af, cnn_error_set("out of memory"));
  int fd = open_unnamed(target(af));
  af->unnamed = fd >= 0;
  for (int attempt = 0; fd < 0 && attempt < 100; attempt++) {
    next_tmp_name(af);
    fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) return done(af, cnn_error_set("%s: cannot create (%s)", path, strerror(errno)));
  }
  if (fd < 0) return done(af, cnn_error_set("%s: cannot create a temporary file beside it", path));
  if (exists) fchmod(fd, st.st_mode & 07777); /* the file replaced keeps its permissions */
  af->f = fdopen(fd, "wb");
  if (!af->f) {
    int e = errno;
    close(fd);
    if (!af->unnamed) unlink(af->tmp);
    return done(af, cnn_error_set("%s: cannot create (%s)", path, strerror(e)));
  }
  return 0;
}

void cnn_atomic_abort(cnn_atomic_file *af) {
  if (af->f) fclose(af->f); /* an unnamed file vanishes with its last descriptor */
  if (af->tmp && !af->unnamed && !af->direct) unlink(af->tmp);
  af->f = NULL;
  done(af, 0);
}

/* The unnamed file linked under a new temporary name: 0 or an errno. */
static int link_unnamed(cnn_atomic_file *af) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fileno(af->f));
  for (int attempt = 0; attempt < 100; attempt++) {
    next_tmp_name(af);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, af->tmp, AT_SYMLINK_FOLLOW) == 0) return 0;
    if (errno != EEXIST) return errno;
  }
  return EEXIST;
}

int cnn_atomic_commit(cnn_atomic_file *af) {
  int e = 0;
  if (fflush(af->f) != 0 || ferror(af->f)) e = errno ? errno : EIO;
  if (!e && !af->direct && fsync(fileno(af->f)) != 0 && errno != EINVAL && errno != EROFS) e = errno;
  bool named = !af->unnamed && !af->direct;
  /* from the unnamed file's link to the rename, signals wait: a SIGTERM or Ctrl-C in between left
   * the full file under its temporary name (SIGKILL alone still can, in these few system calls) */
  sigset_t all, old;
  sigfillset(&all);
  const bool masked = af->unnamed && pthread_sigmask(SIG_BLOCK, &all, &old) == 0;
  if (!e && af->unnamed && (e = link_unnamed(af)) == 0) named = true;
  int rc = fclose(af->f);
  af->f = NULL;
  if (!e && rc != 0) e = errno ? errno : EIO;
  if (!e && !af->direct && rename(af->tmp, target(af)) != 0) e = errno;
  if (e && named) unlink(af->tmp);
  if (masked) pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e) return done(af, cnn_error_set("%s: write failed (%s)", af->path, strerror(e)));
  return done(af, 0);
}
