"""The C core reads what gcc and ld were told to write (fixtures in conftest.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from conftest import EXT_RPATH, HASH_STYLES, ISA_LEVELS, Compile
from elf_oracle import core_facts, diff_facts, oracle_facts
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile

from repairwheel.elf import Binding, ElfType, Machine, Symbol, SymbolType, read_elf

DT_RPATH = 15
VER_FLG_WEAK = 0x2
# e_ident[EI_CLASS] -> (offset of e_shoff, its struct format, offset of e_shnum)
_SHDR_FIELDS = {1: (0x20, "I", 0x30), 2: (0x28, "Q", 0x3C)}


def strip_section_headers(src: Path, dst: Path) -> Path:
    """Copy ``src`` without section headers: e_shoff, e_shnum and e_shstrndx zeroed.

    Loaders never read section headers; sstrip-like tools drop them, so the
    core must get everything from the program headers.
    """
    data = bytearray(src.read_bytes())
    shoff_at, shoff_fmt, shnum_at = _SHDR_FIELDS[data[4]]
    order = "<" if data[5] == 1 else ">"
    struct.pack_into(order + shoff_fmt, data, shoff_at, 0)
    struct.pack_into(order + "HH", data, shnum_at, 0, 0)
    dst.write_bytes(bytes(data))
    return dst


def retag_needed(src: Path, dst: Path, library: str, new_tag: int) -> Path:
    """Copy ``src`` with the DT_NEEDED entry naming ``library`` turned into ``new_tag``."""
    data = bytearray(src.read_bytes())
    with src.open("rb") as fh:
        elf = ELFFile(fh)
        dynamic = next(s for s in elf.iter_segments() if isinstance(s, DynamicSegment))
        entsize = elf.structs.Elf_Dyn.sizeof()
        index = next(
            i
            for i, tag in enumerate(dynamic.iter_tags())
            if tag.entry.d_tag == "DT_NEEDED" and tag.needed == library
        )
        tag_at = dynamic["p_offset"] + index * entsize
        fmt = ("<" if elf.little_endian else ">") + ("q" if elf.elfclass == 64 else "i")
    struct.pack_into(fmt, data, tag_at, new_tag)
    dst.write_bytes(bytes(data))
    return dst


def mark_version_needs_weak(src: Path, dst: Path, library: str) -> Path:
    """Copy ``src`` with VER_FLG_WEAK set on every version it needs from ``library``.

    GNU ld writes no weak version needs for C code, so the flag is set by hand.
    """
    data = bytearray(src.read_bytes())
    with src.open("rb") as fh:
        elf = ELFFile(fh)
        section = elf.get_section_by_name(".gnu.version_r")
        order = "<" if elf.little_endian else ">"
        entry_at = section["sh_offset"]
        for verneed, _ in section.iter_versions():
            aux_at = entry_at + verneed["vn_aux"]
            for _ in range(verneed["vn_cnt"]):
                if verneed.name == library:
                    struct.pack_into(order + "H", data, aux_at + 4, VER_FLG_WEAK)
                aux_at += struct.unpack_from(order + "I", data, aux_at + 12)[0]
            entry_at += verneed["vn_next"]
    dst.write_bytes(bytes(data))
    return dst


def by_name(symbols: tuple[Symbol, ...], name: str) -> list[Symbol]:
    return [s for s in symbols if s.name == name]


@pytest.fixture(scope="module")
def two_rpath_tags(
    cc: Compile, needs_in_order: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """NEEDED libzeta, libalpha, libc, RPATH /first; then libalpha's tag turned into RPATH."""
    built = cc(
        "librpaths.so",
        *("-shared", "-fPIC", "filler.c", "-L.", "-Wl,--no-as-needed", "-lzeta", "-lalpha"),
        *("-Wl,-rpath,/first", "-Wl,--disable-new-dtags"),
    )
    out = tmp_path_factory.mktemp("retagged") / "librpaths.so"
    return retag_needed(built, out, "libalpha.so", DT_RPATH)


@pytest.fixture(scope="module")
def weak_needs(ext_rpath: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("weak") / "ext_weak.so"
    return mark_version_needs_weak(ext_rpath, out, "libvers.so.1")


def test_library_soname(libvers: Path) -> None:
    assert read_elf(libvers).soname == "libvers.so.1"


def test_version_defs_are_base_then_first_name_of_each(libvers: Path) -> None:
    assert read_elf(libvers).version_defs == ("libvers.so.1", "VERS_1.0", "VERS_2.0")


def test_defined_symbols_carry_their_default_versions(libvers: Path) -> None:
    symbols = read_elf(libvers).symbols()
    func, glob = SymbolType.FUNC, Binding.GLOBAL
    assert by_name(symbols, "vers_one") == [Symbol("vers_one", "VERS_1.0", True, glob, func, False)]
    assert by_name(symbols, "vers_two") == [Symbol("vers_two", "VERS_2.0", True, glob, func, False)]


def test_non_default_version_is_hidden(libvers: Path) -> None:
    compat = {(s.version, s.hidden) for s in by_name(read_elf(libvers).symbols(), "vers_compat")}
    assert compat == {("VERS_1.0", True), ("VERS_2.0", False)}


def test_symbols_start_with_the_null_symbol(libvers: Path) -> None:
    assert read_elf(libvers).symbols()[0] == Symbol("", None, False, 0, 0, False)


def test_extension_needs_versions_of_its_library(ext_rpath: Path) -> None:
    needs = read_elf(ext_rpath).version_needs
    assert sorted(needs["libvers.so.1"]) == ["VERS_1.0", "VERS_2.0"]


def test_version_need_flags_are_zero_for_strong_needs(ext_rpath: Path) -> None:
    entries = read_elf(ext_rpath).version_need_entries
    assert [(e.name, e.flags, e.weak) for e in entries if e.library == "libvers.so.1"] == [
        ("VERS_1.0", 0, False),
        ("VERS_2.0", 0, False),
    ]


def test_weak_version_need_flag(weak_needs: Path) -> None:
    entries = read_elf(weak_needs).version_need_entries
    assert [(e.name, e.flags, e.weak) for e in entries if e.library == "libvers.so.1"] == [
        ("VERS_1.0", VER_FLG_WEAK, True),
        ("VERS_2.0", VER_FLG_WEAK, True),
    ]


def test_undefined_symbols_name_the_needed_version(ext_rpath: Path) -> None:
    symbols = read_elf(ext_rpath).symbols()
    wanted = {name: by_name(symbols, name) for name in ("vers_one", "vers_two", "vers_compat")}
    assert {name: [(s.version, s.defined) for s in found] for name, found in wanted.items()} == {
        "vers_one": [("VERS_1.0", False)],
        "vers_two": [("VERS_2.0", False)],
        "vers_compat": [("VERS_2.0", False)],
    }


def test_weak_undefined_symbol(ext_rpath: Path) -> None:
    (weak,) = by_name(read_elf(ext_rpath).symbols(), "maybe_there")
    assert (weak.defined, weak.binding, weak.version) == (False, Binding.WEAK, None)


def test_disable_new_dtags_writes_rpath(ext_rpath: Path) -> None:
    elf = read_elf(ext_rpath)
    assert (elf.rpath, elf.runpath) == (tuple(EXT_RPATH.split(":")), ())


def test_enable_new_dtags_writes_runpath(ext_runpath: Path) -> None:
    elf = read_elf(ext_runpath)
    assert (elf.rpath, elf.runpath) == ((), tuple(EXT_RPATH.split(":")))


def test_origin_is_kept_literally(ext_rpath: Path) -> None:
    assert read_elf(ext_rpath).rpath[0] == "$ORIGIN/../lib"


def test_needed_keeps_link_order(needs_in_order: Path) -> None:
    assert read_elf(needs_in_order).needed == (
        "libzeta.so",
        "libalpha.so",
        "libmid.so",
        "libc.so.6",
    )


def test_several_rpath_tags_are_kept_apart_in_file_order(two_rpath_tags: Path) -> None:
    elf = read_elf(two_rpath_tags)
    assert (elf.needed, elf.rpaths) == (("libzeta.so", "libc.so.6"), ("libalpha.so", "/first"))


def test_rpath_is_the_entry_the_loaders_use(two_rpath_tags: Path) -> None:
    elf = read_elf(two_rpath_tags)
    assert (elf.rpath, elf.runpath) == (("/first",), ())


def test_pie_executable_has_interpreter(exe_pie: Path) -> None:
    elf = read_elf(exe_pie)
    assert (elf.elf_type, elf.interpreter) == (ElfType.DYN, "/lib64/ld-linux-x86-64.so.2")


def test_non_pie_executable_is_exec_type(exe_nopie: Path) -> None:
    assert read_elf(exe_nopie).elf_type == ElfType.EXEC


def test_shared_library_has_no_interpreter(libvers: Path) -> None:
    assert read_elf(libvers).interpreter is None


def test_object_file_has_nothing_dynamic(object_file: Path) -> None:
    elf = read_elf(object_file)
    assert (elf.elf_type, elf.needed, elf.segments, elf.symbols()) == (ElfType.REL, (), (), ())


def test_x86_64_identity(libvers: Path) -> None:
    elf = read_elf(libvers)
    identity = (elf.elf_class, elf.byte_order, elf.machine, elf.arch)
    assert identity == (64, "little", Machine.X86_64, "x86_64")


@pytest.mark.parametrize(("level", "bit"), [("x86-64-v2", 2), ("x86-64-v3", 4), ("x86-64-v4", 8)])
def test_isa_needed_from_gnu_property(isa_marked: dict[str, Path], level: str, bit: int) -> None:
    elf = read_elf(isa_marked[level])
    assert (elf.isa_needed, elf.isa_level) == (bit, int(level[-1]))


def test_unmarked_library_has_no_isa_needed(isa_marked: dict[str, Path]) -> None:
    assert read_elf(isa_marked["unmarked"]).isa_needed is None


@pytest.mark.parametrize("style", HASH_STYLES)
def test_stripped_section_headers_keep_every_fact(
    hash_styles: dict[str, Path], style: str, tmp_path: Path
) -> None:
    original = hash_styles[style]
    stripped = strip_section_headers(original, tmp_path / original.name)
    assert ELFFile(stripped.open("rb")).num_sections() == 0
    assert read_elf(stripped) == read_elf(original)


@pytest.mark.parametrize("style", HASH_STYLES)
def test_stripped_section_headers_keep_symbols(
    hash_styles: dict[str, Path], style: str, tmp_path: Path
) -> None:
    original = hash_styles[style]
    stripped = strip_section_headers(original, tmp_path / original.name)
    assert read_elf(stripped).symbols() == read_elf(original).symbols()


def test_stripped_extension_keeps_version_needs_and_symbols(
    ext_rpath: Path, tmp_path: Path
) -> None:
    stripped = strip_section_headers(ext_rpath, tmp_path / "ext.so")
    assert core_facts(stripped) == core_facts(ext_rpath)


def test_stripped_section_headers_keep_isa_needed(
    isa_marked: dict[str, Path], tmp_path: Path
) -> None:
    stripped = strip_section_headers(isa_marked["x86-64-v3"], tmp_path / "libisa.so")
    assert read_elf(stripped).isa_needed == 4


def test_path_and_bytes_read_alike(ext_rpath: Path) -> None:
    assert core_facts(ext_rpath.read_bytes()) == core_facts(ext_rpath)


def test_i386_identity(libvers32: Path) -> None:
    elf = read_elf(libvers32)
    identity = (elf.elf_class, elf.byte_order, elf.machine, elf.arch)
    assert identity == (32, "little", Machine.I386, "i686")


def test_i386_extension_needs_and_runpath(ext32: Path) -> None:
    elf = read_elf(ext32)
    assert sorted(elf.version_needs["libvers.so.1"]) == ["VERS_1.0", "VERS_2.0"]
    assert (elf.needed[0], elf.runpath) == ("libvers.so.1", tuple(EXT_RPATH.split(":")))


def test_i386_hidden_version(libvers32: Path) -> None:
    compat = {(s.version, s.hidden) for s in by_name(read_elf(libvers32).symbols(), "vers_compat")}
    assert compat == {("VERS_1.0", True), ("VERS_2.0", False)}


def test_i386_executable_interpreter(exe32: Path) -> None:
    assert read_elf(exe32).interpreter == "/lib/ld-linux.so.2"


def test_i386_stripped_section_headers_keep_symbols(libvers32: Path, tmp_path: Path) -> None:
    stripped = strip_section_headers(libvers32, tmp_path / "libvers32.so")
    assert core_facts(stripped) == core_facts(libvers32)


FIXTURES = [
    ("libvers", None),
    ("ext_rpath", None),
    ("ext_runpath", None),
    ("needs_in_order", None),
    ("two_rpath_tags", None),
    ("weak_needs", None),
    ("exe_pie", None),
    ("exe_nopie", None),
    ("object_file", None),
    *(("hash_styles", style) for style in HASH_STYLES),
    *(("isa_marked", level) for level in (*ISA_LEVELS, "unmarked")),
    ("libvers32", None),
    ("ext32", None),
    ("exe32", None),
]


@pytest.mark.parametrize(
    ("fixture", "key"), FIXTURES, ids=[f if k is None else f"{f}-{k}" for f, k in FIXTURES]
)
def test_fixture_matches_oracle(
    request: pytest.FixtureRequest, fixture: str, key: str | None
) -> None:
    built = request.getfixturevalue(fixture)
    path = built if key is None else built[key]
    problems = diff_facts(core_facts(path), oracle_facts(path))
    assert not problems, f"{path.name}: " + "; ".join(problems)
