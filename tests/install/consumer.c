/* A C program that uses only the installed libcnn: the public headers (through cnn/cnn.h) and the
 * library, found by pkg-config or by CMake's find_package (tests/install/check_install.sh builds it
 * both ways, shared and static). It checks the version macros against the library, a small
 * autograd computation against values worked out by hand, and the error road; prints "ok". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/cnn.h"

#if CNN_VERSION_NUMBER != CNN_VERSION_MAJOR * 10000 + CNN_VERSION_MINOR * 100 + CNN_VERSION_PATCH
#error "CNN_VERSION_NUMBER does not match its parts"
#endif

static int failures;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

int main(void) {
  CHECK(strcmp(cnn_version(), CNN_VERSION_STRING) == 0);
  CHECK(cnn_version_number() == CNN_VERSION_NUMBER);

  /* y = sum(x * x) over x = [1, 2, 3]: y = 14, dy/dx = 2x = [2, 4, 6] */
  int64_t n = 3;
  cnn_tensor *x = cnn_tensor_arange(1, 4, 1, CNN_FLOAT32);
  CHECK(x && x->ndim == 1 && x->size[0] == n);
  x->requires_grad = true;
  cnn_tensor *sq = cnn_op_binary(CNN_MUL, x, x);
  cnn_tensor *y = cnn_op_sum(sq, CNN_ALL_DIMS, false);
  CHECK(y && cnn_tensor_get_flat(y, 0) == 14.0);
  CHECK(cnn_ag_backward(1, &y, NULL, false) == 0);
  CHECK(x->grad != NULL);
  for (int64_t i = 0; x->grad && i < n; i++) CHECK(cnn_tensor_get_flat(x->grad, i) == 2.0 * (double)(i + 1));

  /* errors: NULL and a message, and the library goes on */
  int64_t bad[2] = {2, 2};
  cnn_tensor *v = cnn_tensor_view(x, 2, bad);
  CHECK(v == NULL && strstr(cnn_error_get(), "shape") != NULL);
  cnn_error_clear();
  CHECK(strcmp(cnn_error_get(), "") == 0);

  char *text = cnn_format_tensor(y);
  CHECK(text && strncmp(text, "tensor(14.", 10) == 0);
  free(text);

  cnn_tensor_release(y);
  cnn_tensor_release(sq);
  cnn_tensor_release(x);
  if (failures) return 1;
  printf("ok: libcnn %s\n", cnn_version());
  return 0;
}
