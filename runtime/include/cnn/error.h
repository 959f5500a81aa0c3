/* The one error road of the runtime. A failing function sets a thread-local message and returns
 * an error status (-1) or NULL; the caller (ultimately the Lua bindings) reads the message and
 * raises it, prefixed with the name of the user-facing function. Messages never carry that name. */
#ifndef CNN_ERROR_H
#define CNN_ERROR_H

#ifdef __GNUC__
#define CNN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CNN_PRINTF(a, b)
#endif

/* Sets the message and returns -1, so `return cnn_error_set(...)` reads naturally. */
int cnn_error_set(const char *fmt, ...) CNN_PRINTF(1, 2);
/* The last message set on this thread ("" if none). */
const char *cnn_error_get(void);
void cnn_error_clear(void);

#endif
