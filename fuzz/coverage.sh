#!/usr/bin/env bash
# Line and branch coverage of csrc/elfcore.c reached by the fuzz corpora (both targets).
#
#   bash fuzz/coverage.sh        after fuzz/run.sh; reads the corpora in $FUZZ_WORK
#
# Builds each target with clang's source-based coverage, replays its corpus (plus the seeds,
# recipes and past crashers) once, and prints llvm-cov's report for elfcore.c.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${FUZZ_WORK:-$root/build/fuzz}"
out="$work/coverage"
mkdir -p "$out" "$work/corpus" "$work/corpus-gen"
flags=(-O1 -g -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping -I"$root/csrc")
for target in elfcore elfgen; do
    clang "${flags[@]}" "$root/csrc/fuzz_$target.c" "$root/csrc/elfcore.c" -o "$out/$target"
done
LLVM_PROFILE_FILE="$out/elfcore.profraw" "$out/elfcore" -runs=0 "$work/corpus" \
    "$root/fuzz/seeds" "$root/tests/data/fuzz" >"$out/elfcore.log" 2>&1
LLVM_PROFILE_FILE="$out/elfgen.profraw" "$out/elfgen" -runs=0 "$work/corpus-gen" \
    "$root/fuzz/recipes" >"$out/elfgen.log" 2>&1
llvm-profdata merge -o "$out/all.profdata" "$out/elfcore.profraw" "$out/elfgen.profraw"
llvm-cov report "$out/elfcore" -object "$out/elfgen" -instr-profile="$out/all.profdata" \
    "$root/csrc/elfcore.c"
