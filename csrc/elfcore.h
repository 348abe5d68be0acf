/*
 * elfcore: the facts a wheel repair tool needs from an ELF file, read from a
 * memory buffer.  Every offset, count and string is bounds-checked against the
 * buffer and every size computation is overflow-checked before it is used;
 * malformed input yields RW_ERR and a message, never a fault.
 *
 * The region between the CDEF markers is read verbatim by the cffi build
 * script (csrc/build_elfcore.py), so the C and Python sides cannot drift.
 * It must stay plain declarations (no preprocessor lines).
 */
#ifndef REPAIRWHEEL_ELFCORE_H
#define REPAIRWHEEL_ELFCORE_H

#include <stddef.h>
#include <stdint.h>

/* BEGIN CDEF */
#define RW_OK 0
#define RW_ERR 1
#define RW_NOMEM 2
#define RW_MISSING 3  /* rw_elf_parse_kept: the parse needs bytes that were not kept */

#define RW_WANT_SYMBOLS 1
/* With RW_WANT_SYMBOLS: only the undefined symbols, and the defined ones named as a Python
   module's init function may be (PyInit_*, init*, _cffi_pypyinit_*). A big C++ library
   defines 10^5 symbols an audit never looks at. */
#define RW_IMPORTS_ONLY 2

/* One GNU version need: vn_file needs version `name` (vna_flags, e.g. VER_FLG_WEAK=2). */
typedef struct {
    const char *file;
    const char *name;
    uint16_t flags;
} rw_verneed;

/* One program header (segment), as the file states it. */
typedef struct {
    uint32_t type;
    uint32_t flags;
    uint64_t offset;
    uint64_t vaddr;
    uint64_t filesz;
    uint64_t memsz;
    uint64_t align;
} rw_segment;

/*
 * Everything the parser extracted.  String pointers point either into the
 * caller's buffer (validated to be NUL-terminated inside their table) or into
 * memory owned by this struct; they live until rw_elf_free() and as long as
 * the caller's buffer.
 */
typedef struct {
    int elf_class;            /* 32 or 64 */
    int big_endian;           /* 0 little, 1 big */
    int elf_type;             /* e_type */
    int machine;              /* e_machine */
    int osabi;                /* e_ident[EI_OSABI] */
    uint32_t flags;           /* e_flags */
    size_t n_segments;
    rw_segment *segments;     /* every program header, in file order */
    const char *interpreter;  /* PT_INTERP, or NULL */
    const char *soname;       /* DT_SONAME, or NULL */
    /* Every DT_RPATH / DT_RUNPATH entry, in file order, unjoined: glibc's loader uses
       the last entry of each tag and musl's the first, so the caller chooses. */
    size_t n_rpaths;
    const char **rpaths;
    size_t n_runpaths;
    const char **runpaths;
    size_t n_needed;
    const char **needed;      /* DT_NEEDED in file order */
    size_t n_verneed;
    rw_verneed *verneed;      /* in file order */
    size_t n_verdef;
    const char **verdef;      /* first name of each version definition, in file order */
    int has_isa_needed;       /* an x86 ISA_1_NEEDED property was found */
    uint32_t isa_needed;      /* its bitmask: 1 baseline, 2 v2, 4 v3, 8 v4 */
    /* Dynamic symbols, only with RW_WANT_SYMBOLS (RW_IMPORTS_ONLY: some of them). */
    size_t n_symbols;
    const char *sym_strings;  /* per symbol: name NUL version NUL (version may be empty) */
    size_t sym_strings_len;
    const uint8_t *sym_info;  /* per symbol 4 bytes: binding, type, defined(0/1), version hidden(0/1) */
} rw_elf;

/*
 * Parse `len` bytes at `buf`.  On RW_OK, *out holds a new rw_elf to release
 * with rw_elf_free().  Otherwise *out is NULL and `err` (of `errlen` bytes)
 * holds a NUL-terminated message.
 */
int rw_elf_parse(const uint8_t *buf, size_t len, int options,
                 rw_elf **out, char *err, size_t errlen);
void rw_elf_free(rw_elf *elf);

/*
 * rw_elf_parse of a buffer that holds only some of the file's bytes: `n_kept` sorted
 * [start, end) pairs in `kept`, no two overlapping or touching (a read must lie in one),
 * the rest of its `len` bytes anything.  A
 * parse that would read any other byte returns RW_MISSING instead of a result, with
 * miss[0] the first such offset and miss[1] the end of the last (where a caller that can
 * get those bytes should keep them to); otherwise it is rw_elf_parse's, byte for byte.
 */
int rw_elf_parse_kept(const uint8_t *buf, size_t len, const uint64_t *kept, size_t n_kept,
                      int options, rw_elf **out, char *err, size_t errlen, uint64_t *miss);

/*
 * What a parse of the file in `buf` (`len` bytes, of which only the `n_kept` sorted,
 * disjoint [start, end) pairs in `kept` need hold the file's) reads, as far as those bytes
 * tell: the ELF header and the header tables; each PT_DYNAMIC, PT_INTERP, PT_NOTE and
 * PT_GNU_PROPERTY segment; once the dynamic table is kept, the tables it points at (the
 * string table by DT_STRSZ, the others as far as their PT_LOAD's bytes, at most 4 MiB).
 * Up to `cap` [start, end) pairs in `pairs`, unsorted, clipped to `len`; returns how many.
 * The wake of an rw_keep, for keeping the bytes a parse needs in one inflate.
 */
size_t rw_elf_wanted(const uint8_t *buf, size_t len, const uint64_t *kept, size_t n_kept,
                     uint64_t *pairs, size_t cap);
/* END CDEF */

#endif
