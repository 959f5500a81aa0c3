/** Image files whatever their format. The format is read from the file's first bytes (PNG or
 * JPEG, never the extension), the EXIF orientation tag is applied, and every reader shares one
 * pixel limit checked before any image-sized allocation. */
#ifndef CNN_IMAGE_IO_H
#define CNN_IMAGE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How many channels a loaded image gets (the values of png_io.h's cnn_png_mode):
 *   AUTO: grey -> 1 channel, colour -> 3 (alpha dropped); GRAY: 1 (colour converted as PIL's
 *   convert("L")); RGB: 3 (grey repeated); RGBA: 4 (opaque images get alpha 1). */
typedef enum cnn_image_mode { CNN_IMAGE_AUTO, CNN_IMAGE_GRAY, CNN_IMAGE_RGB, CNN_IMAGE_RGBA } cnn_image_mode;

/** The largest image (width * height) a reader accepts: PIL's decompression-bomb limit,
 * 2 * 89478485 = 178956970 pixels, unless set otherwise (n >= 1). A JPEG can describe a huge image
 * in a few bytes, so this is checked after the header and before the pixels are allocated. */
int64_t cnn_image_max_pixels(void);
void cnn_image_set_max_pixels(int64_t n);

/** A decoded image as bytes: h rows of w pixels of c interleaved channels (malloc'd data), the
 * rectangle of a larger image whose top-left pixel is (top, left) (0, 0 for a whole image). */
typedef struct cnn_image8 {
  int64_t h, w;
  int c;
  int64_t top, left;
  uint8_t *data;
} cnn_image8;

/** Frees im's data (the struct itself is the caller's).
 * Ownership: gives up im->data, which a reader filled from malloc. */
void cnn_image8_free(cnn_image8 *im);
/** im as a new (c, h, w) float32 tensor of byte / 255 (the readers' one conversion), or NULL. */
cnn_tensor *cnn_image8_to_tensor(const cnn_image8 *im);

/** The file formats cnn_image_load reads. */
typedef enum cnn_image_format { CNN_IMAGE_UNKNOWN, CNN_IMAGE_PNG, CNN_IMAGE_JPEG } cnn_image_format;
/** The format a file's first n bytes announce (UNKNOWN for anything else). */
cnn_image_format cnn_image_sniff(const uint8_t *head, size_t n);
/** The format of the file at path (its first bytes), CNN_IMAGE_UNKNOWN when it cannot be read. */
cnn_image_format cnn_image_sniff_file(const char *path);

/** The EXIF orientation (1..8) in an EXIF block (a TIFF header and IFD0, optionally after the
 * "Exif\0\0" prefix of a JPEG APP1 segment); 1 when the tag is absent or the block is invalid.
 * Every offset is checked against n. */
int cnn_exif_orientation(const uint8_t *data, size_t n);

/** t (C, H, W) transposed as PIL's ImageOps.exif_transpose does for that orientation (2: mirror
 * left-right, 3: rotate 180, 4: flip top-bottom, 5: transpose, 6: rotate 90 clockwise, 7:
 * transverse, 8: rotate 90 counter-clockwise). Returns a new reference (t itself, retained, for
 * orientation 1 or an unknown value), or NULL with the error set. */
cnn_tensor *cnn_image_orient(cnn_tensor *t, int orientation);

/** The PNG or JPEG file at path (see png_io.h and jpeg_io.h for each format) as a new (C, H, W)
 * float32 reference in [0, 1]; with exif, the orientation tag is applied (PNG: the eXIf chunk).
 * NULL with an error that starts with the path ("not a PNG or JPEG file" for other files). */
cnn_tensor *cnn_image_load(const char *path, cnn_image_mode mode, bool exif);

/** Writes t as JPEG (quality 1..100) when path ends in .jpg or .jpeg (any case), else as PNG
 * (quality is then ignored). 0, or -1 with an error that starts with the path. */
int cnn_image_save(const char *path, const cnn_tensor *t, int quality);

#ifdef __cplusplus
}
#endif
#endif
