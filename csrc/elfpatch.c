/*
 * elfpatch.c: the built-in ELF patcher (see elfpatch.h).
 *
 * What changes, and where it goes:
 *   - the dynamic table's entries are rewritten where they are when the new list
 *     (plus its DT_NULL) fits the old table's slots;
 *   - a new string is (1) an existing string or string tail of .dynstr, else (2) written
 *     over a string that only the edited entries referenced (every reference into
 *     .dynstr is collected first: dynamic entries, dynamic symbol names, version
 *     definitions and needs; a file whose references cannot all be found gets no
 *     in-place reuse), else (3) appended to a copy of the whole table;
 *   - what had to move (the table copy, the dynamic table) goes into one new PT_LOAD
 *     at the end of the file, at a virtual address above every segment and congruent
 *     with its file offset modulo the largest p_align, so the file grows by what was
 *     added.  The program header table needs one more slot for it: the notes or hash
 *     tables right after the table move into the new segment as a block to make room
 *     (see plan_head_move); only when they cannot does the table itself move there.
 *     An executable's moved program headers keep the first PT_LOAD's offset-to-address
 *     delta, so kernels that derive AT_PHDR from it (before 5.18, and qemu-user) find
 *     them.  Section headers of everything that moved follow it.
 */
#include "elfpatch.h"

#include "elfbytes.h"
#include "elfcore.h" /* RW_OK, RW_ERR, RW_NOMEM */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ET_EXEC 2
#define PT_LOAD 1
#define PT_DYNAMIC 2
#define PT_INTERP 3
#define PT_PHDR 6
#define PF_W 2
#define PF_R 4
#define PN_XNUM 0xffff
#define SHT_STRTAB 3
#define SHT_HASH 5
#define SHT_NOTE 7
#define SHT_DYNAMIC 6
#define SHT_NOBITS 8
#define SHT_DYNSYM 11
#define SHT_GNU_HASH 0x6ffffff6u
#define SHT_GNU_VERDEF 0x6ffffffdu
#define SHT_GNU_VERNEED 0x6ffffffeu
#define SHT_GNU_VERSYM 0x6fffffffu
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
#define DT_CONFIG 0x6ffffefau
#define DT_DEPAUDIT 0x6ffffefbu
#define DT_AUDIT 0x6ffffefcu
#define DT_GNU_HASH 0x6ffffef5u
#define DT_VERSYM 0x6ffffff0u
#define DT_VERDEF 0x6ffffffcu
#define DT_VERDEFNUM 0x6ffffffdu
#define DT_VERNEED 0x6ffffffeu
#define DT_VERNEEDNUM 0x6fffffffu
#define DT_AUXILIARY 0x7ffffffdu
#define DT_FILTER 0x7fffffffu
#define NEW_NONE ((size_t)-1)
/* The most zeros an executable whose program headers move is padded with (its segments'
   memory past the file: a few pages in real files). */
#define MAX_PADDING ((uint64_t)64 << 20)

typedef struct {
    uint32_t type, flags;
    uint64_t offset, vaddr, paddr, filesz, memsz, align;
} phdr;

typedef struct {
    uint64_t tag, val;
    size_t new_string; /* index into the new strings, or NEW_NONE */
} dent;

/* A string that only edited entries referenced: [start, end], end being its NUL. */
typedef struct {
    uint64_t start, end, used;
} region;

typedef struct {
    const char *s;
    size_t len;
    uint64_t offset; /* in the final table */
} newstr;

/* A version need whose vn_file (at file offset `at`) becomes new string `new_string`. */
typedef struct {
    uint64_t at;
    size_t new_string;
} vn_rename;

typedef struct chunk {
    struct chunk *next;
} chunk;

typedef struct {
    rw_patch pub;
    chunk *chunks;
    size_t cap_writes;
} patch_owned;

typedef struct {
    const uint8_t *buf;
    uint64_t len;
    int is64, big, w;
    char *err;
    size_t errlen;
    int nomem;
    uint64_t ehsize, phoff, phentsize, phnum, shoff, shentsize, shnum;
    int is_exec;
    phdr *ph;
    size_t dyn_ph;
    uint64_t dyn_off, dyn_cap, n_dyn;
    dent *dyn;
    uint64_t str_addr, str_off, str_size;
    uint64_t dynamic_sh, dynstr_sh; /* section indices, or UINT64_MAX */
    /* the new dynamic list */
    dent *ndyn;
    size_t n_ndyn;
    /* new strings */
    newstr *strs;
    size_t n_strs, cap_strs;
    /* offsets of strings dropped by the edits, and every reference that stays */
    uint64_t *dropped, *refs;
    size_t n_dropped, cap_dropped, n_refs, cap_refs;
    int refs_complete;
    /* the bytes the loader reads at DT_SYMTAB and DT_VERSYM (0 when the count is unknown) */
    uint64_t symtab_bytes, versym_bytes;
    /* version needs to rename */
    vn_rename *vn;
    size_t n_vn, cap_vn;
    patch_owned *out;
} pctx;

#if defined(__GNUC__)
static int fail(pctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
static int fail(pctx *p, const char *fmt, ...)
{
    va_list ap;
    if (p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int nomem(pctx *p)
{
    p->nomem = 1;
    return fail(p, "out of memory");
}

/* ---- memory ---- */
static void *grow_array(pctx *p, void *arr, size_t *cap, size_t need, size_t size)
{
    size_t n = *cap ? *cap : 16;
    void *bigger;
    if (need <= *cap)
        return arr;
    while (n < need) {
        if (n > SIZE_MAX / 2 / size) {
            nomem(p);
            return NULL;
        }
        n *= 2;
    }
    if ((bigger = realloc(arr, n * size)) == NULL) {
        nomem(p);
        return NULL;
    }
    *cap = n;
    return bigger;
}

static uint8_t *out_bytes(pctx *p, uint64_t n)
{
    chunk *c;
    if (n > (uint64_t)(SIZE_MAX - 32)) {
        nomem(p);
        return NULL;
    }
    if ((c = malloc(16 + (size_t)n + 1)) == NULL) {
        nomem(p);
        return NULL;
    }
    c->next = p->out->chunks;
    p->out->chunks = c;
    return (uint8_t *)c + 16;
}

/* Queue a write of `n` bytes at `offset` (the bytes are copied; NULL writes zeros). */
static int add_write(pctx *p, uint64_t offset, const uint8_t *data, uint64_t n)
{
    rw_patch *w = &p->out->pub;
    rw_write *arr;
    uint8_t *copy;
    if ((copy = out_bytes(p, n)) == NULL)
        return -1;
    if (n && data != NULL)
        memcpy(copy, data, (size_t)n);
    else if (n)
        memset(copy, 0, (size_t)n);
    arr = grow_array(p, w->writes, &p->out->cap_writes, w->n_writes + 1, sizeof(rw_write));
    if (arr == NULL)
        return -1;
    w->writes = arr;
    arr[w->n_writes].offset = offset;
    arr[w->n_writes].len = (size_t)n;
    arr[w->n_writes].data = copy;
    w->n_writes++;
    return 0;
}

/* ---- bounds-checked reads ---- */
static int in_range(const pctx *p, uint64_t off, uint64_t size)
{
    return off <= p->len && size <= p->len - off;
}

static uint64_t get(const pctx *p, uint64_t off, int width)
{
    return rw_load(p->buf + off, p->big, width);
}

/* Map an address range to a file offset through the PT_LOAD segments. */
static int map_addr(const pctx *p, uint64_t addr, uint64_t size, uint64_t *off)
{
    uint64_t i;
    for (i = 0; i < p->phnum; i++) {
        const phdr *s = &p->ph[i];
        if (s->type == PT_LOAD && addr >= s->vaddr && addr - s->vaddr < s->filesz &&
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

/* ---- header, segments, sections ---- */
static int read_header(pctx *p)
{
    int w;
    if (p->len < 16 || memcmp(p->buf, "\x7f" "ELF", 4) != 0)
        return fail(p, "not an ELF file (bad magic)");
    if ((p->buf[4] != 1 && p->buf[4] != 2) || (p->buf[5] != 1 && p->buf[5] != 2))
        return fail(p, "unknown ELF class or data encoding");
    p->is64 = p->buf[4] == 2;
    p->big = p->buf[5] == 2;
    p->w = w = p->is64 ? 8 : 4;
    p->ehsize = p->is64 ? 64 : 52;
    if (p->len < p->ehsize)
        return fail(p, "truncated ELF header");
    p->is_exec = get(p, 16, 2) == ET_EXEC;
    p->phoff = get(p, 24u + (unsigned)w, w);
    p->shoff = get(p, 24u + 2u * (unsigned)w, w);
    p->phentsize = get(p, 24u + 3u * (unsigned)w + 6, 2);
    p->phnum = get(p, 24u + 3u * (unsigned)w + 8, 2);
    p->shentsize = get(p, 24u + 3u * (unsigned)w + 10, 2);
    p->shnum = get(p, 24u + 3u * (unsigned)w + 12, 2);
    if (p->phnum == PN_XNUM)
        return fail(p, "extended program header numbering is not supported");
    if (p->phnum == 0)
        return fail(p, "no program headers (not a linked file)");
    if (p->phentsize < (uint64_t)(p->is64 ? 56 : 32))
        return fail(p, "program header entry size %llu is too small",
                    (unsigned long long)p->phentsize);
    if (!in_range(p, p->phoff, p->phnum * p->phentsize))
        return fail(p, "the program header table is past the end of the file");
    if (p->shoff == 0) {
        p->shnum = 0;
    } else {
        if (p->shentsize < (uint64_t)(p->is64 ? 64 : 40))
            return fail(p, "section header entry size %llu is too small",
                        (unsigned long long)p->shentsize);
        if (p->shnum == 0) { /* extended numbering: the count is in section 0 */
            if (!in_range(p, p->shoff, p->shentsize))
                return fail(p, "the section header table is past the end of the file");
            p->shnum = get(p, p->shoff + (p->is64 ? 32 : 20), w);
        }
        if (p->shnum > p->len / p->shentsize || !in_range(p, p->shoff, p->shnum * p->shentsize))
            return fail(p, "the section header table is past the end of the file");
    }
    return 0;
}

static uint64_t ph_at(const pctx *p, uint64_t i)
{
    return p->phoff + i * p->phentsize;
}

static int read_segments(pctx *p)
{
    uint64_t i, b;
    int w = p->w, found = 0;
    if ((p->ph = calloc((size_t)p->phnum, sizeof(phdr))) == NULL)
        return nomem(p);
    for (i = 0; i < p->phnum; i++) {
        phdr *s = &p->ph[i];
        b = ph_at(p, i);
        s->type = (uint32_t)get(p, b, 4);
        s->flags = (uint32_t)get(p, b + (p->is64 ? 4 : 24), 4);
        s->offset = get(p, b + (p->is64 ? 8 : 4), w);
        s->vaddr = get(p, b + (p->is64 ? 16 : 8), w);
        s->paddr = get(p, b + (p->is64 ? 24 : 12), w);
        s->filesz = get(p, b + (p->is64 ? 32 : 16), w);
        s->memsz = get(p, b + (p->is64 ? 40 : 20), w);
        s->align = get(p, b + (p->is64 ? 48 : 28), w);
        if (s->type == PT_INTERP)
            p->is_exec = 1;
        if (s->type == PT_LOAD && (s->vaddr > UINT64_MAX - s->memsz || s->filesz > s->memsz))
            return fail(p, "PT_LOAD %llu has impossible sizes", (unsigned long long)i);
        if (s->type == PT_DYNAMIC && !found) {
            p->dyn_ph = (size_t)i;
            found = 1;
        }
    }
    if (!found)
        return fail(p, "no dynamic section (a static executable?): nothing to patch");
    return 0;
}

static uint64_t sh_at(const pctx *p, uint64_t i)
{
    return p->shoff + i * p->shentsize;
}

static uint64_t sh_type(const pctx *p, uint64_t i)
{
    return get(p, sh_at(p, i) + 4, 4);
}

static uint64_t sh_word(const pctx *p, uint64_t i, int f32, int f64)
{
    return get(p, sh_at(p, i) + (uint64_t)(p->is64 ? f64 : f32), p->w);
}

#define SH_ADDR(p, i) sh_word(p, i, 12, 16)
#define SH_OFFSET(p, i) sh_word(p, i, 16, 24)
#define SH_SIZE(p, i) sh_word(p, i, 20, 32)

static uint64_t sh_link(const pctx *p, uint64_t i)
{
    return get(p, sh_at(p, i) + (p->is64 ? 40 : 24), 4);
}

/* ---- the dynamic table ---- */
static int read_dynamic(pctx *p)
{
    const phdr *d = &p->ph[p->dyn_ph];
    uint64_t entsize = 2 * (uint64_t)p->w, i, strsz = 0;
    int has_strtab = 0, has_strsz = 0;
    if (map_addr(p, d->vaddr, d->filesz, &p->dyn_off))
        return fail(p, "PT_DYNAMIC (address 0x%llx, %llu bytes) is not inside a PT_LOAD",
                    (unsigned long long)d->vaddr, (unsigned long long)d->filesz);
    p->dyn_cap = d->filesz / entsize;
    if ((p->dyn = calloc((size_t)p->dyn_cap + 1, sizeof(dent))) == NULL)
        return nomem(p);
    for (i = 0; i < p->dyn_cap; i++) {
        dent *e = &p->dyn[i];
        e->tag = get(p, p->dyn_off + i * entsize, p->w);
        e->val = get(p, p->dyn_off + i * entsize + (uint64_t)p->w, p->w);
        e->new_string = NEW_NONE;
        if (e->tag == DT_NULL)
            break;
        if (e->tag == DT_STRTAB) {
            p->str_addr = e->val;
            has_strtab = 1;
        } else if (e->tag == DT_STRSZ) {
            strsz = e->val;
            has_strsz = 1;
        }
    }
    if (i == p->dyn_cap)
        return fail(p, "the dynamic table has no DT_NULL terminator");
    p->n_dyn = i;
    if (!has_strtab || !has_strsz)
        return fail(p, "the dynamic table has no DT_STRTAB or DT_STRSZ");
    if (map_addr(p, p->str_addr, strsz, &p->str_off))
        return fail(p, "the dynamic string table (address 0x%llx, %llu bytes) is not inside a "
                    "PT_LOAD", (unsigned long long)p->str_addr, (unsigned long long)strsz);
    p->str_size = strsz;
    return 0;
}

static void find_sections(pctx *p)
{
    uint64_t i;
    p->dynamic_sh = p->dynstr_sh = UINT64_MAX;
    for (i = 0; i < p->shnum; i++) {
        uint64_t type = sh_type(p, i);
        if (type == SHT_DYNAMIC && p->dynamic_sh == UINT64_MAX && SH_OFFSET(p, i) == p->dyn_off)
            p->dynamic_sh = i;
        else if (type == SHT_STRTAB && p->dynstr_sh == UINT64_MAX &&
                 SH_ADDR(p, i) == p->str_addr && SH_OFFSET(p, i) == p->str_off)
            p->dynstr_sh = i;
    }
}

/* The NUL-terminated string at `idx` of the string table, or NULL. */
static const char *str_at(const pctx *p, uint64_t idx)
{
    const uint8_t *s;
    if (idx >= p->str_size)
        return NULL;
    s = p->buf + p->str_off + idx;
    return memchr(s, 0, (size_t)(p->str_size - idx)) ? (const char *)s : NULL;
}

static int string_tag(uint64_t tag)
{
    return tag == DT_NEEDED || tag == DT_SONAME || tag == DT_RPATH || tag == DT_RUNPATH ||
           tag == DT_CONFIG || tag == DT_DEPAUDIT || tag == DT_AUDIT || tag == DT_AUXILIARY ||
           tag == DT_FILTER;
}

/* ---- bookkeeping of string references ---- */
static int push_u64(pctx *p, uint64_t **arr, size_t *n, size_t *cap, uint64_t v)
{
    uint64_t *a = grow_array(p, *arr, cap, *n + 1, sizeof(uint64_t));
    if (a == NULL)
        return -1;
    *arr = a;
    a[(*n)++] = v;
    return 0;
}

static int drop(pctx *p, uint64_t off)
{
    return push_u64(p, &p->dropped, &p->n_dropped, &p->cap_dropped, off);
}

static int ref(pctx *p, uint64_t off)
{
    return push_u64(p, &p->refs, &p->n_refs, &p->cap_refs, off);
}

/* The index of new string `s` (added once). */
static int new_string(pctx *p, const char *s, size_t *index)
{
    size_t i;
    newstr *bigger;
    for (i = 0; i < p->n_strs; i++) {
        if (strcmp(p->strs[i].s, s) == 0) {
            *index = i;
            return 0;
        }
    }
    bigger = grow_array(p, p->strs, &p->cap_strs, p->n_strs + 1, sizeof(newstr));
    if (bigger == NULL)
        return -1;
    p->strs = bigger;
    p->strs[p->n_strs].s = s;
    p->strs[p->n_strs].len = strlen(s);
    p->strs[p->n_strs].offset = 0;
    *index = p->n_strs++;
    return 0;
}

static int push_entry(pctx *p, uint64_t tag, uint64_t val, size_t new_index)
{
    dent *e = &p->ndyn[p->n_ndyn++];
    e->tag = tag;
    e->val = val;
    e->new_string = new_index;
    return 0;
}

static long find_name(const char *s, const char **names, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (names[i] != NULL && strcmp(s, names[i]) == 0)
            return (long)i;
    return -1;
}

/* Build the new dynamic list; record dropped string offsets and new strings. */
static int edit_dynamic(pctx *p, const rw_patch_ops *ops)
{
    uint64_t i;
    size_t insert_at = 0, k, idx = NEW_NONE, n_add = 0;
    int has_runpath = 0, rpath_done = 0, runpath_done = 0, soname_done = 0;
    int action = ops->path_action;
    dent add[3];
    if ((p->ndyn = calloc((size_t)p->n_dyn + 4, sizeof(dent))) == NULL)
        return nomem(p);
    for (i = 0; i < p->n_dyn; i++)
        has_runpath |= p->dyn[i].tag == DT_RUNPATH;
    if ((action == RW_PATH_SET_RPATH || action == RW_PATH_SET_RUNPATH) &&
        new_string(p, ops->path, &idx))
        return -1;
    for (i = 0; i < p->n_dyn; i++) {
        const dent *e = &p->dyn[i];
        const char *s = NULL;
        size_t soname_idx;
        long r;
        if (string_tag(e->tag) && (s = str_at(p, e->val)) == NULL)
            return fail(p, "dynamic entry %llu (tag 0x%llx) points outside the string table",
                        (unsigned long long)i, (unsigned long long)e->tag);
        switch (e->tag) {
        case DT_NEEDED:
            if (find_name(s, ops->remove, ops->n_remove) >= 0) {
                if (drop(p, e->val))
                    return -1;
            } else if ((r = find_name(s, ops->replace_old, ops->n_replace)) >= 0) {
                size_t ni;
                if (new_string(p, ops->replace_new[r], &ni) || drop(p, e->val))
                    return -1;
                push_entry(p, DT_NEEDED, 0, ni);
            } else {
                push_entry(p, e->tag, e->val, NEW_NONE);
            }
            insert_at = p->n_ndyn;
            break;
        case DT_SONAME:
            if (ops->set_soname != NULL) {
                if (new_string(p, ops->set_soname, &soname_idx) || drop(p, e->val))
                    return -1;
                push_entry(p, DT_SONAME, 0, soname_idx);
                soname_done = 1;
            } else {
                push_entry(p, e->tag, e->val, NEW_NONE);
            }
            break;
        case DT_RPATH:
        case DT_RUNPATH:
            if (action == RW_PATH_KEEP) {
                push_entry(p, e->tag, e->val, NEW_NONE);
                break;
            }
            if (drop(p, e->val))
                return -1;
            if (action == RW_PATH_SET_RPATH && !rpath_done) {
                push_entry(p, DT_RPATH, 0, idx);
                rpath_done = 1;
            } else if (action == RW_PATH_SET_RUNPATH) {
                /* DT_RUNPATH stays or replaces a lone DT_RPATH; with both, both stay */
                uint64_t tag = e->tag == DT_RPATH && !has_runpath ? DT_RUNPATH : e->tag;
                int *done = tag == DT_RPATH ? &rpath_done : &runpath_done;
                if (!*done) {
                    push_entry(p, tag, 0, idx);
                    *done = 1;
                }
            }
            break;
        default:
            push_entry(p, e->tag, e->val, NEW_NONE);
            break;
        }
    }
    if (ops->set_soname != NULL && !soname_done) {
        if (new_string(p, ops->set_soname, &k))
            return -1;
        add[n_add].tag = DT_SONAME;
        add[n_add++].new_string = k;
    }
    if (action == RW_PATH_SET_RPATH && !rpath_done) {
        add[n_add].tag = DT_RPATH;
        add[n_add++].new_string = idx;
    }
    if (action == RW_PATH_SET_RUNPATH && !runpath_done) {
        add[n_add].tag = DT_RUNPATH;
        add[n_add++].new_string = idx;
    }
    if (n_add) {
        memmove(p->ndyn + insert_at + n_add, p->ndyn + insert_at,
                (p->n_ndyn - insert_at) * sizeof(dent));
        for (k = 0; k < n_add; k++) {
            p->ndyn[insert_at + k].tag = add[k].tag;
            p->ndyn[insert_at + k].val = 0;
            p->ndyn[insert_at + k].new_string = add[k].new_string;
        }
        p->n_ndyn += n_add;
    }
    for (k = 0; k < p->n_ndyn; k++)
        if (p->ndyn[k].new_string == NEW_NONE && string_tag(p->ndyn[k].tag) &&
            ref(p, p->ndyn[k].val))
            return -1;
    return 0;
}

/* ---- version needs and definitions ---- */
static uint64_t record_limit(const pctx *p)
{
    return p->len / 8 + 1;
}

/* Rename the vn_file of version needs that follow renamed DT_NEEDED entries; collect the
   references that stay.  A malformed chain is an error only when something is renamed. */
static int edit_verneed(pctx *p, const rw_patch_ops *ops, int *complete)
{
    uint64_t addr = 0, num = 0, i, j, off, aux, total = 0, limit = record_limit(p);
    int has = 0, has_num = 0;
    for (i = 0; i < p->n_dyn; i++) {
        if (p->dyn[i].tag == DT_VERNEED) {
            addr = p->dyn[i].val;
            has = 1;
        } else if (p->dyn[i].tag == DT_VERNEEDNUM) {
            num = p->dyn[i].val;
            has_num = 1;
        }
    }
    if (!has)
        return 0;
    if (!has_num || num > limit)
        num = limit;
    for (i = 0; i < num; i++) {
        uint64_t vn_cnt, vn_file, vn_aux, vn_next;
        const char *file;
        long r;
        if (map_addr(p, addr, 16, &off))
            goto malformed;
        vn_cnt = get(p, off + 2, 2);
        vn_file = get(p, off + 4, 4);
        vn_aux = get(p, off + 8, 4);
        vn_next = get(p, off + 12, 4);
        /* records and aux entries are 16 bytes: nearer ones overlap, and renaming one
           vn_file would rewrite its neighbour */
        if ((vn_cnt && vn_aux < 16) || (vn_next && vn_next < 16))
            goto malformed;
        if ((file = str_at(p, vn_file)) == NULL)
            goto malformed;
        if ((r = find_name(file, ops->replace_old, ops->n_replace)) >= 0) {
            size_t ni;
            vn_rename *v;
            if (new_string(p, ops->replace_new[r], &ni) || drop(p, vn_file))
                return -1;
            if ((v = grow_array(p, p->vn, &p->cap_vn, p->n_vn + 1, sizeof(vn_rename))) == NULL)
                return -1;
            p->vn = v;
            v[p->n_vn].at = off + 4;
            v[p->n_vn++].new_string = ni;
        } else if (ref(p, vn_file)) {
            return -1;
        }
        aux = addr + vn_aux;
        for (j = 0; j < vn_cnt; j++) {
            uint64_t aoff, vna_next;
            if (++total > limit || aux < addr || map_addr(p, aux, 16, &aoff))
                goto malformed;
            if (ref(p, get(p, aoff + 8, 4)))
                return -1;
            vna_next = get(p, aoff + 12, 4);
            if (vna_next == 0)
                break;
            aux += vna_next;
        }
        if (vn_next == 0)
            break;
        if (++total > limit || addr + vn_next < addr)
            goto malformed;
        addr += vn_next;
    }
    return 0;
malformed:
    *complete = 0;
    return ops->n_replace ? fail(p, "the version needs (DT_VERNEED) are malformed") : 0;
}

static int scan_verdef(pctx *p, int *complete)
{
    uint64_t addr = 0, num = 0, i, j, off, total = 0, limit = record_limit(p);
    int has = 0;
    for (i = 0; i < p->n_dyn; i++) {
        if (p->dyn[i].tag == DT_VERDEF) {
            addr = p->dyn[i].val;
            has = 1;
        } else if (p->dyn[i].tag == DT_VERDEFNUM) {
            num = p->dyn[i].val;
        }
    }
    if (!has)
        return 0;
    if (num == 0 || num > limit)
        num = limit;
    for (i = 0; i < num; i++) {
        uint64_t vd_cnt, vd_aux, vd_next, aux;
        if (map_addr(p, addr, 20, &off))
            goto malformed;
        vd_cnt = get(p, off + 6, 2);
        vd_aux = get(p, off + 12, 4);
        vd_next = get(p, off + 16, 4);
        aux = addr + vd_aux;
        for (j = 0; j < vd_cnt; j++) {
            uint64_t aoff, vda_next;
            if (++total > limit || aux < addr || map_addr(p, aux, 8, &aoff))
                goto malformed;
            if (ref(p, get(p, aoff, 4)))
                return -1;
            vda_next = get(p, aoff + 4, 4);
            if (vda_next == 0)
                break;
            aux += vda_next;
        }
        if (vd_next == 0)
            break;
        if (++total > limit || addr + vd_next < addr)
            goto malformed;
        addr += vd_next;
    }
    return 0;
malformed:
    *complete = 0;
    return 0;
}

/* ---- dynamic symbols: their names are references too ---- */
static int gnu_hash_count(const pctx *p, uint64_t addr, uint64_t *count)
{
    uint64_t off, nbuckets, symoffset, bloom, buckets, i, v, max = 0;
    if (map_addr(p, addr, 16, &off))
        return -1;
    nbuckets = get(p, off, 4);
    symoffset = get(p, off + 4, 4);
    bloom = get(p, off + 8, 4);
    buckets = off + 16 + bloom * (uint64_t)p->w;
    if (nbuckets > p->len / 4 || !in_range(p, buckets, nbuckets * 4))
        return -1;
    for (i = 0; i < nbuckets; i++)
        if ((v = get(p, buckets + 4 * i, 4)) > max)
            max = v;
    if (max < symoffset) {
        *count = symoffset;
        return 0;
    }
    for (i = max;; i++) {
        uint64_t c = buckets + 4 * nbuckets + 4 * (i - symoffset);
        if (!in_range(p, c, 4))
            return -1;
        if (get(p, c, 4) & 1)
            break;
    }
    *count = i + 1;
    return 0;
}

static int scan_symbols(pctx *p, int *complete)
{
    uint64_t symtab = 0, syment = p->is64 ? 24 : 16, hash = 0, gnu = 0, i, off, count = 0;
    int has_sym = 0, has_hash = 0, has_gnu = 0, counted = 0;
    for (i = 0; i < p->n_dyn; i++) {
        const dent *e = &p->dyn[i];
        if (e->tag == DT_SYMTAB) {
            symtab = e->val;
            has_sym = 1;
        } else if (e->tag == DT_SYMENT && e->val) {
            syment = e->val;
        } else if (e->tag == DT_HASH) {
            hash = e->val;
            has_hash = 1;
        } else if (e->tag == DT_GNU_HASH) {
            gnu = e->val;
            has_gnu = 1;
        }
    }
    if (!has_sym)
        return 0;
    if (syment < (uint64_t)(p->is64 ? 24 : 16) || map_addr(p, symtab, syment, &off))
        goto unknown;
    for (i = 0; i < p->shnum && !counted; i++) {
        if (sh_type(p, i) == SHT_DYNSYM && SH_OFFSET(p, i) == off) {
            count = SH_SIZE(p, i) / syment;
            counted = 1;
        }
    }
    if (!counted && has_hash) {
        uint64_t hoff;
        if (map_addr(p, hash, 8, &hoff) == 0) {
            count = get(p, hoff + 4, 4);
            counted = count <= p->len / syment && in_range(p, off, count * syment);
        }
    }
    if (!counted && has_gnu && gnu_hash_count(p, gnu, &count) == 0)
        counted = 1;
    if (!counted || count > p->len / syment || !in_range(p, off, count * syment))
        goto unknown;
    p->symtab_bytes = count * syment;
    p->versym_bytes = count * 2;
    for (i = 0; i < count; i++)
        if (ref(p, get(p, off + i * syment, 4)))
            return -1;
    return 0;
unknown:
    *complete = 0;
    return 0;
}

/* Sections other than the known ones that use .dynstr: their references are unknown. */
static void check_linked_sections(pctx *p, int *complete)
{
    uint64_t i, type;
    if (p->dynstr_sh == UINT64_MAX)
        return;
    for (i = 0; i < p->shnum; i++) {
        type = sh_type(p, i);
        if (sh_link(p, i) == p->dynstr_sh && type != SHT_DYNAMIC && type != SHT_DYNSYM &&
            type != SHT_GNU_VERDEF && type != SHT_GNU_VERNEED)
            *complete = 0;
    }
}

/* ---- placing the new strings ---- */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_region(const void *a, const void *b)
{
    return cmp_u64(&((const region *)a)->start, &((const region *)b)->start);
}

/* True if a sorted reference lies in [start, end]. */
static int referenced(const pctx *p, uint64_t start, uint64_t end)
{
    size_t lo = 0, hi = p->n_refs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->refs[mid] < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->n_refs && p->refs[lo] <= end;
}

/* The strings no remaining reference touches, sorted and distinct. */
static int free_regions(pctx *p, region **out, size_t *n_out)
{
    const uint8_t *t = p->buf + p->str_off;
    region *r;
    size_t i, n = 0;
    uint64_t walked = 0; /* the end of the last string walked, plus one */
    *out = NULL;
    *n_out = 0;
    if (!p->refs_complete || p->n_dropped == 0)
        return 0;
    if (p->n_refs) /* refs is NULL when nothing refers to the table any more */
        qsort(p->refs, p->n_refs, sizeof(uint64_t), cmp_u64);
    /* in order, so that each string is walked once however many entries dropped it */
    qsort(p->dropped, p->n_dropped, sizeof(uint64_t), cmp_u64);
    if ((r = calloc(p->n_dropped, sizeof(region))) == NULL)
        return nomem(p);
    for (i = 0; i < p->n_dropped; i++) {
        uint64_t start = p->dropped[i], end = start;
        if (start >= p->str_size || start < walked)
            continue;
        while (start > 0 && t[start - 1] != 0)
            start--;
        while (end < p->str_size && t[end] != 0)
            end++;
        walked = end + 1;
        if (start == 0 || end >= p->str_size || referenced(p, start, end))
            continue;
        r[n].start = r[n].used = start;
        r[n++].end = end;
    }
    qsort(r, n, sizeof(region), cmp_region);
    for (i = 0, *n_out = 0; i < n; i++)
        if (*n_out == 0 || r[*n_out - 1].start != r[i].start)
            r[(*n_out)++] = r[i];
    *out = r;
    return 0;
}

static int overlaps_region(const region *r, size_t n, uint64_t start, uint64_t end)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (start <= r[i].end && r[i].start <= end)
            return 1;
    return 0;
}

/* An existing occurrence of s NUL outside the freed regions, or -1. */
static int find_existing(const pctx *p, const newstr *s, const region *r, size_t n,
                         uint64_t *at)
{
    const uint8_t *t = p->buf + p->str_off;
    uint64_t size = p->str_size, pos = 0, need = (uint64_t)s->len + 1;
    while (pos + need <= size) {
        const uint8_t *hit = memchr(t + pos, s->len ? (unsigned char)s->s[0] : 0,
                                    (size_t)(size - need - pos + 1));
        uint64_t h;
        if (hit == NULL)
            return -1;
        h = (uint64_t)(hit - t);
        if (memcmp(hit, s->s, s->len) == 0 && hit[s->len] == 0 &&
            !overlaps_region(r, n, h, h + s->len)) {
            *at = h;
            return 0;
        }
        pos = h + 1;
    }
    return -1;
}

/*
 * Give every new string its offset; the final table is the old one with the freed
 * regions rewritten, plus `*appended` bytes.  Returns the table's new bytes in *table
 * (only when something was freed or appended; NULL otherwise).
 */
static int place_strings(pctx *p, uint8_t **table, uint64_t *new_size, region **regions,
                         size_t *n_regions)
{
    size_t i, j, n;
    uint64_t extra = 0, size;
    region *r;
    uint8_t *t;
    *table = NULL;
    if (free_regions(p, regions, n_regions))
        return -1;
    r = *regions;
    n = *n_regions;
    for (i = 0; i < p->n_strs; i++) {
        newstr *s = &p->strs[i];
        uint64_t at;
        if (find_existing(p, s, r, n, &at) == 0) {
            s->offset = at;
            continue;
        }
        for (j = 0; j < n; j++) {
            if (r[j].end + 1 - r[j].used >= (uint64_t)s->len + 1) {
                s->offset = r[j].used;
                r[j].used += (uint64_t)s->len + 1;
                break;
            }
        }
        if (j < n)
            continue;
        s->offset = p->str_size + extra;
        extra += (uint64_t)s->len + 1;
    }
    if (p->str_size > UINT64_MAX - extra)
        return fail(p, "the string table would be too large");
    size = p->str_size + extra;
    *new_size = size;
    if (n == 0 && extra == 0)
        return 0;
    if (size >= (uint64_t)SIZE_MAX || (t = malloc((size_t)size + 1)) == NULL)
        return nomem(p);
    memcpy(t, p->buf + p->str_off, (size_t)p->str_size);
    for (j = 0; j < n; j++)
        memset(t + r[j].start, 0, (size_t)(r[j].end - r[j].start + 1));
    for (i = 0; i < p->n_strs; i++) {
        const newstr *s = &p->strs[i];
        if (s->offset >= p->str_size || overlaps_region(r, n, s->offset, s->offset))
            memcpy(t + s->offset, s->s, s->len + 1);
    }
    *table = t;
    return 0;
}

/* ---- writing ---- */
static uint64_t align_up(uint64_t v, uint64_t a, int *overflow)
{
    uint64_t r;
    if (a <= 1)
        return v;
    r = v % a;
    if (r == 0)
        return v;
    if (v > UINT64_MAX - (a - r)) {
        *overflow = 1;
        return v;
    }
    return v + (a - r);
}

static void put_ph(const pctx *p, uint8_t *b, const phdr *s)
{
    int w = p->w;
    rw_store(b, p->big, 4, s->type);
    rw_store(b + (p->is64 ? 4 : 24), p->big, 4, s->flags);
    rw_store(b + (p->is64 ? 8 : 4), p->big, w, s->offset);
    rw_store(b + (p->is64 ? 16 : 8), p->big, w, s->vaddr);
    rw_store(b + (p->is64 ? 24 : 12), p->big, w, s->paddr);
    rw_store(b + (p->is64 ? 32 : 16), p->big, w, s->filesz);
    rw_store(b + (p->is64 ? 40 : 20), p->big, w, s->memsz);
    rw_store(b + (p->is64 ? 48 : 28), p->big, w, s->align);
}

/* True if the slot after the program header table is free file space inside the PT_LOAD
   that maps the table: no section and no other segment uses those bytes. */
typedef struct layout layout;
static int table_touches(const pctx *p, const layout *l, int move_str, uint64_t start,
                         uint64_t size);

static int phdr_slot_free(const pctx *p)
{
    uint64_t start = p->phoff + p->phnum * p->phentsize, end = start + p->phentsize, i;
    int mapped = 0;
    if (p->shnum == 0 || !in_range(p, start, p->phentsize))
        return 0;
    for (i = 0; i < p->phnum; i++) {
        const phdr *s = &p->ph[i];
        uint64_t s_end = s->offset + s->filesz;
        if (s->type == PT_LOAD && s->offset <= p->phoff && end <= s_end && s_end >= s->offset)
            mapped = 1;
        else if (s->type != PT_LOAD && s->type != PT_PHDR && s->filesz && s->offset < end &&
                 start < s_end)
            return 0;
    }
    for (i = 0; i < p->shnum && mapped; i++) {
        uint64_t off = SH_OFFSET(p, i), size = SH_SIZE(p, i);
        if (sh_type(p, i) != SHT_NOBITS && size && off < end && start < off + size)
            return 0;
    }
    if (start < p->ehsize || (p->shoff < end && start < p->shoff + p->shnum * p->shentsize))
        return 0;
    /* nor the dynamic table, where p_vaddr maps it (p_offset may say otherwise), nor a table
       a dynamic entry points at */
    if (p->dyn_off < end && start < p->dyn_off + p->ph[p->dyn_ph].filesz)
        return 0;
    return mapped && !table_touches(p, NULL, 0, start, p->phentsize);
}

/*
 * Room for one more program header without moving the table: the sections right after it
 * (notes, .interp, the hash tables, .dynsym and .gnu.version: nothing but a program header
 * or a DT_HASH/DT_GNU_HASH/DT_SYMTAB/DT_VERSYM entry points at them) move as one block into
 * the new segment, keeping their layout.  strip and objcopy assume the table follows the
 * ELF header, so it stays there.
 */
typedef struct {
    int ok;
    uint64_t start, end, vstart;
} head_block;

static int address_tag(uint64_t tag)
{
    return tag == 3 || tag == DT_HASH || tag == DT_STRTAB || tag == DT_SYMTAB || tag == 7 ||
           tag == 12 || tag == 13 || tag == 17 || tag == 23 || tag == 25 || tag == 26 ||
           tag == 32 || tag == 36 || (tag >= 0x6ffffe00u && tag <= 0x6ffffeffu) ||
           tag == DT_VERSYM || tag == DT_VERDEF || tag == DT_VERNEED ||
           (tag >= 0x70000000u && tag <= 0x7fffffffu);
}

/* The dynamic entries that point at tables a head block may hold; they follow it. */
static int follows_block(uint64_t tag)
{
    return tag == DT_HASH || tag == DT_GNU_HASH || tag == DT_SYMTAB || tag == DT_VERSYM;
}

static int movable_section(const pctx *p, uint64_t i)
{
    uint64_t type = sh_type(p, i), k;
    if (type == SHT_NOTE || type == SHT_HASH || type == SHT_GNU_HASH || type == SHT_DYNSYM ||
        type == SHT_GNU_VERSYM)
        return 1;
    for (k = 0; k < p->phnum; k++)
        if (p->ph[k].type == PT_INTERP && p->ph[k].offset == SH_OFFSET(p, i) &&
            p->ph[k].filesz == SH_SIZE(p, i))
            return 1;
    return 0;
}

/* Grow [start, *end) until it holds whole sections and segments, all movable. */
static int close_block(const pctx *p, uint64_t start, uint64_t *end, uint64_t fl_end)
{
    uint64_t i, off, size;
    int changed = 1;
    while (changed) {
        changed = 0;
        for (i = 0; i < p->shnum; i++) {
            off = SH_OFFSET(p, i);
            size = SH_SIZE(p, i);
            if (sh_type(p, i) == SHT_NOBITS || size == 0 || off < start || off >= *end)
                continue;
            if (!movable_section(p, i) || size > fl_end - off)
                return -1;
            if (off + size > *end) {
                *end = off + size;
                changed = 1;
            }
        }
        for (i = 0; i < p->phnum; i++) {
            const phdr *s = &p->ph[i];
            if (s->type == PT_LOAD || s->type == PT_PHDR || s->filesz == 0)
                continue;
            if (s->offset < start && s->filesz > start - s->offset)
                return -1;
            if (s->offset >= start && s->offset < *end && s->filesz > *end - s->offset) {
                if (s->filesz > fl_end - s->offset)
                    return -1;
                *end = s->offset + s->filesz;
                changed = 1;
            }
        }
    }
    return 0;
}

static void plan_head_move(const pctx *p, head_block *b)
{
    uint64_t start = p->phoff + p->phnum * p->phentsize, end = start, i, k, next, fl_end;
    uint64_t sh_end = p->shoff + p->shnum * p->shentsize, vend, vroom, room;
    const phdr *fl = NULL;
    memset(b, 0, sizeof(*b));
    if (p->shnum == 0 || start < p->ehsize)
        return;
    for (i = 0; i < p->phnum && fl == NULL; i++)
        if (p->ph[i].type == PT_LOAD && p->ph[i].offset <= p->phoff &&
            start - p->ph[i].offset <= p->ph[i].filesz)
            fl = &p->ph[i];
    if (fl == NULL || ((fl->vaddr - fl->offset) & 63) != 0)
        return;
    fl_end = fl->offset + fl->filesz;
    if (p->shoff < fl_end && start < sh_end)
        return;
    for (;;) {
        next = fl_end;
        for (i = 0; i < p->shnum; i++) {
            uint64_t off = SH_OFFSET(p, i), size = SH_SIZE(p, i);
            if (sh_type(p, i) == SHT_NOBITS || size == 0)
                continue;
            if (off < start && size > start - off)
                return;
            if (off >= end && off < next)
                next = off;
        }
        for (k = 0; k < p->phnum; k++) {
            const phdr *s = &p->ph[k];
            if (s->type != PT_LOAD && s->type != PT_PHDR && s->filesz && s->offset >= end &&
                s->offset < next)
                next = s->offset;
        }
        if (next - start >= p->phentsize)
            break;
        if (next >= fl_end)
            return;
        end = next + 1; /* take in what starts at `next` */
        if (close_block(p, start, &end, fl_end))
            return;
    }
    if (end == start)
        return;
    /* the dynamic table is rewritten where it is: it can neither move with the block nor lie
       under the new program header, by PT_DYNAMIC's p_offset or where its p_vaddr maps (a
       range inside the file, so the sum cannot wrap) */
    room = end > start + p->phentsize ? end : start + p->phentsize;
    {
        const phdr *d = &p->ph[p->dyn_ph];
        if ((d->offset >= start && d->offset < end) ||
            (p->dyn_off < room && start < p->dyn_off + d->filesz))
            return;
    }
    b->vstart = start - fl->offset + fl->vaddr;
    vend = b->vstart + (end - start);
    vroom = b->vstart + (room - start);
    for (k = 0; k < p->n_ndyn; k++) {
        const dent *e = &p->ndyn[k];
        if (e->new_string != NEW_NONE || !address_tag(e->tag) || e->val < b->vstart ||
            e->val >= vroom)
            continue;
        /* a table past the block but under the grown program header table would be
           overwritten (one no section describes: the sections there were looked at) */
        if (e->val >= vend || !follows_block(e->tag))
            return;
        /* the symbols and their versions move only whole, as many as the loader reads */
        if (e->tag == DT_SYMTAB && (p->symtab_bytes == 0 || p->symtab_bytes > vend - e->val))
            return;
        if (e->tag == DT_VERSYM && (p->versym_bytes == 0 || p->versym_bytes > vend - e->val))
            return;
    }
    b->start = start;
    b->end = end;
    b->ok = 1;
}

/* The new segment: where it goes, and where each moved table sits in it. */
struct layout {
    uint64_t off, vaddr, size, align;
    uint64_t ph_rel, blk_rel, dyn_rel, str_rel;
    int move_ph;
    head_block blk;
};

static int in_block(const head_block *b, uint64_t v, uint64_t lo)
{
    return b->ok && v >= lo && v - lo < b->end - b->start;
}

static int encode_dynamic(pctx *p, uint8_t *b, uint64_t slots, uint64_t strtab_addr,
                          uint64_t strsz, const layout *l)
{
    uint64_t k, entsize = 2 * (uint64_t)p->w;
    memset(b, 0, (size_t)(slots * entsize));
    for (k = 0; k < p->n_ndyn; k++) {
        const dent *e = &p->ndyn[k];
        uint64_t val = e->new_string != NEW_NONE ? p->strs[e->new_string].offset : e->val;
        if (e->tag == DT_STRTAB)
            val = strtab_addr;
        else if (e->tag == DT_STRSZ)
            val = strsz;
        else if (follows_block(e->tag) && in_block(&l->blk, val, l->blk.vstart))
            val = val - l->blk.vstart + l->vaddr + l->blk_rel;
        if (!p->is64 && val > 0xffffffffu)
            return fail(p, "a value does not fit a 32-bit dynamic entry");
        rw_store(b + k * entsize, p->big, p->w, e->tag);
        rw_store(b + k * entsize + (uint64_t)p->w, p->big, p->w, val);
    }
    return 0;
}

static int write_section(pctx *p, uint64_t index, uint64_t offset, uint64_t addr,
                         uint64_t size)
{
    uint8_t entry[64];
    uint64_t n = p->is64 ? 64 : 40;
    memcpy(entry, p->buf + sh_at(p, index), (size_t)n);
    rw_store(entry + (p->is64 ? 16 : 12), p->big, p->w, addr);
    rw_store(entry + (p->is64 ? 24 : 16), p->big, p->w, offset);
    rw_store(entry + (p->is64 ? 32 : 20), p->big, p->w, size);
    return add_write(p, sh_at(p, index), entry, n);
}

/* Place the new segment: above every PT_LOAD, p_offset = p_vaddr modulo the largest p_align. */
static int place_segment(pctx *p, layout *l, int move_dyn, uint64_t slots, int move_str,
                         uint64_t table_size)
{
    uint64_t align = 1, max_end = 0, i, top, base, first_delta = 0, phsize, cur = 0;
    uint64_t limit = p->is64 ? UINT64_MAX : 0xffffffffu, entsize = 2 * (uint64_t)p->w;
    int overflow = 0;
    for (i = 0; i < p->phnum; i++) {
        const phdr *s = &p->ph[i];
        if (s->type != PT_LOAD)
            continue;
        if (s->align > align)
            align = s->align;
        if (s->vaddr + s->memsz > max_end)
            max_end = s->vaddr + s->memsz;
    }
    if (align & (align - 1))
        return fail(p, "a PT_LOAD alignment (0x%llx) is not a power of two",
                    (unsigned long long)align);
    l->align = align;
    if (p->phnum + 1 >= PN_XNUM)
        return fail(p, "too many program headers to add one");
    phsize = (p->phnum + 1) * p->phentsize;
    if (!phdr_slot_free(p)) {
        if (align >= 64)
            plan_head_move(p, &l->blk);
        l->move_ph = !l->blk.ok;
    }
    if (l->move_ph)
        cur = phsize;
    if (l->blk.ok) {
        l->blk_rel = cur + ((l->blk.start - cur) & 63);
        cur = l->blk_rel + (l->blk.end - l->blk.start);
    }
    l->dyn_rel = align_up(cur, 16, &overflow);
    cur = l->dyn_rel + (move_dyn ? slots * entsize : 0);
    l->str_rel = cur;
    if (move_str && table_size > UINT64_MAX - cur)
        overflow = 1;
    l->size = cur + (move_str ? table_size : 0);
    base = align_up(p->len, 64, &overflow);
    top = align_up(max_end, align, &overflow);
    if (p->is_exec && l->move_ph) {
        /* keep the first PT_LOAD's delta: AT_PHDR = its vaddr - offset + e_phoff */
        for (i = 0; i < p->phnum; i++) {
            if (p->ph[i].type == PT_LOAD) {
                first_delta = p->ph[i].vaddr - p->ph[i].offset; /* mod 2^64 */
                break;
            }
        }
        if ((first_delta & (align - 1)) != 0)
            return fail(p, "the first PT_LOAD is not aligned");
        l->off = top - first_delta;
        if (top < first_delta || l->off < base)
            l->off = base;
        l->vaddr = l->off + first_delta;
        if (l->vaddr < top)
            overflow = 1;
        else if (l->off - base > MAX_PADDING)
            return fail(p, "moving the program headers of this executable would pad it by "
                        "%llu bytes", (unsigned long long)(l->off - base));
    } else {
        l->off = base;
        l->vaddr = top + (base & (align - 1));
        if (l->vaddr < top)
            overflow = 1;
    }
    if (overflow || l->vaddr > limit || l->size > limit - l->vaddr || l->off > limit ||
        l->size > UINT64_MAX - l->off)
        return fail(p, "no room for a new segment in the address space");
    return 0;
}

/* The program header table with the new PT_LOAD after the last one, tables that moved
   pointed at their new places. */
static int write_phdrs(pctx *p, const layout *l, uint8_t *blob, int move_dyn, uint64_t slots)
{
    uint64_t phsize = (p->phnum + 1) * p->phentsize, i, j, last_load = 0;
    uint64_t entsize = 2 * (uint64_t)p->w;
    uint8_t *bytes, eh[64];
    phdr seg;
    int rc = 0;
    for (i = 0; i < p->phnum; i++)
        if (p->ph[i].type == PT_LOAD)
            last_load = i;
    seg.type = PT_LOAD;
    seg.flags = PF_R | (move_dyn ? PF_W : 0);
    seg.offset = l->off;
    seg.vaddr = seg.paddr = l->vaddr;
    seg.filesz = seg.memsz = l->size;
    seg.align = l->align;
    if ((bytes = calloc(1, (size_t)phsize)) == NULL)
        return nomem(p);
    for (i = 0, j = 0; i < p->phnum; i++, j++) {
        phdr s = p->ph[i];
        memcpy(bytes + j * p->phentsize, p->buf + ph_at(p, i), (size_t)p->phentsize);
        if (s.type == PT_PHDR) {
            if (l->move_ph) {
                s.offset = l->off + l->ph_rel;
                s.vaddr = s.paddr = l->vaddr + l->ph_rel;
            }
            s.filesz = s.memsz = phsize;
        } else if (i == p->dyn_ph && move_dyn) {
            s.offset = l->off + l->dyn_rel;
            s.vaddr = s.paddr = l->vaddr + l->dyn_rel;
            s.filesz = s.memsz = slots * entsize;
        } else if (s.type != PT_LOAD && s.filesz && in_block(&l->blk, s.offset, l->blk.start)) {
            s.offset = s.offset - l->blk.start + l->off + l->blk_rel;
            s.vaddr = s.vaddr - l->blk.vstart + l->vaddr + l->blk_rel;
            s.paddr = s.vaddr;
        }
        put_ph(p, bytes + j * p->phentsize, &s);
        if (i == last_load) {
            j++;
            put_ph(p, bytes + j * p->phentsize, &seg);
        }
    }
    if (l->move_ph)
        memcpy(blob + l->ph_rel, bytes, (size_t)phsize);
    else
        rc = add_write(p, p->phoff, bytes, phsize);
    free(bytes);
    if (rc)
        return -1;
    memcpy(eh, p->buf, (size_t)p->ehsize);
    if (l->move_ph)
        rw_store(eh + 24 + p->w, p->big, p->w, l->off + l->ph_rel);
    rw_store(eh + 24 + 3 * p->w + 8, p->big, 2, p->phnum + 1);
    return add_write(p, 0, eh, p->ehsize);
}

/* Sections that moved (the head block, .dynamic, .dynstr) get their new places. */
static int write_sections(pctx *p, const layout *l, int move_dyn, uint64_t slots, int move_str,
                          uint64_t table_size)
{
    uint64_t i, entsize = 2 * (uint64_t)p->w;
    for (i = 0; i < p->shnum && l->blk.ok; i++) {
        uint64_t off = SH_OFFSET(p, i);
        if (sh_type(p, i) != SHT_NOBITS && in_block(&l->blk, off, l->blk.start) &&
            write_section(p, i, off - l->blk.start + l->off + l->blk_rel,
                          SH_ADDR(p, i) - l->blk.vstart + l->vaddr + l->blk_rel, SH_SIZE(p, i)))
            return -1;
    }
    if (move_dyn && p->dynamic_sh != UINT64_MAX &&
        write_section(p, p->dynamic_sh, l->off + l->dyn_rel, l->vaddr + l->dyn_rel,
                      slots * entsize))
        return -1;
    if (move_str && p->dynstr_sh != UINT64_MAX &&
        write_section(p, p->dynstr_sh, l->off + l->str_rel, l->vaddr + l->str_rel, table_size))
        return -1;
    return 0;
}

/* Whether [start, start + size) touches [off, off + len) (no sum can wrap). */
static int touches(uint64_t start, uint64_t size, uint64_t off, uint64_t len)
{
    return size && len && (off >= start ? off - start < size : start - off < len);
}

/* Whether a table a dynamic entry points at, and which stays where it is (not moved with the
   block `l` or, with `move_str`, as the string table), touches [start, start + size): as far as
   the loader reads it, or its section says, else (no section describes it) to the end of the
   file; an address that is not a table's (code, flags) only where it points. */
static int table_touches(const pctx *p, const layout *l, int move_str, uint64_t start,
                         uint64_t size)
{
    uint64_t i, k;
    for (i = 0; i < p->n_ndyn; i++) {
        const dent *e = &p->ndyn[i];
        uint64_t off, extent = 1;
        int table = e->tag == DT_HASH || e->tag == DT_GNU_HASH || e->tag == DT_SYMTAB ||
                    e->tag == DT_VERSYM || e->tag == DT_VERDEF || e->tag == DT_VERNEED ||
                    e->tag == DT_STRTAB;
        if (e->new_string != NEW_NONE || !address_tag(e->tag) ||
            (move_str && e->tag == DT_STRTAB) ||
            (l != NULL && l->blk.ok && follows_block(e->tag) && e->val >= l->blk.vstart &&
             e->val - l->blk.vstart < l->blk.end - l->blk.start) ||
            map_addr(p, e->val, 1, &off) != 0)
            continue;
        if (e->tag == DT_SYMTAB && p->symtab_bytes)
            extent = p->symtab_bytes;
        else if (e->tag == DT_VERSYM && p->versym_bytes)
            extent = p->versym_bytes;
        else if (e->tag == DT_STRTAB)
            extent = p->str_size ? p->str_size : 1;
        else if (table) {
            extent = UINT64_MAX;
            for (k = 0; k < p->shnum; k++)
                if (sh_type(p, k) != SHT_NOBITS && SH_OFFSET(p, k) == off && SH_SIZE(p, k))
                    extent = SH_SIZE(p, k);
        }
        if (touches(start, size, off, extent))
            return 1;
    }
    return 0;
}

/* Whether the bytes [start, end) are in use by nothing once the move is done: no header table,
   no dynamic table, no section or segment but those that moved (the head block's, and the
   string table when `move_str`). Without section headers nothing says so. */
static int unused_after_move(const pctx *p, const layout *l, int move_str, uint64_t start,
                             uint64_t end)
{
    uint64_t i, size = end - start, entsize = 2 * (uint64_t)p->w;
    const phdr *d = &p->ph[p->dyn_ph];
    if (start >= end || p->shnum == 0 || touches(start, size, 0, p->ehsize) ||
        touches(start, size, p->phoff, (p->phnum + 1) * p->phentsize) ||
        touches(start, size, p->shoff, p->shnum * p->shentsize) ||
        touches(start, size, p->dyn_off, p->dyn_cap * entsize) ||
        touches(start, size, d->offset, d->filesz))
        return 0;
    for (i = 0; i < p->shnum; i++) {
        uint64_t off = SH_OFFSET(p, i), len = SH_SIZE(p, i);
        if (sh_type(p, i) == SHT_NOBITS || (move_str && i == p->dynstr_sh) ||
            (in_block(&l->blk, off, l->blk.start) && len <= l->blk.end - off))
            continue;
        if (touches(start, size, off, len))
            return 0;
    }
    for (i = 0; i < p->phnum; i++) {
        const phdr *s = &p->ph[i];
        if (s->type == PT_LOAD || s->type == PT_PHDR ||
            (in_block(&l->blk, s->offset, l->blk.start) && s->filesz <= l->blk.end - s->offset))
            continue;
        if (touches(start, size, s->offset, s->filesz))
            return 0;
    }
    return !table_touches(p, l, move_str, start, size);
}

/* Zero the sections that moved (those of the head block, the old string table) where nothing
   else is: nothing reads them any more, and a compressed wheel does not carry them twice. */
static int clear_moved(pctx *p, const layout *l, int move_str)
{
    uint64_t i, ph_end = p->phoff + (p->phnum + 1) * p->phentsize;
    for (i = 0; i < p->shnum; i++) {
        uint64_t start = SH_OFFSET(p, i), size = SH_SIZE(p, i), end;
        int in_head = in_block(&l->blk, start, l->blk.start) && size <= l->blk.end - start;
        int old_strings = move_str && i == p->dynstr_sh && start >= p->str_off &&
                          start - p->str_off <= p->str_size &&
                          size <= p->str_size - (start - p->str_off);
        if (sh_type(p, i) == SHT_NOBITS || size == 0 || !(in_head || old_strings))
            continue;
        end = start + size;
        if (in_head && start < ph_end) /* the program header table grew into its first bytes */
            start = ph_end < end ? ph_end : end;
        if (unused_after_move(p, l, move_str, start, end) &&
            add_write(p, start, NULL, end - start))
            return -1;
    }
    return 0;
}

static int emit(pctx *p, const uint8_t *table, uint64_t table_size, const region *r,
                size_t n_regions)
{
    rw_patch *out = &p->out->pub;
    uint64_t entsize = 2 * (uint64_t)p->w, slots = (uint64_t)p->n_ndyn + 1;
    int move_str = table_size != p->str_size, move_dyn = slots > p->dyn_cap;
    int need_seg = move_str || move_dyn, rc = -1;
    uint64_t strtab_addr = p->str_addr, n;
    uint8_t *blob = NULL, *d = NULL;
    layout l;
    size_t k;

    memset(&l, 0, sizeof(l));
    if (need_seg) {
        if (place_segment(p, &l, move_dyn, slots, move_str, table_size))
            return -1;
        if ((blob = calloc(1, (size_t)l.size + 1)) == NULL)
            return nomem(p);
        if (move_str)
            strtab_addr = l.vaddr + l.str_rel;
        if (l.blk.ok)
            memcpy(blob + l.blk_rel, p->buf + l.blk.start, (size_t)(l.blk.end - l.blk.start));
        if (write_phdrs(p, &l, blob, move_dyn, slots))
            goto done;
    }
    if (need_seg && clear_moved(p, &l, move_str))
        goto done;
    out->strtab_moved = move_str;
    out->dynamic_moved = move_dyn;
    out->phdrs_moved = l.move_ph;
    out->head_moved = l.blk.ok;
    out->padding = need_seg ? l.off - p->len : 0;
    out->new_size = need_seg ? l.off + l.size : p->len;

    n = move_dyn ? slots : p->dyn_cap;
    if ((d = move_dyn ? blob + l.dyn_rel : malloc((size_t)(n * entsize) + 1)) == NULL) {
        nomem(p);
        goto done;
    }
    if (encode_dynamic(p, d, n, strtab_addr, table_size, &l) ||
        (!move_dyn && add_write(p, p->dyn_off, d, n * entsize)))
        goto done;
    if (move_str) {
        memcpy(blob + l.str_rel, table, (size_t)table_size);
    } else if (table != NULL) {
        for (k = 0; k < n_regions; k++)
            if (add_write(p, p->str_off + r[k].start, table + r[k].start,
                          r[k].end - r[k].start + 1))
                goto done;
    }
    for (k = 0; k < p->n_vn; k++) {
        uint8_t v[4];
        rw_store(v, p->big, 4, p->strs[p->vn[k].new_string].offset);
        if (add_write(p, p->vn[k].at, v, 4))
            goto done;
    }
    if (write_sections(p, &l, move_dyn, slots, move_str, table_size) ||
        (need_seg && add_write(p, l.off, blob, l.size)))
        goto done;
    rc = 0;
done:
    if (!move_dyn)
        free(d);
    free(blob);
    return rc;
}

/* ---- entry points ---- */
static int check_ops(pctx *p, const rw_patch_ops *ops)
{
    size_t i;
    if (ops->set_soname != NULL && ops->set_soname[0] == 0)
        return fail(p, "an empty SONAME");
    if ((ops->path_action == RW_PATH_SET_RPATH || ops->path_action == RW_PATH_SET_RUNPATH) &&
        (ops->path == NULL || ops->path[0] == 0))
        return fail(p, "an empty RPATH");
    if (ops->path_action < RW_PATH_KEEP || ops->path_action > RW_PATH_SET_RUNPATH)
        return fail(p, "unknown RPATH action %d", ops->path_action);
    for (i = 0; i < ops->n_replace; i++)
        if (ops->replace_old[i] == NULL || ops->replace_new[i] == NULL ||
            ops->replace_new[i][0] == 0)
            return fail(p, "an empty DT_NEEDED replacement");
    for (i = 0; i < ops->n_remove; i++)
        if (ops->remove[i] == NULL)
            return fail(p, "a NULL DT_NEEDED to remove");
    return 0;
}

static int patch(pctx *p, const rw_patch_ops *ops)
{
    uint8_t *table = NULL;
    uint64_t table_size = 0;
    region *regions = NULL;
    size_t n_regions = 0;
    int rc;
    p->refs_complete = 1;
    if (check_ops(p, ops) || read_header(p) || read_segments(p) || read_dynamic(p))
        return -1;
    find_sections(p);
    if (edit_dynamic(p, ops) || edit_verneed(p, ops, &p->refs_complete) ||
        scan_verdef(p, &p->refs_complete) || scan_symbols(p, &p->refs_complete))
        return -1;
    check_linked_sections(p, &p->refs_complete);
    if (place_strings(p, &table, &table_size, &regions, &n_regions)) {
        free(regions);
        return -1;
    }
    rc = emit(p, table, table_size, regions, n_regions);
    free(table);
    free(regions);
    return rc;
}

int rw_elf_patch(const uint8_t *buf, size_t len, const rw_patch_ops *ops, rw_patch **out,
                 char *err, size_t errlen)
{
    pctx p;
    patch_owned *owned;
    int rc;
    *out = NULL;
    if (errlen)
        err[0] = 0;
    if ((owned = calloc(1, sizeof(*owned))) == NULL)
        return RW_NOMEM;
    memset(&p, 0, sizeof(p));
    p.buf = buf;
    p.len = buf ? len : 0;
    p.err = err;
    p.errlen = errlen;
    p.out = owned;
    owned->pub.new_size = p.len;
    rc = patch(&p, ops);
    free(p.ph);
    free(p.dyn);
    free(p.ndyn);
    free(p.strs);
    free(p.dropped);
    free(p.refs);
    free(p.vn);
    if (rc != 0) {
        rw_patch_free(&owned->pub);
        return p.nomem ? RW_NOMEM : RW_ERR;
    }
    *out = &owned->pub;
    return RW_OK;
}

void rw_patch_free(rw_patch *patch_result)
{
    patch_owned *owned = (patch_owned *)patch_result;
    chunk *c, *next;
    if (owned == NULL)
        return;
    for (c = owned->chunks; c; c = next) {
        next = c->next;
        free(c);
    }
    free(owned->pub.writes);
    free(owned);
}
