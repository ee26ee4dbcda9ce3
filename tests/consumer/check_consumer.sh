#!/usr/bin/env bash
# check_consumer.sh BUILD_DIR CC SRC -- install into a staging dir, then build
# and run a program using only pkg-config's view of the installed libmtl.
set -euo pipefail
build=$1 cc=$2 src=$3
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet >/dev/null
pc=$(find "$stage" -name libmtl.pc | head -n1)
[ -n "$pc" ] || { echo "FAIL: libmtl.pc not installed"; echo "0 passed, 1 failed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$stage
flags=$(pkg-config --cflags --libs libmtl)
"$cc" -std=c11 -Wall -Wextra -Werror "$src" $flags -o "$stage/consumer"
# Static-link view: the private deps must be listed too.
pkg-config --static --libs libmtl | grep -q -- '-lblis' || { echo "FAIL: -lblis missing from Libs.private"; exit 1; }
libdir=$(dirname "$(find "$stage" -name 'libmtl.so.*' | head -n1)")
LD_LIBRARY_PATH=$libdir "$stage/consumer"
echo "1 passed, 0 failed"
