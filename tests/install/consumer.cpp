// The installed headers from C++ (check_install.sh): every public header declares C linkage, so a
// C++ program links against libcnn as it is (without the guards, cnn_version() was an undefined
// reference to a C++-mangled name). Prints "ok".
#include <cstdio>
#include <cstring>

#include "cnn/cnn.h"

int main() {
  if (std::strcmp(cnn_version(), CNN_VERSION_STRING) != 0) return 1;
  cnn_tensor *x = cnn_tensor_arange(1, 4, 1, CNN_FLOAT32);
  cnn_tensor *y = x ? cnn_op_sum(x, CNN_ALL_DIMS, false) : nullptr; // 1 + 2 + 3
  const bool ok = y && cnn_tensor_get_flat(y, 0) == 6.0;
  cnn_tensor_release(y);
  cnn_tensor_release(x);
  if (!ok) return 1;
  std::printf("ok: libcnn %s from C++\n", cnn_version());
  return 0;
}
