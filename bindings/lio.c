/* File formats for Lua (core.io.*): IDX, PNG, safetensors. */
#include "lcnn.h"

void lcnn_open_io(lua_State *L, int tbl) {
  (void)L;
  (void)tbl;
}
