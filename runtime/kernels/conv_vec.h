/* The vector width and register budget of the direct convolution kernels (conv_direct.c, conv_small.c;
 * private to runtime/kernels). GCC vector types keep the files portable C; -march=native picks the
 * width. Both files build their tiles from these, in the same tap order from the same packed
 * filters, which is what lets conv_small.c promise conv_direct.c's bits. */
#ifndef CNN_KERNELS_CONV_VEC_H
#define CNN_KERNELS_CONV_VEC_H

#include <stdint.h>

#if defined(__AVX512F__)
#define VL 16   /* floats per vector */
#define NACC 24 /* accumulators a tile may hold: 32 registers, minus loads and a broadcast */
#elif defined(__AVX__)
#define VL 8
#define NACC 12 /* 16 registers */
#else
#define VL 4
#define NACC 12
#endif

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
/* an unaligned view: conv_direct.c's taps read rows at every shift */
typedef float vfu __attribute__((vector_size(VL * sizeof(float)), aligned(sizeof(float)), may_alias));

#define INLINE static inline __attribute__((always_inline))

INLINE vf vec_load(const float *p) { return *(const vfu *)p; }
INLINE void vec_store(float *p, vf v) { *(vfu *)p = v; }

/* Pins a loaded vector to a register: without it GCC folds the load into every FMA that reads it
 * (a memory operand each), and the weight-gradient tiles became load-bound (conv_direct.c: half the
 * speed; conv_small.c: 28 loads for 24 FMAs a position). */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define IN_REGISTER(v) ((void)0)
#endif

static inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

#endif
