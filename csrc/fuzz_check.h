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

static inline void fuzz_check(const uint8_t *data, size_t size) /* inline: not every user calls it */
{
    parse_once(data, size, 0);
    parse_once(data, size, RW_WANT_SYMBOLS);
    parse_once(data, size, RW_WANT_SYMBOLS | RW_IMPORTS_ONLY);
    check_imports_only(data, size);
}

#endif
