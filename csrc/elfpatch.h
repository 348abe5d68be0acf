/*
 * elfpatch: the edits a wheel repair makes to an ELF file (SONAME, DT_NEEDED,
 * DT_RPATH/DT_RUNPATH), computed from a read-only buffer as a list of writes.
 *
 * The patcher never modifies the buffer.  It returns the writes that turn the
 * file into the patched one (apply them in order; offsets past the end extend
 * the file, the gap reading as zeros) and the new file size, so a caller can
 * patch a 400 MB library in place by writing a few kilobytes.  Every offset is
 * checked against the buffer; a file it cannot patch safely yields RW_ERR and
 * a message, never a fault and never a half-patched result.
 *
 * The region between the CDEF markers is read verbatim by the cffi build
 * script (csrc/build_elfcore.py).  It must stay plain declarations.
 */
#ifndef REPAIRWHEEL_ELFPATCH_H
#define REPAIRWHEEL_ELFPATCH_H

#include <stddef.h>
#include <stdint.h>

/* BEGIN CDEF */
/* What happens to DT_RPATH / DT_RUNPATH. */
#define RW_PATH_KEEP 0        /* unchanged */
#define RW_PATH_REMOVE 1      /* every DT_RPATH and DT_RUNPATH entry removed */
#define RW_PATH_SET_RPATH 2   /* one DT_RPATH of `path`; DT_RUNPATH entries removed */
#define RW_PATH_SET_RUNPATH 3 /* one DT_RUNPATH of `path`; a file with both tags keeps one
                                 DT_RPATH, also set to `path` (what patchelf does) */

typedef struct {
    const char *set_soname;   /* new DT_SONAME (added if missing), or NULL */
    size_t n_replace;         /* DT_NEEDED renames; version needs follow them */
    const char **replace_old;
    const char **replace_new;
    size_t n_remove;          /* DT_NEEDED entries to drop */
    const char **remove;
    int path_action;          /* RW_PATH_* */
    const char *path;         /* for RW_PATH_SET_*: the new value, not empty */
} rw_patch_ops;

/* `len` bytes at `data`, to be written at file offset `offset`. */
typedef struct {
    uint64_t offset;
    size_t len;
    const uint8_t *data;
} rw_write;

typedef struct {
    uint64_t new_size;        /* the file's size once the writes are applied (>= the old) */
    size_t n_writes;
    rw_write *writes;         /* in order; data lives until rw_patch_free() */
    int strtab_moved;         /* the string table was copied to the new segment */
    int dynamic_moved;        /* the dynamic table was moved to the new segment */
    int phdrs_moved;          /* the program header table was moved to the new segment */
    int head_moved;           /* the sections after it moved there to make room for one
                                 more program header */
    uint64_t padding;         /* zero bytes between the old end and the new segment */
} rw_patch;

/*
 * Compute the writes that apply `ops` to the `len` bytes at `buf`.  On RW_OK, *out
 * holds a new rw_patch to release with rw_patch_free() (with no writes if nothing
 * changes).  Otherwise *out is NULL and `err` holds a NUL-terminated message.
 */
int rw_elf_patch(const uint8_t *buf, size_t len, const rw_patch_ops *ops, rw_patch **out,
                 char *err, size_t errlen);
void rw_patch_free(rw_patch *patch);
/* END CDEF */

#endif
