#!/usr/bin/env bash
# run_fuzz.sh -- build the libFuzzer targets and fuzz each for a while.
#
#   tests/fuzz/run_fuzz.sh [-t SECONDS] [-n RUNS] [-j PARALLEL] [-b BUILD_DIR] [-k] [TARGET...]
#
#   -t SECONDS   fuzzing time per target (default 30: the CI run)
#   -n RUNS      stop a target after RUNS executions instead (-t still caps it)
#   -j PARALLEL  targets fuzzed at once (default: number of CPUs)
#   -b DIR       build directory (default build-fuzz), configured with clang,
#                ASan + UBSan (every UBSan finding fatal) and coverage
#                instrumentation of the library (-fsanitize=fuzzer-no-link)
#   -k           keep the grown working corpora (DIR/fuzz-work/TARGET/corpus)
#                from a previous run instead of starting from the seeds
#   TARGET       model_file checkpoint load_buffer csv (default: all four)
#
# The committed seeds (tests/fuzz/corpus/TARGET) and crash regressions
# (tests/fuzz/regressions/TARGET) are read, never written: new inputs go to
# DIR/fuzz-work/TARGET/corpus, crashes to DIR/fuzz-work/TARGET/crash-*.
# A crash found: minimise it (fuzz_TARGET -minimize_crash=1 crash-...), fix
# the library, and commit the input under tests/fuzz/regressions/TARGET/
# (the fuzz_replay_TARGET test of every build then replays it).
#
# Prints one line per target ("fuzz TARGET: ok, N executions in S s, ...")
# and last "fuzz: N passed, N failed".  Exit status 1 if any target failed.
# The long run of docs/testing.md:  tests/fuzz/run_fuzz.sh -t 3600
set -uo pipefail
cd "$(dirname "$0")/../.."
src=$PWD

seconds=30 runs=-1 jobs=$(nproc 2>/dev/null || echo 2) build=build-fuzz keep=0
while getopts "t:n:j:b:k" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    n) runs=$OPTARG ;;
    j) jobs=$OPTARG ;;
    b) build=$OPTARG ;;
    k) keep=1 ;;
    *) sed -n '2,25p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(model_file checkpoint load_buffer csv)

if ! command -v clang >/dev/null; then
  echo "fuzz: clang not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
  echo "fuzz: 0 passed, ${#targets[@]} failed"
  exit 1
fi

# Configure once; later runs only rebuild what changed.
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" --buildtype=debugoptimized -Dwerror=false \
    -Db_sanitize=address,undefined -Db_lundef=false \
    "-Dc_args=-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined" >/dev/null ||
    { echo "fuzz: meson setup failed"; echo "fuzz: 0 passed, ${#targets[@]} failed"; exit 1; }
fi
exes=()
for t in "${targets[@]}"; do exes+=("tests/fuzz/fuzz_$t"); done
if ! ninja -C "$build" "${exes[@]}" >/dev/null; then
  ninja -C "$build" "${exes[@]}" | tail -30
  echo "fuzz: build failed"
  echo "fuzz: 0 passed, ${#targets[@]} failed"
  exit 1
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# fuzz one target; writes DIR/fuzz-work/TARGET/{log,result}
fuzz_one() {
  local t=$1 work="$build/fuzz-work/$1"
  if [ "$keep" = 0 ]; then rm -rf "$work"; fi
  mkdir -p "$work/corpus"
  local dirs=("$work/corpus" "$src/tests/fuzz/corpus/$t")
  [ -d "$src/tests/fuzz/regressions/$t" ] && dirs+=("$src/tests/fuzz/regressions/$t")
  # -rss_limit_mb: libmtl must never need much for inputs of a few KB;
  # -timeout: one input may not take more than 10 s (an endless loop).
  local start=$SECONDS
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -runs="$runs" -print_final_stats=1 -rss_limit_mb=2048 \
    -timeout=10 -max_len=16384 -artifact_prefix="$work/" "${dirs[@]}" >"$work/log" 2>&1
  echo $? >"$work/result"
  echo $((SECONDS - start)) >"$work/seconds"
}

running=0
for t in "${targets[@]}"; do
  fuzz_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

passed=0 failed=0
for t in "${targets[@]}"; do
  work="$build/fuzz-work/$t"
  rc=$(cat "$work/result" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1)
  n_corpus=$(find "$work/corpus" -type f | wc -l)
  took=$(cat "$work/seconds" 2>/dev/null || echo "?")
  if [ "$rc" = 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $t: ok, ${execs:-?} executions in $took s, ${cov:-cov: ?}, $n_corpus inputs in the working corpus"
  else
    failed=$((failed + 1))
    echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} executions; log: $work/log"
    grep -E 'ERROR|broken promise|SUMMARY|Test unit written' "$work/log" | head -8 | sed 's/^/    /'
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
