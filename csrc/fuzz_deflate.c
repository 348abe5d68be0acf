/*
 * Fuzz target for deflate.c: the input is a level byte, a flags byte and then jobs, each a
 * two-byte length and that many bytes (the last one takes what is left). Every job is
 * deflated with the system zlib through the function pointers, as the Python side passes
 * them, and checked: an accepted job's stream inflates back to its bytes, its CRC is
 * zlib's, its digest is what the test hasher computes, its length is within deflateBound.
 * Flag bits give every job the input before it as window (its first block's dictionary),
 * end the streams on a sync flush instead of Z_FINISH, add a job of RW_DEF_MAX bytes
 * (refused before any byte is read: it points at a one-byte buffer) and make the hasher
 * fail (every job then fails with no output left). The fuzz build makes RW_DEF_BLOCK tiny,
 * so that small inputs cross many blocks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "deflate.h"

#define MAX_JOBS 64
#ifndef RW_BLOCK /* as deflate.c is built */
#define RW_BLOCK RW_DEF_BLOCK
#endif
#define SHA256_SIZE 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "invariant violated: %s\n", what);
    abort();
}

/* A stand-in for EVP: the digest is the bytes' length and a running sum, spread out. */
typedef struct {
    int broken;
    uint64_t sum;
    uint64_t len;
} test_ctx;

static int t_init(void *ctx, const void *md, void *engine)
{
    test_ctx *c = ctx;
    (void)md;
    (void)engine;
    c->sum = 0;
    c->len = 0;
    return c->broken ? 0 : 1;
}

static int t_update(void *ctx, const void *p, size_t n)
{
    test_ctx *c = ctx;
    const uint8_t *b = p;
    size_t i;
    for (i = 0; i < n; i++)
        c->sum = c->sum * 31 + b[i];
    c->len += n;
    return 1;
}

static void t_digest(uint64_t sum, uint64_t len, unsigned char *out)
{
    int i;
    for (i = 0; i < SHA256_SIZE; i++)
        out[i] = (unsigned char)((i < 16 ? sum >> (8 * (i % 8)) : len >> (8 * (i % 8))) & 0xff);
}

static int t_final(void *ctx, unsigned char *out, unsigned int *n)
{
    test_ctx *c = ctx;
    t_digest(c->sum, c->len, out);
    *n = SHA256_SIZE;
    return 1;
}

static void check_job(const rw_deflate_job *job, int broken)
{
    uint8_t *back;
    unsigned char want[SHA256_SIZE];
    uint64_t sum = 0;
    z_stream s;
    size_t i, bound;
    int rc;
    if (broken) {
        if (job->status != RW_DEF_DIGEST || job->out)
            fail("a failing digest must fail the job and free its stream");
        return;
    }
    if (job->status != RW_DEF_OK || !job->out)
        fail("a job under RW_DEF_MAX must succeed");
    for (i = 0, bound = 0; i == 0 || i < job->len; i += RW_BLOCK) {
        size_t n = job->len - i < RW_BLOCK ? job->len - i : RW_BLOCK;
        bound += compressBound((uLong)n) + 16; /* (raw deflate needs less than zlib's) */
    }
    if (job->out_len > bound)
        fail("stream longer than deflateBound allows, block by block");
    if (job->crc != (uint32_t)crc32(0, job->data, (uInt)job->len))
        fail("CRC differs from zlib's");
    for (i = 0; i < job->len; i++)
        sum = sum * 31 + job->data[i];
    t_digest(sum, job->len, want);
    if (memcmp(want, job->sha256, SHA256_SIZE) != 0)
        fail("digest differs from the hasher's");
    back = malloc(job->len + 1);
    if (!back)
        fail("malloc");
    memset(&s, 0, sizeof(s));
    if (inflateInit2(&s, -15) != Z_OK)
        fail("inflateInit2");
    if (job->window) {
        size_t dict = job->window < RW_DEF_WINDOW ? job->window : RW_DEF_WINDOW;
        if (inflateSetDictionary(&s, job->data - dict, (uInt)dict) != Z_OK)
            fail("inflateSetDictionary");
    }
    s.next_in = job->out;
    s.avail_in = (uInt)job->out_len;
    s.next_out = back;
    s.avail_out = (uInt)(job->len + 1);
    rc = inflate(&s, Z_SYNC_FLUSH);
    if (rc != (job->finish ? Z_STREAM_END : Z_OK) || s.total_out != job->len ||
        s.avail_in != 0 || memcmp(back, job->data, job->len) != 0)
        fail("stream does not inflate back to the job's bytes");
    inflateEnd(&s);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t one = 0;
    rw_deflater z;
    rw_hasher h;
    test_ctx ctx;
    rw_deflate_job jobs[MAX_JOBS + 1];
    size_t n = 0, at = 2, i;
    int level, windows, finish, huge, broken;
    if (size < 2)
        return 0;
    level = 1 + data[0] % 9;
    huge = data[1] & 1;
    broken = (data[1] >> 1) & 1;
    windows = (data[1] >> 2) & 1;
    finish = !((data[1] >> 3) & 1);
    memset(jobs, 0, sizeof(jobs));
    while (n < MAX_JOBS && at <= size) {
        size_t len = size - at;
        if (len >= 2) {
            size_t want = (size_t)data[at] | (size_t)data[at + 1] << 8;
            at += 2;
            len = size - at < want ? size - at : want;
        } else {
            at = size;
            len = 0;
        }
        jobs[n].data = data + at;
        jobs[n].len = len;
        jobs[n].window = windows ? at : 0;
        jobs[n].finish = finish;
        n++;
        at += len;
        if (at == size)
            break;
    }
    if (huge) {
        jobs[n].data = &one;
        jobs[n].len = RW_DEF_MAX;
        n++;
    }
    z.flavor = RW_ZLIB;
    z.init = (void (*)(void))deflateInit2_;
    z.deflate = (void (*)(void))deflate;
    z.end = (void (*)(void))deflateEnd;
    z.bound = (void (*)(void))deflateBound;
    z.dictionary = (void (*)(void))deflateSetDictionary;
    z.crc32 = (void (*)(void))crc32;
    z.version = zlibVersion();
    ctx.broken = broken;
    h.init = (void (*)(void))t_init;
    h.update = (void (*)(void))t_update;
    h.final = (void (*)(void))t_final;
    h.ctx = &ctx;
    h.md = NULL;
    rw_deflate_jobs(&z, &h, level, jobs, n);
    for (i = 0; i < n; i++) {
        if (jobs[i].len >= RW_DEF_MAX) {
            if (jobs[i].status != RW_DEF_TOO_BIG || jobs[i].out)
                fail("a job of RW_DEF_MAX bytes must be refused");
            continue;
        }
        check_job(&jobs[i], broken);
    }
    rw_deflate_free(jobs, n);
    for (i = 0; i < n; i++)
        if (jobs[i].out)
            fail("rw_deflate_free left a stream");
    return 0;
}
