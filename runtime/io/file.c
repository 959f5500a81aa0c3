/* Opening files for reading (see file.h): open without blocking, look at what was opened, and
 * only then read. Checking before opening would leave a window for the path to change. */
#include "io/file.h"
#include "cnn/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m) {
  return S_ISDIR(m)    ? "a folder"
         : S_ISFIFO(m) ? "a named pipe"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
         : S_ISSOCK(m) ? "a socket"
                       : "not a file";
}

static int check_mode(const char *path, const struct stat *st) {
  if (S_ISREG(st->st_mode)) return 0;
  return cnn_error_set("%s: not a regular file (%s)", path, kind_of(st->st_mode));
}

int cnn_file_open_fd(const char *path) {
  /* O_NONBLOCK: opening a named pipe for reading would otherwise wait for a writer */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return cnn_error_set("%s: cannot open (%s)", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return cnn_error_set("%s: cannot read its status (%s)", path, strerror(e));
  }
  if (check_mode(path, &st)) {
    close(fd);
    return -1;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    return cnn_error_set("%s: cannot open (%s)", path, strerror(e));
  }
  return fd;
}

FILE *cnn_file_open(const char *path) {
  int fd = cnn_file_open_fd(path);
  if (fd < 0) return NULL;
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    int e = errno;
    close(fd);
    cnn_error_set("%s: cannot open (%s)", path, strerror(e));
  }
  return f;
}

int cnn_file_check(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return cnn_error_set("%s: cannot open (%s)", path, strerror(errno));
  return check_mode(path, &st);
}
