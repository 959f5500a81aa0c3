/* autograd.c's engine where an op of the runtime's own breaks the recording contract: a backward
 * that reads a saved slot its record did not keep is an error naming the node, and the graph,
 * the leaf and the engine stay usable. (A new op whose keep list left out what its backward reads
 * failed with "backward: failed" and no reason.) */
#include "autograd/autograd.h"
#include "check.h"
#include "cnn/autograd.h"
#include "cnn/error.h"
#include "cnn/tensor.h"

#include <string.h>

/* reads saved slot 1 of a record that kept one tensor */
static int short_keep_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  (void)gout, (void)gin;
  cnn_tensor *x = NULL;
  if (cnn_ag_saved(n, 0, &x)) return -1;
  return cnn_ag_saved(n, 1, &x);
}

static void test_saved_slot_past_the_record(void) {
  static const cnn_ag_op op = {"ShortKeepBackward", short_keep_backward, 0, NULL};
  int64_t two = 2;
  cnn_tensor *x = cnn_tensor_full(CNN_FLOAT32, 1, &two, 1.5);
  CHECK(x != NULL);
  if (!x) return;
  x->requires_grad = true;
  cnn_tensor *y = cnn_tensor_full(CNN_FLOAT32, 1, &two, 3.0);
  const cnn_tensor *in[1] = {x}, *keep[1] = {x};
  CHECK(y && cnn_ag_record(y, &op, NULL, 1, in, 1, keep) == 0);
  cnn_tensor *seed = cnn_tensor_full(CNN_FLOAT32, 1, &two, 1.0);
  cnn_error_clear();
  CHECK(cnn_ag_backward(1, &y, &seed, true) == -1);
  CHECK(strcmp(cnn_error_get(), "ShortKeepBackward reads saved tensor 1, but its record kept 1: the op's list of "
                                "what it saves is short") == 0);
  CHECK(x->grad == NULL);
  cnn_tensor_release(seed);
  cnn_tensor_release(y);
  cnn_tensor_release(x);
}

int main(void) {
  test_saved_slot_past_the_record();
  return check_summary("test_autograd");
}
