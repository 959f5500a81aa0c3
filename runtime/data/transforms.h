/* Image transforms with torchvision's names and semantics, one image (C, H, W) at a time, as a
 * list of plain-data operations (a pipeline) that any thread can run: the data loader's worker
 * threads run them without Lua, drawing their random parameters from a generator of the sample's
 * own (rng.h's cnn_rng), so the result depends on the seed and never on which thread ran it.
 * The front ends for tensors from Lua (one image, or a batch image by image) are here too. */
#ifndef CNN_TRANSFORMS_H
#define CNN_TRANSFORMS_H

#include <stdbool.h>
#include <stdint.h>

#include "cnn/image_io.h"
#include "cnn/rng.h"
#include "cnn/tensor.h"
#include "kernels/resize.h"

#define CNN_TF_MAX_CHANNELS 64

typedef enum cnn_tf_kind {
  CNN_TF_RESIZE,              /* size (1 value: the shorter side; 2: h, w), max_size, interp, antialias */
  CNN_TF_CENTER_CROP,         /* size h, w; zero padding when the image is smaller */
  CNN_TF_CROP,                /* box top, left, h, w (may reach outside: zero padding) */
  CNN_TF_RESIZED_CROP,        /* box, then size h, w with interp, antialias */
  CNN_TF_RANDOM_CROP,         /* size h, w after pad (rows, columns) of fill */
  CNN_TF_RANDOM_RESIZED_CROP, /* size h, w, scale, ratio, interp, antialias */
  CNN_TF_HFLIP,
  CNN_TF_VFLIP,
  CNN_TF_RANDOM_HFLIP,     /* p */
  CNN_TF_RANDOM_VFLIP,     /* p */
  CNN_TF_BRIGHTNESS,       /* factor */
  CNN_TF_CONTRAST,         /* factor */
  CNN_TF_SATURATION,       /* factor */
  CNN_TF_HUE,              /* factor in [-0.5, 0.5] */
  CNN_TF_COLOR_JITTER,     /* range[4] for brightness, contrast, saturation, hue; on[4] */
  CNN_TF_ROTATE,           /* angle (degrees, counter-clockwise), interp, expand, center, fill */
  CNN_TF_RANDOM_ROTATION,  /* degrees[2], interp, expand, center, fill */
  CNN_TF_GRAYSCALE,        /* channels (1 or 3) */
  CNN_TF_RANDOM_GRAYSCALE, /* p */
  CNN_TF_NORMALIZE,        /* mean, std */
} cnn_tf_kind;

/* One operation and its parameters (only those of its kind are read). */
typedef struct cnn_tf {
  cnn_tf_kind kind;
  int nsize; /* 1 or 2 */
  int64_t size[2];
  int64_t max_size;  /* RESIZE with one size: 0 for none */
  int64_t box[4];    /* top, left, height, width */
  int64_t pad[2];    /* RANDOM_CROP: rows above and below, columns left and right */
  double fill_value; /* RANDOM_CROP */
  cnn_interp interp;
  bool antialias;
  double scale[2], ratio[2]; /* RANDOM_RESIZED_CROP */
  double p;
  double factor;
  double range[4][2]; /* COLOR_JITTER */
  bool on[4];
  double degrees[2]; /* RANDOM_ROTATION; ROTATE uses degrees[0] */
  bool expand;
  bool has_center;
  double center[2]; /* x, y in pixels */
  int nfill;        /* 0: no fill step (rotate only); 1: every channel; else per channel */
  float fill[CNN_TF_MAX_CHANNELS];
  int channels; /* GRAYSCALE */
  int nmean, nstd;
  float mean[CNN_TF_MAX_CHANNELS], std[CNN_TF_MAX_CHANNELS];
} cnn_tf;

/* The operation's name as the Lua API spells it ("random_resized_crop"). */
const char *cnn_tf_name(cnn_tf_kind kind);

/* Checks an operation's parameters (sizes >= 1, probabilities in [0, 1], ranges ordered, ...):
 * 0, or -1 with the error set. Pipelines are checked when built, so running one fails only on
 * images it cannot take (a channel count, a crop larger than the image). */
int cnn_tf_check(const cnn_tf *op);

/* torchvision's output size for resize: one size s scales the shorter side to s (the longer to
 * int(s * long / short), then capped at max_size), two are (h, w). */
void cnn_tf_resize_size(int64_t h, int64_t w, const cnn_tf *op, int64_t *oh, int64_t *ow);

/* The crop RandomResizedCrop.get_params picks for an h x w image: up to 10 tries of a random area
 * fraction in scale and a log-uniform aspect ratio in ratio (sides rounded half to even, as
 * Python's round), kept when it fits, at a uniform position; else the centre fallback (the whole
 * image clamped to the ratio range). box: top, left, height, width. */
void cnn_tf_random_resized_crop_box(int64_t h, int64_t w, const double scale[2], const double ratio[2], cnn_rng *g,
                                    int64_t box[4]);

/* Runs ops[0..n) on x, a float32 (C, H, W) tensor (any strides; borrowed), drawing the random
 * parameters from g (g may be NULL when no operation is random). Returns a new contiguous
 * reference (x itself, retained, for an empty pipeline), or NULL with the error set. No thread
 * pool, no globals: safe on any thread. */
cnn_tensor *cnn_tf_run(const cnn_tf *ops, int n, cnn_tensor *x, cnn_rng *g);

/* Decoded bytes straight into the first operation, for the data loader: when op crops or resizes
 * (resize, center_crop, crop, resized_crop, random_resized_crop), cnn_tf_window gives the window
 * box = {top, left, height, width} of an h x w image it reads (drawing its random parameters from
 * g exactly as cnn_tf_run would), its output size and whether it resizes, and returns true; a
 * reader can then decode just that window. cnn_tf_window8 computes op's output from im, the bytes
 * of a rectangle of the image that holds the window (im->top, im->left: where it lies), reading
 * them as byte / 255: the same floats as running op on the decoded float image. */
bool cnn_tf_window(const cnn_tf *op, int64_t h, int64_t w, cnn_rng *g, int64_t box[4], int64_t *oh, int64_t *ow,
                   bool *resize);
cnn_tensor *cnn_tf_window8(const cnn_image8 *im, int64_t h, int64_t w, const int64_t box[4], int64_t oh, int64_t ow,
                           bool resize, cnn_interp interp, bool antialias);
/* cnn_tf_run on a whole decoded image im, its first operation reading the bytes (cnn_tf_window8). */
cnn_tensor *cnn_tf_run8(const cnn_tf *ops, int n, const cnn_image8 *im, cnn_rng *g);

/* The pipeline on a tensor from Lua: one image (C, H, W), or a batch (N, C, H, W) image by image
 * (the outputs must have one shape; they are stacked). Image i's generator is seeded with one
 * draw of the runtime's stream (cnn.manual_seed repeats it), drawn for every image in order
 * before any work, so results never depend on the thread count. New reference or NULL. */
cnn_tensor *cnn_tf_apply(const cnn_tf *ops, int n, const cnn_tensor *x);

/* torchvision's rotation matrix for rotate(angle, center): the map from output pixel (from the
 * centre) to input pixel used by cnn_affine_sample, and the output size (expand: the rotated
 * image's bounding box, as _compute_affine_output_size; else the input's). */
void cnn_tf_rotation(double angle, bool has_center, const double center[2], int64_t h, int64_t w, bool expand,
                     float theta[6], int64_t *oh, int64_t *ow);

#endif
