/** The one error road of the runtime. A failing function sets a thread-local message and returns
 * an error status (-1) or NULL; the caller (ultimately the Lua bindings) reads the message and
 * raises it, prefixed with the name of the user-facing function. Messages never carry that name.
 * Nothing in the library prints, exits or aborts on bad input. */
#ifndef CNN_ERROR_H
#define CNN_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __GNUC__
#define CNN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CNN_PRINTF(a, b)
#endif

/** Sets this thread's message (printf-style) and returns -1, so `return cnn_error_set(...)` reads
 * naturally. For code that extends the library and reports errors the same way. */
int cnn_error_set(const char *fmt, ...) CNN_PRINTF(1, 2);
/** The last message set on this thread ("" if none). Successful calls leave it as it was: read it
 * right after a call that returned -1 or NULL.
 * Ownership: returns a thread-local buffer the caller must not free; it stays valid until the next
 * error on this thread. */
const char *cnn_error_get(void);
/** Empties this thread's message. */
void cnn_error_clear(void);

/** v as a message shows it: a NaN loses its sign, so `%g` prints "nan" as PyTorch's messages do
 * (glibc prints "-nan" for a NaN whose sign bit is set, as Lua's 0/0 on x86). Pass every double a
 * message prints through it: `cnn_error_set("got %g", cnn_error_num(p))`. */
double cnn_error_num(double v);

#ifdef __cplusplus
}
#endif
#endif
