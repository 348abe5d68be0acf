/*
 * inflate: one zip member's bytes, read from the archive's descriptor and
 * inflated into a caller's buffer or written to a descriptor, in one call that
 * needs no Python (cffi releases the GIL around it), with its size bounded by
 * the declared one and its CRC-32 computed on the way; optionally with the ends
 * of its deflate blocks recorded, so that a repair can reuse the blocks a patch
 * left alone without inflating the member again.
 *
 * The inflate itself is zlib-ng's or zlib's, reached through the function
 * pointers the caller passes (the Python side finds them in the zlib_ng
 * extension or the system libz), so this file links against neither.
 */
#ifndef REPAIRWHEEL_INFLATE_H
#define REPAIRWHEEL_INFLATE_H

#include <stddef.h>
#include <stdint.h>

/* BEGIN CDEF */
#define RW_ZNG 1   /* zlib-ng's native API: zng_inflateInit2(strm, bits), zng_stream */
#define RW_ZLIB 2  /* zlib's: inflateInit2_(strm, bits, version, sizeof(z_stream)) */

#define RW_INF_OK 0
#define RW_INF_CORRUPT 1    /* the inflate refused the stream; msg says why */
#define RW_INF_TRUNCATED 2  /* the compressed bytes end before the stream does */
#define RW_INF_TOO_LONG 3   /* more bytes than declared */
#define RW_INF_SHORT 4      /* fewer bytes than declared */
#define RW_INF_READ 5       /* pread failed or the file ends early (err_no, 0 for early end) */
#define RW_INF_WRITE 6      /* write failed (err_no) */
#define RW_INF_NOMEM 7
#define RW_INF_DIGEST 8     /* the digest's update failed */
#define RW_INF_PREFIX 9     /* stopped after keep->stop bytes, as asked */
#define RW_INF_CANCELLED 10 /* stopped because keep->cancel was set */

typedef struct {
    int flavor;           /* RW_ZNG or RW_ZLIB */
    /* The library's functions, each cast to this generic type: */
    void (*init)(void);     /* zng_inflateInit2 or inflateInit2_ */
    void (*inflate)(void);  /* zng_inflate or inflate */
    void (*end)(void);      /* zng_inflateEnd or inflateEnd */
    void (*reset)(void);    /* zng_inflateReset or inflateReset */
    void (*crc32)(void);    /* zng_crc32 or crc32: (crc, buf, len) */
    const char *version;  /* RW_ZLIB: zlibVersion(), passed to inflateInit2_ */
} rw_inflater;

/* A digest fed every output byte: OpenSSL's EVP_DigestUpdate(ctx, data, n), say. */
typedef struct {
    void (*update)(void);   /* int update(void *ctx, const void *data, size_t n): 1 is success */
    void *ctx;
} rw_digest;

/* Where a deflate stream's blocks end on a byte boundary (all but the last block's end):
   pairs[2i] is the uncompressed offset, pairs[2i + 1] the compressed one, in order. */
typedef struct {
    uint64_t *pairs;      /* room for 2 * capacity values */
    size_t capacity;
    size_t count;
    int overflow;         /* there were more than capacity: the list is incomplete */
} rw_blocks;

/* Output bytes to copy to `base` at their own offsets while the member inflates (base has
   room for its declared size): `n` sorted, disjoint [start, end) ranges.  Each time a range
   is complete, `wake` (when not NULL) is called with base, the member's size and the
   ranges complete so far, and may name up to `cap` - `n` more in `pairs` (unsorted); what
   they hold ahead of the output is kept too, and they end up in `ranges` (where one may
   touch a range completed before it).  With `stop`
   non-zero the inflate ends once that many bytes are out (RW_INF_PREFIX), the CRC and the
   digest covering only those.  With `cancel` not NULL, another thread may set what it
   points to non-zero: the inflate then ends before its next window (RW_INF_CANCELLED). */
typedef struct {
    uint64_t *ranges;        /* room for 2 * cap values */
    size_t n;
    size_t cap;
    uint8_t *base;
    uint64_t stop;
    size_t (*wake)(const uint8_t *base, size_t size, const uint64_t *kept, size_t n_kept,
                   uint64_t *pairs, size_t cap);
    int *cancel;
} rw_keep;

typedef struct {
    int status;           /* RW_INF_* */
    int err_no;
    uint64_t produced;    /* bytes written out */
    uint32_t crc;         /* CRC-32 of those bytes */
    char msg[160];
} rw_inflate_result;

/*
 * The member whose `csize` stored bytes start at `offset` in `in_fd`: deflated
 * (`deflated` non-zero) or stored.  Its `usize` bytes go to `out_buf` (which
 * holds `usize` bytes) when it is not NULL, else to `out_fd`, and through
 * `digest` unless it is NULL; `out_fd` -1 writes nothing (with `keep`, say).  With `blocks`
 * (not NULL) a deflated member's byte-aligned block ends are recorded there (it inflates
 * block by block); with `keep` (not NULL) the bytes it names are copied out.  A
 * stream that ends before its compressed bytes do ends the member there.
 * Returns the status, also in res->status.
 */
int rw_inflate_member(const rw_inflater *z, int in_fd, uint64_t offset, uint64_t csize,
                      int deflated, uint64_t usize, uint8_t *out_buf, int out_fd,
                      const rw_digest *digest, rw_blocks *blocks, rw_keep *keep,
                      rw_inflate_result *res);

/* The first bytes of many members, for telling which are ELF without a Python call each. */
#define RW_HEAD_MAX 16
#define RW_HEAD_OK 0
#define RW_HEAD_UNSURE 1  /* not settled by one short read: the caller takes the slow path,
                             which also says what is wrong with the member, if anything */
#define RW_HEAD_READ 512  /* compressed bytes a head may take */

typedef struct {
    /* in */
    uint64_t header_offset;  /* the member's local header */
    uint64_t csize;          /* compressed and declared sizes */
    uint64_t usize;
    uint64_t limit;          /* where the next zip record starts: its bytes end by there */
    uint64_t name_at;        /* the raw name its local header must repeat: in `names` */
    uint32_t name_len;
    int deflated;
    /* out */
    int status;              /* RW_HEAD_OK or RW_HEAD_UNSURE */
    uint32_t got;            /* min(want, usize) bytes in head */
    uint64_t data_offset;    /* where its compressed bytes start */
    uint8_t head[RW_HEAD_MAX];
} rw_head;

/*
 * For each of the `n` members in `heads`, from the archive open on `fd`: check its local
 * header (signature, the name at name_at in `names`, its bytes ending by `limit`) and get its first min(want, usize)
 * bytes (`want` <= RW_HEAD_MAX) from at most RW_HEAD_READ compressed ones.  A member is
 * RW_HEAD_OK only when that is all sound and the inflate made those bytes and no more than
 * usize; anything else (a short read, a corrupt stream, a stored member whose sizes differ)
 * is RW_HEAD_UNSURE.  One inflate stream serves every member.
 */
void rw_member_heads(const rw_inflater *z, int fd, const uint8_t *names, rw_head *heads,
                     size_t n, uint32_t want);
/* END CDEF */

#endif
