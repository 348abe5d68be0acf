/*
 * verify: many small members inflated, CRC'd and SHA-256'd in one call that holds no
 * GIL, so that checking a wheel's 12k small files against RECORD costs no Python call each.
 */
#ifndef REPAIRWHEEL_VERIFY_H
#define REPAIRWHEEL_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "deflate.h"
#include "inflate.h"

/* BEGIN CDEF */
typedef struct {
    /* in */
    uint64_t offset;       /* where the member's compressed bytes start */
    uint64_t csize;        /* compressed and declared sizes */
    uint64_t usize;
    int deflated;
    /* out */
    int status;            /* RW_INF_*: RW_INF_OK once it inflated to exactly usize bytes */
    uint32_t crc;          /* CRC-32 of the bytes made */
    uint8_t sha256[32];    /* their SHA-256, with a hasher and status RW_INF_OK */
} rw_verify_job;

/* Inflate each job's member from `fd` into `scratch` (`room` bytes), its CRC-32 and, with
   `hasher` (else NULL), its SHA-256 computed. A job whose usize exceeds `room` is not read
   (RW_INF_NOMEM); a failing job (RW_INF_DIGEST where hashing failed) leaves the others to go
   on. The caller compares each CRC with the one its zip entry declares. */
void rw_verify_members(const rw_inflater *z, const rw_hasher *hasher, int fd, uint8_t *scratch,
                       size_t room, rw_verify_job *jobs, size_t n);
/* END CDEF */

#endif
