"""A reference reader built on pyelftools, to check the C core against.

It produces the same facts as ``repairwheel.elf.ElfFile`` but gets them by
another road: pyelftools' own parsers, the section headers for version tables
and dynamic symbols, and the PT_DYNAMIC segment for the dynamic tags.  Where
the two disagree, one of them has a bug; ``diff_facts`` names the field.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Union

from elftools.elf import enums
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import (
    ENUM_E_MACHINE,
    ENUM_E_TYPE,
    ENUM_EI_OSABI,
    ENUM_ST_INFO_BIND,
    ENUM_ST_INFO_TYPE,
    ENUM_VERSYM,
)
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection
from elftools.elf.sections import NoteSection, SymbolTableSection

from repairwheel.elf import ElfFile, Symbol, read_elf, read_elf_and_symbols

Source = Union[bytes, "os.PathLike[str]", str]
SymbolRow = tuple[str, Union[str, None], bool, int, int, bool]
SegmentRow = tuple[int, int, int, int, int, int, int]

_VERSYM_HIDDEN = 0x8000
_X86_MACHINES = frozenset({"EM_386", "EM_X86_64"})
# pyelftools names p_type from a per-machine table; any name maps back to one number.
_P_TYPES: dict[str, int] = {
    name: value
    for table_name in dir(enums)
    if table_name.startswith("ENUM_P_TYPE")
    for name, value in getattr(enums, table_name).items()
    if isinstance(value, int)
}


@dataclass(frozen=True)
class ElfFacts:
    """The fields of ``ElfFile`` as plain values, plus the symbols as rows when read."""

    elf_class: int
    byte_order: str
    machine: int
    elf_type: int
    osabi: int
    flags: int
    interpreter: str | None
    soname: str | None
    needed: tuple[str, ...]
    rpaths: tuple[str, ...]
    runpaths: tuple[str, ...]
    version_need_entries: tuple[tuple[str, str, int], ...]
    version_defs: tuple[str, ...]
    isa_needed: int | None
    segments: tuple[SegmentRow, ...]
    symbols: tuple[SymbolRow, ...] | None = None

    @property
    def rpath(self) -> tuple[str, ...]:
        """The last DT_RPATH entry's directories (the one glibc uses), as ``ElfFile.rpath``."""
        return tuple(self.rpaths[-1].split(":")) if self.rpaths else ()

    @property
    def runpath(self) -> tuple[str, ...]:
        """The last DT_RUNPATH entry's directories, as ``ElfFile.runpath``."""
        return tuple(self.runpaths[-1].split(":")) if self.runpaths else ()


def oracle_facts(source: Source, *, symbols: bool = True) -> ElfFacts:
    """Read ``source`` (bytes or a path) with pyelftools."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    elf = ELFFile(io.BytesIO(data))
    dynamic = next((seg for seg in elf.iter_segments() if isinstance(seg, DynamicSegment)), None)
    tags: dict[str, list[str]] = {
        "DT_NEEDED": [],
        "DT_SONAME": [],
        "DT_RPATH": [],
        "DT_RUNPATH": [],
    }
    if dynamic is not None:
        for tag in dynamic.iter_tags():
            if tag.entry.d_tag in tags:
                tags[tag.entry.d_tag].append(getattr(tag, tag.entry.d_tag[3:].lower()))
    return ElfFacts(
        elf_class=elf.elfclass,
        byte_order="little" if elf.little_endian else "big",
        machine=_enum_int(elf["e_machine"], ENUM_E_MACHINE),
        elf_type=_enum_int(elf["e_type"], ENUM_E_TYPE),
        osabi=_enum_int(elf["e_ident"]["EI_OSABI"], ENUM_EI_OSABI),
        flags=elf["e_flags"],
        interpreter=_interpreter(elf),
        soname=tags["DT_SONAME"][0] if tags["DT_SONAME"] else None,
        needed=tuple(tags["DT_NEEDED"]),
        rpaths=tuple(tags["DT_RPATH"]),
        runpaths=tuple(tags["DT_RUNPATH"]),
        version_need_entries=_version_needs(elf),
        version_defs=tuple(name for _, name in _version_defs(elf)),
        isa_needed=_isa_needed(elf),
        segments=_segments(elf),
        symbols=_symbols(elf) if symbols else None,
    )


def core_facts(source: Source, *, symbols: bool = True, imports_only: bool = False) -> ElfFacts:
    """Read ``source`` with the C core, as the same plain values."""
    if symbols:
        return facts_of(*read_elf_and_symbols(source, imports_only=imports_only))
    return facts_of(read_elf(source), None)


INIT_PREFIXES = ("PyInit_", "init", "_cffi_pypyinit_")


def imports_of(facts: ElfFacts) -> ElfFacts:
    """The facts with only the symbols ``imports_only`` keeps: the undefined ones and the
    defined ones named like a module init function."""
    assert facts.symbols is not None
    kept = tuple(row for row in facts.symbols if not row[2] or row[0].startswith(INIT_PREFIXES))
    return dataclasses.replace(facts, symbols=kept)


def facts_of(elf: ElfFile, symbols: tuple[Symbol, ...] | None) -> ElfFacts:
    """Convert an ``ElfFile`` and its symbols (None: not compared) to ``ElfFacts``."""
    return ElfFacts(
        elf_class=elf.elf_class,
        byte_order=elf.byte_order,
        machine=elf.machine,
        elf_type=elf.elf_type,
        osabi=elf.osabi,
        flags=elf.flags,
        interpreter=elf.interpreter,
        soname=elf.soname,
        needed=elf.needed,
        rpaths=elf.rpaths,
        runpaths=elf.runpaths,
        version_need_entries=tuple((n.library, n.name, n.flags) for n in elf.version_need_entries),
        version_defs=elf.version_defs,
        isa_needed=elf.isa_needed,
        segments=tuple(tuple(seg) for seg in elf.segments),
        symbols=None if symbols is None else tuple(tuple(s) for s in symbols),
    )


def diff_facts(core: ElfFacts, oracle: ElfFacts, *, limit: int = 5) -> list[str]:
    """One line per disagreeing field; for symbols, the first ``limit`` differing rows."""
    lines = []
    for f in fields(ElfFacts):
        mine, theirs = getattr(core, f.name), getattr(oracle, f.name)
        if f.name == "symbols" and mine is not None and theirs is not None:
            lines.extend(_diff_symbols(mine, theirs, limit))
        elif mine != theirs:
            lines.append(f"{f.name}: core={mine!r} oracle={theirs!r}")
    return lines


def _diff_symbols(
    mine: tuple[SymbolRow, ...], theirs: tuple[SymbolRow, ...], limit: int
) -> list[str]:
    lines = []
    if len(mine) != len(theirs):
        lines.append(f"symbols: core has {len(mine)}, oracle has {len(theirs)}")
    bad = [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
    for i in bad[:limit]:
        lines.append(f"symbols[{i}]: core={mine[i]!r} oracle={theirs[i]!r}")
    if len(bad) > limit:
        lines.append(f"symbols: {len(bad) - limit} more rows differ")
    return lines


def _enum_int(value: str | int, table: dict[str, int]) -> int:
    """pyelftools names known enum values; map the name back to its number."""
    return value if isinstance(value, int) else table[value]


def _interpreter(elf: ELFFile) -> str | None:
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_INTERP":
            return seg.get_interp_name()
    return None


def _segments(elf: ELFFile) -> tuple[SegmentRow, ...]:
    return tuple(
        (
            _enum_int(seg["p_type"], _P_TYPES),
            seg["p_flags"],
            seg["p_offset"],
            seg["p_vaddr"],
            seg["p_filesz"],
            seg["p_memsz"],
            seg["p_align"],
        )
        for seg in elf.iter_segments()
    )


def _section(elf: ELFFile, kind: type) -> object | None:
    return next((s for s in elf.iter_sections() if isinstance(s, kind)), None)


def _version_needs(elf: ELFFile) -> tuple[tuple[str, str, int], ...]:
    section = _section(elf, GNUVerNeedSection)
    if section is None:
        return ()
    return tuple(
        (verneed.name, aux.name, aux["vna_flags"])
        for verneed, auxes in section.iter_versions()  # type: ignore[attr-defined]
        for aux in auxes
    )


def _version_defs(elf: ELFFile) -> list[tuple[int, str]]:
    """(vd_ndx, first name) of each version definition, in file order."""
    section = _section(elf, GNUVerDefSection)
    if section is None:
        return []
    return [
        (verdef["vd_ndx"], next(iter(auxes)).name)
        for verdef, auxes in section.iter_versions()  # type: ignore[attr-defined]
    ]


def _version_names(elf: ELFFile) -> dict[int, str]:
    """Version index -> name, from both the definitions and the needs."""
    names = dict(_version_defs(elf))
    section = _section(elf, GNUVerNeedSection)
    if section is not None:
        for _, auxes in section.iter_versions():  # type: ignore[attr-defined]
            for aux in auxes:
                names[aux["vna_other"]] = aux.name
    return names


def _isa_needed(elf: ELFFile) -> int | None:
    """First GNU_PROPERTY_X86_ISA_1_NEEDED of the GNU property notes (x86 only).

    Notes come from the SHT_NOTE sections, or from PT_NOTE segments when the
    file has no section headers.
    """
    if elf["e_machine"] not in _X86_MACHINES:
        return None
    if elf.num_sections():
        holders = [s for s in elf.iter_sections() if isinstance(s, NoteSection)]
    else:
        holders = [s for s in elf.iter_segments() if s["p_type"] == "PT_NOTE"]
    for holder in holders:
        for note in holder.iter_notes():
            if note["n_type"] != "NT_GNU_PROPERTY_TYPE_0" or note["n_name"] != "GNU":
                continue
            for prop in note["n_desc"]:
                if prop.pr_type == "GNU_PROPERTY_X86_ISA_1_NEEDED" and prop.pr_datasz == 4:
                    return prop.pr_data
    return None


def _symbols(elf: ELFFile) -> tuple[SymbolRow, ...]:
    table = next((s for s in elf.iter_sections() if s["sh_type"] == "SHT_DYNSYM"), None)
    if not isinstance(table, SymbolTableSection):
        return ()
    versym = _section(elf, GNUVerSymSection)
    names = _version_names(elf)
    rows = []
    for index, sym in enumerate(table.iter_symbols()):
        ndx = 0
        if versym is not None:
            ndx = _enum_int(versym.get_symbol(index)["ndx"], ENUM_VERSYM)  # type: ignore[attr-defined]
        version = names.get(ndx & ~_VERSYM_HIDDEN) if ndx & ~_VERSYM_HIDDEN > 1 else None
        rows.append(
            (
                sym.name,
                version,
                sym["st_shndx"] != "SHN_UNDEF",
                _enum_int(sym["st_info"]["bind"], ENUM_ST_INFO_BIND),
                _enum_int(sym["st_info"]["type"], ENUM_ST_INFO_TYPE),
                bool(ndx & _VERSYM_HIDDEN),
            )
        )
    return tuple(rows)
