/* Replays the fuzzers' seeds and saved crashers (tests/fuzz/corpus/<format>/ and
 * tests/fuzz/crashers/<format>/) through the checks the libFuzzer harnesses run (fuzz_readers.h):
 * every file must load or fail with a message that starts with its path, never crash (the
 * sanitizer build catches memory errors), and never make the process's peak memory pass
 * MAX_RSS_MB: every file here is a few KB, and the readers bound what they allocate by the file's
 * size. The folders are found from this file's own path, or from the repository root as argv[1]. */
#define _GNU_SOURCE
#include "../fuzz/fuzz_readers.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_RSS_MB 512

static int files, failures;
static bool rss_reported;

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  unsigned char *b = malloc(cap);
  for (size_t r; b && (r = fread(b + len, 1, cap - len, f)) > 0;) {
    len += r;
    if (len == cap) {
      unsigned char *nb = realloc(b, cap *= 2);
      if (!nb) free(b);
      b = nb;
    }
  }
  fclose(f);
  *n = len;
  return b;
}

/* Runs every file of root/tests/fuzz/<kind>/<format>/ through check; a missing folder is empty. */
static void replay(const char *root, const char *kind, const char *format, int (*check)(const uint8_t *, size_t)) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tests/fuzz/%s/%s", root, kind, format);
  DIR *d = opendir(dir);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t n = 0;
    unsigned char *data = slurp(path, &n);
    if (!data) {
      fprintf(stderr, "cannot read %s\n", path);
      failures++;
      continue;
    }
    files++;
    if (check(data, n)) {
      fprintf(stderr, "  ^ from %s\n", path);
      failures++;
    }
    free(data);
    struct rusage ru; /* ru_maxrss (KB) is a high-water mark: name the first file that raised it too far */
    if (!rss_reported && getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > MAX_RSS_MB * 1024L) {
      fprintf(stderr, "%s: the process peaked at %ld MB reading this %zu-byte file\n", path, ru.ru_maxrss / 1024, n);
      rss_reported = true;
      failures++;
    }
  }
  closedir(d);
}

int main(int argc, char **argv) {
  char root[4096];
  if (argc > 1) snprintf(root, sizeof root, "%s", argv[1]);
  else { /* __FILE__ is .../tests/c/test_fuzz_regressions.c (CMake passes absolute source paths) */
    snprintf(root, sizeof root, "%s", __FILE__);
    char *at = strstr(root, "tests/c/test_fuzz_regressions.c");
    if (at == root) snprintf(root, sizeof root, ".");
    else if (at) at[-1] = '\0';
  }
  static const struct {
    const char *format;
    int (*check)(const uint8_t *, size_t);
  } readers[] = {{"idx", fuzz_check_idx},
                 {"png", fuzz_check_png},
                 {"jpeg", fuzz_check_jpeg},
                 {"safetensors", fuzz_check_safetensors}};
  for (size_t i = 0; i < sizeof readers / sizeof readers[0]; i++) {
    int before = files;
    replay(root, "corpus", readers[i].format, readers[i].check);
    if (files == before) { /* the seeds are committed: finding none means the path is wrong */
      fprintf(stderr, "no seeds found in %s/tests/fuzz/corpus/%s\n", root, readers[i].format);
      failures++;
    }
    replay(root, "crashers", readers[i].format, readers[i].check);
  }
  printf("%d files replayed, %d failed\n", files, failures);
  return failures ? 1 : 0;
}
