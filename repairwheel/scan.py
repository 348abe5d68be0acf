"""Read the ELF members of a wheel into the facts the audit needs, without extracting it.

Members are found by their magic bytes from the zip's central directory, inflated on
threads (zlib and the C core release the GIL) and reduced to an :class:`ElfMember`, so no
member's bytes outlive its parsing.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import posixpath
import re
import tempfile
from collections.abc import Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from .elf import (
    ElfFile,
    Missing,
    Ranges,
    SymbolTable,
    SymbolType,
    read_elf_and_symbols,
    read_kept_elf_and_symbols,
)
from .errors import RepairwheelError, ResourceError
from .progress import Progress
from .wheel.early import EarlyInflate
from .wheel.zipread import StrPath

if TYPE_CHECKING:
    from .wheel import WheelArchive

MEMORY_FILE_SIZE = 4 << 20  # members above this keep only the bytes their parse reads
THREAD_MIN = 1 << 20  # a wheel with a member this big is read on threads (inflate frees the GIL)
KEPT_HEAD = 64 << 10  # kept from a member's start: the ELF header and program headers
KEPT_PASSES = 8  # parses of kept bytes before a member is inflated whole instead
KEPT_REACH = 4  # missing bytes past 1/KEPT_REACH of a member: inflating it whole costs less
log = logging.getLogger(__name__)
_PYFPE = frozenset({"PyFPE_jbuf", "PyFPE_dummy", "PyFPE_counter"})
_WEAK = 2
# Version needs on the dynamic loader itself are never a portability constraint.
_LOADER_NAMES = frozenset({"ld64.so.1", "ld64.so.2"})
# The interpreter provides libpython: a wheel never grafts it, a repair drops the DT_NEEDED.
LIBPYTHON = re.compile(r"^libpython\d+\.\d+m?\.so(\.\d)*$")


def is_loader(soname: str) -> bool:
    """True for the dynamic loader's soname, which no policy lists and no repair grafts."""
    return "ld-linux" in soname or soname in _LOADER_NAMES


@dataclass(frozen=True)
class ElfMember:
    """One ELF file inside a wheel, reduced to what the audit and the repair use."""

    path: str  # the member's name in the wheel
    elf: ElfFile
    python_abi: int | None  # 3 for PyInit_<mod>, 2 for init<mod> / _cffi_pypyinit_<mod>, else None
    undefined: frozenset[str]  # names of undefined, non-weak dynamic symbols
    symbols_by_version: dict[str, tuple[str, ...]]  # version -> undefined symbols bound to it
    uses_pyfpe: bool
    uses_ucs2: bool
    # undefined Py*/_Py* names (weak ones too): what the file takes from the interpreter
    python_imports: frozenset[str] = frozenset()

    @property
    def is_extension(self) -> bool:
        return self.python_abi is not None

    @cached_property
    def versioned_symbols(self) -> Mapping[str, frozenset[str]]:
        """Library -> versions needed from it, the loader excluded (auditwheel's view)."""
        result: dict[str, set[str]] = {}
        for need in self.elf.version_need_entries:
            if not is_loader(need.library):
                result.setdefault(need.library, set()).add(need.name)
        return {library: frozenset(versions) for library, versions in result.items()}


def facts_from_symbols(path: str, elf: ElfFile, symbols: SymbolTable) -> ElfMember:
    """Reduce a file's symbols to the few facts the policies look at (column-wise: fast);
    the table may be the imports-only one (``read_elf_and_symbols(imports_only=True)``)."""
    module = posixpath.basename(path).split(".", 1)[0]
    init_names = {f"PyInit_{module}": 3, f"init{module}": 2, f"_cffi_pypyinit_{module}": 2}
    info = symbols.info
    python_abi = None
    undefined: set[str] = set()
    python_imports: set[str] = set()
    by_version: dict[str, set[str]] = {}
    pyfpe = ucs2_candidates = False
    for i, (name, version) in enumerate(zip(symbols.names, symbols.versions)):
        binding, kind, defined = info[4 * i], info[4 * i + 1], info[4 * i + 2]
        if defined:
            if python_abi is None and kind == SymbolType.FUNC and name in init_names:
                python_abi = init_names[name]
            continue
        if not name:
            continue
        if version is not None:
            by_version.setdefault(version, set()).add(name)
        if binding != _WEAK:  # a weak reference is optional: never a blacklist hit
            undefined.add(name)
        if name.startswith(("Py", "_Py")):
            python_imports.add(name)
        if kind in (SymbolType.FUNC, SymbolType.NOTYPE) and name in _PYFPE:
            pyfpe = True
        if kind == SymbolType.FUNC and "PyUnicodeUCS2_" in name:
            ucs2_candidates = True
    return ElfMember(
        path=path,
        elf=elf,
        python_abi=python_abi,
        undefined=frozenset(undefined),
        symbols_by_version={v: tuple(sorted(n)) for v, n in by_version.items()},
        uses_pyfpe=pyfpe and python_abi is not None,
        uses_ucs2=ucs2_candidates and python_abi == 2,
        python_imports=frozenset(python_imports),
    )


def _read_member(archive: WheelArchive, name: str) -> ElfMember:
    try:
        return _parse_member(archive, name)
    except RepairwheelError as exc:
        exc.wheel = exc.wheel or archive.path.name
        exc.member = exc.member or name
        raise


def _parse_member(archive: WheelArchive, name: str) -> ElfMember:
    label = f"{archive.path.name}: {name}"
    if archive.member(name).file_size <= MEMORY_FILE_SIZE:
        elf, symbols = read_elf_and_symbols(archive.read(name), name=label, imports_only=True)
        return facts_from_symbols(name, elf, symbols)
    return _parse_unkept(archive, name, label)


def _parse_unkept(archive: WheelArchive, name: str, label: str) -> ElfMember:
    """A big member's facts from the bytes its parse reads (:func:`_parse_kept`); where
    those cannot settle it, from the member inflated into an anonymous memory file (a temp
    file if TMPDIR is set), mapped and gone once parsed. Either way its bytes do not count
    towards memory: a mapped file's parse touches only the pages it reads."""
    facts = _parse_kept(archive, name, label)
    if facts is not None:
        return facts
    fd = None
    if "TMPDIR" not in os.environ:  # else the user has chosen where spills go
        with contextlib.suppress(OSError, AttributeError):  # no memfd here: a temp file
            fd = os.memfd_create("repairwheel-spill", os.MFD_CLOEXEC)
    if fd is not None:
        try:
            return _parse_spill(archive, name, label, fd, "memory")
        finally:
            os.close(fd)
    try:
        spill = tempfile.TemporaryFile(prefix="repairwheel-spill-")
    except OSError as exc:
        raise _spill_error(label, None, exc) from None
    with spill:
        return _parse_spill(archive, name, label, spill.fileno(), None)


def _parse_kept(archive: WheelArchive, name: str, label: str) -> ElfMember | None:
    """The member parsed from only the bytes its parse reads, copied into an anonymous
    mapping as it inflates once (nothing is written): the inflate keeps its first KEPT_HEAD
    bytes and, as it goes, what the bytes kept so far say a parse reads (header tables,
    dynamic and note segments, then the tables past the dynamic one). Bytes a parse still
    finds missing before 1/KEPT_REACH of the member (where linkers put the dynamic tables)
    are made by inflating its start again, to a little past them. None where that does not
    settle it: the caller then inflates the member whole."""
    size = archive.member(name).file_size
    try:
        buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    except OSError:
        return None
    with buf:
        reach = min(KEPT_HEAD, size)  # the member's bytes before this are all kept
        first = archive.keep_ranges(name, buf, [(0, reach)], elf=True)
        if first is None:
            return None
        kept = _merged(first)
        for _ in range(KEPT_PASSES):
            found = read_kept_elf_and_symbols(buf, kept, name=label, imports_only=True)
            if not isinstance(found, Missing):
                return facts_from_symbols(name, *found)
            end = max(found.end, reach + max(1 << 20, reach // 8))
            if end > size // KEPT_REACH:
                break
            archive.keep_ranges(name, buf, [(reach, end)], prefix=end)
            kept, reach = _merged([*kept, (reach, end)]), end
        log.debug("%s: the kept bytes did not settle its parse; inflating it whole", label)
        return None


def _merged(ranges: Ranges) -> list[tuple[int, int]]:
    """``ranges`` sorted, with those that overlap or touch joined, empty ones dropped."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _parse_spill(
    archive: WheelArchive, name: str, label: str, fd: int, where: str | None
) -> ElfMember:
    try:
        archive.extract_fd(name, fd)
    except OSError as exc:
        raise _spill_error(label, where, exc) from None
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
        elf, symbols = read_elf_and_symbols(mapped, name=label, imports_only=True)
        return facts_from_symbols(name, elf, symbols)


def _spill_error(label: str, where: str | None, exc: OSError) -> ResourceError:
    place = where or tempfile.gettempdir()
    reason = f"cannot inflate the member into {place}: {exc.strerror or exc}"
    return ResourceError(f"{label}: {reason} (set TMPDIR to a folder with room)", reason=reason)


def start_early(path: StrPath, *, hashed: bool) -> EarlyInflate | None:
    """The wheel's biggest member inflated from now on, as the first read of a big member
    here does (:func:`_parse_kept`; SHA-256 on the way if ``hashed``), for the
    :class:`WheelArchive` opened next to take (see :mod:`.wheel.early`)."""
    return EarlyInflate.start(path, head=KEPT_HEAD, wake=True, sha256=hashed)


def scan_elf_members(archive: WheelArchive, *, workers: int | None = None) -> list[ElfMember]:
    """Every ELF member of the wheel, in archive order (see :class:`ElfScan`)."""
    with ElfScan(archive, workers=workers) as scan:
        return scan.members()


class ElfScan:
    """The reads of a wheel's ELF members, begun when it is made: the biggest one starts at
    once on a thread, so that its inflate (torch's 434 MB library: most of an audit) runs
    while the caller finishes starting up (imports, metadata checks); :meth:`members` reads
    the rest and returns them all.

    Members are read on ``workers`` threads, largest first, so the one big library of a wheel
    like torch starts at once instead of after everything before it. Each task reads its own
    member, so at most ``workers`` members are in memory at a time. A wheel whose members are
    all smaller than THREAD_MIN is read in the calling thread by default: for such members the
    work is Python's, and threads would only contend for the GIL (3000 small extensions are
    read in 0.49 s instead of 0.75). Members that are not well-formed ELF files raise ElfError
    naming the wheel and the member. Use it as a context manager: leaving it cancels the reads
    not started and waits for the others.
    """

    def __init__(self, archive: WheelArchive, *, workers: int | None = None) -> None:
        self.archive = archive
        self._files = sorted(
            (m for m in archive.members if not m.is_dir), key=lambda m: m.file_size, reverse=True
        )
        largest = next((m for m in self._files if archive.is_elf(m.name)), None)
        if workers is None:
            small = largest is None or largest.file_size < THREAD_MIN
            workers = 1 if small else os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        self._futures: dict[str, Future[ElfMember]] = {}
        if self._pool is not None and largest is not None:
            read = self._pool.submit(_read_member, archive, largest.name)
            self._futures[largest.name] = read

    @property
    def pool(self) -> Executor | None:
        """The threads the reads run on (None: they run in the calling thread), for other work
        of the audit to share."""
        return self._pool

    def __enter__(self) -> ElfScan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel the reads not started and wait for the running ones."""
        for future in self._futures.values():
            future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def members(self) -> list[ElfMember]:
        """Every ELF member, in archive order, once all are read."""
        archive = self.archive
        names = archive.elf_members()
        sizes = {name: archive.member(name).file_size for name in names}
        with Progress(f"reading {archive.path.name}", sum(sizes.values())) as progress:
            if self._pool is None:
                found = []
                for name in names:
                    found.append(_read_member(archive, name))
                    progress.advance(sizes[name])
                return found
            # The heads of all other members are looked at by the C core in batches (in
            # elf_members) and the ELF ones follow the biggest, largest first.
            futures = self._futures
            for m in self._files:
                if m.name not in futures and archive.is_elf(m.name):
                    futures[m.name] = self._pool.submit(_read_member, archive, m.name)
            try:
                for future in as_completed(futures.values()):
                    progress.advance(sizes[future.result().path])
            finally:
                for future in futures.values():
                    future.cancel()
            return [futures[name].result() for name in names]
