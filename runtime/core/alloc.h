/* The runtime's one allocator for tensor storage: 64-byte aligned blocks; under 1 MB rounded up to
 * size classes (four per power of two) and kept on per-class free lists when released, larger ones
 * first-fit extents of reserved address ranges, merged when released (alloc.c), so a training
 * step that frees and re-requests the same sizes reaches the OS only on its first pass. */
#ifndef CNN_ALLOC_H
#define CNN_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* Returns a block of at least nbytes (64-byte aligned), or NULL with the error set when the
 * request exceeds the machine's memory or the OS refuses it. nbytes == 0 gives a valid block. */
void *cnn_alloc(size_t nbytes);
/* Returns a block from cnn_alloc to the cache; nbytes must be the size it was requested with. */
void cnn_free(void *p, size_t nbytes);

/* Small C structs (tensor headers, storages, graph nodes and their edges): a zeroed block of n
 * bytes from malloc, or NULL (out of memory; no error set). cnn_small_free takes back any block of
 * malloc's: small ones wait on a list for the next request of their size. */
void *cnn_small_alloc(size_t n);
void cnn_small_free(void *p);
/* A lua_Alloc over the same lists (lua_setallocf(L, cnn_lua_alloc, NULL), any time). */
void *cnn_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Bytes currently handed out (requested sizes), bytes sitting in the cache. */
size_t cnn_alloc_live_bytes(void);
size_t cnn_alloc_cached_bytes(void);
/* The most bytes handed out at once since the start or the last reset (reset: from now on). */
size_t cnn_alloc_peak_live_bytes(bool reset);
/* Releases every cached block to the OS. */
void cnn_alloc_trim(void);
/* The program is idle (the REPL waits for input): the cache limit, raised by a loop that re-used
 * memory given back past it, returns to its base (1 GiB) and the cached pages past that go back to
 * the OS. */
void cnn_alloc_idle(void);

#endif
