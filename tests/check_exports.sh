#!/usr/bin/env bash
# check_exports.sh LIB HEADER MAP -- the library exports exactly the mtl_*
# functions the header declares (MTL_API) and the map lists, under a version
# node, and its SONAME is libmtl.so.<major>.
set -euo pipefail
lib=$1 header=$2 map=$3
fail=0

major=$(sed -n 's/^#define MTL_VERSION_MAJOR \([0-9]*\).*/\1/p' "$header")
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libmtl.so.$major" ]; then
  echo "FAIL: SONAME is '$soname', expected libmtl.so.$major"; fail=1
fi

# Defined dynamic symbols, minus the version-node marker (type A).
exported=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort -u)
bad=$(echo "$exported" | grep -v '^mtl_' || true)
if [ -n "$bad" ]; then
  echo "FAIL: exported symbols outside mtl_*:"; echo "$bad"; fail=1
fi
unversioned=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | grep -v '@@MTL_' || true)
if [ -n "$unversioned" ]; then
  echo "FAIL: symbols without a version node:"; echo "$unversioned"; fail=1
fi

declared=$(grep -o '^MTL_API [^(]*(' "$header" | sed -E 's/.*[ *]([a-z_0-9]+)\($/\1/' | sort -u)
listed=$(grep -oE '^\s+mtl_[a-z_0-9]+;' "$map" | tr -d ' ;\t' | sort -u)

diff_out=$(diff <(echo "$declared") <(echo "$listed") || true)
if [ -n "$diff_out" ]; then
  echo "FAIL: header (<) and libmtl.map (>) disagree:"; echo "$diff_out"; fail=1
fi
diff_out=$(diff <(echo "$declared") <(echo "$exported") || true)
if [ -n "$diff_out" ]; then
  echo "FAIL: header (<) and exported symbols (>) disagree (declared but not defined?):"; echo "$diff_out"; fail=1
fi

n=$(echo "$exported" | wc -l)
if [ $fail -eq 0 ]; then echo "1 passed, 0 failed ($n symbols, SONAME $soname)"; else echo "0 passed, 1 failed"; fi
exit $fail
