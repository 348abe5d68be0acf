/*
 * elfbytes: unsigned integers of 1 to 8 bytes in either byte order, read from and
 * written to memory the caller has already bounds-checked.  Shared by the reader
 * (elfcore.c), the patcher (elfpatch.c) and the zip local headers inflate.c reads.
 */
#ifndef REPAIRWHEEL_ELFBYTES_H
#define REPAIRWHEEL_ELFBYTES_H

#include <stdint.h>

static inline uint64_t rw_load(const uint8_t *b, int big, int width)
{
    uint64_t v = 0;
    int i;
    if (big) {
        for (i = 0; i < width; i++)
            v = (v << 8) | b[i];
    } else {
        for (i = width - 1; i >= 0; i--)
            v = (v << 8) | b[i];
    }
    return v;
}

static inline void rw_store(uint8_t *b, int big, int width, uint64_t v)
{
    int i;
    for (i = 0; i < width; i++) {
        b[big ? width - 1 - i : i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

#endif
