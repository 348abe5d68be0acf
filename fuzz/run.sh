#!/usr/bin/env bash
# Fuzz the C ELF core (csrc/elfcore.c, the reader; csrc/elfpatch.c, the patcher) with
# libFuzzer + ASan + UBSan.
#
#   bash fuzz/run.sh [SECONDS] [libFuzzer flags...]   fuzz for SECONDS in all (default 120)
#   bash fuzz/run.sh --make-seeds                     rebuild fuzz/seeds/ with gcc
#
# Five targets, each built native and -m32 (i386 compiler-rt, in Debian's
# libclang-rt-14-dev; lib32z1-dev for fuzz_inflate and fuzz_deflate):
#   fuzz_elfcore   raw bytes (-max_len=65536), parsed, then patched with fixed ops; corpus
#                  from fuzz/seeds/ and tests/data/fuzz/ (but its *.recipe);
#   fuzz_elfgen    structure-aware: the input is a recipe that csrc/fuzz_elfgen.h turns
#                  into an ELF skeleton (many dynamic entries at shared long strings,
#                  version chains, hash tables that lie...), parsed; both parse targets
#                  also parse from kept bytes only, the others hidden and poisoned
#                  (rw_elf_parse_kept, rw_elf_wanted: csrc/fuzz_check.h);
#   fuzz_elfpatch  the same recipes, whose tails also say how to lay the file out and how
#                  to patch it; the patched file is checked (csrc/fuzz_patch_check.h).
#                  The recipe targets' corpora start from fuzz/recipes/ and
#                  tests/data/fuzz/*.recipe.
#   fuzz_inflate   csrc/inflate.c with tiny buffers: a zip member's declared size and
#                  method, then its bytes, inflated and checked against zlib's own inflate,
#                  and again with byte ranges kept, grown by a wake, and a prefix.
#   fuzz_deflate   csrc/deflate.c: a level and buffers, deflated in one batch with zlib;
#                  each stream must inflate back, its CRC and digest must be right.
# Every run first replays fuzz/seeds/, tests/data/fuzz/ and fuzz/recipes/ file by file
# (no truncation) under each build, then fuzzes native for 60% of SECONDS and -m32 for
# the rest, on 2 cores: fuzz_elfpatch for the whole of a build's time beside fuzz_elfgen,
# fuzz_elfcore and fuzz_inflate for 30% of it each and fuzz_deflate for the last 10%.
#
# Build products and the working corpora live in $FUZZ_WORK (default build/fuzz,
# which git ignores), so the corpora grow across runs.  Exits non-zero on any crash,
# sanitizer report, leak, timeout, out-of-memory or patch invariant violation, leaving the
# input in $FUZZ_WORK/artifacts/.  FUZZ_M32=0 skips the -m32 builds; FUZZ_M32=auto (the
# default) skips them with a warning when the compiler cannot link them.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${FUZZ_WORK:-$root/build/fuzz}"
cc="${CC:-clang}"

# Seeds: small libraries built here (64- and 32-bit, versioned, with and without
# section headers, with many version needs, an executable, a relocatable object),
# stripped foreign builds (big-endian s390x, armv7l, riscv64, mips64el, Android) from
# the bundled test wheels, and gen-NAME.elf, the file each fuzz/recipes/NAME.bin makes.
# Named *.elf: .gitignore drops *.so and *.o.
make_seeds() {
    local out="$root/fuzz/seeds" tmp wheels
    wheels="${WHEELS:-$root/tests/data/auditwheel-bundled}"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    cat >"$tmp/lib.c" <<'EOF'
#include <math.h>
#include <stdio.h>
#include <string.h>
__thread int seed_tls;
int seed_data = 1;
__attribute__((weak)) int seed_weak(void) { return 2; }
int seed_old(void) { return 1; }
int seed_new(void) { return 2; }
__asm__(".symver seed_old, seed_api@LIBSEED_1.0");
__asm__(".symver seed_new, seed_api@@LIBSEED_2.0");
double seed_math(double x) { return cos(x) + seed_data; }
int seed_copy(char *dst, const char *src, size_t n) { memcpy(dst, src, n); return puts(dst); }
EOF
    cat >"$tmp/lib.map" <<'EOF'
LIBSEED_1.0 { global: seed_api; seed_data; seed_tls; local: *; };
LIBSEED_2.0 { global: seed_api; seed_math; seed_copy; seed_weak; } LIBSEED_1.0;
EOF
    cat >"$tmp/exe.c" <<'EOF'
#include <stdio.h>
int main(int argc, char **argv) { return puts(argv[argc - 1]); }
EOF
    cat >"$tmp/note.s" <<'EOF'
	.section .note.gnu.property,"a"
	.p2align 3
	.long 4, 16, 5
	.asciz "GNU"
	.long 0xc0008002, 4, 4, 0
	.section .note.GNU-stack,"",@progbits
EOF
    local small=(-O1 -s -Wl,-z,noseparate-code -Wl,--build-id=none -Wl,-z,norelro)
    local lib=(-shared -fPIC "$tmp/lib.c" -Wl,--version-script="$tmp/lib.map"
        -Wl,-soname,libseed.so.1 -lm)
    rm -rf "$out"
    mkdir -p "$out"
    gcc -m64 "${small[@]}" "${lib[@]}" -o "$out/x86_64-verdef-verneed-rpath-isa.elf" \
        -Wl,-rpath,'$ORIGIN/../lib:/opt/seed' -Wl,--disable-new-dtags -Wl,-z,x86-64-v2
    gcc -m32 "${small[@]}" "${lib[@]}" -o "$out/i686-runpath-sysvhash.elf" \
        -Wl,-rpath,'$ORIGIN' -Wl,--enable-new-dtags -Wl,--hash-style=sysv
    gcc -m64 "${small[@]}" "$tmp/exe.c" -o "$out/x86_64-pie-interp.elf" \
        -Wl,--hash-style=both -Wl,-rpath,/a:/b -Wl,-z,x86-64-v3
    local i calls=""
    for i in $(seq 1 20); do
        echo "int dep$i(void) { return $i; }" >>"$tmp/dep.c"
        echo "DEP_$i { global: dep$i; };" >>"$tmp/dep.map"
        echo "int dep$i(void);" >>"$tmp/user.c"
        calls+="dep$i() + "
    done
    echo "int use_all(void) { return ${calls}0; }" >>"$tmp/user.c"
    gcc -m64 -shared -fPIC -o "$tmp/libdep.so" "$tmp/dep.c" -Wl,--version-script="$tmp/dep.map"
    gcc -m64 "${small[@]}" -shared -fPIC "$tmp/user.c" -o "$out/x86_64-many-version-needs.elf" \
        -L"$tmp" -ldep
    gcc -m64 -O1 -c "$tmp/lib.c" -o "$tmp/lib.o"
    gcc -c "$tmp/note.s" -o "$tmp/note.o"
    ld -r "$tmp/note.o" "$tmp/lib.o" -o "$out/x86_64-relocatable-isa.elf"
    strip --strip-debug "$out/x86_64-relocatable-isa.elf"
    llvm-objcopy --strip-sections "$out/x86_64-verdef-verneed-rpath-isa.elf" \
        "$out/x86_64-no-section-headers.elf"
    llvm-objcopy --strip-sections "$out/i686-runpath-sysvhash.elf" \
        "$out/i686-no-section-headers.elf"
    local pair whl
    for pair in s390x-glibc:glibc/testsimple-0.0.1-cp313-cp313-linux_s390x \
        mips64el-glibc:glibc/testsimple-0.0.1-cp313-cp313-linux_mips64 \
        armv7l-musl:musllinux_1_2/testsimple-0.0.1-cp312-cp312-linux_armv7l \
        riscv64-musl:musllinux_1_2/testsimple-0.0.1-cp312-cp312-linux_riscv64 \
        aarch64-android:android/spam-0.1.0-cp313-cp313-android_24_arm64_v8a; do
        whl="$wheels/${pair#*:}.whl"
        rm -rf "$tmp/so"
        unzip -q -j "$whl" '*.so' -d "$tmp/so"
        llvm-strip --strip-all "$tmp"/so/*.so -o "$out/${pair%%:*}.elf"
    done
    gcc -O1 -std=c99 -I"$root/csrc" -DELFGEN_MAIN "$root/csrc/elfcore.c" \
        "$root/csrc/elfpatch.c" "$root/csrc/fuzz_elfgen.c" -o "$tmp/elfgen"
    local recipe
    for recipe in "$root"/fuzz/recipes/*.bin; do
        "$tmp/elfgen" "$recipe" "$out/gen-$(basename "$recipe" .bin).elf" >/dev/null
    done
    ls -l "$out"
}

if [[ "${1:-}" == "--make-seeds" ]]; then
    make_seeds
    exit 0
fi

seconds="${1:-120}"
if [[ ! "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: bash fuzz/run.sh [SECONDS] [libFuzzer flags...] | --make-seeds" >&2
    exit 2
fi
shift || true
mkdir -p "$work/corpus" "$work/corpus-gen" "$work/corpus-patch" "$work/corpus-inflate" \
    "$work/corpus-deflate" "$work/artifacts"
flags=(-g -O1 -std=c99 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
    -I"$root/csrc")
m32="${FUZZ_M32:-auto}"
if [[ "$m32" == auto ]]; then
    if echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return d && n; }' |
        "$cc" -m32 "${flags[@]}" -x c - -o "$work/probe32" 2>/dev/null; then
        m32=1
    else
        echo "warning: $cc cannot build -m32 fuzzers (install libclang-rt-14-dev and" \
            "gcc-multilib); fuzzing native only" >&2
        m32=0
    fi
fi
builds=(native)
[[ "$m32" == 1 ]] && builds+=(m32)
# The C sources each target links besides its own.
declare -A sources=([elfcore]="elfcore.c elfpatch.c" [elfgen]="elfcore.c"
    [elfpatch]="elfcore.c elfpatch.c" [inflate]="inflate.c verify.c" [deflate]="deflate.c")
# What a target needs besides: fuzz_inflate checks against zlib, with tiny buffers;
# fuzz_deflate deflates with zlib, in tiny blocks.
declare -A extra=([inflate]="-DRW_IN_CHUNK=7 -DRW_OUT_WINDOW=13 -DRW_DRAIN_MIN=40 -pthread -lz"
    [deflate]="-DRW_BLOCK=4099 -lz")
pids=()
for build in "${builds[@]}"; do
    arch=()
    [[ "$build" == m32 ]] && arch=(-m32)
    for target in elfcore elfgen elfpatch inflate deflate; do
        srcs=()
        for src in ${sources[$target]}; do srcs+=("$root/csrc/$src"); done
        # shellcheck disable=SC2086
        "$cc" "${arch[@]}" "${flags[@]}" "${srcs[@]}" "$root/csrc/fuzz_$target.c" \
            ${extra[$target]:-} -o "$work/fuzz_${target}_$build" &
        pids+=($!)
    done
done
for pid in "${pids[@]}"; do wait "$pid"; done

# Committed inputs: raw ELF files, and recipes (*.recipe in tests/data/fuzz/).
raw_inputs=("$root"/fuzz/seeds/*)
recipes=("$root"/fuzz/recipes/*)
for f in "$root"/tests/data/fuzz/*; do
    [[ -e "$f" ]] || continue
    if [[ "$f" == *.recipe ]]; then recipes+=("$f"); else raw_inputs+=("$f"); fi
done
cp "${raw_inputs[@]}" "$work/corpus/"
cp "${recipes[@]}" "$work/corpus-gen/"
cp "${recipes[@]}" "$work/corpus-patch/"
cp "$root"/fuzz/seeds-inflate/* "$work/corpus-inflate/"  # deflate streams of many blocks
# Bytes to deflate: the ELF seeds and the streams, as levels, flags and jobs of all sizes.
cp "$root"/fuzz/seeds/* "$root"/fuzz/seeds-inflate/* "$work/corpus-deflate/"

status=0
# Replay every committed input whole, under every build.
for build in "${builds[@]}"; do
    log="$work/replay-$build.log"
    if ! { "$work/fuzz_elfcore_$build" -runs=1 "${raw_inputs[@]}" &&
        "$work/fuzz_elfgen_$build" -runs=1 "${recipes[@]}" &&
        "$work/fuzz_elfpatch_$build" -runs=1 "${recipes[@]}"; } >"$log" 2>&1; then
        grep -E 'ERROR|runtime error|invariant|SUMMARY|Running:' "$log" | tail -n 20 || true
        echo "REPLAY FAILED ($build); log: $log" >&2
        status=1
    fi
done
[[ $status -ne 0 ]] && exit "$status"

# fuzz TARGET BUILD SECONDS MAX_LEN CORPUS [extra...]: one libFuzzer run, log in $work.
fuzz() {
    local target="$1" build="$2" secs="$3" max_len="$4" corpus="$5"
    shift 5
    "$work/fuzz_${target}_$build" -max_total_time="$secs" -max_len="$max_len" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/${target}_$build-" "$@" \
        "$corpus" >"$work/fuzz-$target-$build.log" 2>&1
}

report() {
    local log="$work/fuzz-$1-$2.log" execs secs last cov ft
    grep -E 'ERROR|runtime error|invariant violated|SUMMARY|Test unit written' "$log" || true
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    secs="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
    last="$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    printf '%-8s %-6s executions: %-9s exec/s: %-6s cov: %-5s ft: %-6s log: %s\n' \
        "$1" "$2" "${execs:-?}" "${secs:-?}" "${cov:-?}" "${ft:-?}" "$log"
}

native_secs=$((seconds * 3 / 5))
[[ "$m32" == 1 ]] || native_secs="$seconds"
for build in "${builds[@]}"; do
    secs="$native_secs"
    [[ "$build" == m32 ]] && secs=$((seconds - native_secs))
    [[ "$secs" -lt 2 ]] && secs=2
    # Two lanes: the patcher for the whole time; in the other, the readers' three targets
    # 30% each and the deflate batch (a thin wrapper around zlib) the rest.
    fuzz elfpatch "$build" "$secs" 16384 "$work/corpus-patch" "$@" &
    patch=$!
    {
        rc=0
        third=$((secs * 3 / 10))
        [[ "$third" -lt 1 ]] && third=1
        fuzz elfgen "$build" "$third" 16384 "$work/corpus-gen" "$@" || rc=1
        fuzz elfcore "$build" "$third" 65536 "$work/corpus" "$@" || rc=1
        fuzz inflate "$build" "$third" 65536 "$work/corpus-inflate" "$@" || rc=1
        deflate_secs=$((secs - 3 * third))
        [[ "$deflate_secs" -lt 1 ]] && deflate_secs=1
        fuzz deflate "$build" "$deflate_secs" 65536 "$work/corpus-deflate" "$@" || rc=1
        exit "$rc"
    } &
    reader=$!
    for pid in "$patch" "$reader"; do
        if ! wait "$pid"; then status=1; fi
    done
    report elfpatch "$build"
    report elfgen "$build"
    report elfcore "$build"
    report inflate "$build"
    report deflate "$build"
    if [[ $status -ne 0 ]]; then break; fi
done
echo "corpus: $(find "$work/corpus" -type f | wc -l) files," \
    "recipes: $(find "$work/corpus-gen" -type f | wc -l) files (reader)," \
    "$(find "$work/corpus-patch" -type f | wc -l) files (patcher)"
if [[ $status -ne 0 ]]; then
    echo "FUZZING FAILED; reproducer in $work/artifacts/" >&2
fi
exit "$status"
