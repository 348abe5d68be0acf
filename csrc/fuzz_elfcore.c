/*
 * libFuzzer harness for elfcore on raw bytes.  Built and run by fuzz/run.sh; the checks
 * are in fuzz_check.h, shared with the structure-aware target fuzz_elfgen.c.
 */
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_check(data, size);
    return 0;
}
