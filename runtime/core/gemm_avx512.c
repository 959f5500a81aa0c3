/* AVX-512 SGEMM (see gemm_avx512.h), built the way BLIS builds one: op(B) is cut into KC x NC blocks
 * (packed into NR-wide column panels, or read in place when it is row-major and few rows of A reuse
 * it), op(A) into MC x KC blocks packed into MR-tall row panels, and a register-blocked micro-kernel
 * computes an MR x NR tile of C: per k, two 16-float loads of B and MR broadcasts of A feed 2 * MR
 * FMAs into 2 * MR zmm accumulators (24 of the 32 registers at MR 12). When C has few columns, A is
 * read in place instead of packed (each row panel meets too few column panels to repay the copy).
 *
 * Loop order (outer to inner): NC columns of C, KC of the depth (B block in L2: KC x NC x 4 bytes =
 * 512 KiB, half of Zen 5's 1 MiB), MC rows (A block packed), then each MR-row A panel (KC x MR x 4 =
 * 12 KiB, stays in the 48 KiB L1) against every NR-column B panel of the block (streamed from L2).
 *
 * Edges: a tile of mr < MR rows runs a kernel compiled for mr rows (no padding, no wasted FMAs); a
 * tile of nr < NR columns reads B and C through lane masks (one vector of them when nr <= 16). The depth is always cut at multiples of
 * KC from 0, and each tile's accumulators start at zero and sum k in order, so an element of C gets
 * the same bits whatever panel of C it was computed in (cnn_gemm's thread-count independence).
 *
 * Packing buffers: one block per thread from the runtime allocator, made at the thread's first
 * product and kept (a pthread key frees it when the thread exits). */
#include "core/gemm_avx512.h"

#ifdef __AVX512F__

#include <immintrin.h>
#include <pthread.h>
#include <string.h>

#include "core/alloc.h"

enum { MR = 12, NR = 32, KC = 256, MC = 240, NC = 512 };
/* op(B) row-major is read in place when A has at most this many rows: packing a block costs a pass
 * over it, which fewer than this many MR-row panels do not win back. */
#define DIRECT_B_ROWS 48

/* op(A) is read in place when C has at most this many columns: packing costs a pass over A per NC
 * block, which 4 column panels or fewer do not win back (the stride-2 and 7x7 layers of ResNet at 224:
 * 1.3-2.5x faster than packed). */
#define DIRECT_A_COLS 128

#define PACK_FLOATS ((size_t)MC * KC + (size_t)KC * NC)

/* Each thread's packing block starts with a header linking it into pack_list, so every block stays
 * reachable: a forked child, where only the forking thread lives on, still holds the parent's worker
 * blocks (one each, never touched again) rather than losing them. A thread's block is freed when
 * the thread exits. */
typedef struct pack_block {
  struct pack_block *prev, *next;
} pack_block;
#define PACK_HEADER 64 /* keeps the floats 64-byte aligned */
#define PACK_BYTES (PACK_HEADER + PACK_FLOATS * sizeof(float))

static pthread_key_t pack_key;
static pthread_once_t pack_once = PTHREAD_ONCE_INIT;
static bool pack_key_ok;
static pthread_mutex_t pack_lock = PTHREAD_MUTEX_INITIALIZER;
static pack_block *pack_list;

static void pack_release(void *p) {
  pack_block *b = p;
  pthread_mutex_lock(&pack_lock);
  if (b->prev) b->prev->next = b->next;
  else pack_list = b->next;
  if (b->next) b->next->prev = b->prev;
  pthread_mutex_unlock(&pack_lock);
  cnn_free(b, PACK_BYTES);
}
/* a forked child starts with the list unlocked whatever another thread was doing at the fork */
static void pack_lock_reset(void) { pthread_mutex_init(&pack_lock, NULL); }
static void pack_key_make(void) {
  pack_key_ok = pthread_key_create(&pack_key, pack_release) == 0;
  pthread_atfork(NULL, NULL, pack_lock_reset);
}

/* This thread's packing block (MC x KC floats for A, then KC x NC for B), or NULL. */
static float *pack_buffer(void) {
  pthread_once(&pack_once, pack_key_make);
  if (!pack_key_ok) return NULL;
  pack_block *b = pthread_getspecific(pack_key);
  if (!b) {
    b = cnn_alloc(PACK_BYTES);
    if (!b) return NULL;
    if (pthread_setspecific(pack_key, b) != 0) {
      cnn_free(b, PACK_BYTES);
      return NULL;
    }
    pthread_mutex_lock(&pack_lock);
    b->prev = NULL, b->next = pack_list;
    if (pack_list) pack_list->prev = b;
    pack_list = b;
    pthread_mutex_unlock(&pack_lock);
  }
  return (float *)((char *)b + PACK_HEADER);
}

bool cnn_gemm_avx512_available(void) {
  static int ok = -1; /* benign race: every thread computes the same value */
  if (ok < 0) ok = __builtin_cpu_supports("avx512f") ? 1 : 0;
  return ok;
}

/* ---- packing ---- */

/* The MC x KC block of op(A) at rows i0, depth p0 into MR-row panels: panel r holds, for each p,
 * the (up to) MR values op(A)[i0 + r*MR + i, p0 + p] at ap[r*MR*kc + p*MR + i]. Rows past the edge
 * are not written (the edge kernel never reads them). */
static void pack_a(bool ta, const float *a, int64_t lda, int64_t i0, int64_t p0, int64_t mc, int64_t kc, float *ap) {
  for (int64_t r = 0; r < mc; r += MR) {
    int64_t mr = mc - r < MR ? mc - r : MR;
    float *dst = ap + r * kc;
    if (ta) { /* A stored (k, m): each p is mr consecutive floats */
      const float *src = a + p0 * lda + i0 + r;
      /* mr floats a step under a lane mask: a memcpy call per 48 bytes was 15% of a 512-channel 7x7
       * input gradient's product */
      const __mmask16 mk = (__mmask16)((1u << mr) - 1);
      for (int64_t p = 0; p < kc; p++)
        _mm512_mask_storeu_ps(dst + p * MR, mk, _mm512_maskz_loadu_ps(mk, src + p * lda));
    } else { /* A stored (m, k): row i is consecutive in p */
      const float *src = a + (i0 + r) * lda + p0;
      if (mr == MR) {
        int64_t p = 0;
        for (; p + 16 <= kc; p += 16) { /* 16 columns of 12 rows: load rows, scatter into the panel */
          __m512 v[MR];
          for (int i = 0; i < MR; i++) v[i] = _mm512_loadu_ps(src + i * lda + p);
          float t[MR][16];
          for (int i = 0; i < MR; i++) _mm512_storeu_ps(t[i], v[i]);
          for (int q = 0; q < 16; q++)
            for (int i = 0; i < MR; i++) dst[(p + q) * MR + i] = t[i][q];
        }
        for (; p < kc; p++)
          for (int i = 0; i < MR; i++) dst[p * MR + i] = src[i * lda + p];
      } else
        for (int64_t p = 0; p < kc; p++)
          for (int64_t i = 0; i < mr; i++) dst[p * MR + i] = src[i * lda + p];
    }
  }
}

/* r[0..15] (16 rows of 16 floats) transposed in place: r[q][j] becomes the old r[j][q]. */
static inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);     /* per 128-bit lane: r_i[c], r_i+1[c], r_i[c+1], r_i+1[c+1] */
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]); /* the same for c+2, c+3 */
  }
  for (int g = 0; g < 16; g += 4) { /* u[g+q], lane l: rows g..g+3 of column 4l+q */
    u[g + 0] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
    u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
    u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
    u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
  }
  for (int q = 0; q < 4; q++) {
    /* lanes: column q (rows 0-3), column 8+q (rows 0-3), column q (rows 4-7), column 8+q (rows 4-7) */
    __m512 v0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88), v1 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
    __m512 w0 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
    r[q] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    r[8 + q] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    r[4 + q] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    r[12 + q] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
}

/* The KC x NC block of op(B) at depth p0, columns j0 into NR-column panels: panel s holds, for each
 * p, op(B)[p0 + p, j0 + s*NR + j] at bp[s*NR*kc + p*NR + j] (columns past the edge not written). */
static void pack_b(bool tb, const float *b, int64_t ldb, int64_t p0, int64_t j0, int64_t kc, int64_t nc, float *bp) {
  for (int64_t s = 0; s < nc; s += NR) {
    int64_t nr = nc - s < NR ? nc - s : NR;
    float *dst = bp + s * kc;
    if (!tb) { /* B stored (k, n): each p is nr consecutive floats */
      /* two vectors a step (under lane masks at the edge), not a memcpy call per 128 bytes */
      const float *src = b + p0 * ldb + j0 + s;
      const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
      const __mmask16 m1 = (__mmask16)(nr >= NR ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
      for (int64_t p = 0; p < kc; p++) {
        _mm512_mask_storeu_ps(dst + p * NR, m0, _mm512_maskz_loadu_ps(m0, src + p * ldb));
        _mm512_mask_storeu_ps(dst + p * NR + 16, m1, _mm512_maskz_loadu_ps(m1, src + p * ldb + 16));
      }
      continue;
    }
    /* B stored (n, k): column j of op(B) is row j0+s+j of B, consecutive in p */
    const float *src = b + (j0 + s) * ldb + p0;
    int64_t j = 0;
    for (; j + 16 <= nr; j += 16) {
      int64_t p = 0;
      for (; p + 16 <= kc; p += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (j + i) * ldb + p);
        transpose16(r);
        for (int q = 0; q < 16; q++) _mm512_storeu_ps(dst + (p + q) * NR + j, r[q]);
      }
      for (; p < kc; p++)
        for (int i = 0; i < 16; i++) dst[p * NR + j + i] = src[(j + i) * ldb + p];
    }
    for (; j < nr; j++)
      for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = src[j * ldb + p];
  }
}

/* ---- the micro-kernel ---- */

/* How a tile reads A: packed, or op(A) in place when packing would not pay (see cnn_gemm_avx512). */
typedef enum {
  A_COLS, /* value (i, p) at a[p * as + i]: a packed panel (as = MR), or A stored (k, m) (as = lda) */
  A_ROWS, /* value (i, p) at a[i * as + p]: A stored (m, k) (as = lda) */
} a_mode;

/* Tile shapes: 2 vectors (NR columns), 2 vectors under lane masks, 1 vector under a mask (nr <= 16). */
typedef enum { T_FULL, T_EDGE2, T_EDGE1 } t_kind;

/* C[0..mr, 0..NR) (lanes m0, m1 of its two 16-column halves) = alpha * A @ B + beta * C over kc steps
 * of depth. bp: kc steps of 32 floats, bs apart. mr, kind and am are constants in every
 * instantiation below, so the loops unroll and the accumulators live in registers. */
static inline __attribute__((always_inline)) void tile(const int mr, const t_kind kind, const a_mode am, int64_t kc,
                                                       const float *a, int64_t as, const float *bp, int64_t bs,
                                                       float *c, int64_t ldc, float alpha, float beta, __mmask16 m0,
                                                       __mmask16 m1) {
  const bool two = kind != T_EDGE1, masked = kind != T_FULL;
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < mr; i++) c0[i] = c1[i] = _mm512_setzero_ps();
  const float *ar[MR]; /* A_ROWS: the rows' pointers, stepped together */
#pragma GCC unroll 16
  for (int i = 0; i < mr; i++) ar[i] = a + i * as;
  for (int64_t p = 0; p < kc; p++) {
    __m512 b0, b1 = _mm512_setzero_ps();
    if (masked) {
      b0 = _mm512_maskz_loadu_ps(m0, bp);
      if (two) b1 = _mm512_maskz_loadu_ps(m1, bp + 16);
    } else {
      b0 = _mm512_loadu_ps(bp);
      b1 = _mm512_loadu_ps(bp + 16);
    }
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++) {
      __m512 av = _mm512_set1_ps(am == A_COLS ? a[i] : ar[i][p]);
      c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
      if (two) c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
    }
    if (am == A_COLS) a += as;
    bp += bs;
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < mr; i++) {
    float *r = c + i * ldc;
    __m512 x0 = c0[i], x1 = c1[i];
    if (alpha != 1) {
      x0 = _mm512_mul_ps(x0, va);
      if (two) x1 = _mm512_mul_ps(x1, va);
    }
    if (masked) {
      if (beta != 0) {
        x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, r), x0);
        if (two) x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, r + 16), x1);
      }
      _mm512_mask_storeu_ps(r, m0, x0);
      if (two) _mm512_mask_storeu_ps(r + 16, m1, x1);
    } else {
      if (beta != 0) {
        x0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(r), x0);
        x1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(r + 16), x1);
      }
      _mm512_storeu_ps(r, x0);
      _mm512_storeu_ps(r + 16, x1);
    }
  }
}

typedef void (*tile_fn)(int64_t, const float *, int64_t, const float *, int64_t, float *, int64_t, float, float,
                        __mmask16, __mmask16);

#define TILE_FN(mr, kind, am, name)                                                                            \
  static void name(int64_t kc, const float *a, int64_t as, const float *bp, int64_t bs, float *c, int64_t ldc, \
                   float alpha, float beta, __mmask16 m0, __mmask16 m1) {                                      \
    tile(mr, kind, am, kc, a, as, bp, bs, c, ldc, alpha, beta, m0, m1);                                        \
  }
/* clang-format off */
#define TILE_SET(mr)                                                                  \
  TILE_FN(mr, T_FULL, A_COLS, tile_c##mr)                                             \
  TILE_FN(mr, T_EDGE2, A_COLS, tile_c##mr##_e2)                                       \
  TILE_FN(mr, T_EDGE1, A_COLS, tile_c##mr##_e1)                                       \
  TILE_FN(mr, T_FULL, A_ROWS, tile_r##mr)                                             \
  TILE_FN(mr, T_EDGE2, A_ROWS, tile_r##mr##_e2)                                       \
  TILE_FN(mr, T_EDGE1, A_ROWS, tile_r##mr##_e1)
/* clang-format on */
TILE_SET(1)
TILE_SET(2)
TILE_SET(3)
TILE_SET(4)
TILE_SET(5)
TILE_SET(6)
TILE_SET(7)
TILE_SET(8)
TILE_SET(9)
TILE_SET(10)
TILE_SET(11)
TILE_SET(12)

#define TILE_ROW(p, s)                                                                                         \
  {                                                                                                            \
    NULL, p##1##s, p##2##s, p##3##s, p##4##s, p##5##s, p##6##s, p##7##s, p##8##s, p##9##s, p##10##s, p##11##s, \
        p##12##s                                                                                               \
  }
/* tiles[a_mode][t_kind][mr] */
static const tile_fn tiles[2][3][MR + 1] = {
    {TILE_ROW(tile_c, ), TILE_ROW(tile_c, _e2), TILE_ROW(tile_c, _e1)},
    {TILE_ROW(tile_r, ), TILE_ROW(tile_r, _e2), TILE_ROW(tile_r, _e1)},
};

/* ---- the loops ---- */

bool cnn_gemm_avx512(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  float *pa = pack_buffer();
  if (!pa) return false;
  float *pb = pa + (size_t)MC * KC;
  const bool direct_b = !tb && m <= DIRECT_B_ROWS;
  /* A in place when few column panels reuse each row panel (packing is a pass over A per NC block) */
  const bool direct_a = n <= DIRECT_A_COLS;
  const a_mode am = direct_a && !ta ? A_ROWS : A_COLS;
  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = n - jc < NC ? n - jc : NC;
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = k - pc < KC ? k - pc : KC;
      const float bet = pc == 0 ? beta : 1.0f;
      const float *bb = direct_b ? b + pc * ldb + jc : pb;
      const int64_t bs = direct_b ? ldb : NR;
      if (!direct_b) pack_b(tb, b, ldb, pc, jc, kc, nc, pb);
      for (int64_t ic = 0; ic < m; ic += MC) {
        const int64_t mc = m - ic < MC ? m - ic : MC;
        if (!direct_a) pack_a(ta, a, lda, ic, pc, mc, kc, pa);
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const int mr = (int)(mc - ir < MR ? mc - ir : MR);
          const float *ap = !direct_a ? pa + ir * kc : ta ? a + pc * lda + ic + ir : a + (ic + ir) * lda + pc;
          const int64_t as = direct_a ? lda : MR;
          float *cr = c + (ic + ir) * ldc + jc;
          for (int64_t jr = 0; jr < nc; jr += NR) {
            const int64_t nr = nc - jr < NR ? nc - jr : NR;
            const float *bpan = direct_b ? bb + jr : bb + jr * kc;
            if (nr == NR) tiles[am][T_FULL][mr](kc, ap, as, bpan, bs, cr + jr, ldc, alpha, bet, 0xFFFF, 0xFFFF);
            else {
              __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
              __mmask16 m1 = (__mmask16)(nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
              tiles[am][nr <= 16 ? T_EDGE1 : T_EDGE2][mr](kc, ap, as, bpan, bs, cr + jr, ldc, alpha, bet, m0, m1);
            }
          }
        }
      }
    }
  }
  return true;
}

#else /* no AVX-512 in this build: OpenBLAS does every product */

bool cnn_gemm_avx512_available(void) { return false; }

bool cnn_gemm_avx512(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb, (void)beta;
  (void)c, (void)ldc;
  return false;
}

#endif
