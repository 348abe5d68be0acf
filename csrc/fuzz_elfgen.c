/*
 * Structure-aware fuzz target for elfcore: the input is a recipe, not an ELF file.  The
 * recipe interpreter (fuzz_elfgen.h) turns it into an ELF skeleton, which the reader then
 * parses under the checks of fuzz_check.h.  fuzz_elfpatch.c patches the same files.
 *
 * Built by fuzz/run.sh.  With -DELFGEN_MAIN it is a command-line tool instead (link it with
 * elfcore.c and elfpatch.c):
 *   fuzz_elfgen_main RECIPE OUT.elf      write the ELF file a recipe makes (for seeds and
 *                                        regression inputs) and print, as Python, the patch
 *                                        ops its tail asks for and what the patcher says
 */
#include "fuzz_elfgen.h"

#include "fuzz_check.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef ELFGEN_MAIN
/* A Python str literal for a name; os.fsdecode(b"...") when it is not plain ASCII. */
static void print_name(const char *s)
{
    const unsigned char *c;
    size_t n, run = 1;
    int plain = 1;
    if (s == NULL) {
        printf("None");
        return;
    }
    n = strlen(s);
    for (c = (const unsigned char *)s; *c; c++)
        plain &= *c >= 0x20 && *c < 0x7f;
    while (run < n && s[run] == s[0])
        run++;
    if (plain && n > 16 && run == n) { /* a long run of one character */
        printf("\"%s%c\" * %zu", s[0] == '"' || s[0] == '\\' ? "\\" : "", s[0], n);
        return;
    }
    printf(plain ? "\"" : "os.fsdecode(b\"");
    for (c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c >= 0x20 && *c < 0x7f)
            putchar(*c);
        else
            printf("\\x%02x", *c);
    }
    printf(plain ? "\"" : "\")");
}

static void print_ops(const rw_patch_ops *ops)
{
    static const char *const actions[] = {"KEEP", "REMOVE", "SET_RPATH", "SET_RUNPATH"};
    size_t i;
    printf("set_soname=");
    print_name(ops->set_soname);
    printf("\nreplace_needed=(");
    for (i = 0; i < ops->n_replace; i++) {
        printf("(");
        print_name(ops->replace_old[i]);
        printf(", ");
        print_name(ops->replace_new[i]);
        printf("), ");
    }
    printf(")\nremove_needed=(");
    for (i = 0; i < ops->n_remove; i++) {
        print_name(ops->remove[i]);
        printf(", ");
    }
    printf(")\npath_action=%s\npath=", actions[ops->path_action & 3]);
    print_name(ops->path);
    printf("\n");
}

int main(int argc, char **argv)
{
    static uint8_t in[1 << 20];
    size_t n;
    buf img;
    gen_ops g;
    rw_patch *patch = NULL;
    char err[256];
    FILE *f;
    if (argc != 3 || (f = fopen(argv[1], "rb")) == NULL) {
        fprintf(stderr, "usage: fuzz_elfgen_main RECIPE OUT.elf\n");
        return 2;
    }
    n = fread(in, 1, sizeof(in), f);
    fclose(f);
    if (!generate(in, n, &img, &g) || (f = fopen(argv[2], "wb")) == NULL) {
        gen_ops_free(&g);
        free(img.b);
        return 1;
    }
    fwrite(img.b, 1, img.len, f);
    fclose(f);
    fuzz_check(img.b, img.len);
    print_ops(&g.ops);
    if (rw_elf_patch(img.b, img.len, &g.ops, &patch, err, sizeof(err)) == RW_OK) {
        printf("patch: ok, %zu writes, size %zu -> %llu, moved:%s%s%s%s\n", patch->n_writes,
               img.len, (unsigned long long)patch->new_size, patch->strtab_moved ? " strtab" : "",
               patch->dynamic_moved ? " dynamic" : "", patch->phdrs_moved ? " phdrs" : "",
               patch->head_moved ? " head" : "");
        rw_patch_free(patch);
    } else {
        printf("patch: error: %s\n", err);
    }
    gen_ops_free(&g);
    free(img.b);
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    buf img;
    if (generate(data, size, &img, NULL))
        fuzz_check(img.b, img.len);
    free(img.b);
    return 0;
}
#endif
