#!/usr/bin/env bash
# Runs every test of the C backend (pytest marker `sanitize`) against an AddressSanitizer +
# UndefinedBehaviorSanitizer build of the C library (-fno-sanitize-recover=all: the first report ends the
# run), once per instruction-set variant this CPU runs. Exit status 0 means zero reports.
#
#   bash scripts/sanitize.sh              # all variants
#   bash scripts/sanitize.sh -k gemm      # extra arguments go to pytest
#
# How: setup.py builds the variants with the sanitizer flags into build/sanitize/; CNNKIT_C_LIBRARY makes
# cnnkit load one of them; Python itself is not instrumented, so the ASan runtime is preloaded
# (LD_PRELOAD) to come first, and leak detection is off (the interpreter's own allocations look leaked).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=build/sanitize
FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"

rm -rf "$OUT"
CNNKIT_C_EXTRA_CFLAGS="$FLAGS" "$PYTHON" setup.py -q build_ext --build-lib "$OUT" --build-temp "$OUT/tmp" \
    2>&1 | grep -v -i "deprecat" || true
LIBASAN=$(${CC:-gcc} -print-file-name=libasan.so)
[ -f "$LIBASAN" ] || { echo "sanitize: libasan.so not found (install gcc's libasan)" >&2; exit 1; }

VARIANTS=$(LD_PRELOAD="$LIBASAN" ASAN_OPTIONS=detect_leaks=0 "$PYTHON" -c \
    "from cnnkit.backends.c.library import runnable_variants; print(*runnable_variants('$OUT/cnnkit/backends/c'))")
for variant in $VARIANTS; do
    library="$OUT/cnnkit/backends/c/libcnnkit_$variant.so"
    [ -f "$library" ] || { echo "sanitize: $library was not built" >&2; exit 1; }
    echo "sanitize: $variant ($library)"
    LD_PRELOAD="$LIBASAN" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    CNNKIT_C_LIBRARY="$library" \
        "$PYTHON" -m pytest -q -m sanitize -p no:cacheprovider "$@"
done
echo "sanitize: no reports from ASan or UBSan ($VARIANTS)"
