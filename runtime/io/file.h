/* Opening files for reading (internal to io; the bindings use cnn_file_check for the readers
 * written in Lua). Every reader goes through here, so none can be pointed at a named pipe (which
 * blocks forever), a device (which never ends) or a folder: anything that is not a regular file is
 * refused with the path and what it is in the message. */
#ifndef CNN_IO_FILE_H
#define CNN_IO_FILE_H

#include <stdio.h>

/* A read-only descriptor of the regular file at path, or -1 with the error set
 * ("path: cannot open (No such file or directory)", "path: not a regular file (a named pipe)").
 * The open never blocks. */
int cnn_file_open_fd(const char *path);
/* The same as a stdio stream ("rb"), or NULL with the error set. */
FILE *cnn_file_open(const char *path);
/* 0 when path names a regular file (following links), else -1 with the error set as above. */
int cnn_file_check(const char *path);

#endif
