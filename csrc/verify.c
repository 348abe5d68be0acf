/* verify: see verify.h. */
#include "verify.h"

#include <string.h>

typedef int (*init_fn)(void *ctx, const void *md, void *engine);
typedef int (*update_fn)(void *ctx, const void *data, size_t n);
typedef int (*final_fn)(void *ctx, uint8_t *out, unsigned int *n);

/* SHA-256 of `n` bytes at `p` into `out` through OpenSSL's EVP calls: 1 on success. */
static int sha256_of(const rw_hasher *h, const uint8_t *p, size_t n, uint8_t *out)
{
    unsigned int got = 0;
    return ((init_fn)h->init)(h->ctx, h->md, NULL) == 1 &&
           ((update_fn)h->update)(h->ctx, p, n) == 1 &&
           ((final_fn)h->final)(h->ctx, out, &got) == 1 && got == 32;
}

void rw_verify_members(const rw_inflater *z, const rw_hasher *hasher, int fd, uint8_t *scratch,
                       size_t room, rw_verify_job *jobs, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        rw_verify_job *job = &jobs[i];
        rw_inflate_result res;
        job->crc = 0;
        memset(job->sha256, 0, sizeof(job->sha256));
        if (job->usize > room) {
            job->status = RW_INF_NOMEM;
            continue;
        }
        job->status = rw_inflate_member(z, fd, job->offset, job->csize, job->deflated,
                                        job->usize, scratch, -1, NULL, NULL, NULL, &res);
        job->crc = res.crc;
        if (job->status == RW_INF_OK && hasher &&
            !sha256_of(hasher, scratch, (size_t)job->usize, job->sha256))
            job->status = RW_INF_DIGEST;
    }
}
