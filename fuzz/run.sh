#!/usr/bin/env bash
# Fuzz the C ELF core (csrc/elfcore.c) with libFuzzer + ASan + UBSan.
#
#   bash fuzz/run.sh [SECONDS] [libFuzzer flags...]   fuzz for SECONDS (default 120)
#   bash fuzz/run.sh --make-seeds                     rebuild fuzz/seeds/ with gcc
#
# Build products and the working corpus live in $FUZZ_WORK (default build/fuzz,
# which git ignores), so the corpus grows across runs.  The corpus starts from
# fuzz/seeds/ and the past crashers in tests/data/fuzz/, so every run replays
# them under the sanitizers first.  Exits non-zero on any crash, sanitizer
# report, leak, timeout or out-of-memory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${FUZZ_WORK:-$root/build/fuzz}"
cc="${CC:-clang}"

# Seeds: small libraries built here (64- and 32-bit, versioned, with and without
# section headers, with many version needs, an executable, a relocatable object)
# plus stripped foreign builds (big-endian s390x, armv7l, riscv64, mips64el,
# Android) from the bundled test wheels.  Named *.elf: .gitignore drops *.so and *.o.
make_seeds() {
    local out="$root/fuzz/seeds" tmp wheels
    wheels="${WHEELS:-$root/../shared/testdata/auditwheel-bundled}"
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
mkdir -p "$work/corpus" "$work/artifacts"
"$cc" -g -O1 -std=c99 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$root/csrc" "$root/csrc/elfcore.c" "$root/csrc/fuzz_elfcore.c" -o "$work/fuzz_elfcore"
cp "$root"/fuzz/seeds/* "$work/corpus/"
if compgen -G "$root/tests/data/fuzz/*" >/dev/null; then
    cp "$root"/tests/data/fuzz/* "$work/corpus/"
fi

log="$work/fuzz.log"
status=0
"$work/fuzz_elfcore" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" \
    >"$log" 2>&1 || status=$?

grep -E '^#[0-9]+' "$log" | tail -n 3 || true
grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" || true
execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
last="$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)"
cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
echo "executions: ${execs:-?}  cov: ${cov:-?}  ft: ${ft:-?}" \
    "corpus: $(find "$work/corpus" -type f | wc -l) files  log: $log"
if [[ $status -ne 0 ]]; then
    echo "FUZZING FAILED (exit $status); reproducer in $work/artifacts/" >&2
fi
exit "$status"
