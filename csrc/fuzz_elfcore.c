/*
 * libFuzzer harness for elfcore and elfpatch on raw bytes.  Built and run by fuzz/run.sh.
 * Every input is parsed (the checks are in fuzz_check.h, shared with the structure-aware
 * target fuzz_elfgen.c), then patched with one of four fixed op sets, picked by its size, and
 * the result checked (fuzz_patch_check.h; not strictly: raw bytes may lay a file out in ways
 * no tool would).
 */
#include "fuzz_check.h"
#include "fuzz_patch_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const paths[] = {NULL, NULL, "$ORIGIN/../fuzz.libs", "$ORIGIN"};
    const char *old[2] = {"libc.so.6", "libm.so.6"};
    const char *repl[2] = {"libc-0123abcd.so.6", "m"};
    const char *gone[1] = {"libpthread.so.0"};
    rw_patch_ops ops;
    rw_elf *elf = NULL;
    char err[256];
    fuzz_check(data, size);
    /* rename the first DT_NEEDED (longer) and the second (shorter), remove the last */
    if (rw_elf_parse(data, size, 0, &elf, err, sizeof(err)) == RW_OK) {
        if (elf->n_needed > 0)
            old[0] = elf->needed[0];
        if (elf->n_needed > 1)
            old[1] = elf->needed[1];
        if (elf->n_needed > 2)
            gone[0] = elf->needed[elf->n_needed - 1];
    }
    memset(&ops, 0, sizeof(ops));
    ops.set_soname = size % 2 ? "libfuzz-0123abcd.so.1" : NULL;
    ops.n_replace = 2;
    ops.replace_old = old;
    ops.replace_new = repl;
    ops.n_remove = 1;
    ops.remove = gone;
    ops.path_action = (int)(size % 4);
    ops.path = paths[size % 4];
    check_patch(data, size, &ops, 0);
    rw_elf_free(elf);
    return 0;
}
