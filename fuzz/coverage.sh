#!/usr/bin/env bash
# Line and branch coverage of csrc/elfcore.c (the reader) and csrc/elfpatch.c (the patcher)
# reached by the fuzz corpora (all three targets).
#
#   bash fuzz/coverage.sh        after fuzz/run.sh; reads the corpora in $FUZZ_WORK
#
# Builds each target with clang's source-based coverage, replays its corpus (plus the seeds,
# recipes and past crashers) once, and prints llvm-cov's report for elfcore.c and elfpatch.c
# (the last line is their total).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${FUZZ_WORK:-$root/build/fuzz}"
out="$work/coverage"
mkdir -p "$out" "$work/corpus" "$work/corpus-gen" "$work/corpus-patch"
flags=(-O1 -g -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping -I"$root/csrc")
for target in elfcore elfgen elfpatch; do
    clang "${flags[@]}" "$root/csrc/fuzz_$target.c" "$root/csrc/elfcore.c" \
        "$root/csrc/elfpatch.c" -o "$out/$target"
done
# Past crashers: raw ELF files, and recipes (*.recipe), in a directory each (libFuzzer takes
# corpus directories, not files, beside them).
rm -rf "$out/crashers-raw" "$out/crashers-recipes"
mkdir -p "$out/crashers-raw" "$out/crashers-recipes"
for f in "$root"/tests/data/fuzz/*; do
    [[ -e "$f" ]] || continue
    if [[ "$f" == *.recipe ]]; then
        cp "$f" "$out/crashers-recipes/"
    else
        cp "$f" "$out/crashers-raw/"
    fi
done
LLVM_PROFILE_FILE="$out/elfcore.profraw" "$out/elfcore" -runs=0 "$work/corpus" \
    "$root/fuzz/seeds" "$out/crashers-raw" >"$out/elfcore.log" 2>&1
LLVM_PROFILE_FILE="$out/elfgen.profraw" "$out/elfgen" -runs=0 "$work/corpus-gen" \
    "$root/fuzz/recipes" "$out/crashers-recipes" >"$out/elfgen.log" 2>&1
LLVM_PROFILE_FILE="$out/elfpatch.profraw" "$out/elfpatch" -runs=0 "$work/corpus-patch" \
    "$root/fuzz/recipes" "$out/crashers-recipes" >"$out/elfpatch.log" 2>&1
llvm-profdata merge -o "$out/all.profdata" "$out/elfcore.profraw" "$out/elfgen.profraw" \
    "$out/elfpatch.profraw"
llvm-cov report "$out/elfcore" -object "$out/elfgen" -object "$out/elfpatch" \
    -instr-profile="$out/all.profdata" "$root/csrc/elfcore.c" "$root/csrc/elfpatch.c"
