/* For the file writers (io: png_io.c, jpeg_io.c, safetensors.c; plot: draw.c): a file is written in
 * the destination's folder, unnamed where the file system allows (a writer killed mid-write leaves
 * nothing) or under a temporary name, and renamed over the destination only once complete, so a
 * reader never sees a partial file and a failed write leaves the old file in place. A symlink at
 * the destination keeps pointing at the new file, which keeps the old one's permissions; a
 * device or a pipe there (/dev/null) is written as it is. */
#ifndef CNN_ATOMIC_FILE_H
#define CNN_ATOMIC_FILE_H

#include <stdbool.h>
#include <stdio.h>

typedef struct cnn_atomic_file {
  FILE *f;
  char *tmp;        /* the temporary path (malloc'd; named at commit when unnamed) */
  char *resolved;   /* the file a symlink at path points to (malloc'd), or NULL */
  bool unnamed;     /* written through O_TMPFILE */
  bool direct;      /* path is a device or a pipe, written as it is */
  const char *path; /* the destination (borrowed) */
} cnn_atomic_file;

/* Creates the temporary file (mode 0666 less the umask). 0, or -1 with the error set: a folder,
 * or a path ending in '/', is refused here, before anything is written. */
int cnn_atomic_open(cnn_atomic_file *af, const char *path);
/* Flushes, syncs, closes and renames over the destination. 0, or -1 with the error set (the
 * temporary file is then removed). Either way af is finished. */
int cnn_atomic_commit(cnn_atomic_file *af);
/* Closes and removes the temporary file. Safe on a file that failed to open. */
void cnn_atomic_abort(cnn_atomic_file *af);

#endif
