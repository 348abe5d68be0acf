/*
 * Structure-aware fuzz target for elfcore: the input is a recipe, not an ELF file.
 *
 * The recipe's bytes are read as a program of small operations (add a string, add
 * N dynamic entries of one tag pointing at one string, add symbols, version needs and
 * definitions, hash tables, notes, an interpreter, raw corruptions...).  The interpreter
 * lays out a valid ELF skeleton of the recipe's class, byte order and machine: one or two
 * PT_LOADs, PT_DYNAMIC, PT_INTERP, PT_NOTE/PT_GNU_PROPERTY, a dynamic table with the
 * address entries filled in, optional section headers, and then applies the corruptions
 * (lying counts, a PT_DYNAMIC whose p_offset disagrees with p_vaddr, a DT_HASH nchain
 * larger than the file, an unterminated GNU hash chain...).  Mutating a recipe therefore
 * changes the structure, not random bytes that the header checks would reject; a few
 * recipe bytes can make an 8 KB file with thousands of entries at one 64 KB string.
 *
 * Built by fuzz/run.sh.  With -DELFGEN_MAIN it is a command-line tool instead:
 *   fuzz_elfgen_main RECIPE OUT.elf      write the ELF file a recipe makes (for seeds)
 */
#include "fuzz_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGE ((size_t)1 << 18) /* generated files stay under 256 KiB */
#define MAX_STRINGS 64
#define MAX_OPS 512
#define N_PHDRS 6
#define BASE1 0x10000u

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
} model;

static void wr(const model *m, uint8_t *at, uint64_t v, unsigned width)
{
    unsigned i;
    for (i = 0; i < width; i++)
        at[m->big ? width - 1 - i : i] = (uint8_t)(v >> (8 * i));
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
    uint64_t h = take(r, 1), tag;
    m->is64 = h & 1;
    m->big = (h >> 1) & 1;
    m->machine = machines[(h >> 2) % (sizeof(machines) / sizeof(machines[0]))];
    m->type = (h >> 6) == 3 ? (int)take(r, 1) % 5 : 3 - (int)(h >> 6) % 2; /* DYN, EXEC, any */
    m->flags = (int)take(r, 2);
    for (ops = 0; ops < MAX_OPS && r->pos < r->n; ops++) {
        switch (take(r, 1) % 14) {
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
}

/* ---- layout ---- */
typedef struct {
    size_t off[N_SEC], size[N_SEC];
    size_t split; /* file offset where the second PT_LOAD starts (== end: one PT_LOAD) */
    uint64_t base2;
} layout;

static uint64_t addr_of(const layout *l, size_t off)
{
    return off < l->split ? BASE1 + off : l->base2 + (off - l->split);
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

static void build(model *m, buf *img)
{
    layout l;
    buf hash = {0}, gnu = {0}, dyn = {0};
    unsigned w = m->is64 ? 8u : 4u, ehsize = m->is64 ? 64u : 52u, phentsize = m->is64 ? 56u : 32u;
    unsigned shentsize = m->is64 ? 64u : 40u;
    size_t i, phoff = ehsize, shoff = 0, nsh = 0, k;
    int two_loads = m->flags & 4, with_sections = m->flags & 8, lie_dynamic = m->flags & 64;
    uint64_t syment = m->is64 ? 24u : 16u, ph[N_PHDRS][7];
    size_t nph = 0;
    memset(&l, 0, sizeof(l));
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
    fill(img, 0, ehsize + N_PHDRS * phentsize);
    place(img, &l, SEC_INTERP, &m->interp);
    place(img, &l, SEC_NOTE, &m->note);
    l.split = two_loads ? (img->len + 15) & ~(size_t)15 : MAX_IMAGE;
    align_to(img, 16);
    place(img, &l, SEC_STRTAB, &m->str);
    place(img, &l, SEC_SYMTAB, &m->sym);
    place(img, &l, SEC_VERSYM, &m->versym);
    place(img, &l, SEC_HASH, &hash);
    place(img, &l, SEC_GNU_HASH, &gnu);
    place(img, &l, SEC_VERNEED, &m->verneed);
    place(img, &l, SEC_VERDEF, &m->verdef);
    l.base2 = two_loads ? BASE1 + 0x200000u + l.split : BASE1;
    /* the dynamic table: the recipe's entries plus the address entries a linker writes */
    {
        entry autos[16];
        size_t nauto = 0;
        int auto_first = m->flags & 128;
#define AUTO(t, v, r) (autos[nauto].tag = (t), autos[nauto].val = (v), autos[nauto++].ref = (r))
        if (!(m->flags & 0x100)) {
            AUTO(5, SEC_STRTAB, REF_ADDR);
            AUTO(10, (uint64_t)((int64_t)m->str.len + m->strsz_lie), REF_RAW);
        }
        if (m->nsym) {
            AUTO(6, SEC_SYMTAB, REF_ADDR);
            AUTO(11, m->syment_lie ? (uint64_t)m->syment_lie : syment, REF_RAW);
            if (!(m->flags & 0x200))
                AUTO(0x6ffffff0, SEC_VERSYM, REF_ADDR);
        }
        if (m->hash)
            AUTO(4, SEC_HASH, REF_ADDR);
        if (m->gnu_hash)
            AUTO(0x6ffffef5, SEC_GNU_HASH, REF_ADDR);
        if (m->nverneed) {
            AUTO(0x6ffffffe, SEC_VERNEED, REF_ADDR);
            AUTO(0x6fffffff, m->flags & 0x400 ? m->nverneed + 3 : m->nverneed, REF_RAW);
        }
        if (m->nverdef) {
            AUTO(0x6ffffffc, SEC_VERDEF, REF_ADDR);
            AUTO(0x6ffffffd, m->nverdef, REF_RAW);
        }
#undef AUTO
        for (k = 0; k < 2; k++) {
            const entry *list = (k == 0) == !!auto_first ? autos : m->dyn;
            size_t n = (k == 0) == !!auto_first ? nauto : m->ndyn;
            for (i = 0; i < n; i++) {
                uint64_t v = list[i].val;
                if (list[i].ref == REF_STR)
                    v = m->soff[(v & 0xff) % (m->nstr ? m->nstr : 1)] * (m->nstr != 0) + (v >> 8);
                else if (list[i].ref == REF_ADDR)
                    v = addr_of(&l, l.off[v % N_SEC]);
                put_word(m, &dyn, list[i].tag);
                put_word(m, &dyn, v);
            }
        }
        if (!(m->flags & 16) || !(m->flags & 32)) {
            put_word(m, &dyn, 0);
            put_word(m, &dyn, 0);
        }
    }
    place(img, &l, SEC_DYNAMIC, &dyn);
    if (with_sections) {
        static const uint32_t types[] = {3, 11, 6, 7};
        static const int secs[] = {SEC_STRTAB, SEC_SYMTAB, SEC_DYNAMIC, SEC_NOTE};
        align_to(img, 8);
        shoff = img->len;
        nsh = 5;
        fill(img, 0, shentsize); /* SHN_UNDEF */
        for (k = 0; k < 4 && !img->full; k++) {
            buf sh = {0};
            size_t size = l.size[secs[k]];
            if (k == 1 && (m->flags & 0x800))
                size += (size_t)syment * (size_t)(m->flags >> 12); /* a lying SHT_DYNSYM size */
            put_u(m, &sh, 0, 4);
            put_u(m, &sh, types[k], 4);
            put_word(m, &sh, 2);
            put_word(m, &sh, addr_of(&l, l.off[secs[k]]));
            put_word(m, &sh, l.off[secs[k]]);
            put_word(m, &sh, size);
            put_u(m, &sh, k == 1 || k == 2 ? 1 : 0, 4);
            put_u(m, &sh, 0, 4);
            put_word(m, &sh, 8);
            put_word(m, &sh, k == 1 ? syment : k == 2 ? 2u * w : 0);
            put(img, sh.b, sh.len);
            free(sh.b);
        }
    }
    free(hash.b);
    free(gnu.b);
    free(dyn.b);
    if (img->full || img->len < ehsize + N_PHDRS * phentsize)
        return;
    /* program headers */
#define PH(t, o, v, f, a) (ph[nph][0] = (t), ph[nph][1] = (o), ph[nph][2] = (v), ph[nph][3] = (f), \
                           ph[nph][4] = (f), ph[nph][5] = 6, ph[nph][6] = (a), nph++)
    if (two_loads) {
        PH(1, 0, BASE1, l.split, 0x1000);
        PH(1, l.split, l.base2, img->len - l.split, 0x1000);
    } else {
        PH(1, 0, BASE1, img->len, 0x1000);
    }
    PH(2, lie_dynamic ? l.off[SEC_STRTAB] : l.off[SEC_DYNAMIC], addr_of(&l, l.off[SEC_DYNAMIC]),
       l.size[SEC_DYNAMIC], 8);
    if (m->interp.len)
        PH(3, l.off[SEC_INTERP], addr_of(&l, l.off[SEC_INTERP]), l.size[SEC_INTERP], 1);
    if (m->note.len)
        PH(m->flags & 2 ? 0x6474e553u : 4u, l.off[SEC_NOTE], addr_of(&l, l.off[SEC_NOTE]),
           l.size[SEC_NOTE], m->is64 ? 8u : 4u);
#undef PH
    /* ELF header */
    {
        uint8_t *e = img->b;
        memcpy(e, "\x7f" "ELF", 4);
        e[4] = m->is64 ? 2 : 1;
        e[5] = m->big ? 2 : 1;
        e[6] = 1;
        e[7] = (uint8_t)(m->flags & 1 ? 3 : 0);
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

/* The ELF file a recipe makes, in *img (free img->b); 0 if it could not be built. */
static int generate(const uint8_t *data, size_t size, buf *img)
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
    model_free(&m);
    return !img->full && img->len > 0;
}

#ifdef ELFGEN_MAIN
int main(int argc, char **argv)
{
    static uint8_t in[1 << 20];
    size_t n;
    buf img;
    FILE *f;
    if (argc != 3 || (f = fopen(argv[1], "rb")) == NULL) {
        fprintf(stderr, "usage: fuzz_elfgen_main RECIPE OUT.elf\n");
        return 2;
    }
    n = fread(in, 1, sizeof(in), f);
    fclose(f);
    if (!generate(in, n, &img) || (f = fopen(argv[2], "wb")) == NULL) {
        free(img.b);
        return 1;
    }
    fwrite(img.b, 1, img.len, f);
    fclose(f);
    fuzz_check(img.b, img.len);
    free(img.b);
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    buf img;
    if (generate(data, size, &img))
        fuzz_check(img.b, img.len);
    free(img.b);
    return 0;
}
#endif
