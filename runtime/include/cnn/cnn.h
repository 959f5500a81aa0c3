/** The whole public C API of libcnn in one include: tensors and their math, autograd and the
 * differentiable ops, the file formats, errors and the version. docs/C_API.md describes each
 * header; link with `pkg-config --cflags --libs cnn` or CMake's `find_package(cnn)` (cnn::cnn). */
#ifndef CNN_CNN_H
#define CNN_CNN_H

#include "cnn/autograd.h"
#include "cnn/elementwise.h"
#include "cnn/error.h"
#include "cnn/format.h"
#include "cnn/idx.h"
#include "cnn/image_io.h"
#include "cnn/join.h"
#include "cnn/jpeg_io.h"
#include "cnn/layer_params.h"
#include "cnn/matmul.h"
#include "cnn/ops.h"
#include "cnn/ops_conv.h"
#include "cnn/ops_nn.h"
#include "cnn/parallel.h"
#include "cnn/png_io.h"
#include "cnn/random.h"
#include "cnn/reduce.h"
#include "cnn/rng.h"
#include "cnn/safetensors.h"
#include "cnn/tensor.h"
#include "cnn/version.h"

#endif
