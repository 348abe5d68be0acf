/*
 * fuzz_check.h: what both fuzz targets do with one input (fuzz_elfcore.c, fuzz_elfgen.c).
 *
 * Each input is parsed twice, with and without RW_WANT_SYMBOLS, and every output pointer
 * is dereferenced over its full extent, so AddressSanitizer reports any string or array
 * that escapes the input or the arena.  The invariants repairwheel/elf.py relies on (error
 * messages are terminated, the symbol blob holds exactly n_symbols name/version pairs)
 * abort when broken.
 */
#ifndef REPAIRWHEEL_FUZZ_CHECK_H
#define REPAIRWHEEL_FUZZ_CHECK_H

#include "elfcore.h"

#include <sanitizer/asan_interface.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t sink;

static void touch_string(const char *s)
{
    if (s != NULL)
        sink += strlen(s);
}

static void touch_strings(const char *const *v, size_t n)
{
    size_t i;
    if (n && v == NULL)
        abort();
    for (i = 0; i < n; i++) {
        if (v[i] == NULL)
            abort();
        touch_string(v[i]);
    }
}

/* Walk n_symbols (name, version) pairs; they must fill sym_strings_len exactly. */
static void touch_symbols(const rw_elf *e)
{
    size_t i, pos = 0, k;
    const char *end;
    if (e->n_symbols && (e->sym_strings == NULL || e->sym_info == NULL))
        abort();
    for (i = 0; i < 2 * e->n_symbols; i++) {
        if (pos >= e->sym_strings_len)
            abort();
        end = memchr(e->sym_strings + pos, 0, e->sym_strings_len - pos);
        if (end == NULL)
            abort();
        pos = (size_t)(end - e->sym_strings) + 1;
    }
    if (pos != e->sym_strings_len)
        abort();
    for (k = 0; k < 4 * e->n_symbols; k++)
        sink += e->sym_info[k];
}

static void touch(const rw_elf *e)
{
    size_t i;
    if (e->elf_class != 32 && e->elf_class != 64)
        abort();
    if (e->n_segments && e->segments == NULL)
        abort();
    for (i = 0; i < e->n_segments; i++)
        sink += e->segments[i].type + e->segments[i].flags + e->segments[i].offset +
                e->segments[i].vaddr + e->segments[i].filesz + e->segments[i].memsz +
                e->segments[i].align;
    touch_string(e->interpreter);
    touch_string(e->soname);
    touch_strings(e->rpaths, e->n_rpaths);
    touch_strings(e->runpaths, e->n_runpaths);
    touch_strings(e->needed, e->n_needed);
    touch_strings(e->verdef, e->n_verdef);
    if (e->n_verneed && e->verneed == NULL)
        abort();
    for (i = 0; i < e->n_verneed; i++) {
        if (e->verneed[i].file == NULL || e->verneed[i].name == NULL)
            abort();
        touch_string(e->verneed[i].file);
        touch_string(e->verneed[i].name);
        sink += e->verneed[i].flags;
    }
    touch_symbols(e);
}

static void parse_once(const uint8_t *data, size_t size, int options)
{
    rw_elf *elf = (rw_elf *)&elf; /* poisoned: the parser must overwrite it */
    char err[256];
    int rc = rw_elf_parse(data, size, options, &elf, err, sizeof(err));
    if (rc == RW_OK) {
        if (elf == NULL)
            abort();
        touch(elf);
        rw_elf_free(elf);
        return;
    }
    if ((rc != RW_ERR && rc != RW_NOMEM) || elf != NULL)
        abort();
    if (memchr(err, 0, sizeof(err)) == NULL || err[0] == 0)
        abort();
}

/* The next symbol of a table: its name, version and info bytes; *pos moves past it. */
static const char *next_symbol(const rw_elf *e, size_t *pos, const char **version)
{
    const char *name = e->sym_strings + *pos;
    *pos += strlen(name) + 1;
    *version = e->sym_strings + *pos;
    *pos += strlen(*version) + 1;
    return name;
}

/* RW_IMPORTS_ONLY keeps the undefined symbols and the init-like defined ones of the whole
   table, in order, with the same versions and info; it parses whenever the whole one does. */
static void check_imports_only(const uint8_t *data, size_t size)
{
    rw_elf *all = NULL, *some = NULL;
    char err[256];
    size_t i, k = 0, at = 0, at_some = 0;
    int rc_all = rw_elf_parse(data, size, RW_WANT_SYMBOLS, &all, err, sizeof(err));
    int rc_some = rw_elf_parse(data, size, RW_WANT_SYMBOLS | RW_IMPORTS_ONLY, &some, err,
                               sizeof(err));
    if (rc_all == RW_OK && rc_some != RW_OK)
        abort();
    if (rc_all == RW_OK) {
        for (i = 0; i < all->n_symbols; i++) {
            const char *version, *kept_version;
            const char *name = next_symbol(all, &at, &version);
            if (all->sym_info[4 * i + 2] && strncmp(name, "PyInit_", 7) != 0 &&
                strncmp(name, "init", 4) != 0 && strncmp(name, "_cffi_pypyinit_", 15) != 0)
                continue;
            if (k >= some->n_symbols)
                abort();
            if (strcmp(next_symbol(some, &at_some, &kept_version), name) != 0 ||
                strcmp(kept_version, version) != 0 ||
                memcmp(some->sym_info + 4 * k, all->sym_info + 4 * i, 4) != 0)
                abort();
            k++;
        }
        if (k != some->n_symbols || at_some != some->sym_strings_len)
            abort();
    }
    rw_elf_free(all);
    rw_elf_free(some);
}

static int same_string(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int same_strings(const char *const *a, const char *const *b, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!same_string(a[i], b[i]))
            return 0;
    return 1;
}

/* Whether two parses found the same facts. */
static int same_elf(const rw_elf *a, const rw_elf *b)
{
    size_t i;
    if (a->elf_class != b->elf_class || a->big_endian != b->big_endian ||
        a->elf_type != b->elf_type || a->machine != b->machine || a->osabi != b->osabi ||
        a->flags != b->flags || a->n_segments != b->n_segments || a->n_rpaths != b->n_rpaths ||
        a->n_runpaths != b->n_runpaths || a->n_needed != b->n_needed ||
        a->n_verneed != b->n_verneed || a->n_verdef != b->n_verdef ||
        a->has_isa_needed != b->has_isa_needed || a->isa_needed != b->isa_needed ||
        a->n_symbols != b->n_symbols || a->sym_strings_len != b->sym_strings_len)
        return 0;
    if (a->n_segments && memcmp(a->segments, b->segments, a->n_segments * sizeof(rw_segment)))
        return 0;
    if (!same_string(a->interpreter, b->interpreter) || !same_string(a->soname, b->soname) ||
        !same_strings(a->rpaths, b->rpaths, a->n_rpaths) ||
        !same_strings(a->runpaths, b->runpaths, a->n_runpaths) ||
        !same_strings(a->needed, b->needed, a->n_needed) ||
        !same_strings(a->verdef, b->verdef, a->n_verdef))
        return 0;
    for (i = 0; i < a->n_verneed; i++)
        if (!same_string(a->verneed[i].file, b->verneed[i].file) ||
            !same_string(a->verneed[i].name, b->verneed[i].name) ||
            a->verneed[i].flags != b->verneed[i].flags)
            return 0;
    return a->sym_strings_len == 0 ||
           (memcmp(a->sym_strings, b->sym_strings, a->sym_strings_len) == 0 &&
            memcmp(a->sym_info, b->sym_info, 4 * a->n_symbols) == 0);
}

#define KEPT_CAP 72 /* ranges: a prefix, the far ones, one per miss */
#define KEPT_PASSES 64

/* Add [start, end) to the sorted, disjoint ranges, merging what it touches. */
static size_t keep_range(uint64_t *r, size_t n, uint64_t start, uint64_t end)
{
    uint64_t merged[2 * KEPT_CAP + 2];
    size_t i, m = 0;
    int placed = 0;
    for (i = 0; i < n; i++) {
        if (r[2 * i + 1] < start) {
            merged[2 * m] = r[2 * i], merged[2 * m + 1] = r[2 * i + 1], m++;
        } else if (r[2 * i] > end) {
            if (!placed)
                merged[2 * m] = start, merged[2 * m + 1] = end, m++, placed = 1;
            merged[2 * m] = r[2 * i], merged[2 * m + 1] = r[2 * i + 1], m++;
        } else {
            start = r[2 * i] < start ? r[2 * i] : start;
            end = r[2 * i + 1] > end ? r[2 * i + 1] : end;
        }
    }
    if (!placed)
        merged[2 * m] = start, merged[2 * m + 1] = end, m++;
    memcpy(r, merged, 2 * m * sizeof(uint64_t));
    return m;
}

/* The bytes outside the ranges changed (each one's complement) and, where whole 8-byte
   granules are, poisoned for AddressSanitizer: a kept parse must not read them. */
static void hide_unkept(uint8_t *out, const uint8_t *data, size_t size, const uint64_t *r,
                        size_t n)
{
    size_t i, at = 0;
    ASAN_UNPOISON_MEMORY_REGION(out, size);
    memcpy(out, data, size);
    for (i = 0; i <= n; i++) {
        size_t to = i < n ? (size_t)r[2 * i] : size, from;
        for (from = at; from < to; from++)
            out[from] = (uint8_t)~data[from];
        from = (at + 7) & ~(size_t)7;
        if (to > from && (to & ~(size_t)7) > from)
            ASAN_POISON_MEMORY_REGION(out + from, (to & ~(size_t)7) - from);
        at = i < n ? (size_t)r[2 * i + 1] : size;
    }
}

/* A parse of only some of the bytes: it reads nothing outside them (the rest is hidden),
   and keeping what it says is missing, pass after pass, ends in the whole parse's verdict,
   facts and message.  The first ranges kept are a prefix (its length from the input) and
   what rw_elf_wanted names from the bytes kept, as an inflate's wakes would add them. */
static void check_kept(const uint8_t *data, size_t size, int options)
{
    uint64_t r[2 * KEPT_CAP + 2], far[2 * 8], miss[2];
    size_t n = 0, n_far, i, prefix = size > 64 ? (size_t)(data[size / 2] * size / 255) : size;
    char err_all[256], err_kept[256];
    rw_elf *all = NULL, *some = NULL;
    int rc_all, rc = RW_MISSING, pass;
    uint8_t *hidden = malloc(size ? size : 1);
    if (hidden == NULL)
        return;
    rc_all = rw_elf_parse(data, size, options, &all, err_all, sizeof(err_all));
    if (prefix)
        n = keep_range(r, n, 0, prefix);
    /* What the wakes of one inflate would add, until they name nothing new. */
    for (pass = 0; pass < 8 && n < KEPT_CAP - 8; pass++) {
        size_t before = n;
        hide_unkept(hidden, data, size, r, n);
        n_far = rw_elf_wanted(hidden, size, r, n, far, 8);
        if (n_far > 8)
            abort();
        for (i = 0; i < n_far; i++) {
            if (far[2 * i] >= far[2 * i + 1] || far[2 * i + 1] > size)
                abort();
            n = keep_range(r, n, far[2 * i], far[2 * i + 1]);
        }
        if (n == before && n_far == 0)
            break;
    }
    for (pass = 0; pass < KEPT_PASSES && rc == RW_MISSING && n < KEPT_CAP; pass++) {
        hide_unkept(hidden, data, size, r, n);
        rc = rw_elf_parse_kept(hidden, size, r, n, options, &some, err_kept, sizeof(err_kept),
                               miss);
        if (rc == RW_MISSING) {
            if (some != NULL || miss[0] >= miss[1] || miss[1] > size)
                abort();
            n = keep_range(r, n, miss[0], miss[1]);
        }
    }
    ASAN_UNPOISON_MEMORY_REGION(hidden, size ? size : 1);
    if (rc != RW_MISSING) {
        if (rc != rc_all)
            abort();
        if (rc == RW_OK && !same_elf(all, some))
            abort();
        if (rc == RW_ERR && strcmp(err_all, err_kept) != 0)
            abort();
    }
    rw_elf_free(all);
    rw_elf_free(some);
    free(hidden);
}

static inline void fuzz_check(const uint8_t *data, size_t size) /* inline: not every user calls it */
{
    parse_once(data, size, 0);
    parse_once(data, size, RW_WANT_SYMBOLS);
    parse_once(data, size, RW_WANT_SYMBOLS | RW_IMPORTS_ONLY);
    check_imports_only(data, size);
    check_kept(data, size, RW_WANT_SYMBOLS | RW_IMPORTS_ONLY);
}

#endif
