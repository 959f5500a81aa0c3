/** JPEG images through libjpeg-turbo (the libjpeg API), as float32 (C, H, W) tensors with values
 * in [0, 1]. Decoding uses the parameters PIL uses (libjpeg's defaults: the accurate integer IDCT,
 * fancy upsampling), so the pixels equal PIL's for the same file and library. */
#ifndef CNN_JPEG_IO_H
#define CNN_JPEG_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "image_io.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** True when the bytes start like a JPEG file (the SOI marker FF D8 then another marker). */
bool cnn_jpeg_sniff(const uint8_t *head, size_t n);

/** Decodes the JPEG file at path. Grey files have 1 channel, YCbCr/RGB files 3, CMYK/YCCK files
 * 4 as libjpeg stores them and are turned into RGB as PIL's convert("RGB") does after its
 * Adobe-polarity inversion. Channels by mode as for PNG (image_io.h): AUTO gives 1 for grey and
 * 3 otherwise; GRAY converts colour with PIL's convert("L") formula; RGB repeats grey; RGBA adds
 * an opaque alpha. With exif, the EXIF orientation tag (APP1 "Exif") is applied as PIL's
 * ImageOps.exif_transpose does. Refused before any image-sized allocation: more than
 * cnn_image_max_pixels() pixels, 2-component or 12-bit files. A truncated file (its data ends
 * before the last row) or a corrupt one (libjpeg gives up) is an error; libjpeg's warnings about
 * recoverable corruption are not (PIL ignores them too). Returns a new reference, or NULL with
 * an error that starts with the path. */
cnn_tensor *cnn_jpeg_load(const char *path, cnn_image_mode mode, bool exif);

/** The same decoding in two steps, for a loader that picks what to decode from the image's size
 * (a random crop): cnn_jpeg_open reads the header and checks the limits; cnn_jpeg_size gives the
 * size after EXIF orientation; cnn_jpeg_read8 decodes, once, the bytes of the rectangle
 * window = {top, left, height, width} (oriented coordinates; NULL for everything) as interleaved
 * bytes in mode's channels. It decodes a slightly larger rectangle (a margin, and libjpeg's block
 * alignment: out says where it lies), skipping the rows above it, stopping after the rows below it
 * and leaving out the columns beside it; the pixels are the full decode's (fancy upsampling is
 * exact inside the margin). A file truncated below the rectangle is not noticed. Errors start with
 * the path; cnn_jpeg_open returns NULL, cnn_jpeg_read8 -1. cnn_jpeg_close(NULL) is a no-op.
 * Ownership: cnn_jpeg_open returns a new reader, which the caller closes with cnn_jpeg_close;
 * cnn_jpeg_read8 fills *out with bytes from malloc, which the caller frees with cnn_image8_free;
 * path borrowed. */
typedef struct cnn_jpeg_reader cnn_jpeg_reader;
cnn_jpeg_reader *cnn_jpeg_open(const char *path, bool exif);
void cnn_jpeg_size(const cnn_jpeg_reader *r, int64_t *h, int64_t *w);
int cnn_jpeg_read8(cnn_jpeg_reader *r, cnn_image_mode mode, const int64_t *window, cnn_image8 *out);
void cnn_jpeg_close(cnn_jpeg_reader *r);

/** Writes a baseline JPEG (libjpeg's defaults: 4:2:0 chroma for colour, as PIL saves) from a
 * float32 tensor of shape (H, W), (1, H, W) or (3, H, W), values clamped to [0, 1] and stored as
 * floor(v * 255 + 0.5). quality is 1..100 (75 is PIL's default). Written to a temporary file
 * beside path and renamed over it. Returns 0, or -1 with an error that starts with the path. */
int cnn_jpeg_save(const char *path, const cnn_tensor *t, int quality);

#ifdef __cplusplus
}
#endif
#endif
