/* A scratch directory for the C tests that write files (test_io.c, test_idx_u8.c): made by
 * tmpfiles_init, removed with everything in it by tmpfiles_cleanup; paths into it from tmp_path stay
 * valid for the next 7 calls. Include after check.h. */
#ifndef CNN_TESTS_TMPFILES_H
#define CNN_TESTS_TMPFILES_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

static char dir[64];

/* 0 on success; prefix like "cnn_test_io" */
static inline int tmpfiles_init(const char *prefix) {
  snprintf(dir, sizeof dir, "/tmp/%s_XXXXXX", prefix);
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return -1;
  }
  return 0;
}

static inline void tmpfiles_cleanup(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static inline char *tmp_path(const char *name) {
  static char buf[8][256];
  static int k;
  char *p = buf[k++ % 8];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

static inline void write_file(const char *path, const void *data, size_t n) {
  /* a fresh inode each time: truncating a just-written file makes ext4 flush it (auto_da_alloc),
   * which turns thousands of small rewrites into seconds of disk waits */
  unlink(path);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(2);
  }
  fclose(f);
}

static inline void write_gz(const char *path, const unsigned char *data, size_t n) {
  gzFile gz = gzopen(path, "wb9");
  gzwrite(gz, data, (unsigned)n);
  gzclose(gz);
}

/* the whole file (malloc'd, caller frees) and its length in *n; NULL if it cannot be opened */
static inline unsigned char *read_file(const char *path, size_t *n) {
  *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)len + 1);
  *n = fread(b, 1, (size_t)len, f);
  fclose(f);
  return b;
}

#endif
