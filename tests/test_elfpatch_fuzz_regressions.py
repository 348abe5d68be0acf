"""Inputs that broke the built-in patcher (found by fuzz/run.sh), patched through the Python API.

Each tests/data/fuzz/patch-*.elf is patched with the operations the fuzzer used: for a raw input
(csrc/fuzz_elfcore.c) one of its fixed op sets; for a recipe (csrc/fuzz_elfpatch.c; the
*.recipe beside it) the ELF file the recipe makes, written by csrc/fuzz_elfgen.c built with
-DELFGEN_MAIN, and the operations the recipe's tail asks for, as that tool prints them. The
result must read back as PatchOps.expected says, with the same dynamic symbols and every
PT_LOAD kept, or the file must be refused with a one-line PatchError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from repairwheel.elf import PT_LOAD, read_elf
from repairwheel.elfpatch import patch_bytes
from repairwheel.errors import ElfError, PatchError
from repairwheel.patch import PatchOps

DATA = Path(__file__).resolve().parent / "data" / "fuzz"
FUZZ_RPATH = "$ORIGIN/../fuzz.libs"


@dataclass(frozen=True)
class Case:
    name: str
    ops: PatchOps
    refused: bool  # the patcher must say no (PatchError) rather than patch


CASES = (
    # free_regions() sorted the references into .dynstr with qsort(NULL, 0, ...) when none
    # was left (UBSan: null pointer passed as argument 1).
    Case(
        "patch-rename-last-string-reference.elf",
        PatchOps(replace_needed=(("libfuzz.so.1", "a"),)),
        refused=False,
    ),
    # A version need whose vn_aux is 0 (its aux entry is the record itself): renaming its
    # vn_file rewrote the aux entry's flags and name, and the result no longer parsed.
    Case(
        "patch-version-need-aux-is-its-record.elf",
        PatchOps(replace_needed=(("libfoo.so.1", "libfoo.so.10000"),)),
        refused=True,
    ),
    # Two version need records 1 byte apart (vn_next = 1): both vn_file writes overlapped and
    # the second clobbered the first's.
    Case(
        "patch-version-needs-1-byte-apart.elf",
        PatchOps(replace_needed=(("libfoo.so.1", "libc-0123abcd.so.6"),)),
        refused=True,
    ),
    # PT_DYNAMIC right after the program header table, no section describing it: the head
    # block moved it, PT_DYNAMIC pointed at the moved (old) copy, and the edits, written where
    # the table was, were lost.  The raw input the fuzzer found, and a recipe of the same.
    Case("patch-dynamic-after-program-headers.elf", PatchOps(rpath=FUZZ_RPATH), refused=False),
    Case(
        "patch-dynamic-after-program-headers-head-block.elf",
        PatchOps(
            set_soname="e" * 10,
            replace_needed=(("libc.so.6", "libc.so.60000"), ("libbar.so.2", "a")),
            remove_needed=("libfoo-1.2.3.so",),
        ),
        refused=False,
    ),
    # The same table with PT_DYNAMIC's p_offset elsewhere: the slot after the program header
    # table looked free, the new program header went over the first dynamic entries, and the
    # dynamic table then overwrote the program header after it.
    Case(
        "patch-dynamic-after-program-headers-lying-offset.elf",
        PatchOps(
            replace_needed=(
                ("libc.so.6", "c" * 201),
                ("libfoo-1.2.3.so", "a"),
                ("libbar.so.2", "a"),
            )
        ),
        refused=False,
    ),
    # .gnu.version right after the program headers, its section shorter than the symbol count
    # the hash table gives: the head block moved the section, the versions the reader (and
    # ld.so) take past its end came from other bytes, and a symbol lost its version. Symbols
    # and versions now move only whole, as many as are read.
    Case(
        "patch-versym-shorter-than-the-symbols.elf",
        PatchOps(
            replace_needed=((os.fsdecode(b"\x01\x02\x02"), "libc.libf000"), ("libc.libf", "111")),
            remove_needed=("libnot-there.so.2",),
            rpath="bbbbbbbbbbbbb",
            runpath=True,
        ),
        refused=False,
    ),
    # DT_HASH and DT_SYMTAB right after the program headers, the sections there all empty:
    # the slot looked free, and the new program header went over the hash table and symbols.
    # A table a dynamic entry points at now counts, as far as it reaches (to the end of the
    # file when no section says). Found with the zeroing of moved tables, which checks the same.
    Case(
        "patch-hash-table-after-program-headers-without-section.elf",
        PatchOps(rpath="bbbbbbbbbbbbb", runpath=True),
        refused=False,
    ),
    # A second DT_VERDEF, aimed just past PT_INTERP (right after the program headers) where no
    # section describes anything: the head block took only the interpreter, the grown program
    # header table went over the version definitions, and the file read two instead of one.
    # A table a dynamic entry points at under the grown table now keeps the block in place.
    Case(
        "patch-version-definitions-under-the-grown-program-headers.elf",
        PatchOps(rpath="b" * 46, runpath=True),
        refused=False,
    ),
)


def _ids(case: Case) -> str:
    return case.name


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_fuzz_input_is_patched_correctly_or_refused(case: Case) -> None:
    data = (DATA / case.name).read_bytes()
    before = read_elf(data)
    if case.refused:
        with pytest.raises(PatchError) as caught:
            patch_bytes(data, case.ops, name=case.name)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{case.name}: cannot patch: ")
        assert len(message) > len(f"{case.name}: cannot patch: ")
        return
    patched = patch_bytes(data, case.ops, name=case.name)
    assert len(patched) >= len(data)
    after = read_elf(patched)
    assert case.ops.expected(before).mismatches(after) == ()
    assert after.symbols() == before.symbols()
    loads = [seg for seg in before.segments if seg.type == PT_LOAD]
    assert [seg for seg in after.segments if seg.type == PT_LOAD][: len(loads)] == loads


def test_every_patch_regression_input_has_a_case() -> None:
    files = {path.name for path in DATA.glob("patch-*.elf")}
    assert files - {case.name for case in CASES} == {"patch-exec-load-memsz-2-60.elf"}


def test_executable_is_not_padded_to_the_end_of_a_huge_segment() -> None:
    """An executable whose program headers move keeps its first PT_LOAD's p_vaddr - p_offset,
    so the new segment's file offset follows the end of memory: with a PT_LOAD of p_memsz
    2**60 that would be a file of 2**60 bytes. Padding past 64 MiB is refused instead."""
    data = (DATA / "patch-exec-load-memsz-2-60.elf").read_bytes()
    with pytest.raises(PatchError, match="would pad it by") as info:
        patch_bytes(data, PatchOps(rpath=FUZZ_RPATH))
    assert "\n" not in str(info.value)


def test_a_rename_may_take_a_crafted_file_past_the_readers_budget() -> None:
    """3846 DT_NEEDED entries share one string: renamed to 1021 bytes, the names they give are
    past the reader's budget (16 times the file's size) once the symbols' are added, so the
    patched file's symbols are refused as a crafted file's, with one line, while its other
    facts read as patched. (fuzz_elfpatch -m32; the harness now allows this, as it did for a
    file whose facts alone the budget refuses.)"""
    name = "rename-shared-needed-past-the-budget.elf"
    data = (DATA / name).read_bytes()
    ops = PatchOps(
        replace_needed=(("libc.so7a", "libc.so7#"), (os.fsdecode(b"a\tseed_da"), "3" * 1021))
    )
    before = read_elf(data)
    patched = patch_bytes(data, ops, name=name)
    after = read_elf(patched)
    assert ops.expected(before).mismatches(after) == ()
    assert len(after.needed) == len(before.needed) > 3000
    with pytest.raises(ElfError, match="name more string bytes than 16 times") as caught:
        after.symbols()
    assert "\n" not in str(caught.value)
