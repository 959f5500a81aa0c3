#!/usr/bin/env bash
# The style checks .ci/run makes before it builds: clang-format (check mode, .clang-format) on every
# C file, luacheck (.luacheckrc) on the Lua. Fix formatting with:
#   clang-format -i $(find runtime bindings tests -name '*.[ch]')
set -euo pipefail
cd "$(dirname "$0")/../.."
mapfile -t cfiles < <(find runtime bindings tests -name '*.[ch]' | sort)
clang-format --dry-run -Werror "${cfiles[@]}"
echo "clang-format: ${#cfiles[@]} files formatted"
luacheck --quiet scripts examples tests
