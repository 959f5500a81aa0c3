/* libFuzzer harness for the IDX readers (cnn_idx_load and cnn_idx_load_u8, raw and gzip).
 * Each input is written to an in-memory file and checked by fuzz_readers.h, which
 * test_fuzz_regressions.c shares; a broken contract aborts, memory errors are ASan's. */
#define _GNU_SOURCE
#include "fuzz_readers.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fuzz_check_idx(data, size)) abort();
  return 0;
}
