"""Typed view of the facts the C core (``repairwheel._elfcore``) reads from an ELF file."""

from __future__ import annotations

import enum
import mmap
import os
import struct
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional, Union, overload

from ._elfcore import ffi, lib
from .errors import ElfError, ResourceError

ElfSource = Union[bytes, bytearray, memoryview, mmap.mmap, str, "os.PathLike[str]"]

ELF_MAGIC = b"\x7fELF"
VER_FLG_WEAK = 0x2
_ERRLEN = 256


class _OpenIntEnum(enum.IntEnum):
    """An IntEnum that also takes the values it does not name, as ``UNKNOWN_<n>`` members:
    a field typed with it holds whatever number the file has, and reading it never raises."""

    @classmethod
    def _missing_(cls, value: object) -> _OpenIntEnum | None:
        if not isinstance(value, int):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = value
        return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]


class Machine(enum.IntEnum):
    """The e_machine values manylinux and musllinux know about."""

    I386 = 3
    MIPS = 8
    PPC = 20
    PPC64 = 21
    S390 = 22
    ARM = 40
    SPARCV9 = 43
    X86_64 = 62
    AARCH64 = 183
    RISCV = 243
    LOONGARCH = 258


class ElfType(_OpenIntEnum):
    """e_type."""

    NONE = 0
    REL = 1
    EXEC = 2
    DYN = 3
    CORE = 4


class Binding(_OpenIntEnum):
    """A symbol's binding (the high nibble of st_info)."""

    LOCAL = 0
    GLOBAL = 1
    WEAK = 2
    GNU_UNIQUE = 10


class SymbolType(_OpenIntEnum):
    """A symbol's type (the low nibble of st_info)."""

    NOTYPE = 0
    OBJECT = 1
    FUNC = 2
    SECTION = 3
    FILE = 4
    COMMON = 5
    TLS = 6
    GNU_IFUNC = 10


# The binding and the type are st_info's two nibbles: a row takes its enums from these tables
# (an enum call per row would cost a microsecond, and libraries have 10^5 symbols).
_BINDINGS = tuple(Binding(i) for i in range(16))
_SYMBOL_TYPES = tuple(SymbolType(i) for i in range(16))

# (machine, class, byte order) -> manylinux architecture name
_ARCHES: dict[tuple[int, int, str], str] = {
    (Machine.I386, 32, "little"): "i686",
    (Machine.X86_64, 64, "little"): "x86_64",
    (Machine.AARCH64, 64, "little"): "aarch64",
    (Machine.PPC64, 64, "little"): "ppc64le",
    (Machine.PPC64, 64, "big"): "ppc64",
    (Machine.S390, 64, "big"): "s390x",
    (Machine.ARM, 32, "little"): "armv7l",
    (Machine.RISCV, 64, "little"): "riscv64",
    (Machine.LOONGARCH, 64, "little"): "loongarch64",
}
_EF_ARM_EABIMASK = 0xFF000000
_EF_ARM_EABI_VER5 = 0x05000000
_EF_ARM_ABI_FLOAT_HARD = 0x00000400


class Symbol(NamedTuple):
    """One dynamic symbol; ``version`` is None for unversioned symbols.

    A NamedTuple rather than a dataclass: large libraries have 10^5 symbols.
    """

    name: str
    version: Optional[str]  # noqa: UP045 (NamedTuple fields are evaluated at runtime on 3.9)
    defined: bool
    binding: Binding
    type: SymbolType
    hidden: bool


class SymbolTable(Sequence[Symbol]):
    """The dynamic symbols as columns; a :class:`Symbol` row is built only when indexed.

    Large libraries have 10^5 symbols, and most callers need one or two columns. The columns
    stay raw (``info`` holds the binding and type as numbers); a row converts them to enums.
    """

    __slots__ = ("names", "versions", "info")

    def __init__(self, names: list[str], versions: list[str | None], info: bytes) -> None:
        self.names = names
        self.versions = versions
        self.info = info  # 4 bytes per symbol: binding, type, defined, hidden

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> Symbol: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Symbol, ...]: ...
    def __getitem__(self, index: int | slice) -> Symbol | tuple[Symbol, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        index = range(len(self))[index]  # normalises negative indices, raises IndexError
        info = self.info[4 * index : 4 * index + 4]
        return Symbol(
            self.names[index],
            self.versions[index],
            bool(info[2]),
            _BINDINGS[info[0]],
            _SYMBOL_TYPES[info[1]],
            bool(info[3]),
        )


class Segment(NamedTuple):
    """One program header, as the file states it."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


PT_LOAD = 1
_SEGMENT = struct.Struct("=2I5Q")  # rw_segment: native order, no padding on any ABI
if _SEGMENT.size != ffi.sizeof("rw_segment"):  # pragma: no cover - a compiler padding it
    raise ImportError("repairwheel._elfcore's rw_segment is not the layout elf.py reads")


@dataclass(frozen=True)
class VersionNeed:
    """One GNU version requirement: ``library`` must provide ``name``."""

    library: str
    name: str
    flags: int

    @property
    def weak(self) -> bool:
        return bool(self.flags & VER_FLG_WEAK)


@dataclass(frozen=True)
class ElfFile:
    """What repairwheel knows of one ELF file.  Symbols are read on demand."""

    elf_class: int
    byte_order: str
    machine: int
    elf_type: ElfType
    osabi: int
    flags: int
    interpreter: str | None
    soname: str | None
    needed: tuple[str, ...]
    rpaths: tuple[str, ...]  # every DT_RPATH entry, raw (not split), in file order
    runpaths: tuple[str, ...]  # every DT_RUNPATH entry, likewise
    version_need_entries: tuple[VersionNeed, ...]
    version_defs: tuple[str, ...]
    isa_needed: int | None
    # the program headers as the C core's rw_segment array (see ``segments``)
    segment_table: bytes = field(default=b"", repr=False)
    _source: ElfSource | None = field(default=None, repr=False, compare=False)
    _label: str | None = field(default=None, repr=False, compare=False)

    @property
    def arch(self) -> str | None:
        """The manylinux architecture name, or None if no policy covers this machine."""
        arch = _ARCHES.get((self.machine, self.elf_class, self.byte_order))
        if arch == "armv7l" and (
            self.flags & _EF_ARM_EABIMASK != _EF_ARM_EABI_VER5
            or not self.flags & _EF_ARM_ABI_FLOAT_HARD
        ):
            return None
        return arch

    @property
    def rpath(self) -> tuple[str, ...]:
        """The directories of the DT_RPATH the loader uses; () if none.

        A file may hold several entries of a tag: glibc's and musl's loaders both keep the
        last one (their dynamic-table scans overwrite; checked against both in
        tests/test_loader_real.py), and neither joins them.
        """
        return _last_entry(self.rpaths)

    @property
    def runpath(self) -> tuple[str, ...]:
        """The directories of the DT_RUNPATH the loader uses (the last entry); () if none."""
        return _last_entry(self.runpaths)

    @property
    def version_needs(self) -> dict[str, tuple[str, ...]]:
        """Library -> the version names needed from it, in file order."""
        needs: dict[str, tuple[str, ...]] = {}
        for need in self.version_need_entries:
            needs[need.library] = needs.get(need.library, ()) + (need.name,)
        return needs

    @property
    def isa_level(self) -> int | None:
        """x86-64 micro-architecture level needed (1 baseline .. 4 for v4), None if unmarked."""
        if self.isa_needed is None:
            return None
        for level, bit in ((4, 8), (3, 4), (2, 2), (1, 1)):
            if self.isa_needed & bit:
                return level
        return None

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The program headers, in file order. They are kept packed, decoded on each call:
        10000 extensions hold 70000 of them, which took 8.6 MB as tuples."""
        return tuple(map(Segment._make, _SEGMENT.iter_unpack(self.segment_table)))

    def misaligned_loads(self) -> tuple[Segment, ...]:
        """PT_LOAD segments the loader cannot map (p_offset and p_vaddr differ mod p_align)."""
        return tuple(
            seg
            for seg in self.segments
            if seg.type == PT_LOAD and seg.align > 1 and (seg.offset - seg.vaddr) % seg.align
        )

    def symbols(self) -> tuple[Symbol, ...]:
        """The dynamic symbols, in table order (index 0, the null symbol, included)."""
        if self._source is None:
            raise ElfError("symbols are not available: the ELF file's source was not kept")
        with open_source(self._source) as (buf, label):
            return tuple(_parse(buf, self._label or label, lib.RW_WANT_SYMBOLS, None)[1])


def _last_entry(entries: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(entries[-1].split(":")) if entries else ()


def read_elf(source: ElfSource, *, name: str | None = None) -> ElfFile:
    """Read the dynamic-linking facts of an ELF file from bytes or a path.

    ``name`` labels error messages (defaults to the path, or "<buffer>").
    Raises ElfError if the file is not a well-formed ELF file, ResourceError if memory
    runs out while reading it.
    """
    with open_source(source) as (buf, label):
        elf, _ = _parse(buf, name or label, 0, source)
    return elf


def read_elf_and_symbols(
    source: ElfSource, *, name: str | None = None, imports_only: bool = False
) -> tuple[ElfFile, SymbolTable]:
    """Read the facts and the dynamic symbols in one pass, keeping no reference to ``source``.

    For callers that stream many large files (a wheel's members) and must not pin their bytes.
    With ``imports_only`` the table holds the undefined symbols and only those defined ones
    named as a Python module's init function may be (``PyInit_*``, ``init*``,
    ``_cffi_pypyinit_*``): all an audit reads, where a C++ library defines 10^5 others.
    """
    options = lib.RW_WANT_SYMBOLS | (lib.RW_IMPORTS_ONLY if imports_only else 0)
    with open_source(source) as (buf, label):
        return _parse(buf, name or label, options, None)


@dataclass(frozen=True)
class Missing:
    """What a parse of kept bytes lacked: others from ``start`` (the first) to ``end`` (the
    last one's end)."""

    start: int
    end: int


Ranges = Sequence[tuple[int, int]]
"""Sorted, disjoint ``(start, end)`` byte ranges of a file."""


def read_kept_elf_and_symbols(
    buf: bytearray | mmap.mmap, kept: Ranges, *, name: str, imports_only: bool = False
) -> tuple[ElfFile, SymbolTable] | Missing:
    """:func:`read_elf_and_symbols` of a buffer of the file's size that holds only the
    ``kept`` ranges of its bytes: the same facts where those were enough, else what was
    missing (the parser reads no other byte)."""
    options = lib.RW_WANT_SYMBOLS | (lib.RW_IMPORTS_ONLY if imports_only else 0)
    flat = ffi.new("uint64_t[]", [offset for pair in kept for offset in pair])
    return _parse(buf, name, options, None, (flat, len(kept)))


def is_elf(data: bytes) -> bool:
    """True if ``data`` starts with the ELF magic."""
    return data[:4] == ELF_MAGIC


@contextmanager
def open_source(
    source: ElfSource,
) -> Iterator[tuple[bytes | bytearray | memoryview | mmap.mmap, str]]:
    """The bytes of ``source`` (a path is mapped read-only, not read) and the label errors use.

    Raises ElfError when a path cannot be opened.
    """
    if isinstance(source, (bytes, bytearray, memoryview, mmap.mmap)):
        yield source, "<buffer>"
        return
    path = os.fspath(source)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                yield b"", path
                return
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                yield mapped, path
    except OSError as exc:
        reason = f"cannot read: {exc.strerror or exc}"
        raise ElfError(f"{path}: {reason}", reason=reason) from exc


def _string(ptr: Any) -> Any:
    """The C string at ``ptr`` (None for NULL); typed Any as cffi's values are untyped."""
    if ptr == ffi.NULL:
        return None
    return ffi.string(ptr).decode("utf-8", "surrogateescape")


@overload
def _parse(
    buf: bytes | bytearray | memoryview | mmap.mmap,
    label: str,
    options: int,
    keep: ElfSource | None,
) -> tuple[ElfFile, SymbolTable]: ...


@overload
def _parse(
    buf: bytes | bytearray | memoryview | mmap.mmap,
    label: str,
    options: int,
    keep: ElfSource | None,
    kept: tuple[Any, int],
) -> tuple[ElfFile, SymbolTable] | Missing: ...


def _parse(
    buf: bytes | bytearray | memoryview | mmap.mmap,
    label: str,
    options: int,
    keep: ElfSource | None,
    kept: tuple[Any, int] | None = None,
) -> tuple[ElfFile, SymbolTable] | Missing:
    # The result's strings point into ``buf``: convert them before releasing it (an mmap
    # cannot close while a pointer into it is exported).
    with ffi.from_buffer(buf) as cbuf:
        out = ffi.new("rw_elf **")
        err = ffi.new("char[]", _ERRLEN)
        if kept is None:
            rc = lib.rw_elf_parse(cbuf, len(cbuf), options, out, err, _ERRLEN)
        else:
            miss = ffi.new("uint64_t[2]")
            rc = lib.rw_elf_parse_kept(
                cbuf, len(cbuf), kept[0], kept[1], options, out, err, _ERRLEN, miss
            )
            if rc == lib.RW_MISSING:
                return Missing(miss[0], miss[1])
        if rc == lib.RW_NOMEM:
            reason = "out of memory while reading the ELF file"
            raise ResourceError(f"{label}: {reason}", reason=reason)
        if rc != lib.RW_OK:
            reason = ffi.string(err).decode("utf-8", "replace")
            raise ElfError(f"{label}: {reason}", reason=reason)
        raw = out[0]
        try:
            elf = _convert(raw, keep, label if keep is not None else None)
            symbols = _symbols(raw) if options & lib.RW_WANT_SYMBOLS else SymbolTable([], [], b"")
            return elf, symbols
        finally:
            lib.rw_elf_free(raw)


def _shared(ptr: Any) -> Any:
    """:func:`_string`, interned: library and version names repeat across a wheel's files
    (10000 extensions held 70000 copies of a few dozen)."""
    text = _string(ptr)
    return text if text is None else sys.intern(text)


def _convert(raw: Any, keep: ElfSource | None, label: str | None) -> ElfFile:
    return ElfFile(
        elf_class=raw.elf_class,
        byte_order="big" if raw.big_endian else "little",
        machine=raw.machine,
        elf_type=ElfType(raw.elf_type),
        osabi=raw.osabi,
        flags=raw.flags,
        interpreter=_string(raw.interpreter),
        soname=_string(raw.soname),
        needed=tuple(_shared(raw.needed[i]) for i in range(raw.n_needed)),
        rpaths=tuple(_shared(raw.rpaths[i]) for i in range(raw.n_rpaths)),
        runpaths=tuple(_shared(raw.runpaths[i]) for i in range(raw.n_runpaths)),
        version_need_entries=tuple(
            VersionNeed(_shared(v.file), _shared(v.name), v.flags)
            for v in (raw.verneed[i] for i in range(raw.n_verneed))
        ),
        version_defs=tuple(_shared(raw.verdef[i]) for i in range(raw.n_verdef)),
        isa_needed=raw.isa_needed if raw.has_isa_needed else None,
        segment_table=bytes(ffi.buffer(raw.segments, raw.n_segments * _SEGMENT.size))
        if raw.n_segments
        else b"",
        _source=keep,
        _label=label,
    )


def _symbols(raw: Any) -> SymbolTable:
    count = raw.n_symbols
    text = ffi.buffer(raw.sym_strings, raw.sym_strings_len)[:].decode("utf-8", "surrogateescape")
    parts = text.split("\0")
    return SymbolTable(
        parts[0 : 2 * count : 2],
        [v or None for v in parts[1 : 2 * count : 2]],
        ffi.buffer(raw.sym_info, 4 * count)[:],
    )
