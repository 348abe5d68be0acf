/*
 * inflate: see inflate.h.  The two stream layouts are in zstream.h.
 */
#define _XOPEN_SOURCE 700
#define _FILE_OFFSET_BITS 64 /* pread offsets past 2 GiB on 32-bit hosts */
#include "inflate.h"

#include "elfbytes.h"
#include "zstream.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Compressed bytes read at a time, and inflated bytes written at a time to a descriptor; the
   fuzz build makes them tiny so that small inputs cross many buffer ends. */
#ifndef RW_IN_CHUNK
#define RW_IN_CHUNK ((size_t)256 << 10)
#endif
#ifndef RW_OUT_WINDOW
#define RW_OUT_WINDOW ((size_t)1 << 20)
#endif
/* A member written to a descriptor from this size on is hashed and written by a second
   thread, a window behind the inflate (the fuzz build lowers it too). */
#ifndef RW_DRAIN_MIN
#define RW_DRAIN_MIN ((uint64_t)8 << 20)
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

/* zng_inflateReset and inflateReset take the stream alone, as the End functions do. */
static int st_reset(stream *s)
{
    if (s->z->flavor == RW_ZNG)
        return ((zng_end_fn)s->z->reset)(&s->ng);
    return ((zl_end_fn)s->z->reset)(&s->zl);
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

/* Up to `n` bytes at `off`, fewer where the file ends; -1 on a read error. */
static ssize_t read_some(int fd, uint8_t *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t got = pread(fd, buf + done, n - done, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

/* Exactly `n` bytes at `off`; RW_INF_READ with err_no 0 when the file ends first. */
static int read_at(int fd, uint8_t *buf, size_t n, uint64_t off, rw_inflate_result *res)
{
    ssize_t got = read_some(fd, buf, n, off);
    if (got != (ssize_t)n)
        return finish(res, RW_INF_READ, got < 0 ? errno : 0);
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

/* Digest and write `n` bytes (to out_fd unless it is -1): 0, or the RW_INF_* failure. */
static int digest_and_write(const rw_digest *digest, int out_fd, const uint8_t *p, size_t n,
                            rw_inflate_result *res)
{
    if (digest && ((digest_fn)digest->update)(digest->ctx, p, n) != 1)
        return finish(res, RW_INF_DIGEST, 0);
    return out_fd < 0 ? RW_INF_OK : write_all(out_fd, p, n, res);
}

/* A second thread that digests and writes each window the inflate hands it, while the
   inflate fills the other one. */
typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    const rw_digest *digest;
    int out_fd;
    uint8_t *windows[2];
    int filling;          /* the window the inflate fills */
    const uint8_t *data;  /* handed over and not drained yet; NULL: none */
    size_t n;
    int quit;
    rw_inflate_result failed; /* the drain's first failure (status 0: none) */
} drain;

static void *drain_run(void *arg)
{
    drain *d = arg;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        const uint8_t *p;
        size_t n;
        while (d->data == NULL && !d->quit)
            pthread_cond_wait(&d->changed, &d->lock);
        if (d->data == NULL)
            break;
        p = d->data;
        n = d->n;
        pthread_mutex_unlock(&d->lock);
        if (d->failed.status == RW_INF_OK) /* only this thread writes it before the join */
            (void)digest_and_write(d->digest, d->out_fd, p, n, &d->failed);
        pthread_mutex_lock(&d->lock);
        d->data = NULL;
        pthread_cond_broadcast(&d->changed);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Wait until the drain holds no window; its failure, if any, becomes the result's. */
static int drain_wait(drain *d, rw_inflate_result *res)
{
    int status;
    pthread_mutex_lock(&d->lock);
    while (d->data != NULL)
        pthread_cond_wait(&d->changed, &d->lock);
    status = d->failed.status;
    pthread_mutex_unlock(&d->lock);
    return status ? finish(res, status, d->failed.err_no) : RW_INF_OK;
}

/* Hand the window just filled (`n` bytes at `p`) over; the other one is filled next. */
static int drain_put(drain *d, const uint8_t *p, size_t n, rw_inflate_result *res)
{
    if (drain_wait(d, res))
        return res->status;
    pthread_mutex_lock(&d->lock);
    d->data = p;
    d->n = n;
    d->filling ^= 1;
    pthread_cond_broadcast(&d->changed);
    pthread_mutex_unlock(&d->lock);
    return RW_INF_OK;
}

/* Start the thread; 0 when it could not be (the caller then works alone). */
static int drain_start(drain *d, const rw_digest *digest, int out_fd, uint8_t *a, uint8_t *b)
{
    memset(d, 0, sizeof(*d));
    d->digest = digest;
    d->out_fd = out_fd;
    d->windows[0] = a;
    d->windows[1] = b;
    if (pthread_mutex_init(&d->lock, NULL) != 0)
        return 0;
    if (pthread_cond_init(&d->changed, NULL) != 0) {
        pthread_mutex_destroy(&d->lock);
        return 0;
    }
    if (pthread_create(&d->thread, NULL, drain_run, d) != 0) {
        pthread_cond_destroy(&d->changed);
        pthread_mutex_destroy(&d->lock);
        return 0;
    }
    return 1;
}

/* Drain what is left, stop the thread; the drain's failure, if any, becomes the result's. */
static int drain_stop(drain *d, rw_inflate_result *res)
{
    int status = drain_wait(d, res);
    pthread_mutex_lock(&d->lock);
    d->quit = 1;
    pthread_cond_broadcast(&d->changed);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    pthread_cond_destroy(&d->changed);
    pthread_mutex_destroy(&d->lock);
    return status;
}

/* Where the bytes go: the declared size bounds them, all are CRC'd and digested. */
typedef struct {
    const rw_inflater *z;
    uint64_t usize;
    uint8_t *out_buf; /* NULL: written to out_fd */
    int out_fd;
    const rw_digest *digest;
    rw_inflate_result *res;
    drain *drain;     /* out_fd only: digests and writes on a second thread; NULL: here */
    rw_keep *keep;       /* NULL: nothing copied out */
    size_t next_keep;    /* the first of keep's ranges not wholly behind the output */
    uint64_t stop;       /* keep->stop, or 0 */
    int *cancel;         /* keep->cancel, or NULL */
} sink;

/* The window to fill: `own`, or with a drain the one it does not hold. */
static uint8_t *window_of(const sink *k, uint8_t *own)
{
    return k->drain ? k->drain->windows[k->drain->filling] : own;
}

#define WAKE_PAIRS 16 /* ranges one wake may name */

/* Add [start, end) to keep's ranges from index `from` on (all of which end past `start`),
   merging what it overlaps or touches; dropped when there is no room. */
static void keep_insert(rw_keep *keep, size_t from, uint64_t start, uint64_t end)
{
    uint64_t *r = keep->ranges;
    size_t i = from, j;
    while (i < keep->n && r[2 * i + 1] < start)
        i++;
    for (j = i; j < keep->n && r[2 * j] <= end; j++) { /* [i, j) merge with it */
        start = r[2 * j] < start ? r[2 * j] : start;
        end = r[2 * j + 1] > end ? r[2 * j + 1] : end;
    }
    if (j == i && keep->n == keep->cap)
        return;
    if (j == i) { /* a new one at i */
        memmove(r + 2 * i + 2, r + 2 * i, 2 * (keep->n - i) * sizeof(*r));
        keep->n++;
        j = i + 1;
    } else if (j > i + 1) { /* several become one */
        memmove(r + 2 * i + 2, r + 2 * j, 2 * (keep->n - j) * sizeof(*r));
        keep->n -= j - i - 1;
    }
    r[2 * i] = start;
    r[2 * i + 1] = end;
}

/* The ranges a wake names, those parts of them from `at` on added. */
static void keep_wake(sink *k, uint64_t at)
{
    rw_keep *keep = k->keep;
    uint64_t pairs[2 * WAKE_PAIRS];
    size_t room = keep->cap - keep->n, got, i;
    if (room > WAKE_PAIRS)
        room = WAKE_PAIRS;
    got = keep->wake(keep->base, (size_t)k->usize, keep->ranges, k->next_keep, pairs, room);
    for (i = 0; i < got && i < room; i++) {
        uint64_t start = pairs[2 * i] > at ? pairs[2 * i] : at;
        uint64_t end = pairs[2 * i + 1] < k->usize ? pairs[2 * i + 1] : k->usize;
        if (start < end)
            keep_insert(keep, k->next_keep, start, end);
    }
}

/* Copy what keep's ranges hold of the `n` bytes at `p`, which are the output's from `at`,
   waking the keep at each range's end. */
static void keep_copy(sink *k, const uint8_t *p, size_t n, uint64_t at)
{
    rw_keep *keep = k->keep;
    uint64_t end = at + n;
    while (at < end && k->next_keep < keep->n) {
        uint64_t *r = keep->ranges + 2 * k->next_keep;
        uint64_t from = r[0] > at ? r[0] : at, to = r[1] < end ? r[1] : end;
        if (from >= end)
            return; /* the next range starts after these bytes */
        memcpy(keep->base + from, p + (from - at), (size_t)(to - from));
        p += to - at;
        at = to;
        if (to == r[1]) { /* complete */
            k->next_keep++;
            if (keep->wake)
                keep_wake(k, at);
        }
    }
}

/* Account for `n` new bytes at `p` (out_buf's, or the window's): bounded, CRC'd, kept,
   digested, written unless in out_buf (with a drain, handed to it). */
static int emit(sink *k, const uint8_t *p, size_t n)
{
    rw_inflate_result *res = k->res;
    if (n > k->usize - res->produced)
        return finish(res, RW_INF_TOO_LONG, 0);
    res->crc = crc_update(k->z, res->crc, p, n);
    if (k->keep)
        keep_copy(k, p, n, res->produced);
    res->produced += n;
    if (k->drain)
        return drain_put(k->drain, p, n, res);
    return digest_and_write(k->digest, k->out_buf ? -1 : k->out_fd, p, n, res);
}

/* Whether another thread has asked the inflate to end (read anew each time). */
static int cancelled(const sink *k)
{
    return k->cancel && *(volatile int *)k->cancel;
}

/* Whether the prefix asked for is out (the caller then stops with RW_INF_PREFIX). */
static int stopped(const sink *k)
{
    return k->stop && k->res->produced >= k->stop;
}

static int copy_stored(sink *k, int in_fd, uint64_t offset, uint64_t csize,
                       uint8_t *window, size_t window_size)
{
    uint64_t done = 0;
    while (done < csize) {
        size_t n = (size_t)(csize - done < window_size ? csize - done : window_size);
        if (k->stop && n > k->stop - done)
            n = (size_t)(k->stop - done);
        uint8_t *dst = window_of(k, window);
        if (cancelled(k))
            return finish(k->res, RW_INF_CANCELLED, 0);
        if (k->out_buf) {
            if (n > k->usize - done)
                return finish(k->res, RW_INF_TOO_LONG, 0);
            dst = k->out_buf + done;
        }
        if (read_at(in_fd, dst, n, offset + done, k->res) || emit(k, dst, n))
            return k->res->status;
        done += n;
        if (stopped(k) && done < csize)
            return finish(k->res, RW_INF_PREFIX, 0);
    }
    return RW_INF_OK;
}

static int inflate_stream(stream *s, sink *k, int in_fd, uint64_t offset, uint64_t csize,
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
        window = window_of(k, window); /* another one after each hand-over to a drain */
        if (cancelled(k))
            return finish(res, RW_INF_CANCELLED, 0);
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
        if (k->stop && at < k->stop && room > k->stop - at)
            room = k->stop - at;
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
            if (fill && (fill == window_size || rc != 0 || at + got > usize || !blocks ||
                         (k->stop && at + got >= k->stop))) {
                if (emit(k, window, fill))
                    return res->status;
                fill = 0;
            }
        }
        if (rc == Z_STREAM_END_)
            return RW_INF_OK;
        if (stopped(k))
            return finish(res, RW_INF_PREFIX, 0);
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
                      const rw_digest *digest, rw_blocks *blocks, rw_keep *keep,
                      rw_inflate_result *res)
{
    sink k;
    uint8_t *in = NULL, *window = NULL, *second = NULL;
    stream s;
    drain d;
    uint64_t stop = keep && keep->stop < usize ? keep->stop : 0;
    /* A drain pays only for a whole member with something to digest or write. */
    int rc, drained = out_buf == NULL && usize >= RW_DRAIN_MIN && !stop &&
                      (digest != NULL || out_fd >= 0);
    /* Buffers no bigger than the member: a wheel of 3000 small files makes 3000 calls. */
    size_t in_size = csize < IN_CHUNK ? (size_t)csize + 1 : IN_CHUNK;
    size_t window_size = usize < OUT_WINDOW ? (size_t)usize + 1 : OUT_WINDOW;
    if (drained) /* two windows, each half the size */
        window_size = window_size / 2 ? window_size / 2 : 1;
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
    k.drain = NULL;
    k.keep = keep && keep->n ? keep : NULL;
    k.next_keep = 0;
    k.stop = stop;
    k.cancel = keep ? keep->cancel : NULL;
    if (out_buf == NULL && (window = malloc(window_size)) == NULL)
        return finish(res, RW_INF_NOMEM, 0);
    /* Without the memory or the thread for a drain, the work is done here alone. */
    if (drained && (second = malloc(window_size)) != NULL &&
        drain_start(&d, digest, out_fd, window, second))
        k.drain = &d;
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
    if (k.drain) {
        rw_inflate_result left;
        memset(&left, 0, sizeof(left));
        if (drain_stop(&d, &left) && rc == RW_INF_OK)
            rc = finish(res, left.status, left.err_no);
    }
    free(in);
    free(window);
    free(second);
    if (rc == RW_INF_OK && res->produced != usize)
        rc = finish(res, RW_INF_SHORT, 0);
    return finish(res, rc, res->err_no);
}

#define LOCAL_HEADER 30
#define LOCAL_SIGNATURE 0x04034b50u
#define EXTRA_GUESS 64 /* extra-field bytes the first read makes room for */


/* One member's head (see rw_member_heads): RW_HEAD_OK with h->head and h->data_offset set. */
static int member_head(stream *s, int fd, const uint8_t *name, rw_head *h, uint32_t want,
                       uint8_t *buf, size_t buf_size)
{
    uint64_t span, data_offset, base;
    size_t need, have, start;
    uint32_t expect = (uint32_t)(h->usize < want ? h->usize : want), got = 0;
    ssize_t n;
    if (h->header_offset > h->limit || h->name_len > buf_size - LOCAL_HEADER - EXTRA_GUESS -
                                                       RW_HEAD_READ)
        return RW_HEAD_UNSURE;
    need = (size_t)(h->csize < RW_HEAD_READ ? h->csize : RW_HEAD_READ);
    span = h->limit - h->header_offset;
    have = LOCAL_HEADER + h->name_len + EXTRA_GUESS + need;
    if (have > span)
        have = (size_t)span;
    if ((n = read_some(fd, buf, have, h->header_offset)) < LOCAL_HEADER + (ssize_t)h->name_len)
        return RW_HEAD_UNSURE;
    have = (size_t)n;
    if (rw_load(buf, 0, 4) != LOCAL_SIGNATURE || rw_load(buf + 26, 0, 2) != h->name_len ||
        memcmp(buf + LOCAL_HEADER, name, h->name_len) != 0)
        return RW_HEAD_UNSURE;
    data_offset = h->header_offset + LOCAL_HEADER + h->name_len + rw_load(buf + 28, 0, 2);
    if (data_offset > h->limit || h->csize > h->limit - data_offset)
        return RW_HEAD_UNSURE;
    base = data_offset - h->header_offset;
    if (base + need <= have) {
        start = (size_t)base;
    } else {
        if (read_some(fd, buf, need, data_offset) != (ssize_t)need)
            return RW_HEAD_UNSURE;
        start = 0;
    }
    if (!h->deflated) {
        if (h->csize != h->usize)
            return RW_HEAD_UNSURE;
        memcpy(h->head, buf + start, expect);
    } else if (expect) {
        int rc;
        if (st_reset(s) != 0)
            return RW_HEAD_UNSURE;
        st_input(s, buf + start, (uint32_t)need);
        /* want bytes of room: a stream making more than usize of them is too long */
        rc = st_step(s, h->head, want, Z_NO_FLUSH_, &got);
        if (rc == Z_NEED_DICT_ || (rc < 0 && rc != Z_BUF_ERROR_) || got != expect)
            return RW_HEAD_UNSURE;
    }
    h->got = expect;
    h->data_offset = data_offset;
    return RW_HEAD_OK;
}

void rw_member_heads(const rw_inflater *z, int fd, const uint8_t *names, rw_head *heads,
                     size_t n, uint32_t want)
{
    enum { BUF = 8192 };
    uint8_t buf[BUF];
    stream s;
    int ready;
    size_t i;
    if (want > RW_HEAD_MAX)
        want = RW_HEAD_MAX;
    s.z = z;
    ready = st_init(&s) == 0;
    for (i = 0; i < n; i++) {
        heads[i].got = 0;
        heads[i].data_offset = 0;
        heads[i].status = ready ? member_head(&s, fd, names + heads[i].name_at, &heads[i], want,
                                              buf, BUF)
                                : RW_HEAD_UNSURE;
    }
    if (ready)
        st_end(&s);
}
