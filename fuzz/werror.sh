#!/usr/bin/env bash
# Compile the C core and the fuzz sources with strict warnings as errors: gcc and clang,
# native and -m32 (needs gcc-multilib), at -O0 and -O2 (some warnings need the optimiser).
#
#   bash fuzz/werror.sh        exits non-zero on the first warning
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
warnings=(-std=c99 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
    -Wcast-qual -Wcast-align -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wundef
    -Wvla -Wwrite-strings -Wpointer-arith -Wnull-dereference -Wdouble-promotion -Werror)
status=0
for compiler in gcc clang; do
    if ! command -v "$compiler" >/dev/null; then
        echo "werror: $compiler not found" >&2
        status=1
        continue
    fi
    for arch in -m64 -m32; do
        for opt in -O0 -O2; do
            label="$compiler $arch $opt"
            # The core alone (as the cffi extension builds it), then the fuzz sources
            # (compiled only: linking them needs libFuzzer).
            if "$compiler" "$arch" "$opt" "${warnings[@]}" -I"$root/csrc" -c \
                "$root/csrc/elfcore.c" -o "$out/elfcore.o" &&
                "$compiler" "$arch" "$opt" "${warnings[@]}" -I"$root/csrc" -c \
                    "$root/csrc/fuzz_elfcore.c" -o "$out/fuzz_elfcore.o" &&
                "$compiler" "$arch" "$opt" "${warnings[@]}" -I"$root/csrc" -c \
                    "$root/csrc/fuzz_elfgen.c" -o "$out/fuzz_elfgen.o" &&
                "$compiler" "$arch" "$opt" "${warnings[@]}" -I"$root/csrc" -DELFGEN_MAIN \
                    "$root/csrc/elfcore.c" "$root/csrc/fuzz_elfgen.c" -o "$out/elfgen"; then
                echo "ok      $label"
            else
                echo "FAILED  $label" >&2
                status=1
            fi
        done
    done
done
exit "$status"
