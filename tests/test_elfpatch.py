"""The built-in patcher's layout choices, each on a gcc-built file that forces it, and each
result loaded by the real loader (glibc; musl and qemu-user where installed): strings written
in place or reused, strings a symbol shares left alone, the dynamic table moved when its slots
run out, the program header table moved when nothing after it can make room (executables
keeping AT_PHDR where old kernels and qemu-user compute it), and inputs left untouched when a
file cannot be patched.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from pypi_wheels import unavailable

from repairwheel.elf import read_elf
from repairwheel.elfpatch import patch_bytes, patch_file
from repairwheel.errors import PatchError
from repairwheel.patch import PatchOps

LIB_C = "int foo_value(void) { return 3; }\nint other(void) { return 4; }\n"
PROG_C = (
    "#include <stdio.h>\nint foo_value(void);\n"
    'int main(void) { printf("%d\\n", foo_value()); return 0; }\n'
)
PF_W = 2


def _gcc(compiler: str, *args: str) -> None:
    if shutil.which(compiler) is None:
        unavailable(f"{compiler} is not installed")
    subprocess.run([compiler, *args], check=True, capture_output=True)


def _library(tmp_path: Path, *link: str, compiler: str = "gcc", name: str = "libt.so") -> Path:
    source = tmp_path / "t.c"
    source.write_text(LIB_C)
    out = tmp_path / name
    _gcc(compiler, "-shared", "-fPIC", "-o", str(out), str(source), *link)
    return out


def _loads(path: Path, symbol: str = "foo_value") -> subprocess.CompletedProcess[str]:
    """Load ``path`` with dlopen in a fresh interpreter and call ``symbol``."""
    code = f"import ctypes; print(ctypes.CDLL({str(path)!r}).{symbol}())"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=path.parent
    )


def _dynamic_tags(path: Path) -> dict[str, list[str]]:
    with path.open("rb") as fh:
        dynamic = ELFFile(fh).get_section_by_name(".dynamic")
        tags: dict[str, list[str]] = {}
        for tag in dynamic.iter_tags():
            kind = tag.entry.d_tag
            if kind in ("DT_NEEDED", "DT_SONAME", "DT_RPATH", "DT_RUNPATH"):
                tags.setdefault(kind, []).append(getattr(tag, kind[3:].lower()))
        return tags


def _symbol_names(path: Path) -> set[str]:
    with path.open("rb") as fh:
        return {s.name for s in ELFFile(fh).get_section_by_name(".dynsym").iter_symbols()}


def _drop_section_headers(path: Path) -> None:
    """Zero e_shoff, e_shentsize, e_shnum, e_shstrndx (ELF64 little-endian): the loader needs
    none of them, and without them nothing after the program headers is known to be movable."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)
    struct.pack_into("<HHH", data, 0x3A, 0, 0, 0)
    path.write_bytes(bytes(data))


def _fill_dynamic_slots(path: Path) -> None:
    """Shrink PT_DYNAMIC and .dynamic to the entries in use: no spare DT_NULL slot is left."""
    data = bytearray(path.read_bytes())
    with path.open("rb") as fh:
        elf = ELFFile(fh)
        section = elf.get_section_by_name(".dynamic")
        tags = [t.entry.d_tag for t in section.iter_tags()]
        used = (tags.index("DT_NULL") + 1) * 16
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".dynamic")
        phdr = next(i for i, seg in enumerate(elf.iter_segments()) if seg["p_type"] == "PT_DYNAMIC")
        shoff, phoff = elf["e_shoff"], elf["e_phoff"]
    struct.pack_into("<QQ", data, phoff + phdr * 56 + 32, used, used)  # p_filesz, p_memsz
    struct.pack_into("<Q", data, shoff + index * 64 + 32, used)  # sh_size
    path.write_bytes(bytes(data))


def test_a_shorter_rpath_is_written_where_the_old_one_was(tmp_path: Path) -> None:
    old = "/opt/build/tree/area/lib"
    lib = _library(tmp_path, f"-Wl,--disable-new-dtags,-rpath,{old}")
    before = lib.read_bytes()
    layout = patch_file(lib, PatchOps(rpath="$ORIGIN"))
    after = lib.read_bytes()
    assert len(after) == len(before) and layout.new_size == len(before)
    assert not (layout.strtab_moved or layout.dynamic_moved or layout.phdrs_moved)
    assert old.encode() not in after  # the stale build path is gone, not left beside
    assert _dynamic_tags(lib)["DT_RPATH"] == ["$ORIGIN"]
    assert _loads(lib).stdout == "3\n"


def test_an_existing_string_tail_is_reused(tmp_path: Path) -> None:
    lib = _library(tmp_path, "-Wl,-soname,libt.so.1")
    size = lib.stat().st_size
    patch_file(lib, PatchOps(set_soname="foo_value"))  # the tail-free symbol name is in .dynstr
    assert (lib.stat().st_size, _dynamic_tags(lib)["DT_SONAME"]) == (size, ["foo_value"])


def test_a_string_a_symbol_shares_is_not_overwritten(tmp_path: Path) -> None:
    # GNU ld merges string tails: the symbol foo_value is named by the end of this RPATH.
    lib = _library(tmp_path, "-Wl,--disable-new-dtags,-rpath,/opt/build/libfoo_value")
    with lib.open("rb") as fh:
        elf = ELFFile(fh)
        rpath = next(
            t
            for t in elf.get_section_by_name(".dynamic").iter_tags()
            if t.entry.d_tag == "DT_RPATH"
        )
        sym = next(
            s for s in elf.get_section_by_name(".dynsym").iter_symbols() if s.name == "foo_value"
        )
        assert sym["st_name"] > rpath.entry.d_val  # shared, or the test proves nothing
    layout = patch_file(lib, PatchOps(rpath="$ORIGIN/../some/other/place/x"))
    assert layout.strtab_moved
    assert "foo_value" in _symbol_names(lib)
    assert _loads(lib).stdout == "3\n"


def test_the_dynamic_table_moves_when_its_slots_run_out(tmp_path: Path) -> None:
    lib = _library(tmp_path)  # no SONAME, no RPATH: both entries are new
    _fill_dynamic_slots(lib)
    layout = patch_file(lib, PatchOps(set_soname="libt-0123abcd.so.1", rpath="$ORIGIN"))
    assert layout.dynamic_moved and not layout.phdrs_moved
    tags = _dynamic_tags(lib)
    assert (tags["DT_SONAME"], tags["DT_RPATH"]) == (["libt-0123abcd.so.1"], ["$ORIGIN"])
    elf = read_elf(lib)
    dynamic = next(s for s in elf.segments if s.type == 2)
    home = next(
        s for s in elf.segments if s.type == 1 and s.vaddr <= dynamic.vaddr < s.vaddr + s.memsz
    )
    assert home.flags & PF_W  # ld.so writes into it (DT_DEBUG, relocation on some arches)
    assert _loads(lib).stdout == "3\n"
    stripped = tmp_path / "stripped.so"
    subprocess.run(["strip", "-s", "-o", str(stripped), str(lib)], check=True)
    assert _loads(stripped).stdout == "3\n"


def test_program_headers_move_when_nothing_after_them_can(tmp_path: Path) -> None:
    lib = _library(tmp_path, "-Wl,-soname,libt.so.1")
    _drop_section_headers(lib)
    layout = patch_file(lib, PatchOps(set_soname="libt-0123abcd-long-name.so.1", rpath="$ORIGIN"))
    assert layout.phdrs_moved and layout.padding < 64
    assert read_elf(lib).soname == "libt-0123abcd-long-name.so.1"
    assert _loads(lib).stdout == "3\n"


def _program(tmp_path: Path, lib: Path, compiler: str, *flags: str) -> Path:
    source = tmp_path / "p.c"
    source.write_text(PROG_C)
    prog = tmp_path / "prog"
    _gcc(compiler, *flags, "-o", str(prog), str(source), str(lib))
    return prog


@pytest.mark.parametrize("section_headers", [True, False], ids=["sections", "no-sections"])
def test_patched_executable_runs(tmp_path: Path, section_headers: bool) -> None:
    build = tmp_path / "build"
    build.mkdir()
    lib = _library(build, "-Wl,-soname,libt.so.1")
    prog = _program(tmp_path, lib, "gcc")
    if not section_headers:
        _drop_section_headers(prog)
    (tmp_path / "libs").mkdir()
    shutil.move(lib, tmp_path / "libs" / "libt-0123abcd.so.1")
    layout = patch_file(
        prog,
        PatchOps(replace_needed=(("libt.so.1", "libt-0123abcd.so.1"),), rpath="$ORIGIN/libs"),
    )
    assert layout.phdrs_moved is not section_headers
    proc = subprocess.run([str(prog)], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout) == (0, "3\n"), proc.stderr


def test_aarch64_executable_with_moved_program_headers_runs_under_qemu(tmp_path: Path) -> None:
    """qemu-user derives AT_PHDR from the first PT_LOAD as kernels before 5.18 did."""
    if shutil.which("qemu-aarch64") is None:
        unavailable("qemu-user is not installed")
    build = tmp_path / "build"
    build.mkdir()
    lib = _library(build, "-Wl,-soname,libt.so.1", compiler="aarch64-linux-gnu-gcc")
    prog = _program(tmp_path, lib, "aarch64-linux-gnu-gcc")
    _drop_section_headers(prog)
    (tmp_path / "libs").mkdir()
    shutil.move(lib, tmp_path / "libs" / "libt-0123abcd.so.1")
    ops = PatchOps(replace_needed=(("libt.so.1", "libt-0123abcd.so.1"),), rpath="$ORIGIN/libs")
    assert patch_file(prog, ops).phdrs_moved
    proc = subprocess.run(
        ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(prog)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, "3\n"), proc.stderr


@pytest.mark.parametrize("section_headers", [True, False], ids=["sections", "no-sections"])
def test_musl_program_and_library_run_patched(tmp_path: Path, section_headers: bool) -> None:
    build = tmp_path / "build"
    build.mkdir()
    lib = _library(build, "-Wl,-soname,libt.so.1", compiler="musl-gcc")
    prog = _program(tmp_path, lib, "musl-gcc")
    grafted = tmp_path / "libs" / "libt-0123abcd.so.1"
    grafted.parent.mkdir()
    shutil.move(lib, grafted)
    if not section_headers:
        _drop_section_headers(prog)
        _drop_section_headers(grafted)
    patch_file(grafted, PatchOps(set_soname=grafted.name, rpath="$ORIGIN"))
    ops = PatchOps(replace_needed=(("libt.so.1", grafted.name),), rpath="$ORIGIN/libs")
    patch_file(prog, ops)
    proc = subprocess.run([str(prog)], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout) == (0, "3\n"), proc.stderr


def test_patch_bytes_and_patch_file_agree(tmp_path: Path) -> None:
    lib = _library(tmp_path, "-Wl,-soname,libt.so.1")
    ops = PatchOps(set_soname="libt-0123abcd.so.1", rpath="$ORIGIN/../x.libs")
    expected = patch_bytes(lib.read_bytes(), ops)
    patch_file(lib, ops)
    assert lib.read_bytes() == expected


def test_a_file_that_cannot_be_patched_is_left_as_it_was(tmp_path: Path) -> None:
    lib = _library(tmp_path)
    data = bytearray(lib.read_bytes())
    with lib.open("rb") as fh:
        elf = ELFFile(fh)
        dynamic = elf.get_section_by_name(".dynamic")
        offset, size = dynamic["sh_offset"], dynamic["sh_size"]
    data[offset : offset + size] = struct.pack("<QQ", 1, 1) * (size // 16)  # no DT_NULL
    lib.write_bytes(bytes(data))
    with pytest.raises(PatchError, match=r"libt\.so: cannot patch: .*DT_NULL") as info:
        patch_file(lib, PatchOps(rpath="$ORIGIN"), name="libt.so")
    assert "\n" not in str(info.value)
    assert lib.read_bytes() == bytes(data)


def test_removing_a_needed_entry_keeps_the_rest_in_order(tmp_path: Path) -> None:
    lib = _library(tmp_path, "-Wl,--no-as-needed", "-lm", "-lpthread")
    needed = read_elf(lib).needed
    assert "libm.so.6" in needed
    patch_file(lib, PatchOps(remove_needed=("libm.so.6",)))
    assert read_elf(lib).needed == tuple(n for n in needed if n != "libm.so.6")


def _section_ranges(path: Path, names: Sequence[str]) -> dict[str, tuple[int, bytes]]:
    with path.open("rb") as fh:
        elf = ELFFile(fh)
        found = (elf.get_section_by_name(name) for name in names)
        return {s.name: (s["sh_offset"], s.data()) for s in found if s is not None}


def test_what_moved_leaves_zeros_behind(tmp_path: Path) -> None:
    """The old string table and the rest of the head block are read by nothing once moved:
    they are zeroed, so a wheel does not carry them twice; the copies keep the old bytes."""
    lib = _library(tmp_path, "-Wl,--disable-new-dtags,-rpath,/opt/b")
    names = (".note.gnu.property", ".note.gnu.build-id", ".gnu.hash", ".dynsym", ".dynstr")
    before = _section_ranges(lib, names)
    layout = patch_file(lib, PatchOps(rpath="$ORIGIN/" + "x" * 300, set_soname="libt.so.9"))
    assert layout.strtab_moved and layout.head_moved
    data = lib.read_bytes()
    after = _section_ranges(lib, names)
    with lib.open("rb") as fh:
        header = ELFFile(fh).header
        ph_end = header["e_phoff"] + header["e_phnum"] * header["e_phentsize"]
    moved = {name for name in before if after[name][0] != before[name][0]}
    assert ".dynstr" in moved and len(moved) >= 2  # the string table and a head block
    for name, (offset, old) in before.items():
        new_offset, new = after[name]
        if name == ".dynstr":  # the old RPATH's bytes are free in the copy
            old = old.replace(b"/opt/b\0", bytes(7))
        assert new[: len(old)] == old, name
        left = data[max(offset, ph_end) : offset + len(old)]  # (the new program header)
        assert left == (bytes(len(left)) if name in moved else old[-len(left) :]), name
    assert _dynamic_tags(lib)["DT_RPATH"] == ["$ORIGIN/" + "x" * 300]
    assert _loads(lib).stdout == "3\n"
    stripped = tmp_path / "stripped.so"
    subprocess.run(["strip", "-s", "-o", str(stripped), str(lib)], check=True)
    assert _loads(stripped).stdout == "3\n"


def test_without_section_headers_nothing_is_zeroed(tmp_path: Path) -> None:
    """Without section headers nothing says what else the old bytes hold: they stay."""
    lib = _library(tmp_path, "-Wl,--disable-new-dtags,-rpath,/opt/b")
    offset, strings = _section_ranges(lib, [".dynstr"])[".dynstr"]
    _drop_section_headers(lib)
    layout = patch_file(lib, PatchOps(rpath="$ORIGIN/" + "x" * 300))
    assert layout.strtab_moved
    assert lib.read_bytes()[offset : offset + len(strings)] == strings
    assert _loads(lib).stdout == "3\n"
