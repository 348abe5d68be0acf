/*
 * Fuzz target for inflate.c: the input's head says how the member is declared (its size,
 * stored or deflated, into a buffer or to a descriptor), its tail is the member's bytes.
 * The result is checked against zlib's own inflate of the same bytes: a member is accepted
 * exactly when the stream ends with the declared size, and then its bytes and CRC are zlib's,
 * and the block ends it records (when asked to) are those of zlib's own block-by-block inflate.
 * Built by fuzz/run.sh with tiny read and write buffers (RW_IN_CHUNK, RW_OUT_WINDOW) and a
 * low RW_DRAIN_MIN, so members written to a descriptor cross many hand-overs to the thread
 * that writes them. Then the same member behind a local header goes through
 * rw_member_heads, whose heads must be zlib's first bytes, and once more with byte ranges
 * kept and a prefix asked for (check_keep), and twice through rw_verify_members: with room
 * for it, as one job of three, and with a byte too little room (check_verify).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "inflate.h"
#include "verify.h"

#define CAP ((size_t)1 << 20) /* the most the reference inflates */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "invariant violated: %s\n", what);
    abort();
}

/* zlib's raw inflate of `in`: 1 when the stream ends inside it, with *n bytes out. */
static int reference(const uint8_t *in, size_t len, uint8_t *out, size_t *n)
{
    z_stream s;
    int rc;
    memset(&s, 0, sizeof(s));
    if (inflateInit2(&s, -15) != Z_OK)
        fail("inflateInit2");
    s.next_in = (Bytef *)(uintptr_t)in;
    s.avail_in = (uInt)len;
    s.next_out = out;
    s.avail_out = (uInt)CAP;
    rc = inflate(&s, Z_FINISH);
    *n = CAP - s.avail_out;
    inflateEnd(&s);
    return rc == Z_STREAM_END;
}

#define BLOCKS_CAP 4096

/* The byte-aligned block ends (not the last block's) that zlib's Z_BLOCK inflate of all of
   `in` at once stops at, as inflate.c records them: the first per uncompressed offset. */
static size_t reference_blocks(const uint8_t *in, size_t len, uint64_t *pairs)
{
    static uint8_t sink[CAP];
    z_stream s;
    size_t n = 0, steps = 0;
    memset(&s, 0, sizeof(s));
    if (inflateInit2(&s, -15) != Z_OK)
        fail("inflateInit2");
    s.next_in = (Bytef *)(uintptr_t)in;
    s.avail_in = (uInt)len;
    s.next_out = sink;
    s.avail_out = (uInt)CAP;
    while (inflate(&s, Z_BLOCK) == Z_OK && steps++ < 8 * len + 64) {
        uint64_t out_at = CAP - s.avail_out, in_at = len - s.avail_in;
        int f = s.data_type;
        if ((f & 128) && !(f & 64) && !(f & 7) && out_at && (n == 0 || pairs[2 * n - 2] < out_at) &&
            n < BLOCKS_CAP) {
            pairs[2 * n] = out_at;
            pairs[2 * n + 1] = in_at;
            n++;
        }
    }
    inflateEnd(&s);
    return n;
}

static int write_fd(const uint8_t *p, size_t n)
{
    int fd = memfd_create("fuzz-in", 0);
    if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n))
        fail("memfd");
    return fd;
}

static void put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

/* rw_member_heads on the member behind a local header (named "abc", `extra` extra bytes):
   a head it settles is the first bytes zlib makes (`made` of them in `ref`), its data offset
   is right after the header, and it never reads past `limit`. */
static void check_heads(const rw_inflater *z, const uint8_t *data, size_t len, int deflated,
                        uint64_t usize, const uint8_t *ref, size_t made, size_t extra,
                        unsigned want_bits, unsigned twists)
{
    static const uint8_t names[] = "abcabd";
    uint32_t want = (want_bits & 15) + 1;
    size_t header = 30 + 3 + extra, total = header + len;
    uint8_t *file = calloc(1, total + 8);
    rw_head h;
    int fd;
    if (file == NULL)
        fail("calloc");
    file[0] = 'P', file[1] = 'K', file[2] = 3, file[3] = 4;
    put16(file + 26, 3);
    put16(file + 28, extra);
    memcpy(file + 30, "abc", 3);
    memcpy(file + header, data, len);
    memset(file + total, 0x55, 8); /* bytes past the limit, which a head must not take */
    fd = write_fd(file, total + 8);
    memset(&h, 0, sizeof(h));
    h.header_offset = 0;
    h.csize = len;
    h.usize = usize;
    h.limit = (twists & 2) && total ? total - 1 : total;
    h.name_at = (twists & 1) ? 3 : 0;
    h.name_len = 3;
    h.deflated = deflated;
    rw_member_heads(z, fd, names, &h, 1, want);
    if (h.status == RW_HEAD_OK) {
        uint32_t expect = (uint32_t)(usize < want ? usize : want);
        if ((twists & 3) != 0)
            fail("a head settled with a wrong name or past its limit");
        if (h.data_offset != header || h.got != expect)
            fail("a head's offset or length is wrong");
        if (!deflated && (len != usize || memcmp(h.head, data, expect) != 0))
            fail("a stored head differs from the member's bytes");
        if (deflated && (made < expect || memcmp(h.head, ref, expect) != 0))
            fail("a deflated head differs from zlib's first bytes");
    }
    free(file);
    close(fd);
}

#define KEEP_MARK 0xa5
#define KEEP_CAP 6

/* A wake that asks for a range near the end of the last one complete, its place and length
   from that range's first byte: ahead, touching, or partly behind the output. */
static size_t wake_near(const uint8_t *base, size_t size, const uint64_t *kept, size_t n_kept,
                        uint64_t *pairs, size_t cap)
{
    uint8_t b;
    uint64_t end;
    if (n_kept == 0 || cap == 0 || size == 0)
        return 0;
    b = base[kept[2 * n_kept - 2]];
    end = kept[2 * n_kept - 1];
    pairs[0] = (b & 3) == 3 && end > 2 ? end - 2 : end + (b & 3);
    pairs[1] = pairs[0] + 1 + (b >> 2);
    return 1;
}

/* The same member again, written nowhere, with up to three ranges kept (from `shape`), a
   wake adding more, and when `cut` says so a prefix asked for: the ranges stay sorted and
   disjoint, the bytes they end up naming are zlib's and nothing else is touched; without a
   prefix the verdict is the first call's (`first`), with one a sound member (`sound`)
   stops there with the prefix's CRC.  When `shape` says so the inflate is cancelled before
   it starts: it ends at once, having made and kept nothing. */
static void check_keep(const rw_inflater *z, int in_fd, size_t lead, size_t len, int deflated,
                       uint64_t usize, const uint8_t *want, const rw_inflate_result *first,
                       int sound, unsigned shape, unsigned cut)
{
    uint64_t ranges[2 * KEEP_CAP], at = 0, limit = usize + 2;
    size_t n = 0, i;
    rw_keep keep;
    rw_inflate_result res;
    int cancel = 1;
    uint8_t *base = malloc((size_t)usize + 1);
    if (base == NULL)
        fail("malloc");
    memset(base, KEEP_MARK, (size_t)usize + 1);
    for (i = 0; i < 3 && (shape >> (2 * i)) & 3; i++) {
        uint64_t start = at + (limit * ((shape >> (2 * i)) & 3)) / 7;
        uint64_t end = start + 1 + (limit * (cut & 7)) / 5;
        if (start >= usize)
            break;
        ranges[2 * n] = start;
        ranges[2 * n + 1] = end < usize ? end : usize;
        at = ranges[2 * n + 1] + 1;
        n++;
    }
    keep.ranges = ranges;
    keep.n = n;
    keep.cap = KEEP_CAP;
    keep.base = base;
    keep.stop = (cut & 0x80) ? (usize * ((cut >> 3) & 15)) / 16 : 0;
    keep.wake = (shape & 0x40) ? wake_near : NULL;
    keep.cancel = (shape & 0x80) ? &cancel : NULL;
    rw_inflate_member(z, in_fd, lead, len, deflated, usize, NULL, -1, NULL, NULL, &keep, &res);
    if (keep.cancel) {
        int nothing_to_read = len == 0 && (!deflated || usize == 0);
        if (nothing_to_read ? res.status == RW_INF_CANCELLED
                            : res.status != RW_INF_CANCELLED || res.produced != 0)
            fail("a cancelled inflate did not end before its first window");
        for (i = 0; i <= usize; i++)
            if (base[i] != KEEP_MARK)
                fail("a cancelled inflate kept bytes");
        free(base);
        return;
    }
    if (res.produced > usize || (keep.stop && res.produced > keep.stop))
        fail("a kept inflate made more bytes than declared or asked for");
    if (keep.n > KEEP_CAP || (n && keep.n == 0))
        fail("the kept ranges overflowed or were lost"); /* (a new one may join two) */
    for (i = 0; i < keep.n; i++)
        if (ranges[2 * i] >= ranges[2 * i + 1] || ranges[2 * i + 1] > usize ||
            (i && ranges[2 * i] < ranges[2 * i - 1]))
            fail("the kept ranges are not sorted, disjoint and inside the member");
    n = keep.n;
    for (i = 0; i < usize; i++) {
        int inside = 0;
        size_t r;
        for (r = 0; r < n; r++)
            inside |= i >= ranges[2 * r] && i < ranges[2 * r + 1];
        if (inside && i < res.produced && base[i] != want[i])
            fail("a kept byte differs from zlib's");
        if ((!inside || i >= res.produced) && base[i] != KEEP_MARK)
            fail("a byte outside the kept ranges was written");
    }
    if (base[usize] != KEEP_MARK)
        fail("written past the declared size");
    if (keep.stop && keep.stop < usize) {
        if (res.status == RW_INF_PREFIX &&
            (res.produced != keep.stop || res.crc != (uint32_t)crc32(0, want, (uInt)keep.stop)))
            fail("a prefix of the wrong length or CRC");
        if (sound && res.status != RW_INF_PREFIX)
            fail("a sound member did not stop at the prefix asked for");
    } else if (res.status != first->status ||
               (res.status == RW_INF_OK && res.produced != first->produced)) {
        /* (how far a refused member got depends on the window sizes: not compared) */
        fail("keeping bytes changed the verdict");
    }
    free(base);
}

/* rw_verify_members must accept the member exactly when a whole inflate does, with zlib's
   bytes and CRC, whatever jobs are beside it, and must not read it without the room. */
static void check_verify(const rw_inflater *z, int in_fd, size_t lead, size_t len, int deflated,
                         uint64_t usize, const uint8_t *want, int accept)
{
    rw_verify_job jobs[3];
    size_t room = (size_t)usize, i;
    uint8_t *scratch = malloc(room + 1);
    if (scratch == NULL)
        fail("malloc");
    memset(jobs, 0, sizeof(jobs));
    for (i = 0; i < 3; i++) {
        jobs[i].offset = lead;
        jobs[i].csize = len;
        jobs[i].usize = usize;
        jobs[i].deflated = deflated;
        jobs[i].status = -1;
    }
    jobs[0].usize = 0; /* an empty stored member beside it */
    jobs[0].csize = 0;
    jobs[0].deflated = 0;
    jobs[2].usize = usize + 1; /* one it has no room for */
    rw_verify_members(z, NULL, in_fd, scratch, room, jobs, 3);
    if (jobs[0].status != RW_INF_OK || jobs[0].crc != 0)
        fail("an empty member beside it was refused");
    if ((jobs[1].status == RW_INF_OK) != accept)
        fail("rw_verify_members and rw_inflate_member disagree");
    if (accept && (jobs[1].crc != (uint32_t)crc32(0, want, (uInt)usize) ||
                   (usize && memcmp(scratch, want, (size_t)usize) != 0)))
        fail("rw_verify_members made other bytes than zlib's");
    if (jobs[2].status != RW_INF_NOMEM)
        fail("a member with no room was read");
    free(scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t want[CAP];
    static uint64_t pairs[2 * BLOCKS_CAP], ref_pairs[2 * BLOCKS_CAP];
    rw_blocks blocks;
    rw_inflater z;
    rw_inflate_result res;
    uint8_t *out;
    size_t ref_len = 0, len, lead;
    uint64_t usize;
    int flags, ended, in_fd, out_fd = -1, deflated, to_fd;
    if (size < 5)
        return 0;
    flags = data[0];
    deflated = !(flags & 1);
    to_fd = flags & 2;
    lead = (size_t)((flags >> 2) & 7); /* the member need not start at offset 0 */
    data += 5;
    len = size - 5;
    if (deflated && len == 0)
        ended = 1; /* an empty member may hold no stream at all */
    else if (deflated)
        ended = reference(data, len, want, &ref_len);
    else {
        ended = 1;
        ref_len = len;
        memcpy(want, data, len);
    }
    usize = (flags & 0x20) ? ref_len
                           : ((uint64_t)data[-4] << 16 | (uint64_t)data[-3] << 8 | data[-2]);
    if (flags & 0x40)
        usize = ref_len + (data[-1] & 3) - 1; /* one off either way, or exact */
    if (usize > CAP || (!deflated && usize != len && !(flags & 0x80)))
        usize = ref_len;
    z.flavor = RW_ZLIB;
    z.init = (void (*)(void))inflateInit2_;
    z.inflate = (void (*)(void))inflate;
    z.end = (void (*)(void))inflateEnd;
    z.reset = (void (*)(void))inflateReset;
    z.crc32 = (void (*)(void))crc32;
    z.version = zlibVersion();
    {
        uint8_t *file = calloc(1, lead + len + 1);
        if (file == NULL)
            fail("calloc");
        memcpy(file + lead, data, len);
        in_fd = write_fd(file, lead + len);
        free(file);
    }
    out = malloc(usize ? (size_t)usize : 1);
    if (out == NULL)
        fail("malloc");
    if (to_fd)
        out_fd = memfd_create("fuzz-out", 0);
    blocks.pairs = pairs;
    blocks.capacity = (data[-1] & 8) ? 1 : BLOCKS_CAP;
    blocks.count = 99; /* the call resets it */
    rw_inflate_member(&z, in_fd, lead, len, deflated, usize, to_fd ? NULL : out, out_fd, NULL,
                      (data[-1] & 4) ? &blocks : NULL, NULL, &res);
    if (res.produced > usize)
        fail("more bytes than declared");
    if (to_fd) {
        if ((uint64_t)lseek(out_fd, 0, SEEK_CUR) != res.produced ||
            pread(out_fd, out, (size_t)res.produced, 0) != (ssize_t)res.produced)
            fail("the descriptor does not hold what was produced");
    }
    if (res.produced && memcmp(out, want, (size_t)res.produced) != 0)
        fail("bytes differ from zlib's");
    if (res.status == RW_INF_OK) {
        if (!ended || usize != ref_len)
            fail("accepted a member zlib does not end at its declared size");
        if (res.crc != (uint32_t)crc32(0, want, (uInt)ref_len))
            fail("CRC differs from zlib's");
        if ((data[-1] & 4) && deflated && len) {
            size_t n = reference_blocks(data, len, ref_pairs);
            if (n > BLOCKS_CAP - 1)
                ; /* the reference ran out of room: nothing to compare */
            else if (blocks.overflow ? (blocks.count != blocks.capacity || n <= blocks.capacity)
                                     : blocks.count != n)
                fail("a different number of block ends than zlib's");
            else if (memcmp(pairs, ref_pairs, 2 * blocks.count * sizeof(uint64_t)) != 0)
                fail("block ends differ from zlib's");
        }
    } else if (ended && usize == ref_len && !(deflated == 0 && usize != len)) {
        fail("refused a member zlib ends at its declared size");
    }
    check_keep(&z, in_fd, lead, len, deflated, usize, want, &res, ended && usize == ref_len,
               data[-3], data[-4]);
    check_verify(&z, in_fd, lead, len, deflated, usize, want,
                 ended && usize == ref_len && !(deflated == 0 && usize != len));
    check_heads(&z, data, len, deflated, usize, want, ref_len, lead * 37,
                data[-1] >> 4, data[-2]);
    free(out);
    close(in_fd);
    if (out_fd >= 0)
        close(out_fd);
    return 0;
}
