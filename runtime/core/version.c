/* The library's own version, compiled in from the generated cnn/version.h, so that a program can
 * compare the headers it was built with (CNN_VERSION_NUMBER) against the library it runs with. */
#include "cnn/version.h"

const char *cnn_version(void) { return CNN_VERSION_STRING; }

int cnn_version_number(void) { return CNN_VERSION_NUMBER; }
