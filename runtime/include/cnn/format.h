/* Text form of a tensor, as PyTorch prints it: values with a shared width and precision, nested
 * brackets, rows and columns elided with "..." past a threshold, then the shape and dtype,
 * e.g. "tensor([[1., 2.],\n        [3., 4.]])\n[float32 tensor of shape {2, 2}]" (see format.c for the exact rules). */
#ifndef CNN_FORMAT_H
#define CNN_FORMAT_H

#include "tensor.h"

/* Returns a malloc'd string (caller frees), or NULL with the error set. */
char *cnn_format_tensor(const cnn_tensor *t);
/* The same without the trailing "[... ]" line: just "tensor(...)"-style values. */
char *cnn_format_values(const cnn_tensor *t);

#endif
