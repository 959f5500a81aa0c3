/* The thread-local error message behind cnn_error_set / cnn_error_get (see error.h). */
#include "cnn/error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

static _Thread_local char message[1024];

int cnn_error_set(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  return -1;
}

const char *cnn_error_get(void) { return message; }

void cnn_error_clear(void) { message[0] = '\0'; }

double cnn_error_num(double v) { return v != v ? fabs(v) : v; }
