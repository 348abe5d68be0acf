/*
 * fuzz_patch_check.h: run rw_elf_patch on one input and check what it promises
 * (fuzz_elfpatch.c on generated files, fuzz_elfcore.c on raw bytes).
 *
 * Invalid ops must fail.  A failed patch must return RW_ERR or RW_NOMEM, no result and a
 * one-line message.  A successful one must not shrink the file, must grow it only by a new
 * segment (padded to at most 64 bytes unless the program headers moved), and is applied to a
 * copy (every write inside the new size).  The reader then parses the patched file; if it
 * parsed the original and the original's in-place tables are sound (see tables_overlap()):
 *   - the patched file parses too (unless only the reader's string budget refuses it), with
 *     the DT_NEEDED list renamed and filtered as asked, the new SONAME, DT_RPATH/DT_RUNPATH
 *     per the action, version needs' files renamed like DT_NEEDED, and everything else the
 *     reader reports unchanged (interpreter, version needs and definitions, ISA level...);
 *   - the original PT_LOADs are all still there, unchanged and in order; the new one comes
 *     after them, above them in memory; the other segments keep their type, flags, size and
 *     content; PT_LOADs stay congruent, ordered and apart, PT_PHDR still describes the
 *     program header table, a PT_LOAD still maps it, where an executable's first PT_LOAD
 *     says it is, if the original had these properties.
 * With `strict` (files whose layout the generator made), also: writes inside the original
 * file touch only the ELF header, the program header table and its next slot, the dynamic
 * table, the string table, version needs' vn_file and the section headers; every section
 * keeps its content (moved or not) and its address-to-offset relation; the dynamic entries
 * the patch does not edit are unchanged, in order (an address may change only to where a
 * copy of the same bytes is); the dynamic symbols read the same.  A violation prints what
 * failed and aborts, so libFuzzer keeps the input.
 */
#ifndef REPAIRWHEEL_FUZZ_PATCH_CHECK_H
#define REPAIRWHEEL_FUZZ_PATCH_CHECK_H

#include "elfbytes.h"
#include "elfcore.h"
#include "elfpatch.h"
#include "fuzz_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PC_PT_LOAD 1u
#define PC_PT_DYNAMIC 2u
#define PC_PT_INTERP 3u
#define PC_PT_PHDR 6u
#define PC_SHT_NULL 0u
#define PC_SHT_STRTAB 3u
#define PC_SHT_DYNAMIC 6u
#define PC_SHT_NOBITS 8u
#define PC_DT_VERNEED 0x6ffffffeu
#define PC_DT_VERNEEDNUM 0x6fffffffu

#define CHECK(c)                                                                           \
    do {                                                                                   \
        if (!(c))                                                                          \
            check_failed(#c, __LINE__);                                                    \
    } while (0)

#if defined(__GNUC__)
static void check_failed(const char *what, int line) __attribute__((noreturn));
#endif
static void check_failed(const char *what, int line)
{
    fprintf(stderr, "fuzz_patch_check.h:%d: patch invariant violated: %s\n", line, what);
    abort();
}

/* ---- a minimal bounds-checked view of an ELF file (the checker's own reading) ---- */
typedef struct {
    uint32_t type, flags;
    uint64_t offset, vaddr, filesz, memsz, align;
} pc_seg;

typedef struct {
    uint32_t type;
    uint64_t addr, offset, size;
} pc_sec;

typedef struct {
    const uint8_t *b;
    uint64_t n;
    int is64, big, w, ok;
    uint64_t type, ehsize, phoff, phentsize, phnum, shoff, shentsize, shnum;
    pc_seg *seg;
    /* the dynamic table (first PT_DYNAMIC, at its p_vaddr) and string table, if mapped */
    int has_dyn, has_str;
    uint64_t dyn_off, dyn_size, n_dyn, str_addr, str_off, str_size;
} view;

static int pc_in(const view *v, uint64_t off, uint64_t size)
{
    return off <= v->n && size <= v->n - off;
}

static uint64_t pc_get(const view *v, uint64_t off, int width)
{
    return pc_in(v, off, (uint64_t)width) ? rw_load(v->b + off, v->big, width) : 0;
}

/* Map an address range to a file offset through the PT_LOADs, as the reader does. */
static int pc_map(const view *v, uint64_t addr, uint64_t size, uint64_t *off)
{
    uint64_t i;
    for (i = 0; i < v->phnum; i++) {
        const pc_seg *s = &v->seg[i];
        if (s->type == PC_PT_LOAD && addr >= s->vaddr && addr - s->vaddr < s->filesz &&
            size <= s->filesz - (addr - s->vaddr)) {
            uint64_t o = s->offset + (addr - s->vaddr);
            if (o < s->offset || !pc_in(v, o, size))
                return -1;
            *off = o;
            return 0;
        }
    }
    return -1;
}

static void dyn_at(const view *v, uint64_t i, uint64_t *tag, uint64_t *val)
{
    *tag = pc_get(v, v->dyn_off + i * 2u * (uint64_t)v->w, v->w);
    *val = pc_get(v, v->dyn_off + i * 2u * (uint64_t)v->w + (uint64_t)v->w, v->w);
}

static void view_free(view *v)
{
    free(v->seg);
    v->seg = NULL;
}

/* Read the header and program headers (v->ok if they are in the file), then the dynamic
   table and string table if PT_LOADs map them. */
static void view_init(view *v, const uint8_t *b, uint64_t n)
{
    uint64_t i, tag, val, strsz = 0;
    int has_strtab = 0, has_strsz = 0;
    memset(v, 0, sizeof(*v));
    v->b = b;
    v->n = b ? n : 0;
    if (v->n < 52 || memcmp(b, "\x7f" "ELF", 4) != 0 || (b[4] != 1 && b[4] != 2) ||
        (b[5] != 1 && b[5] != 2))
        return;
    v->is64 = b[4] == 2;
    v->big = b[5] == 2;
    v->w = v->is64 ? 8 : 4;
    v->ehsize = v->is64 ? 64 : 52;
    if (v->n < v->ehsize)
        return;
    v->type = pc_get(v, 16, 2);
    v->phoff = pc_get(v, 24u + (unsigned)v->w, v->w);
    v->shoff = pc_get(v, 24u + 2u * (unsigned)v->w, v->w);
    v->phentsize = pc_get(v, 24u + 3u * (unsigned)v->w + 6, 2);
    v->phnum = pc_get(v, 24u + 3u * (unsigned)v->w + 8, 2);
    v->shentsize = pc_get(v, 24u + 3u * (unsigned)v->w + 10, 2);
    v->shnum = pc_get(v, 24u + 3u * (unsigned)v->w + 12, 2);
    if (v->shoff == 0 || v->shentsize < (uint64_t)(v->is64 ? 64 : 40) ||
        v->shnum > v->n / v->shentsize || !pc_in(v, v->shoff, v->shnum * v->shentsize))
        v->shnum = 0; /* extended numbering or a table past the end: no sections */
    if (v->phnum == 0 || v->phnum == 0xffff || v->phentsize < (uint64_t)(v->is64 ? 56 : 32) ||
        v->phnum > v->n / v->phentsize || !pc_in(v, v->phoff, v->phnum * v->phentsize))
        return;
    if ((v->seg = calloc((size_t)v->phnum, sizeof(pc_seg))) == NULL)
        abort();
    for (i = 0; i < v->phnum; i++) {
        uint64_t p = v->phoff + i * v->phentsize;
        pc_seg *s = &v->seg[i];
        s->type = (uint32_t)pc_get(v, p, 4);
        s->flags = (uint32_t)pc_get(v, p + (v->is64 ? 4 : 24), 4);
        s->offset = pc_get(v, p + (v->is64 ? 8 : 4), v->w);
        s->vaddr = pc_get(v, p + (v->is64 ? 16 : 8), v->w);
        s->filesz = pc_get(v, p + (v->is64 ? 32 : 16), v->w);
        s->memsz = pc_get(v, p + (v->is64 ? 40 : 20), v->w);
        s->align = pc_get(v, p + (v->is64 ? 48 : 28), v->w);
    }
    v->ok = 1;
    for (i = 0; i < v->phnum && !v->has_dyn; i++) {
        if (v->seg[i].type == PC_PT_DYNAMIC &&
            pc_map(v, v->seg[i].vaddr, v->seg[i].filesz, &v->dyn_off) == 0) {
            v->has_dyn = 1;
            v->dyn_size = v->seg[i].filesz;
        }
    }
    for (i = 0; v->has_dyn && i < v->dyn_size / (2u * (uint64_t)v->w); i++) {
        dyn_at(v, i, &tag, &val);
        if (tag == 0)
            break;
        if (tag == 5) {
            v->str_addr = val;
            has_strtab = 1;
        } else if (tag == 10) {
            strsz = val;
            has_strsz = 1;
        }
    }
    v->n_dyn = i;
    if (has_strtab && has_strsz && pc_map(v, v->str_addr, strsz, &v->str_off) == 0) {
        v->has_str = 1;
        v->str_size = strsz;
    }
}

static void get_sec(const view *v, uint64_t i, pc_sec *s)
{
    uint64_t at = v->shoff + i * v->shentsize;
    s->type = (uint32_t)pc_get(v, at + 4, 4);
    s->addr = pc_get(v, at + (v->is64 ? 16 : 12), v->w);
    s->offset = pc_get(v, at + (v->is64 ? 24 : 16), v->w);
    s->size = pc_get(v, at + (v->is64 ? 32 : 20), v->w);
}

/* The string at index `idx` of the dynamic string table, or NULL. */
static const char *pc_str(const view *v, uint64_t idx)
{
    const uint8_t *s;
    if (!v->has_str || idx >= v->str_size)
        return NULL;
    s = v->b + v->str_off + idx;
    return memchr(s, 0, (size_t)(v->str_size - idx)) ? (const char *)s : NULL;
}

/* ---- properties a file may have; the patch must keep those the original had ---- */
static int loads_congruent(const view *v)
{
    uint64_t i;
    for (i = 0; i < v->phnum; i++) {
        const pc_seg *s = &v->seg[i];
        if (s->type == PC_PT_LOAD && s->align > 1 && (s->align & (s->align - 1)) == 0 &&
            ((s->offset - s->vaddr) & (s->align - 1)) != 0)
            return 0;
    }
    return 1;
}

/* PT_LOADs in ascending p_vaddr order, none sharing a page (of the larger alignment). */
static int loads_ordered(const view *v)
{
    uint64_t i, last = 0;
    int have = 0;
    const pc_seg *prev = NULL;
    for (i = 0; i < v->phnum; i++) {
        const pc_seg *s = &v->seg[i];
        uint64_t a;
        if (s->type != PC_PT_LOAD)
            continue;
        if (s->memsz == 0 || s->vaddr > UINT64_MAX - s->memsz)
            return 0;
        if (have) {
            a = prev->align > s->align ? prev->align : s->align;
            a = a > 1 && (a & (a - 1)) == 0 ? a : 1;
            if (s->vaddr < prev->vaddr || s->vaddr / a <= last / a)
                return 0;
        }
        prev = s;
        last = s->vaddr + s->memsz - 1;
        have = 1;
    }
    return 1;
}

/* The file offset a PT_LOAD maps `addr` to. */
static int maps_to(const view *v, uint64_t addr, uint64_t size, uint64_t off)
{
    uint64_t o;
    return pc_map(v, addr, size, &o) == 0 && o == off;
}

static uint64_t phdr_bytes(const view *v)
{
    return v->phnum * v->phentsize;
}

/* A PT_LOAD maps the program header table. */
static int phdrs_loaded(const view *v)
{
    uint64_t i;
    for (i = 0; i < v->phnum; i++) {
        const pc_seg *s = &v->seg[i];
        if (s->type == PC_PT_LOAD && s->offset <= v->phoff &&
            phdr_bytes(v) <= s->filesz && v->phoff - s->offset <= s->filesz - phdr_bytes(v))
            return 1;
    }
    return 0;
}

/* The program header table is where the kernel's AT_PHDR (first PT_LOAD's p_vaddr - p_offset
   + e_phoff) says. */
static int at_phdr_right(const view *v)
{
    uint64_t i;
    for (i = 0; i < v->phnum; i++)
        if (v->seg[i].type == PC_PT_LOAD)
            return maps_to(v, v->seg[i].vaddr - v->seg[i].offset + v->phoff, phdr_bytes(v),
                           v->phoff);
    return 0;
}

/* The first PT_PHDR describes the table, at an address that maps to it. */
static int pt_phdr_right(const view *v, int *has)
{
    uint64_t i;
    *has = 0;
    for (i = 0; i < v->phnum; i++) {
        const pc_seg *s = &v->seg[i];
        if (s->type == PC_PT_PHDR) {
            *has = 1;
            return s->offset == v->phoff && s->filesz == phdr_bytes(v) &&
                   maps_to(v, s->vaddr, s->filesz, s->offset);
        }
    }
    return 0;
}

static int is_exec(const view *v)
{
    uint64_t i;
    for (i = 0; i < v->phnum; i++)
        if (v->seg[i].type == PC_PT_INTERP)
            return 1;
    return v->type == 2;
}

/* ---- comparing what the reader sees ---- */
static int same_str(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static const char *renamed(const rw_patch_ops *ops, const char *s)
{
    size_t i;
    for (i = 0; i < ops->n_replace; i++)
        if (strcmp(s, ops->replace_old[i]) == 0)
            return ops->replace_new[i];
    return s;
}

static int removed(const rw_patch_ops *ops, const char *s)
{
    size_t i;
    for (i = 0; i < ops->n_remove; i++)
        if (strcmp(s, ops->remove[i]) == 0)
            return 1;
    return 0;
}

static void check_reader_view(const rw_elf *a, const rw_elf *b, const rw_patch_ops *ops)
{
    size_t i, j;
    CHECK(a->elf_class == b->elf_class && a->big_endian == b->big_endian);
    CHECK(a->elf_type == b->elf_type && a->machine == b->machine && a->osabi == b->osabi);
    CHECK(a->flags == b->flags);
    CHECK(same_str(a->interpreter, b->interpreter));
    CHECK(a->has_isa_needed == b->has_isa_needed && a->isa_needed == b->isa_needed);
    /* DT_NEEDED: removed ones dropped, renamed ones renamed, order kept (entries that share
       a string share its pointer: look each one up once) */
    {
        const char *last = NULL, *want = NULL, *last_b = NULL;
        int gone = 0;
        for (i = 0, j = 0; i < a->n_needed; i++) {
            if (a->needed[i] != last) {
                last = a->needed[i];
                gone = removed(ops, last);
                want = renamed(ops, last);
                last_b = NULL;
            }
            if (gone)
                continue;
            CHECK(j < b->n_needed);
            if (b->needed[j] != last_b) {
                CHECK(strcmp(b->needed[j], want) == 0);
                last_b = b->needed[j];
            }
            j++;
        }
        CHECK(j == b->n_needed);
    }
    CHECK(same_str(b->soname, ops->set_soname != NULL ? ops->set_soname : a->soname));
    switch (ops->path_action) {
    case RW_PATH_KEEP:
        CHECK(a->n_rpaths == b->n_rpaths && a->n_runpaths == b->n_runpaths);
        for (i = 0; i < a->n_rpaths; i++)
            CHECK(strcmp(a->rpaths[i], b->rpaths[i]) == 0);
        for (i = 0; i < a->n_runpaths; i++)
            CHECK(strcmp(a->runpaths[i], b->runpaths[i]) == 0);
        break;
    case RW_PATH_REMOVE:
        CHECK(b->n_rpaths == 0 && b->n_runpaths == 0);
        break;
    case RW_PATH_SET_RPATH:
        CHECK(b->n_rpaths == 1 && strcmp(b->rpaths[0], ops->path) == 0 && b->n_runpaths == 0);
        break;
    default:
        CHECK(b->n_runpaths == 1 && strcmp(b->runpaths[0], ops->path) == 0);
        CHECK(b->n_rpaths == (a->n_rpaths && a->n_runpaths ? 1u : 0u));
        CHECK(b->n_rpaths == 0 || strcmp(b->rpaths[0], ops->path) == 0);
        break;
    }
    CHECK(a->n_verneed == b->n_verneed);
    for (i = 0; i < a->n_verneed; i++) {
        CHECK(strcmp(b->verneed[i].file, renamed(ops, a->verneed[i].file)) == 0);
        CHECK(strcmp(b->verneed[i].name, a->verneed[i].name) == 0);
        CHECK(b->verneed[i].flags == a->verneed[i].flags);
    }
    CHECK(a->n_verdef == b->n_verdef);
    for (i = 0; i < a->n_verdef; i++)
        CHECK(strcmp(a->verdef[i], b->verdef[i]) == 0);
}

/* The tag's value, or `dflt`. */
static uint64_t dyn_value(const view *v, uint64_t want, uint64_t dflt, int *has)
{
    uint64_t i, tag, val;
    *has = 0;
    for (i = 0; i < v->n_dyn; i++) {
        dyn_at(v, i, &tag, &val);
        if (tag == want) {
            *has = 1;
            dflt = val;
        }
    }
    return dflt;
}

/* The bytes of a GNU hash table the reader reads for the symbol count: the header up to the
   end of the chain of the largest bucket; 0 if it is not in the file. */
static uint64_t gnu_hash_bytes(const view *v, uint64_t off)
{
    uint64_t nbuckets, symoffset, buckets, i, max = 0, c;
    if (!pc_in(v, off, 16))
        return 0;
    nbuckets = pc_get(v, off, 4);
    symoffset = pc_get(v, off + 4, 4);
    buckets = off + 16 + pc_get(v, off + 8, 4) * (uint64_t)v->w;
    if (nbuckets > v->n / 4 || !pc_in(v, buckets, nbuckets * 4))
        return 0;
    for (i = 0; i < nbuckets; i++)
        if (pc_get(v, buckets + 4 * i, 4) > max)
            max = pc_get(v, buckets + 4 * i, 4);
    if (max < symoffset)
        return buckets + 4 * nbuckets - off;
    for (i = max;; i++) {
        c = buckets + 4 * nbuckets + 4 * (i - symoffset);
        if (!pc_in(v, c, 4))
            return 0;
        if (pc_get(v, c, 4) & 1)
            return c + 4 - off;
    }
}

/* True if a symbol count the reader passed over because the table it gives would run past
   the end of the original (a SHT_DYNSYM size, DT_HASH's nchain) may fit the longer patched
   file: then the patched file's symbols are counted differently. */
static int symbol_count_may_change(const view *o)
{
    uint64_t i, tag, val, off, sym_off, nchain, syment;
    int has;
    pc_sec sec;
    if ((syment = dyn_value(o, 11, 0, &has)) == 0)
        syment = o->is64 ? 24u : 16u;
    if (pc_map(o, dyn_value(o, 6, 0, &has), 1, &sym_off) != 0)
        return 0;
    for (i = 0; i < o->shnum; i++) {
        get_sec(o, i, &sec);
        if (sec.type == 11 && sec.offset == sym_off && !pc_in(o, sec.offset, sec.size))
            return 1;
    }
    for (i = 0; i < o->n_dyn; i++) {
        dyn_at(o, i, &tag, &val);
        if (tag == 4 && pc_map(o, val, 8, &off) == 0 && (nchain = pc_get(o, off + 4, 4)) &&
            !pc_in(o, sym_off, nchain * syment))
            return 1;
    }
    return 0;
}

static void check_symbols(const rw_elf *a, const rw_elf *b)
{
    if (a->n_symbols != b->n_symbols) /* a count that the larger file made plausible */
        return;
    CHECK(a->sym_strings_len == b->sym_strings_len);
    CHECK(a->sym_strings_len == 0 ||
          memcmp(a->sym_strings, b->sym_strings, a->sym_strings_len) == 0);
    CHECK(a->n_symbols == 0 || memcmp(a->sym_info, b->sym_info, 4 * a->n_symbols) == 0);
}

/* ---- overlapping tables ---- */
typedef struct {
    uint64_t off, size;
} range;

typedef struct {
    range r[64];
    size_t n;
} ranges;

static void add_range(ranges *rs, uint64_t off, uint64_t size)
{
    if (size && rs->n < sizeof(rs->r) / sizeof(rs->r[0])) {
        rs->r[rs->n].off = off;
        rs->r[rs->n++].size = size;
    }
}

static int overlap(const range *a, const range *b)
{
    return a->off < b->off + b->size && b->off < a->off + a->size &&
           a->off + a->size > a->off && b->off + b->size > b->off;
}

/* The bytes of a table at an address: nothing if no PT_LOAD maps them. */
static void add_table(ranges *rs, const view *v, uint64_t addr, uint64_t size)
{
    uint64_t off;
    if (pc_map(v, addr, size, &off) == 0)
        add_range(rs, off, size);
}

/*
 * True if the tables the patch rewrites in place (the ELF header, the program header table,
 * the dynamic table, the string table, the section header table, each vn_file) overlap each
 * other or a table the reader reads through them (PT_INTERP, the notes, version needs and
 * definitions, the symbols, their versions and the hash tables that count them).  No linker
 * writes such a file; raw bytes and the recipes' random addresses do, and then the patched
 * file may read any way at all.  (Only the first 64 tables of each kind are looked at.)
 */
static int tables_overlap(const view *o, uint64_t n_symbols)
{
    ranges ed, rd, vn; /* rewritten in place; read through them; vn_file fields */
    uint64_t i, j, tag, val, off, addr, n, cnt, next, total = 0, syment;
    uint64_t limit = o->n / 8 + 1 < 0x8000 ? o->n / 8 + 1 : 0x8000;
    int has, has_num;
    memset(&ed, 0, sizeof(ed));
    memset(&rd, 0, sizeof(rd));
    memset(&vn, 0, sizeof(vn));
    add_range(&ed, 0, o->ehsize);
    add_range(&ed, o->phoff, phdr_bytes(o));
    add_range(&ed, o->shoff, o->shnum * o->shentsize);
    if (o->has_dyn)
        add_range(&ed, o->dyn_off, o->dyn_size);
    if (o->has_str)
        add_range(&ed, o->str_off, o->str_size);
    for (i = 0; i < ed.n; i++)
        for (j = i + 1; j < ed.n; j++)
            if (overlap(&ed.r[i], &ed.r[j]))
                return 1;
    for (i = 0; i < o->phnum; i++)
        if (o->seg[i].type == PC_PT_INTERP || o->seg[i].type == 4 ||
            o->seg[i].type == 0x6474e553u)
            add_range(&rd, o->seg[i].offset, o->seg[i].filesz);
    if ((syment = dyn_value(o, 11, 0, &has)) == 0)
        syment = o->is64 ? 24u : 16u;
    for (i = 0; i < o->n_dyn; i++) {
        dyn_at(o, i, &tag, &val);
        if (tag == 6)
            add_table(&rd, o, val, n_symbols * syment);
        else if (tag == 0x6ffffff0u)
            add_table(&rd, o, val, 2 * n_symbols);
        else if (tag == 4)
            add_table(&rd, o, val, 8);
        else if (tag == 0x6ffffef5u && pc_map(o, val, 1, &off) == 0)
            add_range(&rd, off, gnu_hash_bytes(o, off));
    }
    addr = dyn_value(o, PC_DT_VERNEED, 0, &has);
    n = dyn_value(o, PC_DT_VERNEEDNUM, limit, &has_num);
    for (i = 0; has && i < n && pc_map(o, addr, 16, &off) == 0; i++) {
        uint64_t aux = addr + pc_get(o, off + 8, 4);
        cnt = pc_get(o, off + 2, 2);
        next = pc_get(o, off + 12, 4);
        add_range(&rd, off, 16);
        add_range(&vn, off + 4, 4);
        for (j = 0; j < cnt && ++total <= limit && pc_map(o, aux, 16, &off) == 0; j++) {
            add_range(&rd, off, 16);
            if (pc_get(o, off + 12, 4) == 0)
                break;
            aux += pc_get(o, off + 12, 4);
        }
        if (next == 0 || ++total > limit)
            break;
        addr += next;
    }
    addr = dyn_value(o, 0x6ffffffcu, 0, &has);
    n = dyn_value(o, 0x6ffffffdu, limit, &has_num);
    for (i = 0; has && i < n && i < limit && pc_map(o, addr, 20, &off) == 0; i++) {
        add_range(&rd, off, 20);
        add_table(&rd, o, addr + pc_get(o, off + 12, 4), 8);
        if ((next = pc_get(o, off + 16, 4)) == 0)
            break;
        addr += next;
    }
    for (i = 0; i < ed.n; i++)
        for (j = 0; j < rd.n; j++)
            if (overlap(&ed.r[i], &rd.r[j]))
                return 1;
    /* a vn_file may share bytes only with its own record */
    for (i = 0; i < vn.n; i++) {
        for (j = 0; j < ed.n; j++)
            if (overlap(&vn.r[i], &ed.r[j]))
                return 1;
        for (j = 0; j < rd.n; j++)
            if (overlap(&vn.r[i], &rd.r[j]) &&
                (rd.r[j].off != vn.r[i].off - 4 || rd.r[j].size != 16))
                return 1;
    }
    return 0;
}

/* ---- segments ---- */
static void check_segments(const view *o, const view *p, const rw_patch *out, uint64_t len)
{
    uint64_t i, j, last_load = 0, n_loads = 0, max_end = 0;
    int added = out->new_size > len, has_o, has_p, ok_o, wraps = 0, dyn_seen = 0;
    CHECK(p->ok);
    CHECK(p->phnum == o->phnum + (added ? 1u : 0u));
    CHECK(p->phentsize == o->phentsize);
    for (i = 0; i < o->phnum; i++) {
        if (o->seg[i].type == PC_PT_LOAD) {
            last_load = i;
            n_loads++;
            wraps |= o->seg[i].vaddr > UINT64_MAX - o->seg[i].memsz;
            if (o->seg[i].vaddr + o->seg[i].memsz > max_end)
                max_end = o->seg[i].vaddr + o->seg[i].memsz;
        }
    }
    for (i = 0, j = 0; i < o->phnum; i++, j++) {
        const pc_seg *a = &o->seg[i], *b = &p->seg[j];
        CHECK(a->type == b->type && a->flags == b->flags && a->align == b->align);
        if (a->type == PC_PT_LOAD) {
            CHECK(a->offset == b->offset && a->vaddr == b->vaddr);
            CHECK(a->filesz == b->filesz && a->memsz == b->memsz);
        } else if (a->type == PC_PT_PHDR && added) { /* it covers the grown table */
            CHECK(b->filesz == phdr_bytes(p) && b->memsz == phdr_bytes(p));
        } else if (a->type == PC_PT_PHDR) {
            CHECK(a->offset == b->offset && a->vaddr == b->vaddr && a->filesz == b->filesz);
        } else if (a->type == PC_PT_DYNAMIC && out->dynamic_moved && !dyn_seen++) {
            /* the (first) dynamic table moved into the new segment */
            CHECK(b->offset >= len && maps_to(p, b->vaddr, b->filesz, b->offset));
        } else {
            CHECK(a->filesz == b->filesz && a->memsz == b->memsz);
            if (a->offset != b->offset) { /* moved with the head block: same bytes */
                CHECK(out->head_moved);
                CHECK(pc_in(p, b->offset, b->filesz) && pc_in(o, a->offset, a->filesz));
                CHECK(memcmp(o->b + a->offset, p->b + b->offset, (size_t)a->filesz) == 0);
                CHECK(!maps_to(o, a->vaddr, a->filesz, a->offset) ||
                      maps_to(p, b->vaddr, b->filesz, b->offset));
            } else {
                CHECK(a->vaddr == b->vaddr);
            }
        }
        if (added && i == last_load && n_loads) { /* the new PT_LOAD follows the last one */
            const pc_seg *s = &p->seg[++j];
            CHECK(s->type == PC_PT_LOAD);
            CHECK(s->offset == len + out->padding && s->filesz == out->new_size - s->offset);
            CHECK(s->memsz == s->filesz && (wraps || s->vaddr >= max_end));
        }
    }
    if (loads_congruent(o))
        CHECK(loads_congruent(p));
    if (loads_ordered(o))
        CHECK(loads_ordered(p));
    if (phdrs_loaded(o))
        CHECK(phdrs_loaded(p));
    if (is_exec(o) && at_phdr_right(o))
        CHECK(at_phdr_right(p));
    ok_o = pt_phdr_right(o, &has_o);
    if (has_o && ok_o) {
        CHECK(pt_phdr_right(p, &has_p));
        CHECK(has_p);
    }
}

/* ---- strict checks: bytes, sections and dynamic entries ---- */
static void mark(uint8_t *m, uint64_t n, uint64_t off, uint64_t size)
{
    if (off < n)
        memset(m + off, 1, (size_t)(size < n - off ? size : n - off));
}

/* The bytes of the original a patch may rewrite in place. */
static uint8_t *editable(const view *o)
{
    uint8_t *m = calloc((size_t)o->n + 1, 1);
    uint64_t i, addr = 0, num = 0, off, limit = o->n / 8 + 1, total = 0;
    int has = 0, has_num = 0;
    if (m == NULL)
        abort();
    mark(m, o->n, 0, o->ehsize);
    mark(m, o->n, o->phoff, phdr_bytes(o) + o->phentsize);
    mark(m, o->n, o->shoff, o->shnum * o->shentsize);
    if (o->has_dyn)
        mark(m, o->n, o->dyn_off, o->dyn_size);
    if (o->has_str)
        mark(m, o->n, o->str_off, o->str_size);
    /* every vn_file, walked as the patcher walks the chain */
    for (i = 0; i < o->n_dyn; i++) {
        uint64_t tag, val;
        dyn_at(o, i, &tag, &val);
        if (tag == PC_DT_VERNEED) {
            addr = val;
            has = 1;
        } else if (tag == PC_DT_VERNEEDNUM) {
            num = val;
            has_num = 1;
        }
    }
    if (!has_num || num > limit)
        num = limit;
    for (i = 0; has && i < num && pc_map(o, addr, 16, &off) == 0; i++) {
        uint64_t next = pc_get(o, off + 12, 4);
        mark(m, o->n, off + 4, 4);
        if (next == 0 || ++total > limit || addr + next < addr)
            break;
        addr += next;
    }
    return m;
}

/* The bytes of the original that a write of zeros (what a moved table leaves behind) must not
   touch: every section and non-PT_LOAD segment that is still where it was. */
static uint8_t *kept(const view *o, const view *p)
{
    uint8_t *m = calloc((size_t)o->n + 1, 1);
    uint64_t i, j;
    if (m == NULL)
        abort();
    for (i = 0; i < o->shnum && p->shnum == o->shnum; i++) {
        pc_sec a, b;
        get_sec(o, i, &a);
        get_sec(p, i, &b);
        if (a.type != PC_SHT_NOBITS && a.offset == b.offset)
            mark(m, o->n, a.offset, a.size);
    }
    for (i = 0; i < o->phnum; i++) { /* (the new PT_LOAD shifts the entries after it) */
        const pc_seg *a = &o->seg[i];
        for (j = 0; j < p->phnum && a->type != 1 && a->type != 6; j++)
            if (p->seg[j].type == a->type && p->seg[j].offset == a->offset)
                mark(m, o->n, a->offset, a->filesz);
    }
    return m;
}

static int all_zero(const uint8_t *d, size_t n)
{
    return n == 0 || (d[0] == 0 && memcmp(d, d + 1, n - 1) == 0);
}

/* Tags whose value is an address (the gABI's and GNU's d_ptr tags, and the OS and processor
   ranges); a moved table's entry follows it. */
static int address_tag(uint64_t tag)
{
    return tag == 3 || tag == 4 || tag == 5 || tag == 6 || tag == 7 || tag == 12 || tag == 13 ||
           tag == 17 || tag == 23 || tag == 25 || tag == 26 || tag == 32 || tag == 36 ||
           (tag >= 0x6ffffe00u && tag <= 0x6ffffeffu) || tag == 0x6ffffff0u ||
           tag == 0x6ffffffcu || tag == 0x6ffffffeu || (tag >= 0x70000000u && tag <= 0x7fffffffu);
}

static int edited_tag(uint64_t tag)
{
    return tag == 1 || tag == 14 || tag == 15 || tag == 29 || tag == 5 || tag == 10;
}

static int other_string_tag(uint64_t tag)
{
    return tag == 0x6ffffefau || tag == 0x6ffffefbu || tag == 0x6ffffefcu ||
           tag == 0x7ffffffdu || tag == 0x7fffffffu;
}

/* The bytes from `addr` to the end of the section holding it (1 if none does), at most 4 KiB. */
static uint64_t table_left(const view *v, uint64_t addr)
{
    uint64_t i, n = 1;
    for (i = 0; i < v->shnum; i++) {
        pc_sec s;
        get_sec(v, i, &s);
        if (s.type != PC_SHT_NOBITS && addr >= s.addr && addr - s.addr < s.size &&
            s.size - (addr - s.addr) > n)
            n = s.size - (addr - s.addr);
    }
    return n < 4096 ? n : 4096;
}

/* The dynamic entries the patch does not edit read the same, in order: the string ones as
   strings, an address that changed by its table's first bytes. */
static void check_dynamic(const view *o, const view *p)
{
    uint64_t i = 0, j = 0, ta = 0, va = 0, tb = 0, vb = 0;
    if (!o->has_dyn || !o->has_str)
        return;
    CHECK(p->has_dyn && p->has_str);
    CHECK(p->n_dyn < p->dyn_size / (2u * (uint64_t)p->w)); /* a DT_NULL ends the table */
    for (;;) {
        while (i < o->n_dyn && (dyn_at(o, i, &ta, &va), edited_tag(ta)))
            i++;
        while (j < p->n_dyn && (dyn_at(p, j, &tb, &vb), edited_tag(tb)))
            j++;
        if (i == o->n_dyn || j == p->n_dyn)
            break;
        CHECK(ta == tb);
        if (other_string_tag(ta)) {
            CHECK(same_str(pc_str(o, va), pc_str(p, vb)));
        } else if (va != vb) { /* a table that moved: the same bytes at the new place */
            uint64_t oa, ob, n = table_left(o, va);
            CHECK(address_tag(ta));
            CHECK(pc_map(o, va, n, &oa) == 0 && pc_map(p, vb, n, &ob) == 0);
            CHECK(memcmp(o->b + oa, p->b + ob, (size_t)n) == 0);
        }
        i++;
        j++;
    }
    CHECK(i == o->n_dyn && j == p->n_dyn);
}

static void check_sections(const view *o, const view *p, const uint8_t *edit)
{
    uint64_t i, k;
    if (o->shnum == 0)
        return;
    CHECK(p->shnum == o->shnum && p->shoff == o->shoff);
    for (i = 0; i < o->shnum; i++) {
        pc_sec a, b;
        get_sec(o, i, &a);
        get_sec(p, i, &b);
        CHECK(a.type == b.type);
        if (a.type == PC_SHT_NULL || a.type == PC_SHT_NOBITS || a.size == 0 ||
            !pc_in(o, a.offset, a.size))
            continue;
        if (a.type == PC_SHT_DYNAMIC && o->has_dyn && a.offset == o->dyn_off) {
            CHECK(b.offset == p->dyn_off);
            continue;
        }
        if (a.type == PC_SHT_STRTAB && o->has_str && a.offset == o->str_off &&
            a.addr == o->str_addr) {
            CHECK(b.offset == p->str_off && b.addr == p->str_addr);
            continue;
        }
        CHECK(a.size == b.size && pc_in(p, b.offset, b.size));
        if (a.offset == b.offset) { /* in place: only the editable bytes may differ */
            CHECK(a.addr == b.addr);
            if (memcmp(o->b + a.offset, p->b + b.offset, (size_t)a.size) != 0)
                for (k = 0; k < a.size; k++)
                    CHECK(edit[a.offset + k] || o->b[a.offset + k] == p->b[b.offset + k]);
        } else { /* moved with the head block */
            CHECK(memcmp(o->b + a.offset, p->b + b.offset, (size_t)a.size) == 0);
            CHECK(!maps_to(o, a.addr, a.size, a.offset) || maps_to(p, b.addr, b.size, b.offset));
        }
    }
}

/* ---- the whole check ---- */
/* True if elfpatch.h says the patcher must refuse these ops. */
static int invalid_ops(const rw_patch_ops *ops)
{
    size_t i;
    int set_path = ops->path_action == RW_PATH_SET_RPATH ||
                   ops->path_action == RW_PATH_SET_RUNPATH;
    if ((ops->set_soname != NULL && *ops->set_soname == 0) ||
        (set_path && (ops->path == NULL || *ops->path == 0)) ||
        ops->path_action < RW_PATH_KEEP || ops->path_action > RW_PATH_SET_RUNPATH)
        return 1;
    for (i = 0; i < ops->n_replace; i++)
        if (ops->replace_old[i] == NULL || ops->replace_new[i] == NULL || *ops->replace_new[i] == 0)
            return 1;
    for (i = 0; i < ops->n_remove; i++)
        if (ops->remove[i] == NULL)
            return 1;
    return 0;
}

/* Parse with symbols if the reader can, else without (*syms says which); NULL if neither.
   `err` says why the last parse tried failed: without symbols, why they were refused. */
static rw_elf *parse_best(const uint8_t *d, size_t n, int *syms, char *err, size_t errlen)
{
    rw_elf *e = (rw_elf *)&e; /* poisoned: the parser must overwrite it */
    char spare[256];
    *syms = 1;
    if (rw_elf_parse(d, n, RW_WANT_SYMBOLS, &e, err, errlen) == RW_OK)
        return e;
    *syms = 0;
    if (rw_elf_parse(d, n, 0, &e, spare, sizeof(spare)) == RW_OK)
        return e;
    CHECK(e == NULL && memchr(spare, 0, sizeof(spare)) != NULL && spare[0] != 0);
    snprintf(err, errlen, "%s", spare);
    return NULL;
}

static void check_patch(const uint8_t *data, size_t size, const rw_patch_ops *ops, int strict)
{
    rw_patch *out = (rw_patch *)&out; /* poisoned: the patcher must overwrite it */
    rw_elf *a, *b = NULL;
    char err[256], b_err[256];
    uint8_t *img;
    size_t i;
    view o, p;
    int a_syms, b_syms, rc = rw_elf_patch(data, size, ops, &out, err, sizeof(err));
    CHECK(rc != RW_OK || !invalid_ops(ops));
    if (rc != RW_OK) {
        CHECK(rc == RW_ERR || rc == RW_NOMEM);
        CHECK(out == NULL);
        CHECK(memchr(err, 0, sizeof(err)) != NULL && err[0] != 0 && strchr(err, '\n') == NULL);
        return;
    }
    CHECK(out != NULL && out->new_size >= size);
    CHECK(out->n_writes == 0 || out->writes != NULL);
    CHECK(!out->phdrs_moved || !out->head_moved);
    if (out->new_size == size) {
        CHECK(!out->strtab_moved && !out->dynamic_moved && !out->phdrs_moved && !out->head_moved);
        CHECK(out->padding == 0);
    } else {
        CHECK(out->strtab_moved || out->dynamic_moved);
        CHECK(out->padding < out->new_size - size);
        CHECK(out->phdrs_moved || out->padding < 64); /* the file grows by what was added */
    }
    if (out->new_size - size > (uint64_t)16 << 20) {
        /* Only an executable whose program headers move pads this much (to keep the first
           PT_LOAD's p_vaddr - p_offset; up to elfpatch.c's MAX_PADDING): not applied. */
        CHECK(out->phdrs_moved);
        rw_patch_free(out);
        return;
    }
    if ((img = calloc((size_t)out->new_size + 1, 1)) == NULL)
        abort();
    if (size)
        memcpy(img, data, size);
    for (i = 0; i < out->n_writes; i++) {
        const rw_write *w = &out->writes[i];
        CHECK(w->offset <= out->new_size && w->len <= out->new_size - w->offset);
        CHECK(w->len == 0 || w->data != NULL);
        if (w->len)
            memcpy(img + w->offset, w->data, w->len);
    }
    view_init(&o, data, size);
    view_init(&p, img, out->new_size);
    a = parse_best(data, size, &a_syms, err, sizeof(err));
    if ((b = parse_best(img, (size_t)out->new_size, &b_syms, b_err, sizeof(b_err))) != NULL)
        touch(b); /* the reader's own checks, on the patched file */
    if (a == NULL)
        goto done;
    CHECK(o.ok);
    if (tables_overlap(&o, a_syms ? a->n_symbols : 0))
        goto done;
    if (b == NULL) {
        /* only the reader's budget may refuse it: a name many entries share grew */
        CHECK(strstr(b_err, "name more string bytes than") != NULL);
        goto done;
    }
    check_reader_view(a, b, ops);
    check_segments(&o, &p, out, size);
    if (strict) {
        uint8_t *edit = editable(&o), *keep = kept(&o, &p);
        for (i = 0; i < out->n_writes; i++) {
            const rw_write *w = &out->writes[i];
            uint64_t n = w->offset < size ? size - w->offset : 0, k;
            if (n == 0 || w->len == 0)
                continue;
            n = w->len < n ? w->len : n;
            if (memchr(edit + w->offset, 0, (size_t)n) == NULL)
                continue; /* an in-place edit */
            /* else zeros where something moved from, touching nothing still in place */
            CHECK(all_zero(w->data, w->len) && (out->strtab_moved || out->head_moved));
            for (k = 0; k < n; k++)
                CHECK(edit[w->offset + k] || !keep[w->offset + k]);
        }
        check_sections(&o, &p, edit);
        check_dynamic(&o, &p);
        free(edit);
        free(keep);
        if (a_syms && !symbol_count_may_change(&o)) {
            /* the budget, again, may refuse the symbols alone (b_err says why) */
            CHECK(b_syms || strstr(b_err, "name more string bytes than") != NULL);
            if (b_syms)
                check_symbols(a, b);
        }
    }
done:
    rw_elf_free(a);
    rw_elf_free(b);
    view_free(&o);
    view_free(&p);
    free(img);
    rw_patch_free(out);
}

#endif
