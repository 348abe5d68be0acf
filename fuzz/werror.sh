#!/usr/bin/env bash
# Compile the C core (reader and patcher) and the fuzz sources with strict warnings as
# errors: gcc and clang, native and -m32 (needs gcc-multilib), at -O0 and -O2 (some warnings
# need the optimiser).
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
            # The core alone (as the cffi extension builds it: the reader and the patcher),
            # then the fuzz sources (compiled only: linking them needs libFuzzer), then the
            # recipe tool.
            ok=1
            for src in elfcore elfpatch inflate deflate verify fuzz_elfcore fuzz_elfgen fuzz_elfpatch \
                fuzz_inflate fuzz_deflate; do
                "$compiler" "$arch" "$opt" "${warnings[@]}" -I"$root/csrc" -c \
                    "$root/csrc/$src.c" -o "$out/$src.o" || ok=0
            done
            "$compiler" "$arch" "$opt" "${warnings[@]}" -I"$root/csrc" -DELFGEN_MAIN \
                "$root/csrc/elfcore.c" "$root/csrc/elfpatch.c" "$root/csrc/fuzz_elfgen.c" \
                -o "$out/elfgen" || ok=0
            if [[ $ok == 1 ]]; then
                echo "ok      $label"
            else
                echo "FAILED  $label" >&2
                status=1
            fi
        done
    done
done
exit "$status"
