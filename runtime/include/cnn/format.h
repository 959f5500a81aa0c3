/** The text form of a tensor, as PyTorch prints it. Values with a shared width and precision,
 * nested brackets, rows and columns elided with "..." past a threshold, then the shape and dtype:
 * "tensor([[1., 2.],\n        [3., 4.]])\n[float32 tensor of shape {2, 2}]". */
#ifndef CNN_FORMAT_H
#define CNN_FORMAT_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The text of t, values then the "[float32 tensor of shape {2, 2}]" line, as cnn's print shows it;
 * format_values gives the values part alone ("tensor([...])").
 * Ownership: returns a string from malloc, which the caller frees with free(); NULL with the error
 * set on failure. t is borrowed. */
char *cnn_format_tensor(const cnn_tensor *t);
char *cnn_format_values(const cnn_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
