#!/usr/bin/env bash
# check_header.sh CC CXX INCLUDE_DIR -- include/mtl.h compiles on its own as
# strict C11 and as C++ (libgit2's headertest idea).
set -euo pipefail
cc=$1 cxx=$2 inc=$3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '#include <mtl.h>\nint main(void) { return mtl_version_number() == MTL_VERSION_NUMBER ? 0 : 1; }\n' > "$tmp/h.c"
cp "$tmp/h.c" "$tmp/h.cpp"
fail=0
"$cc" -std=c11 -Wall -Wextra -pedantic -Werror -I"$inc" -c "$tmp/h.c" -o "$tmp/c.o" || { echo "FAIL: C11"; fail=1; }
"$cc" -std=c99 -Wall -Wextra -pedantic -Werror -I"$inc" -c "$tmp/h.c" -o "$tmp/c99.o" || { echo "FAIL: C99"; fail=1; }
"$cxx" -std=c++11 -Wall -Wextra -pedantic -Werror -I"$inc" -c "$tmp/h.cpp" -o "$tmp/cpp.o" || { echo "FAIL: C++11"; fail=1; }
# extern "C": the C++ object must reference the unmangled name.
if [ $fail -eq 0 ] && ! nm "$tmp/cpp.o" | grep -q ' U mtl_version_number$'; then
  echo "FAIL: C++ sees mangled names (missing extern \"C\")"; fail=1
fi
if [ $fail -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $fail
