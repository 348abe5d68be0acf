/*
 * fuzz_elfgen.h: the recipe interpreter shared by the structure-aware fuzz targets
 * (fuzz_elfgen.c for the reader, fuzz_elfpatch.c for the patcher).
 *
 * A recipe's bytes are read as a program of small operations (add a string, add N dynamic
 * entries of one tag pointing at one string, add symbols, version needs and definitions,
 * hash tables, notes, an interpreter, raw corruptions...).  The interpreter lays out a
 * valid ELF skeleton of the recipe's class, byte order and machine: one or two PT_LOADs,
 * PT_DYNAMIC, PT_INTERP, PT_NOTE/PT_GNU_PROPERTY, a dynamic table with the address entries
 * filled in, optional section headers, and then applies the corruptions (lying counts, a
 * PT_DYNAMIC whose p_offset disagrees with p_vaddr, a DT_HASH nchain larger than the file,
 * an unterminated GNU hash chain...).  Mutating a recipe therefore changes the structure,
 * not random bytes that the header checks would reject; a few recipe bytes can make an
 * 8 KB file with thousands of entries at one 64 KB string.
 *
 * Recipe format:
 *   byte 0        class (bit 0), byte order (bit 1), machine (bits 2-5), type (bits 6-7)
 *   (byte)        e_type when bits 6-7 are 3
 *   2 bytes       flags (FL_*)
 *   ops...        one opcode byte each (mod 14) and its operands, up to MAX_OPS
 *   0xff          ends the ops; what follows is the tail
 *   tail          2 bytes of layout knobs (LK_*), 4 parameter bytes (head gap, spare
 *                 DT_NULL slots, symbol-name tail shift, high base), then the patch ops
 *                 (derive_ops; only fuzz_elfpatch.c reads them)
 * Past the end every read is 0, and an all-zero tail is the original layout, so recipes
 * written before the tail existed make the same files.  The knobs make the layouts the
 * patcher treats differently: spare DT_NULL slots or none, a free program header slot or
 * none, notes / .interp / hash tables / .gnu.version / .dynamic right after the program
 * header table, section headers there, inside the last PT_LOAD, after it or absent,
 * PT_PHDR, 64 KiB pages, an address space with no room left.
 */
#ifndef REPAIRWHEEL_FUZZ_ELFGEN_H
#define REPAIRWHEEL_FUZZ_ELFGEN_H

#include "elfpatch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGE ((size_t)1 << 18) /* generated files stay under 256 KiB */
#define MAX_STRINGS 64
#define MAX_OPS 512
#define N_PHDRS 6
#define BASE1 0x10000u
#define END_OF_OPS 0xff

/* recipe flags (2 bytes after the header) */
#define FL_OSABI 1          /* EI_OSABI = Linux */
#define FL_PROPERTY 2       /* the notes are PT_GNU_PROPERTY, not PT_NOTE */
#define FL_TWO_LOADS 4      /* a second PT_LOAD from the string table on */
#define FL_SECTIONS 8       /* section headers */
#define FL_NO_NULL 48       /* both bits: no DT_NULL terminator */
#define FL_LIE_DYNAMIC 64   /* PT_DYNAMIC's p_offset points at the string table */
#define FL_AUTO_FIRST 128   /* the address entries come before the recipe's entries */
#define FL_NO_STRTAB 0x100  /* no DT_STRTAB / DT_STRSZ */
#define FL_NO_VERSYM 0x200  /* no DT_VERSYM */
#define FL_VERNEEDNUM_LIE 0x400
#define FL_DYNSYM_LIE 0x800 /* SHT_DYNSYM is larger than the table by flags >> 12 entries */

/* layout knobs (the tail's first 2 bytes) */
#define LK_PHDR 1             /* a PT_PHDR first */
#define LK_SLOTS 6            /* program header slots: N_PHDRS, exactly used, +1, +2 */
#define LK_ALIGN64K 8         /* PT_LOADs aligned to 64 KiB */
#define LK_HASH_HEAD 0x10     /* the hash tables right after the notes, as GNU ld puts them */
#define LK_ALL_SECTIONS 0x20  /* section headers for every table, not just four */
#define LK_SH_UNLOADED 0x40   /* the section headers after the end of the last PT_LOAD */
#define LK_STACK 0x80         /* a PT_GNU_STACK (no file content) */
#define LK_SPARE_NULLS 0x100  /* extra DT_NULL slots after the terminator */
#define LK_SYM_TAILS 0x200    /* some symbol names point into strings, not at their start */
#define LK_FOREIGN_LINK 0x400 /* a section of unknown type linked to .dynstr */
#define LK_DYN_HEAD 0x800     /* .dynamic right after the program headers, no section for it */
#define LK_VERNEED_NEEDED 0x1000 /* version needs name the DT_NEEDED strings */
#define LK_SH_HEAD 0x2000     /* the section headers right after the program headers */
#define LK_VERSYM_HEAD 0x4000 /* .gnu.version right after the program headers */
#define LK_HIGH_BASE 0x8000   /* the first PT_LOAD near the top of the address space */

/* ---- recipe reader: past the end, every read is 0 ---- */
typedef struct {
    const uint8_t *d;
    size_t n, pos;
} recipe;

static uint64_t take(recipe *r, unsigned bytes)
{
    uint64_t v = 0;
    unsigned i;
    for (i = 0; i < bytes; i++)
        v |= (uint64_t)(r->pos < r->n ? r->d[r->pos++] : 0) << (8 * i);
    return v;
}

/* ---- growable byte buffers, capped so the image stays under MAX_IMAGE ---- */
typedef struct {
    uint8_t *b;
    size_t len, cap;
    int full;
} buf;

static int grow(buf *x, size_t more)
{
    size_t want;
    uint8_t *bigger;
    if (x->full || more > MAX_IMAGE - x->len) {
        x->full = 1;
        return -1;
    }
    want = x->len + more;
    if (want <= x->cap)
        return 0;
    want = want < 2 * x->cap ? 2 * x->cap : want;
    if ((bigger = realloc(x->b, want)) == NULL) {
        x->full = 1;
        return -1;
    }
    x->b = bigger;
    x->cap = want;
    return 0;
}

static void put(buf *x, const void *p, size_t n)
{
    if (n && grow(x, n) == 0) {
        memcpy(x->b + x->len, p, n);
        x->len += n;
    }
}

static void fill(buf *x, int c, size_t n)
{
    if (n && grow(x, n) == 0) {
        memset(x->b + x->len, c, n);
        x->len += n;
    }
}

/* ---- the model the recipe builds ---- */
enum { REF_RAW, REF_STR, REF_ADDR };
enum { SEC_STRTAB, SEC_SYMTAB, SEC_VERSYM, SEC_HASH, SEC_GNU_HASH, SEC_VERNEED, SEC_VERDEF,
       SEC_NOTE, SEC_DYNAMIC, SEC_INTERP, N_SEC };

typedef struct {
    uint64_t tag, val;
    int ref; /* REF_STR: val is a string number + (delta << 8); REF_ADDR: a SEC_* number */
} entry;

typedef struct {
    int is64, big, machine, type, flags;
    buf str;        /* dynamic string table */
    size_t soff[MAX_STRINGS];
    size_t nstr;
    entry *dyn;
    size_t ndyn, capdyn;
    buf sym, versym, verneed, verdef, note, interp;
    size_t nsym, nverneed, nverdef;
    size_t verneed_last, verdef_last; /* offset of the last record (its next is 0) */
    int hash, gnu_hash;
    uint64_t nchain_lie, gnu_symoffset, gnu_nbuckets, gnu_bloom;
    int gnu_unterminated, syment_lie, strsz_lie;
    uint64_t corrupt[16][3];
    size_t ncorrupt;
    /* the tail's layout knobs */
    unsigned knobs, head_gap, spare_nulls, sym_shift, high_base;
} model;

static void wr(const model *m, uint8_t *at, uint64_t v, unsigned width)
{
    unsigned i;
    for (i = 0; i < width; i++)
        at[m->big ? width - 1 - i : i] = (uint8_t)(v >> (8 * i));
}

static uint64_t rd_model(const model *m, const uint8_t *at, unsigned width)
{
    uint64_t v = 0;
    unsigned i;
    for (i = 0; i < width; i++)
        v |= (uint64_t)at[m->big ? width - 1 - i : i] << (8 * i);
    return v;
}

static void put_u(const model *m, buf *x, uint64_t v, unsigned width)
{
    uint8_t tmp[8];
    wr(m, tmp, v, width);
    put(x, tmp, width);
}

static void put_word(const model *m, buf *x, uint64_t v)
{
    put_u(m, x, v, m->is64 ? 8u : 4u);
}

/* Add a string (the recipe's bytes, or n copies of c) and return its number; the table
   holds at most MAX_IMAGE / 2 bytes, so every registered string is NUL-terminated. */
static size_t add_string(model *m, const uint8_t *text, size_t n, int c)
{
    size_t room = MAX_IMAGE / 2 - m->str.len;
    if (m->nstr == MAX_STRINGS || room < 2)
        return m->nstr ? m->nstr - 1 - (n % m->nstr) : 0;
    if (n > room - 1)
        n = room - 1;
    m->soff[m->nstr] = m->str.len;
    if (text)
        put(&m->str, text, n);
    else
        fill(&m->str, c, n);
    fill(&m->str, 0, 1);
    return m->nstr++;
}

static size_t pick_string(model *m, recipe *r)
{
    if (m->nstr == 0)
        add_string(m, (const uint8_t *)"libfuzz.so.1", 12, 0);
    return (size_t)take(r, 1) % m->nstr;
}

static void add_entry(model *m, uint64_t tag, uint64_t val, int ref)
{
    if (m->ndyn == m->capdyn) {
        size_t cap = m->capdyn ? 2 * m->capdyn : 64;
        entry *bigger;
        if (cap > MAX_IMAGE / 8 || (bigger = realloc(m->dyn, cap * sizeof(entry))) == NULL)
            return;
        m->dyn = bigger;
        m->capdyn = cap;
    }
    m->dyn[m->ndyn].tag = tag;
    m->dyn[m->ndyn].val = val;
    m->dyn[m->ndyn].ref = ref;
    m->ndyn++;
}

static const uint64_t string_tags[] = {1, 15, 29, 14, 1, 29, 15, 0x7ffffffd /* DT_AUXILIARY */};
static const uint64_t other_tags[] = {0, 4, 5, 6, 10, 11, 0x6ffffef5, 0x6ffffff0, 0x6ffffffc,
                                      0x6ffffffd, 0x6ffffffe, 0x6fffffff, 12, 13, 30, 0x6ffffffb};
static const int machines[] = {62, 3, 183, 40, 8, 20, 21, 22, 243, 258, 2, 0};

static void op_symbols(model *m, recipe *r)
{
    size_t n = (size_t)take(r, 2) % 4096, i, name;
    uint64_t info = take(r, 1), seed = take(r, 1), vmask = take(r, 2);
    if (m->nsym == 0)
        n++; /* the null symbol first */
    for (i = 0; i < n && !m->sym.full; i++) {
        name = m->nstr ? (size_t)(seed + i) % m->nstr : 0;
        uint64_t off = m->nstr ? m->soff[name] : 0, shndx = (i + seed) % 3 ? 7 : 0;
        uint64_t st_info = (info + i * seed) & 0xff;
        if (m->is64) {
            put_u(m, &m->sym, off, 4);
            put_u(m, &m->sym, st_info, 1);
            put_u(m, &m->sym, 0, 1);
            put_u(m, &m->sym, shndx, 2);
            put_u(m, &m->sym, 0x1000 + i, 8);
            put_u(m, &m->sym, 8, 8);
        } else {
            put_u(m, &m->sym, off, 4);
            put_u(m, &m->sym, 0x1000 + i, 4);
            put_u(m, &m->sym, 8, 4);
            put_u(m, &m->sym, st_info, 1);
            put_u(m, &m->sym, 0, 1);
            put_u(m, &m->sym, shndx, 2);
        }
        put_u(m, &m->versym, (i * (seed | 1)) & vmask, 2);
        m->nsym++;
    }
}

static void op_verneed(model *m, recipe *r)
{
    size_t file = pick_string(m, r), cnt = (size_t)take(r, 1) % 8, j;
    uint64_t other_mask = take(r, 1) & 1 ? 0x7fff : 0x1f;
    if (m->nverneed)
        wr(m, m->verneed.b + m->verneed_last + 12, m->verneed.len - m->verneed_last, 4);
    m->verneed_last = m->verneed.len;
    put_u(m, &m->verneed, 1, 2);
    put_u(m, &m->verneed, cnt, 2);
    put_u(m, &m->verneed, m->soff[file], 4);
    put_u(m, &m->verneed, 16, 4);
    put_u(m, &m->verneed, 0, 4);
    for (j = 0; j < cnt; j++) {
        size_t name = pick_string(m, r);
        put_u(m, &m->verneed, take(r, 4), 4);
        put_u(m, &m->verneed, take(r, 1) & 2, 2);
        put_u(m, &m->verneed, (take(r, 2) + 2) & other_mask, 2);
        put_u(m, &m->verneed, m->soff[name], 4);
        put_u(m, &m->verneed, j + 1 < cnt ? 16 : 0, 4);
    }
    m->nverneed++;
}

static void op_verdef(model *m, recipe *r)
{
    size_t cnt = 1 + (size_t)take(r, 1) % 4, j;
    uint64_t ndx = take(r, 1) & 1 ? take(r, 2) : m->nverdef + 1;
    if (m->nverdef)
        wr(m, m->verdef.b + m->verdef_last + 16, m->verdef.len - m->verdef_last, 4);
    m->verdef_last = m->verdef.len;
    put_u(m, &m->verdef, 1, 2);
    put_u(m, &m->verdef, m->nverdef == 0, 2);
    put_u(m, &m->verdef, ndx, 2);
    put_u(m, &m->verdef, cnt, 2);
    put_u(m, &m->verdef, take(r, 4), 4);
    put_u(m, &m->verdef, 20, 4);
    put_u(m, &m->verdef, 0, 4);
    for (j = 0; j < cnt; j++) {
        put_u(m, &m->verdef, m->soff[pick_string(m, r)], 4);
        put_u(m, &m->verdef, j + 1 < cnt ? 8 : 0, 4);
    }
    m->nverdef++;
}

static void op_note(model *m, recipe *r)
{
    uint64_t isa = take(r, 1) & 0xf, lie = take(r, 1);
    unsigned pad = m->is64 ? 8u : 4u;
    put_u(m, &m->note, (lie & 7) == 7 ? take(r, 4) : 4, 4);
    put_u(m, &m->note, (lie & 0x38) == 0x38 ? take(r, 4) : 8u + pad, 4);
    put_u(m, &m->note, 5, 4);
    put(&m->note, "GNU", 4);
    put_u(m, &m->note, (lie & 0x40) ? 0xc0000002u : 0xc0008002u, 4);
    put_u(m, &m->note, 4, 4);
    put_u(m, &m->note, isa, 4);
    fill(&m->note, 0, pad - 4);
}

static void interpret(model *m, recipe *r)
{
    size_t ops, i, n, s;
    uint64_t h = take(r, 1), tag, op;
    m->is64 = h & 1;
    m->big = (h >> 1) & 1;
    m->machine = machines[(h >> 2) % (sizeof(machines) / sizeof(machines[0]))];
    m->type = (h >> 6) == 3 ? (int)take(r, 1) % 5 : 3 - (int)(h >> 6) % 2; /* DYN, EXEC, any */
    m->flags = (int)take(r, 2);
    for (ops = 0; ops < MAX_OPS && r->pos < r->n; ops++) {
        if ((op = take(r, 1)) == END_OF_OPS)
            break;
        switch (op % 14) {
        case 0: /* a short string from the recipe */
            n = (size_t)take(r, 1) % 48;
            {
                uint8_t text[48];
                for (i = 0; i < n; i++) {
                    uint64_t c = take(r, 1);
                    text[i] = (uint8_t)(c ? c : 'a'); /* a NUL would end the string early */
                }
                add_string(m, text, n, 0);
            }
            break;
        case 1: /* a long string of one character */
            n = (size_t)take(r, 2) * (1 + (size_t)take(r, 1) % 8);
            add_string(m, NULL, n, (int)(take(r, 1) | 0x21) & 0x7f);
            break;
        case 2: /* many entries of a string tag at one string */
        case 3:
            tag = string_tags[take(r, 1) % (sizeof(string_tags) / sizeof(string_tags[0]))];
            n = 1 + (size_t)take(r, 2) % 2048;
            s = pick_string(m, r);
            {
                uint64_t delta = take(r, 1) % 8 == 0 ? take(r, 1) : 0;
                for (i = 0; i < n; i++)
                    add_entry(m, tag, s | (delta << 8), REF_STR);
            }
            break;
        case 4: /* one entry with any tag and value, or an address of a table */
            tag = take(r, 1) & 1 ? take(r, 8)
                                 : other_tags[take(r, 1) % (sizeof(other_tags) / sizeof(other_tags[0]))];
            if (take(r, 1) & 1)
                add_entry(m, tag, take(r, 1) % N_SEC, REF_ADDR);
            else
                add_entry(m, tag, take(r, 8), REF_RAW);
            break;
        case 5:
            op_symbols(m, r);
            break;
        case 6:
            op_verneed(m, r);
            break;
        case 7:
            op_verdef(m, r);
            break;
        case 8: /* hash tables, sometimes lying */
            m->hash = 1;
            m->nchain_lie = take(r, 1) % 4 == 0 ? take(r, 4) : 0;
            m->gnu_hash = (int)take(r, 1) % 3 != 0;
            m->gnu_nbuckets = 1 + take(r, 1) % 8;
            m->gnu_symoffset = take(r, 1) % 16 == 0 ? take(r, 4) : 1;
            m->gnu_bloom = take(r, 1) % 4;
            m->gnu_unterminated = take(r, 1) % 8 == 0;
            break;
        case 9:
            s = pick_string(m, r);
            if (m->interp.len == 0 && m->nstr) {
                const char *text = (const char *)m->str.b + m->soff[s];
                put(&m->interp, text, strlen(text) + (take(r, 1) % 4 != 0));
            }
            break;
        case 10:
            op_note(m, r);
            break;
        case 11: /* overwrite bytes of the finished image */
            if (m->ncorrupt < 16) {
                m->corrupt[m->ncorrupt][0] = take(r, 4);
                m->corrupt[m->ncorrupt][1] = take(r, 8);
                m->corrupt[m->ncorrupt][2] = (uint64_t)1 << (take(r, 1) % 4);
                m->ncorrupt++;
            }
            break;
        case 12:
            m->syment_lie = (int)take(r, 1);
            m->strsz_lie = (int)(int8_t)take(r, 1);
            break;
        default: /* an entry pointing at a table, as a linker writes it */
            tag = other_tags[take(r, 1) % (sizeof(other_tags) / sizeof(other_tags[0]))];
            add_entry(m, tag, take(r, 1) % N_SEC, REF_ADDR);
            break;
        }
    }
    m->knobs = (unsigned)take(r, 2);
    m->head_gap = (unsigned)take(r, 1);
    m->spare_nulls = (unsigned)take(r, 1);
    m->sym_shift = (unsigned)take(r, 1);
    m->high_base = (unsigned)take(r, 1);
}

/* The file offset of the string a REF_STR entry value names. */
static size_t str_ref(const model *m, uint64_t v)
{
    return m->soff[(v & 0xff) % (m->nstr ? m->nstr : 1)] * (m->nstr != 0) + (size_t)(v >> 8);
}

/* ---- layout ---- */
typedef struct {
    size_t off[N_SEC], size[N_SEC];
    size_t split; /* file offset where the second PT_LOAD starts (== end: one PT_LOAD) */
    uint64_t base1, base2;
} layout;

static uint64_t addr_of(const layout *l, size_t off)
{
    return off < l->split ? l->base1 + off : l->base2 + (off - l->split);
}

static void align_to(buf *x, size_t a)
{
    fill(x, 0, (a - x->len % a) % a);
}

static void place(buf *img, layout *l, int sec, const buf *src)
{
    align_to(img, 8);
    l->off[sec] = img->len;
    l->size[sec] = src->len;
    put(img, src->b, src->len);
}

/* LK_SYM_TAILS: every fourth symbol's name starts sym_shift bytes into its string. */
static void shift_symbol_names(model *m)
{
    size_t syment = m->is64 ? 24u : 16u, i;
    for (i = 1; m->sym_shift && i < m->nsym && (i + 1) * syment <= m->sym.len; i += 4) {
        uint8_t *at = m->sym.b + i * syment;
        uint64_t name = rd_model(m, at, 4);
        size_t len;
        if (name >= m->str.len)
            continue;
        len = strlen((const char *)m->str.b + name);
        wr(m, at, name + (m->sym_shift % 16 < len ? m->sym_shift % 16 : len), 4);
    }
}

/* LK_VERNEED_NEEDED: version need k names the file of the k-th DT_NEEDED entry. */
static void verneed_files_from_needed(model *m)
{
    size_t pos = 0, k = 0, i, n_needed = 0;
    for (i = 0; i < m->ndyn; i++)
        n_needed += m->dyn[i].tag == 1 && m->dyn[i].ref == REF_STR;
    while (n_needed && m->nstr && pos + 16 <= m->verneed.len) {
        size_t want = k++ % n_needed, seen = 0;
        uint64_t next;
        for (i = 0; i < m->ndyn; i++) {
            if (m->dyn[i].tag == 1 && m->dyn[i].ref == REF_STR && seen++ == want) {
                wr(m, m->verneed.b + pos + 4, m->soff[(m->dyn[i].val & 0xff) % m->nstr], 4);
                break;
            }
        }
        if ((next = rd_model(m, m->verneed.b + pos + 12, 4)) == 0)
            break;
        pos += (size_t)next;
    }
}

/* A section header: name 0, flags SHF_ALLOC. */
static void put_section(const model *m, buf *img, uint32_t type, uint64_t addr, uint64_t off,
                        uint64_t size, uint32_t link, uint64_t entsize)
{
    buf sh = {0};
    put_u(m, &sh, 0, 4);
    put_u(m, &sh, type, 4);
    put_word(m, &sh, 2);
    put_word(m, &sh, addr);
    put_word(m, &sh, off);
    put_word(m, &sh, size);
    put_u(m, &sh, link, 4);
    put_u(m, &sh, 0, 4);
    put_word(m, &sh, 8);
    put_word(m, &sh, entsize);
    put(img, sh.b, sh.len);
    free(sh.b);
}

/* The section header table at the end of img, or (at > 0) over the bytes reserved at `at`. */
static size_t write_sections(model *m, buf *img, const layout *l, size_t at)
{
    unsigned w = m->is64 ? 8u : 4u;
    uint64_t syment = m->is64 ? 24u : 16u;
    size_t start = img->len, k;
    fill(img, 0, m->is64 ? 64u : 40u); /* SHN_UNDEF */
    if (!(m->knobs & (LK_ALL_SECTIONS | LK_HASH_HEAD | LK_VERSYM_HEAD))) {
        /* the original four: .dynstr, .dynsym, .dynamic, a note */
        static const uint32_t types[] = {3, 11, 6, 7};
        static const int secs[] = {SEC_STRTAB, SEC_SYMTAB, SEC_DYNAMIC, SEC_NOTE};
        for (k = 0; k < 4; k++) {
            size_t size = secs[k] == SEC_DYNAMIC && (m->knobs & LK_DYN_HEAD) ? 0 : l->size[secs[k]];
            if (k == 1 && (m->flags & FL_DYNSYM_LIE))
                size += (size_t)syment * (size_t)(m->flags >> 12); /* a lying SHT_DYNSYM size */
            put_section(m, img, types[k], addr_of(l, l->off[secs[k]]), l->off[secs[k]], size,
                        k == 1 || k == 2 ? 1u : 0u, k == 1 ? syment : k == 2 ? 2u * w : 0);
        }
    } else {
        /* every table, as a linker describes them (index 1 .dynstr, 2 .dynsym) */
        static const uint32_t types[] = {3, 11, 6, 7, 1, 5, 0x6ffffff6u, 0x6fffffffu,
                                         0x6ffffffeu, 0x6ffffffdu};
        static const int secs[] = {SEC_STRTAB, SEC_SYMTAB, SEC_DYNAMIC, SEC_NOTE, SEC_INTERP,
                                   SEC_HASH, SEC_GNU_HASH, SEC_VERSYM, SEC_VERNEED, SEC_VERDEF};
        static const uint32_t links[] = {0, 1, 1, 0, 0, 2, 2, 2, 1, 1};
        for (k = 0; k < 10; k++) {
            size_t size = secs[k] == SEC_DYNAMIC && (m->knobs & LK_DYN_HEAD) ? 0 : l->size[secs[k]];
            if (k == 1 && (m->flags & FL_DYNSYM_LIE))
                size += (size_t)syment * (size_t)(m->flags >> 12);
            put_section(m, img, types[k], addr_of(l, l->off[secs[k]]), l->off[secs[k]], size,
                        links[k], k == 1 ? syment : k == 2 ? 2u * w : k == 7 ? 2u : 0);
        }
        if (m->knobs & LK_FOREIGN_LINK) /* PROGBITS over the symbols, linked to .dynstr */
            put_section(m, img, 1, addr_of(l, l->off[SEC_SYMTAB]), l->off[SEC_SYMTAB],
                        l->size[SEC_SYMTAB], 1, 0);
    }
    if (at && !img->full) { /* move the table into its reserved place */
        size_t n = img->len - start;
        memcpy(img->b + at, img->b + start, n);
        img->len = start;
        return n;
    }
    return img->len - start;
}

/* How many sections write_sections() makes. */
static size_t n_sections(const model *m)
{
    if (!(m->knobs & (LK_ALL_SECTIONS | LK_HASH_HEAD | LK_VERSYM_HEAD)))
        return 5;
    return m->knobs & LK_FOREIGN_LINK ? 12 : 11;
}

/* The address entries a linker writes, in `autos` (16 at most); their number. */
static size_t auto_entries(const model *m, entry *autos)
{
    uint64_t syment = m->is64 ? 24u : 16u;
    size_t nauto = 0;
#define AUTO(t, v, r) (autos[nauto].tag = (t), autos[nauto].val = (v), autos[nauto++].ref = (r))
    if (!(m->flags & FL_NO_STRTAB)) {
        AUTO(5, SEC_STRTAB, REF_ADDR);
        AUTO(10, (uint64_t)((int64_t)m->str.len + m->strsz_lie), REF_RAW);
    }
    if (m->nsym) {
        AUTO(6, SEC_SYMTAB, REF_ADDR);
        AUTO(11, m->syment_lie ? (uint64_t)m->syment_lie : syment, REF_RAW);
        if (!(m->flags & FL_NO_VERSYM))
            AUTO(0x6ffffff0, SEC_VERSYM, REF_ADDR);
    }
    if (m->hash)
        AUTO(4, SEC_HASH, REF_ADDR);
    if (m->gnu_hash)
        AUTO(0x6ffffef5, SEC_GNU_HASH, REF_ADDR);
    if (m->nverneed) {
        AUTO(0x6ffffffe, SEC_VERNEED, REF_ADDR);
        AUTO(0x6fffffff, m->flags & FL_VERNEEDNUM_LIE ? m->nverneed + 3 : m->nverneed, REF_RAW);
    }
    if (m->nverdef) {
        AUTO(0x6ffffffc, SEC_VERDEF, REF_ADDR);
        AUTO(0x6ffffffd, m->nverdef, REF_RAW);
    }
#undef AUTO
    return nauto;
}

/* The dynamic table's size in bytes. */
static size_t dynamic_size(const model *m)
{
    entry autos[16];
    size_t n = auto_entries(m, autos) + m->ndyn;
    if ((m->flags & FL_NO_NULL) != FL_NO_NULL)
        n += 1 + (m->knobs & LK_SPARE_NULLS ? 1 + m->spare_nulls % 8 : 0);
    return n * 2u * (m->is64 ? 8u : 4u);
}

static void build(model *m, buf *img)
{
    layout l;
    buf hash = {0}, gnu = {0}, dyn = {0};
    unsigned w = m->is64 ? 8u : 4u, ehsize = m->is64 ? 64u : 52u, phentsize = m->is64 ? 56u : 32u;
    unsigned shentsize = m->is64 ? 64u : 40u;
    size_t i, phoff = ehsize, shoff = 0, nsh = 0, k, slots, load_end;
    int two_loads = m->flags & FL_TWO_LOADS, with_sections = m->flags & FL_SECTIONS;
    int lie_dynamic = m->flags & FL_LIE_DYNAMIC, lk = (int)m->knobs;
    uint64_t ph[N_PHDRS + 2][7], align;
    size_t nph = 0, want_ph;
    memset(&l, 0, sizeof(l));
    if (lk & LK_SYM_TAILS)
        shift_symbol_names(m);
    if (lk & LK_VERNEED_NEEDED)
        verneed_files_from_needed(m);
    /* hash tables over the symbols */
    if (m->hash) {
        put_u(m, &hash, 1, 4);
        put_u(m, &hash, m->nchain_lie ? m->nchain_lie : m->nsym, 4);
        put_u(m, &hash, 0, 4);
        fill(&hash, 0, 4 * m->nsym);
    }
    if (m->gnu_hash) {
        uint64_t so = m->gnu_symoffset;
        put_u(m, &gnu, m->gnu_nbuckets, 4);
        put_u(m, &gnu, so, 4);
        put_u(m, &gnu, m->gnu_bloom, 4);
        put_u(m, &gnu, 6, 4);
        uint64_t j;
        fill(&gnu, 0xff, (size_t)(w * m->gnu_bloom)); /* gnu_bloom < 4 */
        for (j = 0; j < m->gnu_nbuckets; j++)
            put_u(m, &gnu, j == 0 && m->nsym > so ? so : 0, 4);
        for (j = so; j < m->nsym; j++)
            put_u(m, &gnu, j + 1 == m->nsym && !m->gnu_unterminated ? 1 : 2, 4);
    }
    /* the program header table: the entries it will hold, and the slots reserved */
    want_ph = (two_loads ? 2u : 1u) + 1u + (m->interp.len > 0) + (m->note.len > 0) +
              !!(lk & LK_PHDR) + !!(lk & LK_STACK);
    slots = (lk & LK_SLOTS) == 0 ? (want_ph > N_PHDRS ? want_ph : N_PHDRS)
                                 : want_ph + (size_t)((lk & LK_SLOTS) >> 1) - 1;
    fill(img, 0, ehsize + slots * phentsize);
    if (with_sections && (lk & LK_SH_HEAD)) {
        shoff = img->len;
        nsh = n_sections(m);
        fill(img, 0, nsh * shentsize);
    }
    if (lk & LK_DYN_HEAD) { /* reserved here, written once the addresses are known */
        align_to(img, 8);
        l.off[SEC_DYNAMIC] = img->len;
        fill(img, 0, dynamic_size(m));
    }
    if (lk & LK_VERSYM_HEAD)
        place(img, &l, SEC_VERSYM, &m->versym);
    place(img, &l, SEC_INTERP, &m->interp);
    place(img, &l, SEC_NOTE, &m->note);
    if (lk & LK_HASH_HEAD) {
        place(img, &l, SEC_HASH, &hash);
        place(img, &l, SEC_GNU_HASH, &gnu);
    }
    fill(img, 0, 8 * (m->head_gap % 32)); /* room a moved head block leaves */
    l.split = two_loads ? (img->len + 15) & ~(size_t)15 : MAX_IMAGE;
    align_to(img, 16);
    place(img, &l, SEC_STRTAB, &m->str);
    place(img, &l, SEC_SYMTAB, &m->sym);
    if (!(lk & LK_VERSYM_HEAD))
        place(img, &l, SEC_VERSYM, &m->versym);
    if (!(lk & LK_HASH_HEAD)) {
        place(img, &l, SEC_HASH, &hash);
        place(img, &l, SEC_GNU_HASH, &gnu);
    }
    place(img, &l, SEC_VERNEED, &m->verneed);
    place(img, &l, SEC_VERDEF, &m->verdef);
    /* LK_HIGH_BASE: the first PT_LOAD high_base + 1 pages below the top of the address space */
    l.base1 = !(lk & LK_HIGH_BASE) ? BASE1
              : (m->is64 ? 0 : (uint64_t)1 << 32) - 0x1000u * ((uint64_t)m->high_base + 1);
    l.base2 = two_loads ? l.base1 + 0x200000u + l.split : l.base1;
    /* the dynamic table: the recipe's entries plus the address entries a linker writes */
    {
        entry autos[16];
        size_t nauto = auto_entries(m, autos);
        int auto_first = m->flags & FL_AUTO_FIRST;
        for (k = 0; k < 2; k++) {
            const entry *list = (k == 0) == !!auto_first ? autos : m->dyn;
            size_t n = (k == 0) == !!auto_first ? nauto : m->ndyn;
            for (i = 0; i < n; i++) {
                uint64_t v = list[i].val;
                if (list[i].ref == REF_STR)
                    v = str_ref(m, v);
                else if (list[i].ref == REF_ADDR)
                    v = addr_of(&l, l.off[v % N_SEC]);
                put_word(m, &dyn, list[i].tag);
                put_word(m, &dyn, v);
            }
        }
        if ((m->flags & FL_NO_NULL) != FL_NO_NULL) {
            put_word(m, &dyn, 0);
            put_word(m, &dyn, 0);
            if (lk & LK_SPARE_NULLS) /* room for entries the patch adds */
                fill(&dyn, 0, 2u * w * (1 + m->spare_nulls % 8));
        }
    }
    if (!(lk & LK_DYN_HEAD)) {
        place(img, &l, SEC_DYNAMIC, &dyn);
    } else if (!img->full && !dyn.full && dyn.len && dyn.len == dynamic_size(m)) {
        memcpy(img->b + l.off[SEC_DYNAMIC], dyn.b, dyn.len);
        l.size[SEC_DYNAMIC] = dyn.len;
    }
    load_end = img->len;
    if (with_sections) {
        align_to(img, 8);
        if (lk & LK_SH_HEAD) {
            write_sections(m, img, &l, shoff);
        } else {
            shoff = img->len;
            nsh = n_sections(m);
            write_sections(m, img, &l, 0);
        }
    }
    if (!(lk & LK_SH_UNLOADED))
        load_end = img->len;
    free(hash.b);
    free(gnu.b);
    free(dyn.b);
    if (img->full || img->len < ehsize + slots * phentsize)
        return;
    /* program headers */
    align = lk & LK_ALIGN64K ? 0x10000u : 0x1000u;
#define PH(t, o, v, f, a) (ph[nph][0] = (t), ph[nph][1] = (o), ph[nph][2] = (v), ph[nph][3] = (f), \
                           ph[nph][4] = (f), ph[nph][5] = 6, ph[nph][6] = (a), nph++)
    if (lk & LK_PHDR)
        PH(6, phoff, addr_of(&l, phoff), want_ph * phentsize, w);
    if (two_loads) {
        PH(1, 0, l.base1, l.split, align);
        PH(1, l.split, l.base2, load_end - l.split, align);
    } else {
        PH(1, 0, l.base1, load_end, align);
    }
    PH(2, lie_dynamic ? l.off[SEC_STRTAB] : l.off[SEC_DYNAMIC], addr_of(&l, l.off[SEC_DYNAMIC]),
       l.size[SEC_DYNAMIC], 8);
    if (m->interp.len)
        PH(3, l.off[SEC_INTERP], addr_of(&l, l.off[SEC_INTERP]), l.size[SEC_INTERP], 1);
    if (m->note.len)
        PH(m->flags & FL_PROPERTY ? 0x6474e553u : 4u, l.off[SEC_NOTE],
           addr_of(&l, l.off[SEC_NOTE]), l.size[SEC_NOTE], m->is64 ? 8u : 4u);
    if (lk & LK_STACK)
        PH(0x6474e551u, 0, 0, 0, 16);
#undef PH
    /* ELF header */
    {
        uint8_t *e = img->b;
        memcpy(e, "\x7f" "ELF", 4);
        e[4] = m->is64 ? 2 : 1;
        e[5] = m->big ? 2 : 1;
        e[6] = 1;
        e[7] = (uint8_t)(m->flags & FL_OSABI ? 3 : 0);
        wr(m, e + 16, (uint64_t)m->type, 2);
        wr(m, e + 18, (uint64_t)m->machine, 2);
        wr(m, e + 20, 1, 4);
        wr(m, e + 24 + w, phoff, w);
        wr(m, e + 24 + 2 * w, shoff, w);
        wr(m, e + 24 + 3 * w, m->machine == 40 ? 0x05000400u : 0, 4);
        wr(m, e + 28 + 3 * w, ehsize, 2);
        wr(m, e + 30 + 3 * w, phentsize, 2);
        wr(m, e + 32 + 3 * w, nph, 2);
        wr(m, e + 34 + 3 * w, shentsize, 2);
        wr(m, e + 36 + 3 * w, nsh, 2);
        wr(m, e + 38 + 3 * w, 0, 2);
    }
    for (i = 0; i < nph; i++) {
        uint8_t *p = img->b + phoff + i * phentsize;
        wr(m, p, ph[i][0], 4);
        if (m->is64) {
            wr(m, p + 4, ph[i][5], 4);
            wr(m, p + 8, ph[i][1], 8);
            wr(m, p + 16, ph[i][2], 8);
            wr(m, p + 24, ph[i][2], 8);
            wr(m, p + 32, ph[i][3], 8);
            wr(m, p + 40, ph[i][4], 8);
            wr(m, p + 48, ph[i][6], 8);
        } else {
            wr(m, p + 4, ph[i][1], 4);
            wr(m, p + 8, ph[i][2], 4);
            wr(m, p + 12, ph[i][2], 4);
            wr(m, p + 16, ph[i][3], 4);
            wr(m, p + 20, ph[i][4], 4);
            wr(m, p + 24, ph[i][5], 4);
            wr(m, p + 28, ph[i][6], 4);
        }
    }
    for (i = 0; i < m->ncorrupt && img->len; i++) {
        size_t at = (size_t)(m->corrupt[i][0] % img->len);
        unsigned width = (unsigned)m->corrupt[i][2];
        if (width <= img->len - at)
            wr(m, img->b + at, m->corrupt[i][1], width);
    }
}

static void model_free(model *m)
{
    free(m->str.b);
    free(m->dyn);
    free(m->sym.b);
    free(m->versym.b);
    free(m->verneed.b);
    free(m->verdef.b);
    free(m->note.b);
    free(m->interp.b);
}

/* ---- patch operations from the rest of the recipe ---- */
#define MAX_EDITS 16
#define MAX_NAME_LEN 300
#define MAX_COPY_LEN 1024 /* an existing string is copied whole only up to this length */

typedef struct {
    rw_patch_ops ops;
    const char *old[MAX_EDITS + 2], *new_name[MAX_EDITS + 2], *rm[MAX_EDITS + 2];
    char *owned[3 * MAX_EDITS + 8];
    size_t n_owned;
    const char *needed[MAX_EDITS]; /* the distinct DT_NEEDED strings of the model */
    size_t n_needed;
} gen_ops;

static char *own(gen_ops *g, const char *a, size_t na, int c, size_t nc)
{
    char *s;
    if (g->n_owned == sizeof(g->owned) / sizeof(g->owned[0]) || (s = malloc(na + nc + 2)) == NULL)
        return NULL;
    memcpy(s, a, na);
    memset(s + na, c, nc);
    s[na + nc] = 0;
    if (s[0] == 0) { /* names are never empty */
        s[0] = 'x';
        s[1] = 0;
    }
    g->owned[g->n_owned++] = s;
    return s;
}

static inline void gen_ops_free(gen_ops *g) /* inline: fuzz_elfgen.c has no use for it */
{
    size_t i;
    for (i = 0; i < g->n_owned; i++)
        free(g->owned[i]);
    g->n_owned = 0;
}

/* A new name: fresh, an existing string (whole, a tail, a prefix, extended), the old name
   changed at the same length or shortened, or another DT_NEEDED name. */
static const char *make_name(gen_ops *g, const model *m, recipe *r, const char *old)
{
    unsigned mode = (unsigned)take(r, 1) % 8, a = (unsigned)take(r, 1);
    size_t n = (size_t)take(r, 2), len;
    const char *s = m->nstr ? (const char *)m->str.b + m->soff[a % m->nstr] : "";
    len = strlen(s);
    if (len > MAX_COPY_LEN) /* a name thousands of entries share may grow only so far */
        len = MAX_COPY_LEN;
    switch (mode) {
    case 1: /* an existing string: the table has it */
        return own(g, s, len, 0, 0);
    case 2: /* a tail of an existing string */
        return own(g, s + (len ? n % len : 0), len - (len ? n % len : 0), 0, 0);
    case 3: /* an existing string, longer */
        return own(g, s, len, '0' + (int)(a % 10), 1 + n % MAX_NAME_LEN);
    case 4: /* a prefix of an existing string */
        return own(g, s, len ? 1 + n % len : 0, 0, 0);
    case 5: /* the old name at the same length, last character changed */
        if (old != NULL && (len = strlen(old)) > 0 && len <= MAX_COPY_LEN) {
            char *t = own(g, old, len, 0, 0);
            if (t != NULL)
                t[len - 1] = t[len - 1] == '#' ? '%' : '#';
            return t;
        }
        break;
    case 6: /* the old name, shorter */
        if (old != NULL && (len = strlen(old)) > 1)
            return own(g, old, len - 1 - n % (len - 1), 0, 0);
        break;
    case 7: /* another DT_NEEDED name */
        if (g->n_needed && (len = strlen(g->needed[a % g->n_needed])) <= MAX_COPY_LEN)
            return own(g, g->needed[a % g->n_needed], len, 0, 0);
        break;
    default:
        break;
    }
    return own(g, "", 0, 'a' + (int)(a % 26), 1 + n % MAX_NAME_LEN); /* fresh */
}

/*
 * The patch ops: a control byte (bits 0-1: a new SONAME unless 0; bits 2-3: the path action),
 * the SONAME and path names, then one byte per distinct DT_NEEDED string of the model
 * (mod 4: 0 and 3 rename, 1 keep, 2 remove) and one byte of names the file does not have
 * (bits 0-1) and of an invalid op (bits 2-4 all set: bits 5-7 say which).
 * All zero: every DT_NEEDED renamed to "a", nothing else.
 */
static void derive_ops(const model *m, recipe *r, gen_ops *g)
{
    size_t i, k;
    unsigned ctl = (unsigned)take(r, 1), extra;
    memset(&g->ops, 0, sizeof(g->ops));
    g->n_owned = g->n_needed = 0;
    for (i = 0; i < m->ndyn && g->n_needed < MAX_EDITS; i++) {
        size_t off;
        const char *s;
        if (m->dyn[i].tag != 1 || m->dyn[i].ref != REF_STR || m->nstr == 0 ||
            (off = str_ref(m, m->dyn[i].val)) >= m->str.len)
            continue;
        s = (const char *)m->str.b + off;
        for (k = 0; k < g->n_needed && g->needed[k] != s; k++)
            ;
        if (k == g->n_needed)
            g->needed[g->n_needed++] = s;
    }
    if (ctl & 3)
        g->ops.set_soname = make_name(g, m, r, NULL);
    g->ops.path_action = (int)(ctl >> 2) & 3;
    if (g->ops.path_action == RW_PATH_SET_RPATH || g->ops.path_action == RW_PATH_SET_RUNPATH)
        g->ops.path = make_name(g, m, r, NULL);
    g->ops.replace_old = g->old;
    g->ops.replace_new = g->new_name;
    g->ops.remove = g->rm;
    for (i = 0; i < g->n_needed; i++) {
        unsigned c = (unsigned)take(r, 1) % 4;
        if (*g->needed[i] == 0)
            continue; /* an empty name would be a bad op, not an edit */
        if (c == 2) {
            g->rm[g->ops.n_remove++] = g->needed[i];
        } else if (c != 1) {
            const char *to = make_name(g, m, r, g->needed[i]);
            if (to != NULL) {
                g->old[g->ops.n_replace] = g->needed[i];
                g->new_name[g->ops.n_replace++] = to;
            }
        }
    }
    extra = (unsigned)take(r, 1);
    if (extra & 1) {
        g->old[g->ops.n_replace] = "libnot-there.so.1";
        g->new_name[g->ops.n_replace++] = "libnot-there-0123abcd.so.1";
    }
    if (extra & 2)
        g->rm[g->ops.n_remove++] = "libnot-there.so.2";
    switch ((extra & 0x1c) == 0x1c ? extra >> 5 : 8) { /* now and then, an op to refuse */
    case 0:
        g->ops.set_soname = "";
        break;
    case 1:
        g->ops.path_action = RW_PATH_SET_RUNPATH;
        g->ops.path = "";
        break;
    case 2:
        g->ops.path_action = 4;
        break;
    case 3:
        g->old[g->ops.n_replace] = "libnot-there.so.3";
        g->new_name[g->ops.n_replace++] = "";
        break;
    case 4:
        g->rm[g->ops.n_remove++] = NULL;
        break;
    default:
        break;
    }
}

/* Copies of the names the ops take from the model (those fail only when `owned` is full). */
static void own_names(gen_ops *g)
{
    size_t i;
    for (i = 0; i < g->ops.n_replace; i++)
        if ((g->old[i] = own(g, g->old[i], strlen(g->old[i]), 0, 0)) == NULL)
            g->old[i] = "";
    for (i = 0; i < g->ops.n_remove; i++)
        if (g->rm[i] != NULL && (g->rm[i] = own(g, g->rm[i], strlen(g->rm[i]), 0, 0)) == NULL)
            g->rm[i] = "";
    g->n_needed = 0;
}

/* The ELF file a recipe makes, in *img (free img->b); 0 if it could not be built.  With
   `ops`, also the patch ops the recipe's tail asks for (release with gen_ops_free()). */
static int generate(const uint8_t *data, size_t size, buf *img, gen_ops *ops)
{
    model m;
    recipe r;
    memset(&m, 0, sizeof(m));
    memset(img, 0, sizeof(*img));
    r.d = data;
    r.n = size;
    r.pos = 0;
    interpret(&m, &r);
    build(&m, img);
    if (ops != NULL) {
        derive_ops(&m, &r, ops);
        own_names(ops); /* they pointed into the model */
    }
    model_free(&m);
    return !img->full && img->len > 0;
}

#endif
