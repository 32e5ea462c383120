#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test:
#   1. the normal build: unit, integration (real custosd + real SoftHSM) and
#      interop tests (openssl, pkcs11-tool as verifiers), fuzz regression replays;
#   2. the same tests built with clang, AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. libFuzzer targets from that same build, each run briefly;
#   4. a clang-format check.
# Environment: CUSTOS_TEST_SKIP_ASAN=1 / CUSTOS_TEST_SKIP_FUZZ=1 skip stages
# (for quick local runs; CI runs everything). FUZZ_SECONDS (default 10).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JOBS="$(nproc)"
START=$(date +%s)
stage() { echo; echo "=== test.sh: $* ($(( $(date +%s) - START ))s) ==="; }

stage "installing dependencies"
scripts/install-deps.sh

stage "format check"
mapfile -t SOURCES < <(git ls-files '*.cc' '*.h' 2>/dev/null || find client pkcs11 policy service tools tests -name '*.cc' -o -name '*.h')
if [ ${#SOURCES[@]} -gt 0 ]; then
  clang-format --dry-run --Werror "${SOURCES[@]}"
fi

# Debug information is most of the compile time here (core.cc: 7.8 s at -O2,
# 11.6 s with -g1, 17.8 s with -g), and CI builds everything three times: the
# optimised stage is built without it, the sanitizer stages with line tables
# only (-g1, enough for file:line in their reports). Applies when the build
# directory is configured for the first time, as in CI.
stage "build (RelWithDebInfo, -O2 without debug info)"
scripts/build.sh "$ROOT/build" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG"
stage "tests (RelWithDebInfo)"
(cd build && ctest --output-on-failure -j "$JOBS" --timeout 300)

# One sanitizer build serves two stages: clang with ASan+UBSan, and libFuzzer's
# coverage instrumentation on the libraries (CUSTOS_FUZZ), so the fuzz targets
# link against the same objects the sanitizer tests ran. -O0 with line tables
# only (-g1): clang with ASan compiles custos.pb.cc in 12.6 s at -O0 and 52 s
# at -O1, and the fuzzers run only briefly here. custos-bench is not built.
if [ "${CUSTOS_TEST_SKIP_ASAN:-0}" != "1" ] || [ "${CUSTOS_TEST_SKIP_FUZZ:-0}" != "1" ]; then
  stage "build (clang, ASan+UBSan, libFuzzer coverage)"
  if [ ! -f build-asan/CMakeCache.txt ]; then
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCUSTOS_SANITIZE=ON \
      -DCUSTOS_FUZZ=ON -DCUSTOS_BENCH=OFF -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" -DCMAKE_C_FLAGS_DEBUG="-O0 -g1"
  fi
  cmake --build build-asan -j "$JOBS"
fi

if [ "${CUSTOS_TEST_SKIP_ASAN:-0}" != "1" ]; then
  stage "tests (ASan+UBSan)"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  # Full unwinding so that suppressions match leaks inside SoftHSM (EdDSA sign:
  # libsofthsm2 is frame 6 of the allocation stack). Twelve frames, not the
  # default 30: slow unwinding on every malloc is what makes this stage long
  # (e2e_sign 58 s with 30 frames, 26 s with 12, 16 s with fast unwinding).
  export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0:malloc_context_size=12"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  (cd build-asan && ctest --output-on-failure -j "$JOBS" --timeout 600)
fi

if [ "${CUSTOS_TEST_SKIP_FUZZ:-0}" != "1" ]; then
  stage "fuzzing (${FUZZ_SECONDS:-10}s per target)"
  for fuzzer in build-asan/bin/*_fuzz; do
    [ -x "$fuzzer" ] || continue
    name="$(basename "$fuzzer")"
    corpus="$(mktemp -d)"
    seeds="tests/fuzz/corpus/${name%_fuzz}"
    [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
    echo "fuzz: $name"
    "$fuzzer" -max_total_time="${FUZZ_SECONDS:-10}" -print_final_stats=1 "$corpus" 2>&1 | tail -n 5
    rm -rf "$corpus"
  done
fi

stage "all tests passed"
