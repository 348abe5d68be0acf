/*
 * Structure-aware fuzz target for elfpatch: the recipe (fuzz_elfgen.h) makes an ELF file and,
 * from its tail, the patch ops (a new SONAME, DT_NEEDED renames and removals, a DT_RPATH /
 * DT_RUNPATH action); fuzz_patch_check.h patches the file and checks the result, strictly,
 * since the generator's layouts are sound.  Built and run by fuzz/run.sh.
 */
#include "fuzz_elfgen.h"
#include "fuzz_patch_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    buf img;
    gen_ops g;
    if (generate(data, size, &img, &g))
        check_patch(img.b, img.len, &g.ops, 1);
    gen_ops_free(&g);
    free(img.b);
    return 0;
}
