/*
 * zstream: zlib-ng's zng_stream and zlib's z_stream as their headers define
 * them, for the C core's calls through function pointers (it includes neither
 * library's header).  Only the fields up to `msg` are touched after init.
 */
#ifndef REPAIRWHEEL_ZSTREAM_H
#define REPAIRWHEEL_ZSTREAM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *next_in;
    uint32_t avail_in;
    size_t total_in;
    uint8_t *next_out;
    uint32_t avail_out;
    size_t total_out;
    const char *msg;
    void *state;
    void *zalloc;
    void *zfree;
    void *opaque;
    int data_type;
    uint32_t adler;
    unsigned long reserved;
} zng_stream_;

typedef struct {
    const uint8_t *next_in;
    unsigned int avail_in;
    unsigned long total_in;
    uint8_t *next_out;
    unsigned int avail_out;
    unsigned long total_out;
    const char *msg;
    void *state;
    void *zalloc;
    void *zfree;
    void *opaque;
    int data_type;
    unsigned long adler;
    unsigned long reserved;
} z_stream_;

#endif
