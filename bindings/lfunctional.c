/* Activations, normalisation, dropout and losses for Lua (core.F.*). */
#include "lcnn.h"

void lcnn_open_functional(lua_State *L, int tbl) {
  (void)L;
  (void)tbl;
}
