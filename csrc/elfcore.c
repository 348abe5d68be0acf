/*
 * elfcore.c: a bounds-checked reader of the dynamic-linking facts of an ELF file.
 *
 * Everything is read from the caller's buffer through rd*() helpers that check
 * the range first.  Addresses from the dynamic table are mapped to file offsets
 * through PT_LOAD segments, so files without section headers still work;
 * section headers are used only where nothing else says the same thing (the
 * dynamic symbol count when no hash table is present, the string table of a
 * dynamic table whose DT_STRTAB is not mapped, notes in files with no program
 * headers).  All output memory lives in one arena released by rw_elf_free().
 */
#include "elfcore.h"

#include "elfbytes.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ELF constants (from the gABI and the GNU extensions) ---- */
#define PT_LOAD 1
#define PT_DYNAMIC 2
#define PT_INTERP 3
#define PT_NOTE 4
#define PT_GNU_PROPERTY 0x6474e553u
#define SHT_DYNAMIC 6
#define SHT_NOTE 7
#define SHT_DYNSYM 11
#define SHN_UNDEF 0
#define PN_XNUM 0xffff
#define DT_NULL 0
#define DT_NEEDED 1
#define DT_HASH 4
#define DT_STRTAB 5
#define DT_SYMTAB 6
#define DT_STRSZ 10
#define DT_SYMENT 11
#define DT_SONAME 14
#define DT_RPATH 15
#define DT_RUNPATH 29
#define DT_GNU_HASH 0x6ffffef5u
#define DT_VERSYM 0x6ffffff0u
#define DT_VERDEF 0x6ffffffcu
#define DT_VERDEFNUM 0x6ffffffdu
#define DT_VERNEED 0x6ffffffeu
#define DT_VERNEEDNUM 0x6fffffffu
#define EM_386 3
#define EM_X86_64 62
#define NT_GNU_PROPERTY_TYPE_0 5
#define GNU_PROPERTY_X86_ISA_1_NEEDED 0xc0008002u
#define VERSYM_HIDDEN 0x8000u
#define VERSYM_INDEX 0x7fffu
#define MAX_VERSION_INDEX 0x8000u
#define OUTPUT_FACTOR 16 /* output strings may total this many times the input, plus 1 MiB */
#define OUTPUT_EXTRA ((uint64_t)1 << 20)
/* The budget never exceeds this, so sums of charged sizes fit a size_t even on 32-bit hosts. */
#define OUTPUT_CAP ((uint64_t)(SIZE_MAX / 4))

/* ---- arena ---- */
#define BLOCK_HEADER 16 /* keeps payloads 16-byte aligned */
typedef struct block {
    struct block *next;
    /* payload follows at BLOCK_HEADER bytes */
} block;

typedef struct {
    rw_elf pub;   /* first, so the public pointer is the arena pointer */
    block *blocks;
} rw_elf_owned;

/* ---- parser state ---- */
typedef struct {
    uint64_t vaddr, offset, filesz;
} load_seg;

typedef struct {
    const uint8_t *buf;
    size_t len;
    int is64;
    int big;
    rw_elf_owned *out;
    char *err;
    size_t errlen;
    int nomem;
    /* program headers */
    uint64_t phoff, phentsize, phnum;
    uint64_t shoff, shentsize, shnum;
    load_seg *loads;
    size_t n_loads;
    uint64_t dyn_off, dyn_size;
    int has_dyn;
    /* dynamic string table (file offset and size) */
    uint64_t str_off, str_size;
    int has_str;
    /* version index -> name (defs and needs share the index space); grown on demand to
       the largest index seen, released at the end of the parse */
    const char **version_names;
    size_t version_cap;
    /* per-symbol name and version found by parse_symbols()' measuring pass, so the copying
       pass neither looks them up nor charges them again; released at the end of the parse */
    const char **sym_names;
    /* Bytes of strings the caller will copy out.  Many entries may point at one long
       string; the budget keeps a small crafted file from costing gigabytes downstream. */
    uint64_t budget;
    /* rw_elf_parse_kept: the only bytes of the buffer that hold the file's (sorted,
       disjoint [start, end) pairs), and the reads that wanted others */
    const uint64_t *kept;
    size_t n_kept;
    struct misses *misses;
} parser;

/* The reads rw_elf_parse_kept found outside the kept bytes. */
struct misses {
    int any;
    uint64_t off, end; /* the first offset and the last end among them */
};

#if defined(__GNUC__)
static int fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
static int fail(parser *p, const char *fmt, ...)
{
    va_list ap;
    if (p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- overflow-checked sizes: every allocation size goes through these ---- */
static int add_u64(uint64_t a, uint64_t b, uint64_t *sum)
{
    if (a > UINT64_MAX - b)
        return -1;
    *sum = a + b;
    return 0;
}

static int mul_u64(uint64_t a, uint64_t b, uint64_t *product)
{
    if (a != 0 && b > UINT64_MAX / a)
        return -1;
    *product = a * b;
    return 0;
}

/* A size the host can allocate (with room for the block header), else -1 and nomem. */
static int host_size(parser *p, uint64_t n, size_t *out)
{
    if (n > (uint64_t)(SIZE_MAX - 2 * BLOCK_HEADER)) {
        p->nomem = 1;
        return -1;
    }
    *out = (size_t)n;
    return 0;
}

static void *alloc(parser *p, uint64_t size)
{
    block *b;
    size_t n;
    if (host_size(p, size, &n))
        return NULL;
    b = malloc(BLOCK_HEADER + n);
    if (b == NULL) {
        p->nomem = 1;
        return NULL;
    }
    b->next = p->out->blocks;
    p->out->blocks = b;
    return (char *)b + BLOCK_HEADER;
}

static void *alloc_array(parser *p, uint64_t n, uint64_t size)
{
    uint64_t total;
    if (mul_u64(n, size, &total)) {
        p->nomem = 1;
        return NULL;
    }
    return alloc(p, total ? total : 1);
}

/* Scratch memory for one parse (not part of the result): malloc'd, freed by the caller. */
static void *scratch_array(parser *p, uint64_t n, uint64_t size)
{
    uint64_t total;
    size_t bytes;
    void *mem;
    if (mul_u64(n, size, &total) || host_size(p, total ? total : 1, &bytes)) {
        p->nomem = 1;
        return NULL;
    }
    if ((mem = malloc(bytes)) == NULL)
        p->nomem = 1;
    return mem;
}

/* ---- bounds-checked reads ---- */
/* Whether [off, off + size), inside the buffer, lies in one kept range; a read that is not
   is recorded as missing. */
static int kept(const parser *p, uint64_t off, uint64_t size)
{
    struct misses *m = p->misses;
    size_t lo = 0, hi = p->n_kept;
    while (lo < hi) { /* the last range starting at or before off */
        size_t mid = lo + (hi - lo) / 2;
        if (p->kept[2 * mid] <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo && off < p->kept[2 * lo - 1] && size <= p->kept[2 * lo - 1] - off)
        return 1;
    if (!m->any || off < m->off)
        m->off = off;
    if (!m->any || off + size > m->end)
        m->end = off + size;
    m->any = 1;
    return 0;
}

static int in_range(const parser *p, uint64_t off, uint64_t size)
{
    if (!(off <= p->len && size <= p->len - off))
        return 0;
    return p->kept == NULL || size == 0 || kept(p, off, size);
}

static uint64_t get_u(const parser *p, uint64_t off, int width)
{
    return rw_load(p->buf + off, p->big, width);
}

static int rd(const parser *p, uint64_t off, int width, uint64_t *v)
{
    if (!in_range(p, off, (uint64_t)width))
        return -1;
    *v = get_u(p, off, width);
    return 0;
}

/* Map a virtual address range to a file offset through the PT_LOAD segments. */
static int map_addr(const parser *p, uint64_t addr, uint64_t size, uint64_t *off)
{
    size_t i;
    for (i = 0; i < p->n_loads; i++) {
        const load_seg *s = &p->loads[i];
        if (addr >= s->vaddr && addr - s->vaddr < s->filesz &&
            size <= s->filesz - (addr - s->vaddr)) {
            uint64_t o = s->offset + (addr - s->vaddr);
            if (o < s->offset || !in_range(p, o, size))
                return -1;
            *off = o;
            return 0;
        }
    }
    return -1;
}

/* Charge `n` bytes of output strings to the budget. */
static int spend(parser *p, uint64_t n)
{
    if (n > p->budget)
        return fail(p, "the dynamic tables name more string bytes than %d times the file's size "
                    "(crafted file?)", OUTPUT_FACTOR);
    p->budget -= n;
    return 0;
}

/* A string at index `idx` of the dynamic string table, NUL-terminated inside it. */
static const char *dyn_str(parser *p, uint64_t idx, const char *what)
{
    const uint8_t *start, *nul;
    if (!p->has_str) {
        fail(p, "%s present but the file has no usable dynamic string table", what);
        return NULL;
    }
    if (idx >= p->str_size) {
        fail(p, "%s string offset %llu is past the end of the dynamic string table (%llu bytes)",
             what, (unsigned long long)idx, (unsigned long long)p->str_size);
        return NULL;
    }
    start = p->buf + p->str_off + idx;
    nul = memchr(start, 0, (size_t)(p->str_size - idx)); /* in the buffer: fits a size_t */
    if (nul == NULL) {
        fail(p, "%s string at offset %llu is not terminated inside the dynamic string table",
             what, (unsigned long long)idx);
        return NULL;
    }
    if (spend(p, (uint64_t)(nul - start) + 1))
        return NULL;
    return (const char *)start;
}

/* ---- header and segments ---- */
static int parse_header(parser *p)
{
    rw_elf *e = &p->out->pub;
    uint64_t v, shnum0 = 0;
    int w;
    if (!in_range(p, 0, p->len < 64 ? p->len : 64))
        return fail(p, "the ELF header is not in the bytes kept");
    if (p->len < 16 || memcmp(p->buf, "\x7f" "ELF", 4) != 0)
        return fail(p, "not an ELF file (bad magic)");
    if (p->buf[4] != 1 && p->buf[4] != 2)
        return fail(p, "unknown ELF class %u", p->buf[4]);
    if (p->buf[5] != 1 && p->buf[5] != 2)
        return fail(p, "unknown ELF data encoding %u", p->buf[5]);
    p->is64 = p->buf[4] == 2;
    p->big = p->buf[5] == 2;
    e->elf_class = p->is64 ? 64 : 32;
    e->big_endian = p->big;
    e->osabi = p->buf[7];
    if (p->len < (p->is64 ? 64u : 52u))
        return fail(p, "truncated ELF header (%llu bytes)", (unsigned long long)p->len);
    w = p->is64 ? 8 : 4;
    e->elf_type = (int)get_u(p, 16, 2);
    e->machine = (int)get_u(p, 18, 2);
    p->phoff = get_u(p, 24u + (unsigned)w, w);
    p->shoff = get_u(p, 24u + 2u * (unsigned)w, w);
    e->flags = (uint32_t)get_u(p, 24u + 3u * (unsigned)w, 4);
    p->phentsize = get_u(p, 24u + 3u * (unsigned)w + 6, 2);
    p->phnum = get_u(p, 24u + 3u * (unsigned)w + 8, 2);
    p->shentsize = get_u(p, 24u + 3u * (unsigned)w + 10, 2);
    p->shnum = get_u(p, 24u + 3u * (unsigned)w + 12, 2);

    /* Extended numbering: real counts live in section header 0. */
    if (p->shoff != 0 && p->shentsize >= (uint64_t)(p->is64 ? 64 : 40) &&
        (p->phnum == PN_XNUM || p->shnum == 0)) {
        if (rd(p, p->shoff + (p->is64 ? 32 : 20), w, &shnum0) == 0 && p->shnum == 0)
            p->shnum = shnum0;
        if (p->phnum == PN_XNUM && rd(p, p->shoff + (p->is64 ? 44 : 28), 4, &v) == 0)
            p->phnum = v;
    }
    if (p->shoff == 0 || p->shentsize < (uint64_t)(p->is64 ? 64 : 40))
        p->shnum = 0;
    /* Section headers are optional: ignore a table that does not fit. */
    if (p->shnum && (p->shnum > p->len / p->shentsize ||
                     !in_range(p, p->shoff, p->shnum * p->shentsize)))
        p->shnum = 0;
    if (p->phnum) {
        if (p->phentsize < (uint64_t)(p->is64 ? 56 : 32))
            return fail(p, "program header entry size %llu is too small",
                        (unsigned long long)p->phentsize);
        if (p->phnum > p->len / p->phentsize || !in_range(p, p->phoff, p->phnum * p->phentsize))
            return fail(p, "program header table (%llu entries at offset %llu) is past the end "
                        "of the file", (unsigned long long)p->phnum, (unsigned long long)p->phoff);
    }
    return 0;
}

/* Offset of field `f32`/`f64` of program header i. */
static uint64_t ph_field(const parser *p, uint64_t i, int f32, int f64)
{
    return p->phoff + i * p->phentsize + (uint64_t)(p->is64 ? f64 : f32);
}

/* Program header i; parse_header() checked that the table is in the buffer. */
static void ph_read(const parser *p, uint64_t i, rw_segment *seg)
{
    int w = p->is64 ? 8 : 4;
    seg->type = (uint32_t)get_u(p, ph_field(p, i, 0, 0), 4);
    seg->flags = (uint32_t)get_u(p, ph_field(p, i, 24, 4), 4);
    seg->offset = get_u(p, ph_field(p, i, 4, 8), w);
    seg->vaddr = get_u(p, ph_field(p, i, 8, 16), w);
    seg->filesz = get_u(p, ph_field(p, i, 16, 32), w);
    seg->memsz = get_u(p, ph_field(p, i, 20, 40), w);
    seg->align = get_u(p, ph_field(p, i, 28, 48), w);
}

static int parse_interp(parser *p, uint64_t offset, uint64_t size)
{
    char *s;
    const uint8_t *start;
    const void *end;
    size_t n;
    if (!in_range(p, offset, size))
        return fail(p, "PT_INTERP (offset %llu, %llu bytes) is past the end of the file",
                    (unsigned long long)offset, (unsigned long long)size);
    start = p->buf + offset;
    end = size ? memchr(start, 0, (size_t)size) : NULL; /* in the buffer: fits a size_t */
    n = end ? (size_t)((const uint8_t *)end - start) : (size_t)size;
    s = alloc(p, (uint64_t)n + 1);
    if (s == NULL)
        return -1;
    memcpy(s, start, n);
    s[n] = 0;
    p->out->pub.interpreter = s;
    return 0;
}

static int parse_segments(parser *p)
{
    uint64_t i;
    rw_elf *e = &p->out->pub;
    const rw_segment *dyn = NULL;
    p->loads = alloc_array(p, p->phnum, sizeof(load_seg));
    e->segments = alloc_array(p, p->phnum, sizeof(rw_segment));
    if (p->loads == NULL || e->segments == NULL)
        return -1;
    for (i = 0; i < p->phnum; i++) {
        rw_segment *seg = &e->segments[e->n_segments++];
        ph_read(p, i, seg);
        if (seg->type == PT_LOAD) {
            load_seg *s = &p->loads[p->n_loads++];
            s->vaddr = seg->vaddr;
            s->offset = seg->offset;
            s->filesz = seg->filesz;
        } else if (seg->type == PT_DYNAMIC && dyn == NULL) {
            dyn = seg;
        } else if (seg->type == PT_INTERP && e->interpreter == NULL) {
            if (parse_interp(p, seg->offset, seg->filesz))
                return -1;
        }
    }
    if (dyn == NULL)
        return 0;
    /* ld.so reads the dynamic table at p_vaddr (l_ld), i.e. where PT_LOAD maps it; p_offset
       is only a fallback, for files whose p_vaddr maps nowhere (ET_REL, broken tools). */
    if (map_addr(p, dyn->vaddr, dyn->filesz, &p->dyn_off) != 0) {
        if (!in_range(p, dyn->offset, dyn->filesz))
            return fail(p, "PT_DYNAMIC (offset %llu, %llu bytes) is past the end of the file",
                        (unsigned long long)dyn->offset, (unsigned long long)dyn->filesz);
        p->dyn_off = dyn->offset;
    }
    p->has_dyn = 1;
    p->dyn_size = dyn->filesz;
    return 0;
}

/* ---- section headers (only where nothing else says the same) ---- */
static void sh_read(const parser *p, uint64_t i, uint64_t *type, uint64_t *offset,
                    uint64_t *size, uint64_t *link, uint64_t *entsize)
{
    uint64_t base = p->shoff + i * p->shentsize;
    int w = p->is64 ? 8 : 4;
    *type = get_u(p, base + 4, 4);
    *offset = get_u(p, base + (p->is64 ? 24 : 16), w);
    *size = get_u(p, base + (p->is64 ? 32 : 20), w);
    *link = get_u(p, base + (p->is64 ? 40 : 24), 4);
    *entsize = get_u(p, base + (p->is64 ? 56 : 36), w);
}

/* The string table linked from the SHT_DYNAMIC section, for a DT_STRTAB that maps nowhere. */
static int strtab_from_sections(parser *p)
{
    uint64_t i, type, offset, size, link, entsize;
    for (i = 0; i < p->shnum; i++) {
        sh_read(p, i, &type, &offset, &size, &link, &entsize);
        if (type != SHT_DYNAMIC || link >= p->shnum)
            continue;
        sh_read(p, link, &type, &offset, &size, &link, &entsize);
        if (!in_range(p, offset, size))
            return -1;
        p->str_off = offset;
        p->str_size = size;
        p->has_str = 1;
        return 0;
    }
    return -1;
}

/* ---- dynamic table ---- */
typedef struct {
    uint64_t strtab, strsz, symtab, syment, hash, gnu_hash, versym;
    uint64_t verneed, verneednum, verdef, verdefnum;
    int has_strtab, has_strsz, has_symtab, has_hash, has_gnu_hash, has_versym;
    int has_verneed, has_verneednum, has_verdef, has_verdefnum;
    uint64_t n_entries; /* entries before DT_NULL */
} dyn_info;

/* Entry i of the dynamic table; parse_segments() checked that the table is in the buffer. */
static void dyn_entry(const parser *p, uint64_t i, uint64_t *tag, uint64_t *val)
{
    int w = p->is64 ? 8 : 4;
    *tag = get_u(p, p->dyn_off + i * 2 * (uint64_t)w, w);
    *val = get_u(p, p->dyn_off + i * 2 * (uint64_t)w + (uint64_t)w, w);
}

static void scan_dynamic(parser *p, dyn_info *d)
{
    uint64_t entsize = p->is64 ? 16 : 8, n = p->dyn_size / entsize, i, tag, val;
    memset(d, 0, sizeof(*d));
    for (i = 0; i < n; i++) {
        dyn_entry(p, i, &tag, &val);
        if (tag == DT_NULL)
            break;
        switch (tag) {
        case DT_STRTAB: d->strtab = val; d->has_strtab = 1; break;
        case DT_STRSZ: d->strsz = val; d->has_strsz = 1; break;
        case DT_SYMTAB: d->symtab = val; d->has_symtab = 1; break;
        case DT_SYMENT: d->syment = val; break;
        case DT_HASH: d->hash = val; d->has_hash = 1; break;
        case DT_GNU_HASH: d->gnu_hash = val; d->has_gnu_hash = 1; break;
        case DT_VERSYM: d->versym = val; d->has_versym = 1; break;
        case DT_VERNEED: d->verneed = val; d->has_verneed = 1; break;
        case DT_VERNEEDNUM: d->verneednum = val; d->has_verneednum = 1; break;
        case DT_VERDEF: d->verdef = val; d->has_verdef = 1; break;
        case DT_VERDEFNUM: d->verdefnum = val; d->has_verdefnum = 1; break;
        default: break;
        }
    }
    d->n_entries = i;
}

/*
 * DT_NEEDED, DT_RPATH and DT_RUNPATH, every entry in file order, and the first DT_SONAME.
 * One pass counts tags (no string is looked at), the other looks each string up once,
 * charging it once, and keeps the pointer.
 */
static int parse_dynamic_strings(parser *p, const dyn_info *d)
{
    rw_elf *e = &p->out->pub;
    uint64_t i, tag, val, n_needed = 0, n_rpaths = 0, n_runpaths = 0;
    for (i = 0; i < d->n_entries; i++) {
        dyn_entry(p, i, &tag, &val);
        n_needed += tag == DT_NEEDED;
        n_rpaths += tag == DT_RPATH;
        n_runpaths += tag == DT_RUNPATH;
    }
    e->needed = alloc_array(p, n_needed, sizeof(char *));
    e->rpaths = alloc_array(p, n_rpaths, sizeof(char *));
    e->runpaths = alloc_array(p, n_runpaths, sizeof(char *));
    if (e->needed == NULL || e->rpaths == NULL || e->runpaths == NULL)
        return -1;
    for (i = 0; i < d->n_entries; i++) {
        const char *s;
        dyn_entry(p, i, &tag, &val);
        switch (tag) {
        case DT_NEEDED:
            if ((s = dyn_str(p, val, "DT_NEEDED")) == NULL)
                return -1;
            e->needed[e->n_needed++] = s;
            break;
        case DT_RPATH:
            if ((s = dyn_str(p, val, "DT_RPATH")) == NULL)
                return -1;
            e->rpaths[e->n_rpaths++] = s;
            break;
        case DT_RUNPATH:
            if ((s = dyn_str(p, val, "DT_RUNPATH")) == NULL)
                return -1;
            e->runpaths[e->n_runpaths++] = s;
            break;
        case DT_SONAME:
            if (e->soname == NULL && (e->soname = dyn_str(p, val, "DT_SONAME")) == NULL)
                return -1;
            break;
        default:
            break;
        }
    }
    return 0;
}

/* Record the name of version index `index` (the first record naming it wins). */
static int set_version_name(parser *p, uint64_t index, const char *name)
{
    index &= VERSYM_INDEX;
    if (index >= p->version_cap) {
        /* Grow to the next power of two above `index`: real files use a few dozen indices,
           so the table stays small instead of 0x8000 entries zeroed per parse. */
        size_t cap = p->version_cap ? p->version_cap : 16, i;
        const char **bigger;
        while (cap <= index) /* index <= 0x7fff, so cap stops at 0x8000 */
            cap *= 2;
        bigger = realloc(p->version_names, cap * sizeof(*bigger));
        if (bigger == NULL) {
            p->nomem = 1;
            return -1;
        }
        for (i = p->version_cap; i < cap; i++)
            bigger[i] = NULL;
        p->version_names = bigger;
        p->version_cap = cap;
    }
    if (p->version_names[index] == NULL)
        p->version_names[index] = name;
    return 0;
}

/* The name of version index `index` of a versym entry, or NULL (0 local, 1 global, unknown). */
static const char *version_name(const parser *p, uint64_t index)
{
    index &= VERSYM_INDEX;
    return index > 1 && index < p->version_cap ? p->version_names[index] : NULL;
}

/* Version indices are 15 bits: no valid file has more version records than that. */
static uint64_t max_records(const parser *p)
{
    uint64_t by_size = p->len / 8 + 1;
    return by_size < MAX_VERSION_INDEX ? by_size : MAX_VERSION_INDEX;
}

static int parse_verneed(parser *p, const dyn_info *d)
{
    rw_elf *e = &p->out->pub;
    uint64_t addr = d->verneed, limit = max_records(p), total = 0, n, i, j, off;
    uint64_t vn_cnt, vn_file, vn_aux, vn_next, vna_flags, vna_other, vna_name, vna_next;
    size_t cap = 16;
    if (!d->has_verneed)
        return 0;
    n = d->has_verneednum ? d->verneednum : limit;
    e->verneed = alloc_array(p, cap, sizeof(rw_verneed));
    if (e->verneed == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        const char *file;
        uint64_t aux_addr;
        if (map_addr(p, addr, 16, &off))
            return fail(p, "version need entry %llu (address 0x%llx) is outside every PT_LOAD",
                        (unsigned long long)i, (unsigned long long)addr);
        vn_cnt = get_u(p, off + 2, 2);
        vn_file = get_u(p, off + 4, 4);
        vn_aux = get_u(p, off + 8, 4);
        vn_next = get_u(p, off + 12, 4);
        if ((file = dyn_str(p, vn_file, "version need file")) == NULL)
            return -1;
        aux_addr = addr + vn_aux;
        for (j = 0; j < vn_cnt; j++) {
            const char *name;
            if (++total > limit)
                return fail(p, "version need chain does not end (cycle or bad count)");
            if (map_addr(p, aux_addr, 16, &off))
                return fail(p, "version need aux entry (address 0x%llx) is outside every PT_LOAD",
                            (unsigned long long)aux_addr);
            vna_flags = get_u(p, off + 4, 2);
            vna_other = get_u(p, off + 6, 2);
            vna_name = get_u(p, off + 8, 4);
            vna_next = get_u(p, off + 12, 4);
            if ((name = dyn_str(p, vna_name, "version need name")) == NULL)
                return -1;
            if (e->n_verneed == cap) {
                rw_verneed *bigger = alloc_array(p, cap * 2, sizeof(rw_verneed));
                if (bigger == NULL)
                    return -1;
                memcpy(bigger, e->verneed, cap * sizeof(rw_verneed));
                e->verneed = bigger;
                cap *= 2;
            }
            e->verneed[e->n_verneed].file = file;
            e->verneed[e->n_verneed].name = name;
            e->verneed[e->n_verneed].flags = (uint16_t)vna_flags;
            e->n_verneed++;
            if (set_version_name(p, vna_other, name))
                return -1;
            if (vna_next == 0)
                break;
            aux_addr += vna_next;
        }
        if (vn_next == 0)
            break;
        if (++total > limit)
            return fail(p, "version need chain does not end (cycle or bad count)");
        addr += vn_next;
    }
    return 0;
}

static int parse_verdef(parser *p, const dyn_info *d)
{
    rw_elf *e = &p->out->pub;
    uint64_t addr = d->verdef, limit = max_records(p), n, i, off, aux_off;
    uint64_t vd_ndx, vd_cnt, vd_aux, vd_next, vda_name;
    if (!d->has_verdef)
        return 0;
    n = d->has_verdefnum ? d->verdefnum : limit;
    if (n > limit)
        return fail(p, "version definition count %llu is larger than the file allows",
                    (unsigned long long)n);
    e->verdef = alloc_array(p, n, sizeof(char *));
    if (e->verdef == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        const char *name = "";
        if (map_addr(p, addr, 20, &off))
            return fail(p, "version definition %llu (address 0x%llx) is outside every PT_LOAD",
                        (unsigned long long)i, (unsigned long long)addr);
        vd_ndx = get_u(p, off + 4, 2);
        vd_cnt = get_u(p, off + 6, 2);
        vd_aux = get_u(p, off + 12, 4);
        vd_next = get_u(p, off + 16, 4);
        if (vd_cnt > 0) {
            if (map_addr(p, addr + vd_aux, 8, &aux_off))
                return fail(p, "version definition aux entry is outside every PT_LOAD");
            vda_name = get_u(p, aux_off, 4);
            if ((name = dyn_str(p, vda_name, "version definition name")) == NULL)
                return -1;
        }
        e->verdef[e->n_verdef] = name;
        e->n_verdef++;
        if (set_version_name(p, vd_ndx, name))
            return -1;
        if (vd_next == 0)
            break;
        addr += vd_next;
    }
    return 0;
}

/* ---- dynamic symbols ---- */
static int count_from_gnu_hash(parser *p, uint64_t addr, uint64_t *count)
{
    uint64_t off, nbuckets, symoffset, bloom_size, buckets, chains, i, v, max = 0, coff;
    if (map_addr(p, addr, 16, &off))
        return -1;
    nbuckets = get_u(p, off, 4);
    symoffset = get_u(p, off + 4, 4);
    bloom_size = get_u(p, off + 8, 4);
    buckets = off + 16 + bloom_size * (p->is64 ? 8 : 4);
    if (!in_range(p, buckets, nbuckets * 4) || nbuckets > p->len / 4)
        return -1;
    for (i = 0; i < nbuckets; i++) {
        v = get_u(p, buckets + 4 * i, 4);
        if (v > max)
            max = v;
    }
    if (max < symoffset) {
        *count = symoffset;
        return 0;
    }
    chains = buckets + 4 * nbuckets;
    for (i = max;; i++) {
        coff = chains + 4 * (i - symoffset);
        if (rd(p, coff, 4, &v))
            return -1;
        if (v & 1)
            break;
    }
    *count = i + 1;
    return 0;
}

/* A symbol count the file can hold: the table fits in the buffer. */
static int plausible_count(const parser *p, uint64_t sym_off, uint64_t syment, uint64_t count)
{
    return count <= p->len / syment && in_range(p, sym_off, count * syment);
}

/*
 * The number of dynamic symbols: a SHT_DYNSYM section over the same bytes (exact), else
 * DT_HASH's nchain, else DT_GNU_HASH's chains.  A count the file cannot hold is passed
 * over: ld.so never reads nchain when DT_GNU_HASH is present, so a lying DT_HASH does not
 * stop the file from loading and must not stop it from being read.
 */
static int symbol_count(parser *p, const dyn_info *d, uint64_t sym_off, uint64_t syment,
                        uint64_t *count)
{
    uint64_t i, type, offset, size, link, entsize, off, n, hash_n = 0;
    int hash_mapped = 0;
    for (i = 0; i < p->shnum; i++) {
        sh_read(p, i, &type, &offset, &size, &link, &entsize);
        if (type == SHT_DYNSYM && offset == sym_off && plausible_count(p, sym_off, syment,
                                                                       size / syment)) {
            *count = size / syment;
            return 0;
        }
    }
    if (d->has_hash && map_addr(p, d->hash, 8, &off) == 0) {
        hash_mapped = 1;
        hash_n = get_u(p, off + 4, 4);
        if (plausible_count(p, sym_off, syment, hash_n)) {
            *count = hash_n;
            return 0;
        }
    }
    if (d->has_gnu_hash && count_from_gnu_hash(p, d->gnu_hash, &n) == 0 &&
        plausible_count(p, sym_off, syment, n)) {
        *count = n;
        return 0;
    }
    if (hash_mapped)
        return fail(p, "dynamic symbol table (%llu symbols, from DT_HASH) is past the end of the "
                    "file", (unsigned long long)hash_n);
    if (d->has_gnu_hash)
        return fail(p, "DT_GNU_HASH table is malformed or outside the file");
    if (d->has_hash)
        return fail(p, "DT_HASH table is outside every PT_LOAD");
    return fail(p, "cannot tell the number of dynamic symbols (no section, DT_HASH or DT_GNU_HASH)");
}

/*
 * Two passes: the first looks up (and charges) every name and version once and keeps the
 * pointers, the second copies from those pointers into one blob sized by the first.
 */
/* A defined symbol RW_IMPORTS_ONLY keeps: named as a Python module's init function may be. */
static int init_like(const char *s)
{
    return strncmp(s, "PyInit_", 7) == 0 || strncmp(s, "init", 4) == 0 ||
           strncmp(s, "_cffi_pypyinit_", 15) == 0;
}

static int parse_symbols(parser *p, const dyn_info *d, int imports_only)
{
    rw_elf *e = &p->out->pub;
    uint64_t syment = d->syment ? d->syment : (p->is64 ? 24u : 16u);
    uint64_t sym_off, count = 0, kept = 0, i, versym_off = 0, total = 0, n;
    int has_versym = 0;
    char *strings;
    uint8_t *info;
    size_t pos = 0, len;
    if (!d->has_symtab)
        return 0;
    if (syment < (p->is64 ? 24u : 16u))
        return fail(p, "DT_SYMENT %llu is too small", (unsigned long long)syment);
    if (map_addr(p, d->symtab, syment, &sym_off))
        return fail(p, "DT_SYMTAB (address 0x%llx) is outside every PT_LOAD",
                    (unsigned long long)d->symtab);
    if (symbol_count(p, d, sym_off, syment, &count))
        return -1;
    if (!plausible_count(p, sym_off, syment, count))
        return fail(p, "dynamic symbol table (%llu symbols) is past the end of the file",
                    (unsigned long long)count);
    if (d->has_versym && count) {
        if (map_addr(p, d->versym, count * 2, &versym_off))
            return fail(p, "DT_VERSYM table (address 0x%llx) is outside every PT_LOAD",
                        (unsigned long long)d->versym);
        has_versym = 1;
    }
    /* count <= len / 16: both scratch arrays together are at most the input's size. */
    if ((p->sym_names = scratch_array(p, count, 2 * sizeof(char *))) == NULL)
        return -1;
    for (i = 0; i < count; i++) {
        const char *s = dyn_str(p, get_u(p, sym_off + i * syment, 4), "symbol name");
        const char *ver = NULL;
        if (s == NULL)
            return -1;
        if (imports_only && get_u(p, sym_off + i * syment + (p->is64 ? 6 : 14), 2) != SHN_UNDEF &&
            !init_like(s)) {
            p->sym_names[2 * i] = NULL; /* left out */
            continue;
        }
        kept++;
        n = strlen(s) + 2; /* name NUL version NUL */
        if (has_versym && (ver = version_name(p, get_u(p, versym_off + 2 * i, 2))) != NULL) {
            if (spend(p, strlen(ver) + 1))
                return -1;
            n += strlen(ver);
        }
        if (add_u64(total, n, &total)) {
            p->nomem = 1;
            return -1;
        }
        p->sym_names[2 * i] = s;
        p->sym_names[2 * i + 1] = ver;
    }
    strings = alloc(p, total);
    info = alloc_array(p, kept, 4);
    if (strings == NULL || info == NULL)
        return -1;
    for (i = 0, n = 0; i < count; i++) {
        uint64_t base = sym_off + i * syment;
        uint64_t st_info = get_u(p, base + (p->is64 ? 4 : 12), 1);
        uint64_t shndx = get_u(p, base + (p->is64 ? 6 : 14), 2);
        uint64_t vs = has_versym ? get_u(p, versym_off + 2 * i, 2) : 0;
        const char *s = p->sym_names[2 * i], *ver = p->sym_names[2 * i + 1];
        if (s == NULL)
            continue;
        len = strlen(s) + 1;
        memcpy(strings + pos, s, len);
        pos += len;
        if (ver != NULL) {
            len = strlen(ver);
            memcpy(strings + pos, ver, len);
            pos += len;
        }
        strings[pos++] = 0;
        info[4 * n] = (uint8_t)(st_info >> 4);
        info[4 * n + 1] = (uint8_t)(st_info & 0xf);
        info[4 * n + 2] = shndx != SHN_UNDEF;
        info[4 * n + 3] = (vs & VERSYM_HIDDEN) != 0;
        n++;
    }
    e->n_symbols = (size_t)kept;
    e->sym_strings = strings;
    e->sym_strings_len = pos;
    e->sym_info = info;
    return 0;
}

/* ---- x86 ISA level from GNU property notes ---- */
static void scan_notes(parser *p, uint64_t off, uint64_t size, uint64_t align)
{
    rw_elf *e = &p->out->pub;
    uint64_t end, namesz, descsz, type, desc, pos, pr_type, pr_datasz, pad;
    if (!in_range(p, off, size))
        return;
    end = off + size;
    pad = align == 8 ? 8 : 4;
    while (end - off >= 12) {
        namesz = get_u(p, off, 4);
        descsz = get_u(p, off + 4, 4);
        type = get_u(p, off + 8, 4);
        desc = off + 12 + ((namesz + 3) & ~(uint64_t)3);
        if (desc > end || descsz > end - desc)
            return;
        if (type == NT_GNU_PROPERTY_TYPE_0 && namesz == 4 &&
            memcmp(p->buf + off + 12, "GNU", 4) == 0) {
            uint64_t prop_align = p->is64 ? 8 : 4, dend = desc + descsz;
            for (pos = desc; pos + 8 <= dend;) {
                pr_type = get_u(p, pos, 4);
                pr_datasz = get_u(p, pos + 4, 4);
                if (pr_datasz > dend - pos - 8)
                    break;
                if (pr_type == GNU_PROPERTY_X86_ISA_1_NEEDED && pr_datasz == 4) {
                    e->has_isa_needed = 1;
                    e->isa_needed = (uint32_t)get_u(p, pos + 8, 4);
                    return;
                }
                pos += 8 + ((pr_datasz + prop_align - 1) & ~(prop_align - 1));
            }
        }
        desc += (descsz + pad - 1) & ~(pad - 1);
        if (desc <= off || desc > end) /* padding may run past the segment: stop there */
            return;
        off = desc;
    }
}

static void parse_isa(parser *p)
{
    rw_elf *e = &p->out->pub;
    uint64_t i, type, offset, size, link, entsize;
    size_t k;
    int found_property_segment = 0;
    if (e->machine != EM_X86_64 && e->machine != EM_386)
        return;
    for (k = 0; k < e->n_segments && !e->has_isa_needed; k++) {
        const rw_segment *seg = &e->segments[k];
        if (seg->type == PT_GNU_PROPERTY) {
            found_property_segment = 1;
            scan_notes(p, seg->offset, seg->filesz, seg->align);
        }
    }
    for (k = 0; k < e->n_segments && !e->has_isa_needed && !found_property_segment; k++) {
        const rw_segment *seg = &e->segments[k];
        if (seg->type == PT_NOTE)
            scan_notes(p, seg->offset, seg->filesz, seg->align);
    }
    if (p->phnum)
        return;
    /* Relocatable objects have no segments: their notes are only in sections. */
    for (i = 0; i < p->shnum && !e->has_isa_needed; i++) {
        sh_read(p, i, &type, &offset, &size, &link, &entsize);
        if (type == SHT_NOTE)
            scan_notes(p, offset, size, p->is64 ? 8 : 4);
    }
}

/* ---- entry points ---- */
static int parse(parser *p, int options)
{
    dyn_info d;
    if (parse_header(p) || parse_segments(p))
        return -1;
    parse_isa(p);
    if (!p->has_dyn)
        return 0;
    scan_dynamic(p, &d);
    if (d.has_strtab && d.has_strsz && map_addr(p, d.strtab, d.strsz, &p->str_off) == 0) {
        p->str_size = d.strsz;
        p->has_str = 1;
    } else if (strtab_from_sections(p) != 0 && (d.has_strtab || d.has_strsz)) {
        return fail(p, "DT_STRTAB (address 0x%llx, %llu bytes) is outside every PT_LOAD",
                    (unsigned long long)d.strtab, (unsigned long long)d.strsz);
    }
    if (parse_dynamic_strings(p, &d) || parse_verneed(p, &d) || parse_verdef(p, &d))
        return -1;
    if ((options & RW_WANT_SYMBOLS) && parse_symbols(p, &d, (options & RW_IMPORTS_ONLY) != 0))
        return -1;
    return 0;
}

static int parse_buffer(const uint8_t *buf, size_t len, const uint64_t *kept_ranges,
                        size_t n_kept, int options, rw_elf **out, char *err, size_t errlen,
                        uint64_t *miss)
{
    parser p;
    struct misses misses = {0, 0, 0};
    rw_elf_owned *owned;
    int rc;
    *out = NULL;
    if (errlen)
        err[0] = 0;
    owned = calloc(1, sizeof(*owned));
    if (owned == NULL)
        return RW_NOMEM;
    memset(&p, 0, sizeof(p));
    p.buf = buf;
    p.len = buf ? len : 0;
    /* len * 16 + 1 MiB, computed without wrapping and capped so that sums of charged sizes
       cannot wrap a 32-bit size_t. */
    p.budget = (uint64_t)p.len <= (OUTPUT_CAP - OUTPUT_EXTRA) / OUTPUT_FACTOR
                   ? (uint64_t)p.len * OUTPUT_FACTOR + OUTPUT_EXTRA
                   : OUTPUT_CAP;
    p.out = owned;
    p.err = err;
    p.errlen = errlen;
    p.kept = kept_ranges;
    p.n_kept = n_kept;
    p.misses = &misses;
    rc = parse(&p, options);
    free(p.version_names);
    free(p.sym_names);
    if (misses.any) { /* whatever the parse made of it, it lacked bytes */
        miss[0] = misses.off;
        miss[1] = misses.end;
        if (errlen)
            snprintf(err, errlen, "bytes %llu to %llu are not kept",
                     (unsigned long long)misses.off, (unsigned long long)misses.end);
        rw_elf_free(&owned->pub);
        return RW_MISSING;
    }
    if (rc != 0) {
        rc = p.nomem ? RW_NOMEM : RW_ERR;
        if (p.nomem && errlen)
            snprintf(err, errlen, "out of memory");
        rw_elf_free(&owned->pub);
        return rc;
    }
    *out = &owned->pub;
    return RW_OK;
}

int rw_elf_parse(const uint8_t *buf, size_t len, int options, rw_elf **out, char *err,
                 size_t errlen)
{
    return parse_buffer(buf, len, NULL, 0, options, out, err, errlen, NULL);
}

int rw_elf_parse_kept(const uint8_t *buf, size_t len, const uint64_t *kept, size_t n_kept,
                      int options, rw_elf **out, char *err, size_t errlen, uint64_t *miss)
{
    miss[0] = miss[1] = 0;
    /* no range kept is an empty list, never "everything" */
    return parse_buffer(buf, len, kept ? kept : miss, kept ? n_kept : 0, options, out, err,
                        errlen, miss);
}

/* Append [off, off + size) clipped to the buffer, if it holds a byte and there is room. */
static void want(const parser *p, uint64_t *pairs, size_t cap, size_t *n, uint64_t off,
                 uint64_t size)
{
    if (*n >= cap || off >= p->len || size == 0)
        return;
    pairs[2 * *n] = off;
    pairs[2 * *n + 1] = size > p->len - off ? p->len : off + size;
    (*n)++;
}

/* A dynamic table at `addr`, `size` bytes (0: not known) as far as its PT_LOAD's file
   bytes and TABLE_GUESS. */
#define TABLE_GUESS ((uint64_t)4 << 20)
static void want_table(const parser *p, uint64_t *pairs, size_t cap, size_t *n, uint64_t addr,
                       uint64_t size)
{
    size_t i;
    for (i = 0; i < p->n_loads; i++) {
        const load_seg *s = &p->loads[i];
        if (addr >= s->vaddr && addr - s->vaddr < s->filesz) {
            uint64_t left = s->filesz - (addr - s->vaddr);
            uint64_t take = size ? size : TABLE_GUESS;
            want(p, pairs, cap, n, s->offset + (addr - s->vaddr), take < left ? take : left);
            return;
        }
    }
}

size_t rw_elf_wanted(const uint8_t *buf, size_t len, const uint64_t *kept, size_t n_kept,
                     uint64_t *pairs, size_t cap)
{
    parser p;
    struct misses misses = {0, 0, 0};
    rw_elf_owned owned;
    uint64_t i;
    size_t n = 0;
    char err[8];
    dyn_info d;
    memset(&p, 0, sizeof(p));
    memset(&owned, 0, sizeof(owned));
    p.buf = buf;
    p.len = buf ? len : 0;
    p.out = &owned;
    p.err = err;
    p.errlen = sizeof(err);
    p.kept = kept ? kept : pairs;
    p.n_kept = kept ? n_kept : 0;
    p.misses = &misses;
    p.budget = OUTPUT_CAP;
    if (p.len < 64 || !in_range(&p, 0, 64)) {
        want(&p, pairs, cap, &n, 0, 64);
        return n;
    }
    if (memcmp(buf, "\x7f" "ELF", 4) != 0 || (buf[4] != 1 && buf[4] != 2) ||
        (buf[5] != 1 && buf[5] != 2))
        return n;
    p.is64 = buf[4] == 2;
    p.big = buf[5] == 2;
    {   /* the header's own counts, before the parse drops a table it cannot read yet */
        unsigned w = p.is64 ? 8u : 4u;
        uint64_t shoff = get_u(&p, 24u + 2u * w, (int)w), bytes;
        uint64_t shentsize = get_u(&p, 24u + 3u * w + 10, 2);
        uint64_t shnum = get_u(&p, 24u + 3u * w + 12, 2);
        /* no count: extended numbering keeps it in section header 0 */
        if (shoff && shentsize && !mul_u64(shnum ? shnum : 1, shentsize, &bytes))
            want(&p, pairs, cap, &n, shoff, bytes);
    }
    if (parse_header(&p) != 0) { /* program headers not kept yet, or not to be read */
        if (p.phentsize && p.phnum <= p.len / p.phentsize)
            want(&p, pairs, cap, &n, p.phoff, p.phnum * p.phentsize);
        return n;
    }
    /* Segments read without the parser's copies: only their types, places and sizes. */
    p.loads = calloc(p.phnum ? (size_t)p.phnum : 1, sizeof(load_seg));
    if (p.loads == NULL)
        return n;
    for (i = 0; i < p.phnum; i++) {
        rw_segment seg;
        ph_read(&p, i, &seg);
        if (seg.type == PT_LOAD) {
            load_seg *s = &p.loads[p.n_loads++];
            s->vaddr = seg.vaddr;
            s->offset = seg.offset;
            s->filesz = seg.filesz;
        } else if (seg.type == PT_DYNAMIC || seg.type == PT_INTERP || seg.type == PT_NOTE ||
                   seg.type == PT_GNU_PROPERTY) {
            want(&p, pairs, cap, &n, seg.offset, seg.filesz);
        }
        if (seg.type == PT_DYNAMIC && !p.has_dyn) {
            p.has_dyn = 1;
            p.dyn_off = seg.offset;
            p.dyn_size = seg.filesz;
        }
    }
    /* With the dynamic table kept: where the tables it points at lie. */
    if (p.has_dyn && in_range(&p, p.dyn_off, p.dyn_size)) {
        struct { int has; uint64_t addr, size; } tables[7];
        size_t t;
        scan_dynamic(&p, &d);
        memset(tables, 0, sizeof(tables));
        tables[0].has = d.has_strtab, tables[0].addr = d.strtab;
        tables[0].size = d.has_strsz ? d.strsz : 0; /* the others' sizes are not stated */
        tables[1].has = d.has_symtab, tables[1].addr = d.symtab;
        tables[2].has = d.has_gnu_hash, tables[2].addr = d.gnu_hash;
        tables[3].has = d.has_hash, tables[3].addr = d.hash;
        tables[4].has = d.has_versym, tables[4].addr = d.versym;
        tables[5].has = d.has_verneed, tables[5].addr = d.verneed;
        tables[6].has = d.has_verdef, tables[6].addr = d.verdef;
        for (t = 0; t < 7; t++)
            if (tables[t].has)
                want_table(&p, pairs, cap, &n, tables[t].addr, tables[t].size);
    }
    free(p.loads);
    return n;
}

void rw_elf_free(rw_elf *elf)
{
    rw_elf_owned *owned = (rw_elf_owned *)elf;
    block *b, *next;
    if (owned == NULL)
        return;
    for (b = owned->blocks; b; b = next) {
        next = b->next;
        free(b);
    }
    free(owned);
}
