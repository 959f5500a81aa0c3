/** Matrix products: float32 through the runtime's GEMM (its AVX-512 kernel, else OpenBLAS), int64 by a plain loop (wrapping, as PyTorch). No autograd here. */
#ifndef CNN_MATMUL_H
#define CNN_MATMUL_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** torch.matmul semantics: 1-d x 1-d -> 0-d dot; 2-d x 2-d; 1-d operands get a dimension
 * prepended/appended and removed after; >= 3-d batched with broadcast batch dims.
 * Any strides in (transposed 2-d views use sgemm's trans flags, others are copied). */
cnn_tensor *cnn_mm_matmul(const cnn_tensor *a, const cnn_tensor *b);
/** Strictly 2-d (m,k) x (k,n). */
cnn_tensor *cnn_mm_mm(const cnn_tensor *a, const cnn_tensor *b);

#ifdef __cplusplus
}
#endif
#endif
