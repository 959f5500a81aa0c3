/* Convolution and pooling for Lua (core.F.conv2d, max_pool2d, ...). */
#include "lcnn.h"

void lcnn_open_conv(lua_State *L, int tbl) {
  (void)L;
  (void)tbl;
}
