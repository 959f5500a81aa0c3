/* classify: runs a LeNet-5 trained by cnnlua on images, from C alone (libcnn, no Lua).
 *
 *   classify CHECKPOINT IMAGES.idx[.gz] [LABELS.idx[.gz]]
 *   classify CHECKPOINT IMAGE.png|.jpg...
 *
 * CHECKPOINT is a safetensors file holding cnn.models.lenet5's weights: the checkpoint that
 * examples/train_lenet.lua writes (its tensors named "model.features.0.weight", ...) or a plain
 * `cnn.save(path, model:state_dict())` ("features.0.weight", ...). Images are an IDX file of
 * (N, 28, 28) bytes (raw or gzip, as MNIST and Fashion-MNIST ship), or PNG/JPEG files of 28x28
 * pixels (grey, or colour for a model with 3 input channels). Pixels become [0, 1] floats, as
 * cnn.data.mnist and cnn.image.load give them to the model. One line per image, "INDEX: CLASS"
 * ("FILE: CLASS" for image files; classes 0-based, as the IDX labels store them; "INDEX: CLASS
 * (label L)" with labels), and with labels "accuracy: NN.NN%" last: the same number
 * as cnnlua's evaluation of that checkpoint on those images (the same kernels, in the same batches
 * of 250).
 *
 * Built by CMake beside cnnlua, or against an installed libcnn:
 *   cc classify.c $(pkg-config --cflags --libs cnn) -o classify */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/cnn.h"

#define BATCH 250 /* cnn.trainer's test batch: the same batches give the same bits */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "classify: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

/* the result of a libcnn call, or the library's error message and exit */
static cnn_tensor *ok(cnn_tensor *t, const char *what) {
  if (!t) die("%s: %s", what, cnn_error_get());
  return t;
}

/* ---- the model ------------------------------------------------------------------------------ */

/* LeNet-5 as cnn.models.lenet5 builds it:
 *   features:   conv 1->6 5x5 pad 2, ReLU, max-pool 2, conv 6->16 5x5, ReLU, max-pool 2
 *   classifier: 400 -> 120, ReLU, 120 -> 84, ReLU, 84 -> classes */
typedef struct lenet {
  cnn_safetensors file;           /* owns the tensors below */
  const cnn_tensor *conv_w[2], *conv_b[2];
  const cnn_tensor *fc_w[3], *fc_b[3];
  int64_t channels, classes;
} lenet;

static const cnn_tensor *find(const cnn_safetensors *st, const char *prefix, const char *name) {
  char full[256];
  snprintf(full, sizeof full, "%s%s", prefix, name);
  for (size_t i = 0; i < st->n; i++)
    if (strcmp(st->names[i], full) == 0) return st->tensors[i];
  return NULL;
}

/* t must be float32 of the given shape (sizes of -1 are read from the file) */
static const cnn_tensor *param(const lenet *m, const char *prefix, const char *name, int ndim, const int64_t *size) {
  const cnn_tensor *t = find(&m->file, prefix, name);
  if (!t) die("the checkpoint has no tensor %s%s", prefix, name);
  bool match = t->dtype == CNN_FLOAT32 && t->ndim == ndim;
  for (int d = 0; match && d < ndim; d++) match = size[d] < 0 || t->size[d] == size[d];
  if (!match) die("%s%s does not have LeNet-5's shape", prefix, name);
  return t;
}

static void lenet_load(lenet *m, const char *path) {
  if (cnn_safetensors_load(path, &m->file)) die("%s", cnn_error_get());
  /* a trainer checkpoint keeps the model under "model."; a state_dict has no prefix */
  const char *prefix = NULL;
  static const char *const prefixes[] = {"model.", "", "module."};
  for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes && !prefix; i++)
    if (find(&m->file, prefixes[i], "features.0.weight")) prefix = prefixes[i];
  if (!prefix) die("%s: no LeNet-5 weights in it (no features.0.weight or model.features.0.weight)", path);

  m->conv_w[0] = param(m, prefix, "features.0.weight", 4, (int64_t[]){6, -1, 5, 5});
  m->channels = m->conv_w[0]->size[1];
  m->conv_b[0] = param(m, prefix, "features.0.bias", 1, (int64_t[]){6});
  m->conv_w[1] = param(m, prefix, "features.3.weight", 4, (int64_t[]){16, 6, 5, 5});
  m->conv_b[1] = param(m, prefix, "features.3.bias", 1, (int64_t[]){16});
  m->fc_w[0] = param(m, prefix, "classifier.0.weight", 2, (int64_t[]){120, 400});
  m->fc_b[0] = param(m, prefix, "classifier.0.bias", 1, (int64_t[]){120});
  m->fc_w[1] = param(m, prefix, "classifier.2.weight", 2, (int64_t[]){84, 120});
  m->fc_b[1] = param(m, prefix, "classifier.2.bias", 1, (int64_t[]){84});
  m->fc_w[2] = param(m, prefix, "classifier.4.weight", 2, (int64_t[]){-1, 84});
  m->classes = m->fc_w[2]->size[0];
  m->fc_b[2] = param(m, prefix, "classifier.4.bias", 1, (int64_t[]){m->classes});
}

/* replaces *x by f(*x), releasing the old tensor */
static void step(cnn_tensor **x, cnn_tensor *y, const char *what) {
  ok(y, what);
  cnn_tensor_release(*x);
  *x = y;
}

/* x: (N, C, 28, 28) -> logits (N, classes) */
static cnn_tensor *lenet_forward(const lenet *m, const cnn_tensor *input) {
  cnn_conv2d_params conv = cnn_conv2d_default_params();
  cnn_pool2d_params pool = cnn_pool2d_default_params(2);
  cnn_tensor *x = cnn_tensor_retain((cnn_tensor *)input);
  for (int i = 0; i < 2; i++) {
    conv.pad_lo[0] = conv.pad_lo[1] = conv.pad_hi[0] = conv.pad_hi[1] = i == 0 ? 2 : 0;
    step(&x, cnn_op_conv2d(x, m->conv_w[i], m->conv_b[i], &conv), "conv2d");
    step(&x, cnn_op_unary(CNN_RELU, x, 0, 0), "relu");
    step(&x, cnn_op_max_pool2d(x, &pool, NULL), "max_pool2d");
  }
  step(&x, cnn_op_flatten(x, 1, -1), "flatten"); /* (N, 400) */
  for (int i = 0; i < 3; i++) {
    step(&x, cnn_op_linear(x, m->fc_w[i], m->fc_b[i]), "linear");
    if (i < 2) step(&x, cnn_op_unary(CNN_RELU, x, 0, 0), "relu");
  }
  return x;
}

/* ---- the images ----------------------------------------------------------------------------- */

static bool is_idx(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) die("%s: cannot open it", path);
  unsigned char head[4] = {0};
  size_t n = fread(head, 1, sizeof head, f);
  fclose(f);
  /* gzip (1f 8b) or IDX's own magic (0, 0, type, ndim) */
  return n >= 2 && ((head[0] == 0x1f && head[1] == 0x8b) || (n == 4 && head[0] == 0 && head[1] == 0));
}

/* (N, C, 28, 28) float32 in [0, 1] from one IDX file of N images */
static cnn_tensor *load_idx_images(const char *path, int64_t channels) {
  int type;
  cnn_tensor *t = ok(cnn_idx_load(path, 255, &type), "images");
  if (type != CNN_IDX_UBYTE || t->ndim != 3 || t->size[1] != 28 || t->size[2] != 28)
    die("%s: expected (N, 28, 28) ubyte images", path);
  if (channels != 1) die("%s: IDX images have 1 channel, the model expects %lld", path, (long long)channels);
  int64_t size[4] = {t->size[0], 1, 28, 28};
  step(&t, cnn_tensor_view(t, 4, size), "images");
  return t;
}

/* (N, C, 28, 28) from N image files, stacked */
static cnn_tensor *load_image_files(int n, char **paths, int64_t channels) {
  cnn_tensor **images = calloc((size_t)n, sizeof *images);
  if (!images) die("out of memory");
  for (int i = 0; i < n; i++) {
    images[i] = ok(cnn_image_load(paths[i], channels == 1 ? CNN_IMAGE_GRAY : CNN_IMAGE_RGB, true), "image");
    if (images[i]->size[0] != channels || images[i]->size[1] != 28 || images[i]->size[2] != 28)
      die("%s: expected a 28x28 image", paths[i]);
  }
  cnn_tensor *x = ok(cnn_op_stack(n, (const cnn_tensor *const *)images, 0), "stack");
  for (int i = 0; i < n; i++) cnn_tensor_release(images[i]);
  free(images);
  return x;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: classify CHECKPOINT IMAGES.idx[.gz] [LABELS.idx[.gz]]\n"
                    "       classify CHECKPOINT IMAGE.png|.jpg...\n");
    return 2;
  }
  lenet m;
  lenet_load(&m, argv[1]);

  cnn_tensor *images, *labels = NULL;
  char **files = NULL; /* the image files' names, when given as files */
  if (is_idx(argv[2])) {
    if (argc > 4) die("give one IDX file of images and at most one of labels");
    images = load_idx_images(argv[2], m.channels);
    if (argc == 4) {
      int type;
      labels = ok(cnn_idx_load(argv[3], 1, &type), "labels");
      if (labels->dtype != CNN_INT64 || labels->ndim != 1 || labels->size[0] != images->size[0])
        die("%s: expected %lld integer labels", argv[3], (long long)images->size[0]);
    }
  } else {
    images = load_image_files(argc - 2, argv + 2, m.channels);
    files = argv + 2;
  }

  cnn_ag_set_enabled(false); /* inference: no graph */
  int64_t n = images->size[0], correct = 0;
  for (int64_t start = 0; start < n; start += BATCH) {
    int64_t len = n - start < BATCH ? n - start : BATCH;
    cnn_tensor *x = ok(cnn_tensor_narrow(images, 0, start, len), "narrow");
    cnn_tensor *logits = lenet_forward(&m, x);
    cnn_tensor *values, *predicted;
    if (cnn_op_max(logits, 1, false, &values, &predicted)) die("argmax: %s", cnn_error_get());
    for (int64_t i = 0; i < len; i++) {
      int64_t p = cnn_tensor_get_flat_i64(predicted, i);
      if (labels) {
        int64_t y = cnn_tensor_get_flat_i64(labels, start + i);
        correct += p == y;
        printf("%lld: %lld (label %lld)\n", (long long)(start + i), (long long)p, (long long)y);
      } else if (files) {
        printf("%s: %lld\n", files[start + i], (long long)p);
      } else {
        printf("%lld: %lld\n", (long long)(start + i), (long long)p);
      }
    }
    cnn_tensor_release(predicted);
    cnn_tensor_release(values);
    cnn_tensor_release(logits);
    cnn_tensor_release(x);
  }
  /* as cnn.trainer prints it: 100 times the fraction correct */
  if (labels) printf("accuracy: %.2f%%\n", 100 * (n ? (double)correct / (double)n : 0.0));

  cnn_tensor_release(labels);
  cnn_tensor_release(images);
  cnn_safetensors_clear(&m.file);
  return 0;
}
