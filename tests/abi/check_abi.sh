#!/usr/bin/env bash
# check_abi.sh LIB INCLUDE_DIR BASELINE -- the ABI gate: abidiff against the
# committed baseline; any non-zero exit fails (added functions are allowed,
# --no-added-syms).  Refresh: tests/abi/update-baseline.sh (see docs/contributing.md).
set -euo pipefail
lib=$1 inc=$2 base=$3
command -v abidiff >/dev/null || { echo "abidiff not installed (abigail-tools)"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
abidw --no-corpus-path --no-comp-dir-path --short-locs --drop-undefined-syms --headers-dir "$inc" \
      --out-file "$tmp/current.abi" "$lib"
set +e
# No --headers-dirN here: it would hide changes to types from system
# headers (int64_t -> int32_t); abidw already kept only public-header ABI.
# opaque.suppr: the opaque handles' private fields are not ABI.
abidiff --no-added-syms --suppressions "$(dirname "$0")/opaque.suppr" "$base" "$tmp/current.abi"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  echo "FAIL: abidiff exit $rc: the ABI changed against $base"
  echo "0 passed, 1 failed"; exit 1
fi
echo "1 passed, 0 failed"
