/*
 * inflate: see inflate.h.  The two stream layouts are zlib-ng's zng_stream and
 * zlib's z_stream as their headers define them; only the fields up to `msg`
 * are touched after init.
 */
#define _XOPEN_SOURCE 700
#define _FILE_OFFSET_BITS 64 /* pread offsets past 2 GiB on 32-bit hosts */
#include "inflate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Compressed bytes read at a time, and inflated bytes written at a time to a descriptor; the
   fuzz build makes them tiny so that small inputs cross many buffer ends. */
#ifndef RW_IN_CHUNK
#define RW_IN_CHUNK ((size_t)1 << 20)
#endif
#ifndef RW_OUT_WINDOW
#define RW_OUT_WINDOW ((size_t)4 << 20)
#endif
#define IN_CHUNK RW_IN_CHUNK
#define OUT_WINDOW RW_OUT_WINDOW
#define CRC_PIECE ((uint64_t)1 << 30) /* crc32() takes a 32-bit length */

#define Z_NO_FLUSH_ 0
#define Z_BLOCK_ 5
#define AT_BLOCK_END 128 /* data_type bits after a Z_BLOCK stop */
#define IN_LAST_BLOCK 64
#define UNUSED_BITS 7
#define STALLS_ALLOWED 64 /* Z_BLOCK stops in a row that take no new byte (empty blocks held
                             in the bit buffer) before the stream counts as stuck */
#define Z_STREAM_END_ 1
#define Z_NEED_DICT_ 2
#define Z_MEM_ERROR_ (-4)
#define Z_BUF_ERROR_ (-5)
#define RAW_DEFLATE (-15)

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

typedef int (*digest_fn)(void *, const void *, size_t);
typedef int32_t (*zng_init_fn)(zng_stream_ *, int32_t);
typedef int32_t (*zng_step_fn)(zng_stream_ *, int32_t);
typedef int32_t (*zng_end_fn)(zng_stream_ *);
typedef uint32_t (*zng_crc_fn)(uint32_t, const uint8_t *, uint32_t);
typedef int (*zl_init_fn)(z_stream_ *, int, const char *, int);
typedef int (*zl_step_fn)(z_stream_ *, int);
typedef int (*zl_end_fn)(z_stream_ *);
typedef unsigned long (*zl_crc_fn)(unsigned long, const uint8_t *, unsigned int);

/* One inflate stream of either flavor. */
typedef struct {
    const rw_inflater *z;
    zng_stream_ ng;
    z_stream_ zl;
} stream;

static int st_init(stream *s)
{
    memset(&s->ng, 0, sizeof(s->ng));
    memset(&s->zl, 0, sizeof(s->zl));
    if (s->z->flavor == RW_ZNG)
        return ((zng_init_fn)s->z->init)(&s->ng, RAW_DEFLATE);
    return ((zl_init_fn)s->z->init)(&s->zl, RAW_DEFLATE, s->z->version, (int)sizeof(s->zl));
}

static void st_end(stream *s)
{
    if (s->z->flavor == RW_ZNG)
        (void)((zng_end_fn)s->z->end)(&s->ng);
    else
        (void)((zl_end_fn)s->z->end)(&s->zl);
}

static uint32_t st_avail_in(const stream *s)
{
    return s->z->flavor == RW_ZNG ? s->ng.avail_in : s->zl.avail_in;
}

static void st_input(stream *s, const uint8_t *in, uint32_t n)
{
    if (s->z->flavor == RW_ZNG) {
        s->ng.next_in = in;
        s->ng.avail_in = n;
    } else {
        s->zl.next_in = in;
        s->zl.avail_in = n;
    }
}

static int st_data_type(const stream *s)
{
    return s->z->flavor == RW_ZNG ? s->ng.data_type : s->zl.data_type;
}

/* Inflate into `out` (room for `room` bytes) with `flush`; *got is what it wrote. */
static int st_step(stream *s, uint8_t *out, uint32_t room, int flush, uint32_t *got)
{
    int rc;
    if (s->z->flavor == RW_ZNG) {
        s->ng.next_out = out;
        s->ng.avail_out = room;
        rc = ((zng_step_fn)s->z->inflate)(&s->ng, flush);
        *got = room - s->ng.avail_out;
    } else {
        s->zl.next_out = out;
        s->zl.avail_out = room;
        rc = ((zl_step_fn)s->z->inflate)(&s->zl, flush);
        *got = room - s->zl.avail_out;
    }
    return rc;
}

/* After a Z_BLOCK stop: record the end of the block just decoded if it is byte-aligned and
   not the last one (its end is the stream's). */
static void note_block(const stream *s, rw_blocks *b, uint64_t out_at, uint64_t in_at)
{
    int flags = st_data_type(s);
    if (!(flags & AT_BLOCK_END) || (flags & IN_LAST_BLOCK) || (flags & UNUSED_BITS))
        return;
    if (b->count && b->pairs[2 * b->count - 2] >= out_at)
        return; /* an empty block: the boundary is already there */
    if (out_at == 0)
        return; /* the stream's start is a boundary anyway */
    if (b->count == b->capacity) {
        b->overflow = 1;
        return;
    }
    b->pairs[2 * b->count] = out_at;
    b->pairs[2 * b->count + 1] = in_at;
    b->count++;
}

static const char *st_msg(const stream *s)
{
    const char *msg = s->z->flavor == RW_ZNG ? s->ng.msg : s->zl.msg;
    return msg ? msg : "invalid data";
}

static uint32_t crc_update(const rw_inflater *z, uint32_t crc, const uint8_t *p, uint64_t n)
{
    while (n) {
        uint32_t piece = (uint32_t)(n < CRC_PIECE ? n : CRC_PIECE);
        if (z->flavor == RW_ZNG)
            crc = ((zng_crc_fn)z->crc32)(crc, p, piece);
        else
            crc = (uint32_t)((zl_crc_fn)z->crc32)(crc, p, piece);
        p += piece;
        n -= piece;
    }
    return crc;
}

static int finish(rw_inflate_result *res, int status, int err_no)
{
    res->status = status;
    res->err_no = err_no;
    return status;
}

/* Exactly `n` bytes at `off`; RW_INF_READ with err_no 0 when the file ends first. */
static int read_at(int fd, uint8_t *buf, size_t n, uint64_t off, rw_inflate_result *res)
{
    while (n) {
        ssize_t got = pread(fd, buf, n, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return finish(res, RW_INF_READ, got < 0 ? errno : 0);
        buf += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return RW_INF_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n, rw_inflate_result *res)
{
    while (n) {
        ssize_t put = write(fd, p, n);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return finish(res, RW_INF_WRITE, put < 0 ? errno : ENOSPC);
        p += put;
        n -= (size_t)put;
    }
    return RW_INF_OK;
}

/* Where the bytes go: the declared size bounds them, all are CRC'd and digested. */
typedef struct {
    const rw_inflater *z;
    uint64_t usize;
    uint8_t *out_buf; /* NULL: written to out_fd */
    int out_fd;
    const rw_digest *digest;
    rw_inflate_result *res;
} sink;

/* Account for `n` new bytes at `p`: bounded, CRC'd, digested, written unless in out_buf. */
static int emit(const sink *k, const uint8_t *p, size_t n)
{
    rw_inflate_result *res = k->res;
    if (n > k->usize - res->produced)
        return finish(res, RW_INF_TOO_LONG, 0);
    res->crc = crc_update(k->z, res->crc, p, n);
    res->produced += n;
    if (k->digest && ((digest_fn)k->digest->update)(k->digest->ctx, p, n) != 1)
        return finish(res, RW_INF_DIGEST, 0);
    return k->out_buf ? RW_INF_OK : write_all(k->out_fd, p, n, res);
}

static int copy_stored(const sink *k, int in_fd, uint64_t offset, uint64_t csize,
                       uint8_t *window, size_t window_size)
{
    uint64_t done = 0;
    while (done < csize) {
        size_t n = (size_t)(csize - done < window_size ? csize - done : window_size);
        uint8_t *dst = window;
        if (k->out_buf) {
            if (n > k->usize - done)
                return finish(k->res, RW_INF_TOO_LONG, 0);
            dst = k->out_buf + done;
        }
        if (read_at(in_fd, dst, n, offset + done, k->res) || emit(k, dst, n))
            return k->res->status;
        done += n;
    }
    return RW_INF_OK;
}

static int inflate_stream(stream *s, const sink *k, int in_fd, uint64_t offset, uint64_t csize,
                          uint8_t *in, size_t in_size, uint8_t *window, size_t window_size,
                          rw_blocks *blocks)
{
    rw_inflate_result *res = k->res;
    uint64_t usize = k->usize;
    uint8_t *out_buf = k->out_buf;
    uint64_t consumed = 0;
    size_t fill = 0; /* window mode: bytes in the window not yet emitted */
    int flush = blocks ? Z_BLOCK_ : Z_NO_FLUSH_;
    int stalls = 0;
    uint8_t spare;
    for (;;) {
        uint8_t *dst;
        uint64_t room, at = res->produced + fill;
        uint32_t got, before;
        int rc;
        if (st_avail_in(s) == 0 && consumed < csize) {
            size_t n = (size_t)(csize - consumed < in_size ? csize - consumed : in_size);
            if (read_at(in_fd, in, n, offset + consumed, res))
                return res->status;
            st_input(s, in, (uint32_t)n);
            consumed += n;
        }
        /* Room up to the declared size and one byte more, which tells a longer stream. */
        room = usize - at + 1;
        if (out_buf) {
            dst = at < usize ? out_buf + at : &spare;
            room = at < usize ? room - 1 : 1;
        } else {
            dst = window + fill;
            room = room < window_size - fill ? room : window_size - fill;
        }
        if (room > CRC_PIECE)
            room = CRC_PIECE;
        before = st_avail_in(s);
        rc = st_step(s, dst, (uint32_t)room, flush, &got);
        if (blocks && rc >= 0)
            note_block(s, blocks, at + got, consumed - st_avail_in(s));
        if (out_buf) {
            if (got && emit(k, dst, got))
                return res->status;
        } else {
            fill += got;
            /* Emitted when the window is full, the stream stops, or past the declared size;
               block by block stops only fill it further. */
            if (fill && (fill == window_size || rc != 0 || at + got > usize || !blocks)) {
                if (emit(k, window, fill))
                    return res->status;
                fill = 0;
            }
        }
        if (rc == Z_STREAM_END_)
            return RW_INF_OK;
        if (rc == Z_MEM_ERROR_)
            return finish(res, RW_INF_NOMEM, 0);
        if (rc == Z_NEED_DICT_ || (rc < 0 && rc != Z_BUF_ERROR_)) {
            snprintf(res->msg, sizeof(res->msg), "Error %d while decompressing data: %s",
                     rc == Z_NEED_DICT_ ? 2 : rc, st_msg(s));
            return finish(res, RW_INF_CORRUPT, 0);
        }
        /* Nothing taken and nothing made: Z_BLOCK stops may do that a few times in a row
           (empty blocks held in the bit buffer; at the last block's end, one more call ends
           the stream), anything else is stuck. */
        stalls = got == 0 && st_avail_in(s) == before ? stalls + 1 : 0;
        if (got == 0 && st_avail_in(s) == 0 && consumed == csize &&
            !(blocks && rc == 0 && (st_data_type(s) & AT_BLOCK_END) && stalls <= STALLS_ALLOWED)) {
            if (fill && emit(k, window, fill))
                return res->status;
            return finish(res, RW_INF_TRUNCATED, 0);
        }
        if (stalls && before != 0 && stalls > (blocks ? STALLS_ALLOWED : 0)) {
            if (fill && emit(k, window, fill))
                return res->status;
            snprintf(res->msg, sizeof(res->msg), "the inflate made no progress");
            return finish(res, RW_INF_CORRUPT, 0);
        }
    }
}

int rw_inflate_member(const rw_inflater *z, int in_fd, uint64_t offset, uint64_t csize,
                      int deflated, uint64_t usize, uint8_t *out_buf, int out_fd,
                      const rw_digest *digest, rw_blocks *blocks, rw_inflate_result *res)
{
    sink k;
    uint8_t *in = NULL, *window = NULL;
    stream s;
    int rc;
    /* Buffers no bigger than the member: a wheel of 3000 small files makes 3000 calls. */
    size_t in_size = csize < IN_CHUNK ? (size_t)csize + 1 : IN_CHUNK;
    size_t window_size = usize < OUT_WINDOW ? (size_t)usize + 1 : OUT_WINDOW;
    memset(res, 0, sizeof(*res));
    if (blocks) {
        blocks->count = 0;
        blocks->overflow = 0;
    }
    k.z = z;
    k.usize = usize;
    k.out_buf = out_buf;
    k.out_fd = out_fd;
    k.digest = digest;
    k.res = res;
    if (out_buf == NULL && (window = malloc(window_size)) == NULL)
        return finish(res, RW_INF_NOMEM, 0);
    if (!deflated) {
        rc = copy_stored(&k, in_fd, offset, csize, window, window_size);
    } else if (csize == 0 && usize == 0) {
        rc = RW_INF_OK; /* an empty member may hold no stream at all */
    } else if ((in = malloc(in_size)) == NULL) {
        rc = finish(res, RW_INF_NOMEM, 0);
    } else {
        s.z = z;
        if (st_init(&s) != 0) {
            rc = finish(res, RW_INF_NOMEM, 0);
        } else {
            rc = inflate_stream(&s, &k, in_fd, offset, csize, in, in_size, window, window_size,
                                blocks);
            st_end(&s);
        }
    }
    free(in);
    free(window);
    if (rc == RW_INF_OK && res->produced != usize)
        rc = finish(res, RW_INF_SHORT, 0);
    return finish(res, rc, res->err_no);
}
