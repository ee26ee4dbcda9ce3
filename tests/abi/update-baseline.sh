#!/usr/bin/env bash
# update-baseline.sh [BUILD_DIR] -- rewrite tests/abi/libmtl.abi from a build.
# Only for an additive change, or a deliberate break together with a SONAME
# (MTL_VERSION_MAJOR) bump -- or, before 1.0.0, a deliberate API change that
# the commit message and the issue note say.  See docs/contributing.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
lib=$(ls "$build"/lib/libmtl.so.*.*.* | head -n1)
abidw --no-corpus-path --no-comp-dir-path --short-locs --drop-undefined-syms --headers-dir include \
      --out-file tests/abi/libmtl.abi "$lib"
echo "wrote tests/abi/libmtl.abi from $lib"
