/*
 * deflate: many buffers raw-deflated, CRC'd and SHA-256'd in one call that
 * needs no Python (cffi releases the GIL around it), so a repair that rewrites
 * thousands of small extensions compresses them on the other core while this
 * one goes on patching, and a big member's pieces compress on every core.
 *
 * A buffer is deflated the way pigz does it: in blocks of RW_DEF_BLOCK bytes,
 * each a deflate stream of its own that has the RW_DEF_WINDOW bytes before it
 * as dictionary and ends on a sync flush (the last one, with `finish`, on
 * Z_FINISH), so the blocks concatenate into one stream and a writer can
 * compress a member's blocks in parallel and get the bytes a whole-member call
 * gets.  Each block is one deflate(Z_NO_FLUSH) into room of deflateBound's
 * size, then the flush: the stream depends on the data, the level and the
 * library's version only.  (Python's compressobj hands the library its output
 * room in growing pieces, and zlib-ng's medium levels end blocks where the
 * room runs out, so its bytes can differ.)
 *
 * The deflate is zlib-ng's (its native API, found in the zlib_ng extension)
 * or zlib's, the digest OpenSSL's EVP functions (found through Python's
 * _hashlib), all reached by the function pointers the caller passes.
 */
#ifndef REPAIRWHEEL_DEFLATE_H
#define REPAIRWHEEL_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "inflate.h" /* RW_ZNG, RW_ZLIB */

/* BEGIN CDEF */
#define RW_DEF_OK 0
#define RW_DEF_NOMEM 1     /* malloc or the deflater's init ran out of memory */
#define RW_DEF_REFUSED 2   /* the deflater returned an error (a bad level, say) */
#define RW_DEF_TOO_BIG 3   /* a buffer of RW_DEF_MAX bytes or more */
#define RW_DEF_DIGEST 4    /* the digest failed */
#define RW_DEF_MAX 0x40000000  /* 1 GiB: avail_in and avail_out are 32-bit */
#define RW_DEF_BLOCK 0x100000  /* 1 MiB: the bytes each block of a stream compresses */
#define RW_DEF_WINDOW 0x8000   /* 32 KiB: the bytes before a block that are its dictionary */

typedef struct {
    int flavor;             /* RW_ZNG or RW_ZLIB */
    /* The library's functions, each cast to this generic type: */
    void (*init)(void);     /* zng_deflateInit2(strm, level, method, bits, mem_level, strategy)
                               or deflateInit2_(the same, version, sizeof(z_stream)) */
    void (*deflate)(void);  /* zng_deflate or deflate: (strm, flush) */
    void (*end)(void);      /* zng_deflateEnd or deflateEnd: (strm) */
    void (*bound)(void);    /* zng_deflateBound or deflateBound: (strm, len) */
    void (*dictionary)(void); /* zng_deflateSetDictionary or deflateSetDictionary */
    void (*crc32)(void);    /* zng_crc32 or crc32: (crc, buf, len) */
    const char *version;    /* RW_ZLIB: zlibVersion(), passed to deflateInit2_ */
} rw_deflater;

/* OpenSSL's EVP_DigestInit_ex, EVP_DigestUpdate and EVP_DigestFinal_ex, one context reused
   for every buffer, and EVP_sha256()'s result. */
typedef struct {
    void (*init)(void);
    void (*update)(void);
    void (*final)(void);
    void *ctx;
    const void *md;
} rw_hasher;

typedef struct {
    /* in */
    const uint8_t *data;
    size_t len;
    size_t window;         /* bytes before data that may serve as the first block's dictionary
                              (it takes the last RW_DEF_WINDOW of them) */
    int finish;            /* end the stream after the last block (else a sync flush) */
    /* out */
    int status;            /* RW_DEF_* */
    uint8_t *out;          /* the raw deflate stream (malloc'd: rw_deflate_free), or NULL */
    size_t out_len;
    uint32_t crc;          /* CRC-32 of data */
    uint8_t sha256[32];    /* with a hasher */
} rw_deflate_job;

/* Deflate each job's data at `level` (1..9), its CRC-32 and, with `hasher` (else NULL), its
   SHA-256 computed too; a failing job leaves out NULL and the others go on. A job of
   RW_DEF_MAX bytes or more is refused (RW_DEF_TOO_BIG) before any of them is read. */
void rw_deflate_jobs(const rw_deflater *z, const rw_hasher *hasher, int level,
                     rw_deflate_job *jobs, size_t n);

/* Free what rw_deflate_jobs allocated for the jobs (and set their out to NULL). */
void rw_deflate_free(rw_deflate_job *jobs, size_t n);
/* END CDEF */

#endif
