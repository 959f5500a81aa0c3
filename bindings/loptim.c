/* Optimiser update kernels for Lua (core.optim_kernels.*): one call per parameter tensor. */
#include "lcnn.h"

void lcnn_open_optim(lua_State *L, int tbl) {
  (void)L;
  (void)tbl;
}
