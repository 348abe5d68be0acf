/*
 * deflate: see deflate.h.  The two stream layouts are in zstream.h.
 */
#include "deflate.h"

#include "zstream.h"

#include <stdlib.h>
#include <string.h>

#define Z_OK_ 0
#define Z_STREAM_END_ 1
#define Z_NO_FLUSH_ 0
#define Z_SYNC_FLUSH_ 2
#define Z_FINISH_ 4
#define Z_DEFLATED_ 8
#define Z_MEM_ERROR_ (-4)
#define RAW_DEFLATE (-15)
#define MEM_LEVEL 8 /* zlib's default, which Python's compressobj passes */
#define DEFAULT_STRATEGY 0
#define SHA256_SIZE 32
/* The bytes each block compresses; the fuzz build makes blocks tiny so that small inputs
   cross many. */
#ifndef RW_BLOCK
#define RW_BLOCK RW_DEF_BLOCK
#endif
#define SYNC_MARK 16 /* a sync flush's empty stored block, which deflateBound leaves out */

typedef int32_t (*zng_init_fn)(zng_stream_ *, int32_t, int32_t, int32_t, int32_t, int32_t);
typedef int32_t (*zng_step_fn)(zng_stream_ *, int32_t);
typedef int32_t (*zng_end_fn)(zng_stream_ *);
typedef size_t (*zng_bound_fn)(zng_stream_ *, size_t);
typedef uint32_t (*zng_crc_fn)(uint32_t, const uint8_t *, uint32_t);
typedef int32_t (*zng_dict_fn)(zng_stream_ *, const uint8_t *, uint32_t);
typedef int (*zl_init_fn)(z_stream_ *, int, int, int, int, int, const char *, int);
typedef int (*zl_step_fn)(z_stream_ *, int);
typedef int (*zl_end_fn)(z_stream_ *);
typedef unsigned long (*zl_bound_fn)(z_stream_ *, unsigned long);
typedef unsigned long (*zl_crc_fn)(unsigned long, const uint8_t *, unsigned int);
typedef int (*zl_dict_fn)(z_stream_ *, const uint8_t *, unsigned int);
typedef int (*dinit_fn)(void *, const void *, void *);
typedef int (*dupdate_fn)(void *, const void *, size_t);
typedef int (*dfinal_fn)(void *, unsigned char *, unsigned int *);

/* One deflate stream of either flavor. */
typedef struct {
    const rw_deflater *z;
    zng_stream_ ng;
    z_stream_ zl;
} stream;

static int st_init(stream *s, int level)
{
    const rw_deflater *z = s->z;
    memset(&s->ng, 0, sizeof(s->ng));
    memset(&s->zl, 0, sizeof(s->zl));
    if (z->flavor == RW_ZNG)
        return ((zng_init_fn)z->init)(&s->ng, level, Z_DEFLATED_, RAW_DEFLATE, MEM_LEVEL,
                                      DEFAULT_STRATEGY);
    return ((zl_init_fn)z->init)(&s->zl, level, Z_DEFLATED_, RAW_DEFLATE, MEM_LEVEL,
                                 DEFAULT_STRATEGY, z->version, (int)sizeof(s->zl));
}

static void st_end(stream *s)
{
    if (s->z->flavor == RW_ZNG)
        (void)((zng_end_fn)s->z->end)(&s->ng);
    else
        (void)((zl_end_fn)s->z->end)(&s->zl);
}

static size_t st_bound(stream *s, size_t len)
{
    if (s->z->flavor == RW_ZNG)
        return ((zng_bound_fn)s->z->bound)(&s->ng, len);
    return (size_t)((zl_bound_fn)s->z->bound)(&s->zl, (unsigned long)len);
}

/* Point the stream at `len` bytes at `in` and `room` bytes at `out` (both under 4 GiB). */
static void st_buffers(stream *s, const uint8_t *in, size_t len, uint8_t *out, size_t room)
{
    if (s->z->flavor == RW_ZNG) {
        s->ng.next_in = in;
        s->ng.avail_in = (uint32_t)len;
        s->ng.next_out = out;
        s->ng.avail_out = (uint32_t)room;
    } else {
        s->zl.next_in = in;
        s->zl.avail_in = (unsigned int)len;
        s->zl.next_out = out;
        s->zl.avail_out = (unsigned int)room;
    }
}

static int st_dictionary(stream *s, const uint8_t *dict, size_t len)
{
    if (s->z->flavor == RW_ZNG)
        return ((zng_dict_fn)s->z->dictionary)(&s->ng, dict, (uint32_t)len);
    return ((zl_dict_fn)s->z->dictionary)(&s->zl, dict, (unsigned int)len);
}

static int st_step(stream *s, int flush)
{
    if (s->z->flavor == RW_ZNG)
        return ((zng_step_fn)s->z->deflate)(&s->ng, flush);
    return ((zl_step_fn)s->z->deflate)(&s->zl, flush);
}

static size_t st_avail_in(const stream *s)
{
    return s->z->flavor == RW_ZNG ? s->ng.avail_in : s->zl.avail_in;
}

static size_t st_avail_out(const stream *s)
{
    return s->z->flavor == RW_ZNG ? s->ng.avail_out : s->zl.avail_out;
}

static uint32_t crc_of(const rw_deflater *z, const uint8_t *p, size_t n)
{
    if (z->flavor == RW_ZNG)
        return ((zng_crc_fn)z->crc32)(0, p, (uint32_t)n);
    return (uint32_t)((zl_crc_fn)z->crc32)(0, p, (unsigned int)n);
}

static int failure(int rc)
{
    return rc == Z_MEM_ERROR_ ? RW_DEF_NOMEM : RW_DEF_REFUSED;
}

/* The room every block of `len` bytes may need: deflateBound's, and a sync flush's marker. */
static int room_for(const rw_deflater *z, int level, size_t len, size_t *room)
{
    stream s;
    size_t at = 0, total = 0;
    int rc;
    s.z = z;
    rc = st_init(&s, level);
    if (rc != Z_OK_)
        return failure(rc);
    do {
        size_t n = len - at < RW_BLOCK ? len - at : RW_BLOCK;
        total += st_bound(&s, n) + SYNC_MARK;
        at += n;
    } while (at < len && total < RW_DEF_MAX);
    st_end(&s);
    if (total >= RW_DEF_MAX)
        return RW_DEF_TOO_BIG;
    *room = total;
    return RW_DEF_OK;
}

/* One block: data[at, at + n), the bytes before it (down to data - window) its dictionary,
   appended at out + *used. */
static int deflate_block(const rw_deflater *z, int level, const rw_deflate_job *job, size_t at,
                         size_t n, int last, uint8_t *out, size_t room, size_t *used)
{
    stream s;
    size_t before = at + job->window, dict = before < RW_DEF_WINDOW ? before : RW_DEF_WINDOW;
    int rc;
    s.z = z;
    rc = st_init(&s, level);
    if (rc != Z_OK_)
        return failure(rc);
    if (dict)
        rc = st_dictionary(&s, job->data + at - dict, dict);
    st_buffers(&s, job->data + at, n, out + *used, room - *used);
    if (rc == Z_OK_ && n) /* (zlib calls a step that has nothing to do an error) */
        rc = st_step(&s, Z_NO_FLUSH_);
    if (rc == Z_OK_ && st_avail_in(&s) == 0)
        rc = st_step(&s, last ? Z_FINISH_ : Z_SYNC_FLUSH_);
    if (rc == (last ? Z_STREAM_END_ : Z_OK_) && st_avail_in(&s) == 0 &&
        (last || st_avail_out(&s) > 0))
        rc = RW_DEF_OK;
    else /* the room always suffices: the call failed */
        rc = rc == Z_MEM_ERROR_ ? RW_DEF_NOMEM : RW_DEF_REFUSED;
    *used = room - st_avail_out(&s);
    st_end(&s);
    return rc;
}

/* One buffer (under RW_DEF_MAX) deflated block by block into one malloc'd block. */
static int deflate_one(const rw_deflater *z, int level, rw_deflate_job *job)
{
    uint8_t *out;
    size_t room = 0, used = 0, at = 0;
    int rc = room_for(z, level, job->len, &room);
    if (rc != RW_DEF_OK)
        return rc;
    out = malloc(room);
    if (!out)
        return RW_DEF_NOMEM;
    do {
        size_t n = job->len - at < RW_BLOCK ? job->len - at : RW_BLOCK;
        int last = at + n == job->len;
        rc = deflate_block(z, level, job, at, n, last && job->finish, out, room, &used);
        at += n;
    } while (rc == RW_DEF_OK && at < job->len);
    if (rc != RW_DEF_OK) {
        free(out);
        return rc;
    }
    job->out = out;
    job->out_len = used;
    return RW_DEF_OK;
}

static int digest_one(const rw_hasher *h, rw_deflate_job *job)
{
    unsigned int got = 0;
    if (((dinit_fn)h->init)(h->ctx, h->md, NULL) != 1 ||
        ((dupdate_fn)h->update)(h->ctx, job->data, job->len) != 1 ||
        ((dfinal_fn)h->final)(h->ctx, job->sha256, &got) != 1 || got != SHA256_SIZE)
        return RW_DEF_DIGEST;
    return RW_DEF_OK;
}

void rw_deflate_jobs(const rw_deflater *z, const rw_hasher *hasher, int level,
                     rw_deflate_job *jobs, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        rw_deflate_job *job = &jobs[i];
        job->out = NULL;
        job->out_len = 0;
        job->crc = 0;
        if (job->len >= RW_DEF_MAX) {
            job->status = RW_DEF_TOO_BIG;
            continue;
        }
        job->status = deflate_one(z, level, job);
        if (job->status != RW_DEF_OK)
            continue;
        job->crc = crc_of(z, job->data, job->len);
        if (hasher) {
            job->status = digest_one(hasher, job);
            if (job->status != RW_DEF_OK) {
                free(job->out);
                job->out = NULL;
                job->out_len = 0;
            }
        }
    }
}

void rw_deflate_free(rw_deflate_job *jobs, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        free(jobs[i].out);
        jobs[i].out = NULL;
    }
}
