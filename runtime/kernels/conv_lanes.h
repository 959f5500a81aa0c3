/* The batch-in-the-lanes layout shared by conv_small.c and conv_small_pool.c (private to
 * runtime/kernels): a group of up to VL images stored as (..., VL), each position one vector of the
 * group's images. Both files gather their inputs and sum their forward taps with these, which is what
 * keeps their outputs bit for bit conv_direct.c's (same tap order, same packed filters). The three
 * files' weight gradients sum their per-thread partials' lanes with lanes_sums, then the parts with
 * parts_sum. */
#ifndef CNN_KERNELS_CONV_LANES_H
#define CNN_KERNELS_CONV_LANES_H

#include <stdint.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "conv_vec.h"

#if defined(__AVX512F__)
/* r[0..16) rows of 16 -> r[j] = column j (16 x 16 transpose: unpacks, then 128-bit lane shuffles) */
INLINE void lanes_transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) { /* r[4i + j], 128-bit lane k: rows 4i..4i+3 of column 4k + j */
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int j = 0; j < 4; j++) {
    t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
  }
  for (int j = 0; j < 4; j++) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
    r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
    r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
  }
}
#endif

#if defined(__AVX512F__)
/* v[j] = position x0 + j (j < n = min(16, len - x0)) of images 0..g (image l's floats at
 * src + l * istride), lanes g..VL zero; returns n */
INLINE int lanes_load16(const float *src, int64_t istride, int64_t len, int64_t x0, int64_t g, __m512 v[16]) {
  const int n = len - x0 < 16 ? (int)(len - x0) : 16;
  const __mmask16 m = (__mmask16)((1u << n) - 1);
  for (int64_t l = 0; l < 16; l++)
    v[l] = l < g ? _mm512_maskz_loadu_ps(m, src + l * istride + x0) : _mm512_setzero_ps();
  lanes_transpose16(v);
  return n;
}

/* lane e = the VL lanes of the vector at v + e * VL (aligned) summed in lane order from +0, for the
 * 16 vectors there: transposed, then added as vectors in lane order (the bits of a scalar loop
 * over each vector's lanes) */
INLINE __m512 lanes_sum16(const float *v) {
  __m512 r[16];
  for (int e = 0; e < 16; e++) r[e] = _mm512_load_ps(v + e * VL);
  lanes_transpose16(r);
  __m512 s = _mm512_setzero_ps();
  for (int l = 0; l < VL; l++) s = _mm512_add_ps(s, r[l]);
  return s;
}
#endif

/* h[i] = the lanes of part's vector i summed in lane order from +0, for n vectors (16 at a time
 * with lanes_sum16: the scalar loop's bits). h may be part itself: float i lies in vector i / 16,
 * read by the time it is written. */
INLINE void lanes_sums(const vf *part, int64_t n, float *h) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) _mm512_store_ps(h + i, lanes_sum16((const float *)(part + i)));
#endif
  for (; i < n; i++) { /* read as floats: h's type, so the compiler keeps the order */
    const float *v = (const float *)(part + i);
    float s = 0;
    for (int l = 0; l < VL; l++) s += v[l];
    h[i] = s;
  }
}

/* gw[i0..i1) = the parts' sums part[t][i] added in part order from +0 (0 + x turns -0 into +0, as
 * the im2col path does); a part's sums are floats, one a weight, after lanes_sums */
INLINE void parts_sum(float *gw, const float *const *part, int64_t parts, int64_t i0, int64_t i1) {
  for (int64_t t = 0; t < parts; t++)
    for (int64_t i = i0; i < i1; i++) gw[i] = (t ? gw[i] : 0.0f) + part[t][i];
}

/* dst[0..len) (aligned vectors) = the len floats at src of images 0..g (image l's at
 * src + l * istride), lanes g..VL zero */
INLINE void lanes_gather(const float *src, int64_t istride, int64_t len, int64_t g, float *dst) {
#if defined(__AVX512F__)
  for (int64_t x0 = 0; x0 < len; x0 += 16) {
    __m512 v[16];
    const int n = lanes_load16(src, istride, len, x0, g, v);
    for (int j = 0; j < n; j++) _mm512_store_ps(dst + (x0 + j) * VL, v[j]);
  }
#else
  for (int64_t x = 0; x < len; x++)
    for (int64_t l = 0; l < VL; l++) dst[x * VL + l] = l < g ? src[l * istride + x] : 0.0f;
#endif
}

/* yg[0..mr) filters (stride os), positions [0, nv) of a row (S positions apart) = the taps of
 * wt (K, mr) over the vectors of xg from its row (c = 0, oy, ox), channel stride cs, row stride rs,
 * kernel rows [ki0, ki1) and columns [kj0, kj1) only; the taps run (c, ki, kj), one fused
 * multiply-add each, from zero. Output vector v at yg + i * os + v * OS * VL (OS 2: a stride-2
 * input gradient's phase, conv_small.c). */
INLINE void lanes_tile_cols_os(const float *xg, int64_t cs, int64_t rs, int64_t C, int64_t kh, int64_t kw, int64_t ki0,
                               int64_t ki1, int64_t kj0, int64_t kj1, const float *wt, float *yg, int64_t os,
                               const int mr, const int nv, const int64_t S, const int64_t OS) {
  vf acc[8][6];
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
    for (int v = 0; v < nv; v++) acc[i][v] = (vf){0};
  for (int64_t c = 0; c < C; c++, xg += cs)
    for (int64_t ki = ki0; ki < ki1; ki++) {
      const float *row = xg + ki * rs, *wk = wt + ((c * kh + ki) * kw + kj0) * mr;
      for (int64_t kj = kj0; kj < kj1; kj++, wk += mr) {
        vf b[6];
#pragma GCC unroll 6
        for (int v = 0; v < nv; v++) b[v] = *(const vf *)(row + (kj + S * v) * VL);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
          float s = wk[i];
#pragma GCC unroll 6
          for (int v = 0; v < nv; v++) acc[i][v] += b[v] * s;
        }
      }
    }
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
    for (int v = 0; v < nv; v++) *(vf *)(yg + i * os + v * OS * VL) = acc[i][v];
}

INLINE void lanes_tile_cols(const float *xg, int64_t cs, int64_t rs, int64_t C, int64_t kh, int64_t kw, int64_t ki0,
                            int64_t ki1, int64_t kj0, int64_t kj1, const float *wt, float *yg, int64_t os, const int mr,
                            const int nv, const int64_t S) {
  lanes_tile_cols_os(xg, cs, rs, C, kh, kw, ki0, ki1, kj0, kj1, wt, yg, os, mr, nv, S, 1);
}

/* lanes_tile_cols_os over every kernel column */
INLINE void lanes_tile_os(const float *xg, int64_t cs, int64_t rs, int64_t C, int64_t kh, int64_t kw, int64_t ki0,
                          int64_t ki1, const float *wt, float *yg, int64_t os, const int mr, const int nv,
                          const int64_t S, const int64_t OS) {
  lanes_tile_cols_os(xg, cs, rs, C, kh, kw, ki0, ki1, 0, kw, wt, yg, os, mr, nv, S, OS);
}

/* lanes_tile_cols over every kernel column */
INLINE void lanes_tile(const float *xg, int64_t cs, int64_t rs, int64_t C, int64_t kh, int64_t kw, int64_t ki0,
                       int64_t ki1, const float *wt, float *yg, int64_t os, const int mr, const int nv,
                       const int64_t S) {
  lanes_tile_cols(xg, cs, rs, C, kh, kw, ki0, ki1, 0, kw, wt, yg, os, mr, nv, S);
}

#endif
