"""Patching ELF files: the edits a repair makes (PatchOps), what each file must look like
afterwards (Expectation), and the driver that runs a patcher over many files in parallel and
proves every result.

Patchers have regressed in most releases (patchelf: stale DT_NEEDED up to 0.14.3, segfaults in
0.17.0, misaligned PT_LOAD in 0.18.0), so no exit status is trusted: every patched file is
re-read by the C core and compared with what its operations must produce, whichever patcher
wrote it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .choices import PATCHERS, STRIP_LEVELS
from .elf import ElfFile, ElfSource, VersionNeed, read_elf
from .errors import ElfError, PatchError, UsageError
from .tool import run_tool

PATCHER_ENV = ("REPAIRWHEEL_PATCHER", "AUDITWHEEL_PATCHER")


@dataclass(frozen=True)
class Expectation:
    """What a file must look like after patching."""

    needed: tuple[str, ...]
    soname: str | None
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    version_needs: tuple[VersionNeed, ...]
    version_defs: tuple[str, ...]
    interpreter: str | None

    def mismatches(self, elf: ElfFile) -> tuple[str, ...]:
        """Every way ``elf`` differs from this expectation, and every PT_LOAD it cannot map."""
        checks: tuple[tuple[str, object, object, str], ...] = (
            ("DT_NEEDED", self.needed, elf.needed, ", "),
            ("DT_SONAME", self.soname, elf.soname, ""),
            ("DT_RPATH", self.rpath, elf.rpath, ":"),
            ("DT_RUNPATH", self.runpath, elf.runpath, ":"),
            ("version needs", self.version_needs, elf.version_need_entries, ", "),
            ("version definitions", self.version_defs, elf.version_defs, ", "),
            ("PT_INTERP", self.interpreter, elf.interpreter, ""),
        )
        found = [
            f"{label} is {_show(got, sep)}, expected {_show(want, sep)}"
            for label, want, got, sep in checks
            if want != got
        ]
        found.extend(
            f"PT_LOAD at offset {seg.offset:#x} is not congruent with vaddr {seg.vaddr:#x}"
            f" modulo align {seg.align:#x}"
            for seg in elf.misaligned_loads()
        )
        return tuple(found)


@dataclass(frozen=True)
class PatchOps:
    """The edits one file needs.

    ``rpath`` is written as DT_RPATH (``--force-rpath``, as auditwheel does): unlike DT_RUNPATH
    it also serves the dependencies of grafted libraries.  With ``runpath`` (Android, whose
    loader ignores DT_RPATH) it is written as DT_RUNPATH: a DT_RPATH entry becomes DT_RUNPATH,
    and a file with both keeps both, set to the same value (patchelf's default, which the
    built-in patcher follows so that both patchers give one result).
    """

    set_soname: str | None = None
    replace_needed: tuple[tuple[str, str], ...] = ()
    remove_needed: tuple[str, ...] = ()
    rpath: str | None = None
    remove_rpath: bool = False
    runpath: bool = False

    def __post_init__(self) -> None:
        olds = [old for old, _ in self.replace_needed]
        if len(set(olds)) != len(olds):
            raise ValueError(f"a library is replaced twice: {olds}")
        if set(olds) & set(self.remove_needed):
            raise ValueError(
                f"libraries both replaced and removed: {set(olds) & set(self.remove_needed)}"
            )
        if self.rpath is not None and self.remove_rpath:
            raise ValueError("rpath and remove_rpath exclude each other")
        if self.rpath == "":
            raise ValueError("an empty rpath: use remove_rpath")
        if self.runpath and self.rpath is None:
            raise ValueError("runpath says how rpath is written: it needs an rpath")

    @property
    def changes_nothing(self) -> bool:
        """True if the file stays as it is."""
        return not (
            self.set_soname is not None
            or self.replace_needed
            or self.remove_needed
            or self.rpath is not None
            or self.remove_rpath
        )

    def describe(self) -> str:
        """The edits in words, for messages."""
        parts = [f"set SONAME {self.set_soname}"] if self.set_soname is not None else []
        parts += [f"remove DT_NEEDED {name}" for name in self.remove_needed]
        parts += [f"replace DT_NEEDED {old} with {new}" for old, new in self.replace_needed]
        if self.remove_rpath:
            parts.append("remove the RPATH")
        if self.rpath is not None:
            parts.append(f"set {'DT_RUNPATH' if self.runpath else 'DT_RPATH'} {self.rpath}")
        return ", ".join(parts) or "nothing"

    def arguments(self, *files: str | os.PathLike[str]) -> list[str]:
        """patchelf's arguments in auditwheel's order; files made absolute, never options."""
        args: list[str] = []
        if self.set_soname is not None:
            args += ["--set-soname", self.set_soname]
        for name in self.remove_needed:
            args += ["--remove-needed", name]
        for old, new in self.replace_needed:
            args += ["--replace-needed", old, new]
        if self.remove_rpath:
            args.append("--remove-rpath")
        if self.rpath is not None:
            args += (
                ["--set-rpath", self.rpath]
                if self.runpath
                else ["--force-rpath", "--set-rpath", self.rpath]
            )
        args += [os.path.abspath(file) for file in files]
        return args

    def expected(self, elf: ElfFile) -> Expectation:
        """What ``elf`` must look like once patched.

        The library of version needs (vn_file) is renamed along with DT_NEEDED; removing a
        DT_NEEDED leaves version needs alone (both as patchelf does).
        """
        renames = dict(self.replace_needed)
        rpath: tuple[str, ...]
        runpath: tuple[str, ...]
        if self.rpath is not None and self.runpath:
            new = tuple(self.rpath.split(":"))
            rpath, runpath = (new if elf.rpaths and elf.runpaths else ()), new
        elif self.rpath is not None:
            rpath, runpath = tuple(self.rpath.split(":")), ()
        elif self.remove_rpath:
            rpath, runpath = (), ()
        else:
            rpath, runpath = elf.rpath, elf.runpath
        return Expectation(
            needed=tuple(renames.get(n, n) for n in elf.needed if n not in self.remove_needed),
            soname=self.set_soname if self.set_soname is not None else elf.soname,
            rpath=rpath,
            runpath=runpath,
            version_needs=tuple(
                VersionNeed(renames.get(v.library, v.library), v.name, v.flags)
                for v in elf.version_need_entries
            ),
            version_defs=elf.version_defs,
            interpreter=elf.interpreter,
        )


Written = tuple[tuple[int, int], ...]
"""(offset, length) of each byte range a patch wrote, growth included."""


@dataclass(frozen=True)
class PatchReport:
    """One patched file; the sizes let callers report the growth.

    ``size_before`` is the size the patcher was handed (after ``strip_first``); ``written``
    the byte ranges of the file as it was staged that may have changed, where the patcher
    says (None: anywhere, e.g. an external tool's or strip's rewrite).
    """

    path: Path | None  # None: a member patched in memory (patch_buffer)
    display_name: str
    size_before: int
    size_after: int
    written: Written | None = None


class Patcher(Protocol):
    """Something that applies one PatchOps to files in place."""

    @property
    def name(self) -> str: ...
    @property
    def batch_size(self) -> int: ...  # files handed to one patch() call

    @property
    def parallel(self) -> bool: ...  # batches run on a thread pool (else in the caller)

    def patch(
        self, paths: Sequence[Path], ops: PatchOps, names: Mapping[Path, str]
    ) -> Mapping[Path, Written] | None:
        """Apply ``ops`` to each of ``paths``; a failure is a PatchError naming the file
        (``names`` maps each path to its name in messages). Returns the byte ranges written
        in each file where the patcher knows them."""


@dataclass(frozen=True)
class NonePatcher:
    """``--patcher none``: for wheels that need no edits; any edit is a PatchError."""

    name: str = "none"
    batch_size: int = 1 << 30
    parallel: bool = False

    def patch(self, paths: Sequence[Path], ops: PatchOps, names: Mapping[Path, str]) -> None:
        raise PatchError(
            f"{names[paths[0]]}: needs patching ({ops.describe()}), but the patcher is 'none'"
            f"{f' ({len(paths) - 1} more files too)' if len(paths) > 1 else ''}"
        )


def get_patcher(name: str | None = None) -> Patcher:
    """The patcher called ``name``; by default $REPAIRWHEEL_PATCHER, $AUDITWHEEL_PATCHER or
    ``builtin``. Raises UsageError for an unknown name, PatchError if it is not installed."""
    if name is None:
        name = next((os.environ[v] for v in PATCHER_ENV if os.environ.get(v)), "builtin")
    if name == "builtin":
        from .elfpatch import BuiltinPatcher

        return BuiltinPatcher()
    if name == "patchelf":
        from .patchelf import find_patchelf

        return find_patchelf()
    if name == "lief-patchelf":
        from .patchelf import find_lief_patchelf

        return find_lief_patchelf()
    if name == "none":
        return NonePatcher()
    raise UsageError(f"unknown patcher {name!r} (choose from {', '.join(PATCHERS)})")


_STRIP_OPTIONS = {"all": "--strip-all", "debug": "--strip-debug", "unneeded": "--strip-unneeded"}


@dataclass(frozen=True)
class Strip:
    """How files are stripped before they are patched: ``level`` is one of STRIP_LEVELS
    (``all`` is ``strip -s``); a file in ``debug_files`` has its debug information saved
    there first, and gets a .gnu_debuglink to it."""

    level: str = "all"
    debug_files: Mapping[Path, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.level not in STRIP_LEVELS:
            raise ValueError(f"unknown strip level {self.level!r}")


def choose_strip_level(strip: bool, level: str | None, debug_symbols: object) -> str | None:
    """The strip level ``--strip``, ``--strip-level`` and ``--debug-symbols`` ask for (None:
    no stripping); UsageError when they disagree."""
    if level is not None and level not in STRIP_LEVELS:
        raise UsageError(f"--strip-level {level}: expected one of {', '.join(STRIP_LEVELS)}")
    if strip and level not in (None, "all"):
        raise UsageError(f"--strip means --strip-level all, not --strip-level {level}")
    chosen = level or ("all" if strip else None)
    if debug_symbols is not None and chosen is None:
        raise UsageError("--debug-symbols saves what stripping removes: add --strip-level")
    return chosen


def strip(
    path: str | os.PathLike[str],
    *,
    display_name: str | None = None,
    level: str = "all",
    debug_file: Path | None = None,
) -> None:
    """Strip a file in place (``level`` as in :class:`Strip`), its debug information saved
    to ``debug_file`` first; run it before patching, since strip after patchelf corrupts."""
    from .debuginfo import keep_debug, link_debug

    name = display_name or os.fspath(path)
    tool = shutil.which("strip")
    if tool is None:
        raise PatchError(f"cannot strip {name}: 'strip' not found (install binutils)")
    file = Path(os.path.abspath(path))
    options = [_STRIP_OPTIONS[level]]
    if debug_file is not None:
        keep_debug(file, debug_file, name)
        options.append("--remove-section=.gnu_debuglink")  # the old one names another file
    run_tool([tool, *options, str(file)], name, "strip")
    if debug_file is not None:
        link_debug(file, debug_file, name)


def apply_patches(
    patcher: Patcher,
    jobs: Sequence[tuple[Path, PatchOps]],
    *,
    workers: int | None = None,
    strip_first: bool | Strip = False,
    display_names: Mapping[Path, str] | None = None,
    known: Mapping[Path, ElfFile] | None = None,
    ranges_from: int = 0,
) -> list[PatchReport]:
    """Patch every file, in parallel, and verify each result.

    Files needing the same operations (a wheel of many extensions in one folder) go to the
    patcher together, up to its batch size at a time, the batches in parallel for a patcher
    that runs external processes. ``display_names`` maps a job's path to
    the name errors use (e.g. its path inside the wheel). Once a batch fails, the batches not
    yet started are cancelled and the running ones finish; then the error of the first failed
    batch, in job order, is raised (PatchError). Reports come back in job order. ``known``
    holds facts already read of some files as they are (the audit's), so they are not read
    again before patching. ``strip_first`` (True: ``Strip()``) strips every file first, in
    the same pool (strip is a process per file: the batches are then small enough to spread
    over the threads, whatever the patcher), and checks that stripping changed none of the
    facts patching checks; a job whose ops change nothing is then a file only stripped.
    ``PatchReport.written`` is kept only for files of ``ranges_from`` bytes or more once
    patched (a repair reuses the old blocks of big members only; 10000 small ones held 10 MB
    of ranges).
    """
    files = [os.stat(path) for path, _ in jobs]
    if len({(f.st_dev, f.st_ino) for f in files}) != len(files):
        raise ValueError("a file appears in more than one job")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if not jobs:
        return []
    names = display_names or {}
    facts = known or {}
    if isinstance(strip_first, Strip):
        stripping: Strip | None = strip_first
    else:
        stripping = Strip() if strip_first else None
    groups: dict[PatchOps, list[Path]] = {}
    for path, ops in jobs:
        groups.setdefault(ops, []).append(path)
    size = patcher.batch_size
    threads = (workers or os.cpu_count() or 1) if patcher.parallel or stripping else 1
    if stripping is not None:
        size = max(1, min(size, -(-len(jobs) // threads)))
    batches = [
        (ops, files[i : i + size])
        for ops, files in groups.items()
        for i in range(0, len(files), size)
    ]
    threads = min(threads, len(batches))
    if threads == 1:  # the work is Python's: threads would only contend for the GIL
        done = [
            _patch_batch(patcher, b, ops, names, stripping, facts, ranges_from)
            for ops, b in batches
        ]
        reports = {report.path: report for batch in done for report in batch}
        return [reports[Path(path)] for path, _ in jobs]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [
            pool.submit(_patch_batch, patcher, files, ops, names, stripping, facts, ranges_from)
            for ops, files in batches
        ]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:  # a failure, or Ctrl-C: start nothing more
            for future in futures:
                future.cancel()
    ran = [future for future in futures if not future.cancelled()]
    for future in ran:
        future.result()  # raises the first failure in job order
    reports = {report.path: report for future in ran for report in future.result()}
    return [reports[Path(path)] for path, _ in jobs]


def _patch_batch(
    patcher: Patcher,
    paths: Sequence[Path],
    ops: PatchOps,
    names: Mapping[Path, str],
    stripping: Strip | None,
    known: Mapping[Path, ElfFile],
    ranges_from: int,
) -> list[PatchReport]:
    shown = {path: names.get(path) or os.fspath(path) for path in paths}
    before = {}
    for path in paths:
        try:
            before[path] = known.get(path) or read_elf(path, name=shown[path])
        except ElfError as exc:
            raise PatchError(f"cannot patch {exc}") from exc
    if stripping is not None:
        for path in paths:
            debug_file = stripping.debug_files.get(path)
            strip(path, display_name=shown[path], level=stripping.level, debug_file=debug_file)
            # Stripping leaves the dynamic facts alone: the result is checked like a patch's.
            before[path] = _check(path, shown[path], PatchOps().expected(before[path]), "strip")
    sizes = {path: os.path.getsize(path) for path in paths}
    written: Mapping[Path, Written] | None = {path: () for path in paths}
    if not ops.changes_nothing:
        written = patcher.patch(paths, ops, shown)
        for path in paths:
            _check(path, shown[path], ops.expected(before[path]), patcher.name)
    if stripping is not None:
        written = None  # strip rewrote every file
    reports = []
    for path in paths:
        size = os.path.getsize(path)
        ranges = None if written is None or size < ranges_from else written.get(path)
        reports.append(PatchReport(path, shown[path], sizes[path], size, ranges))
    return reports


def patch_buffer(
    data: bytearray, ops: PatchOps, name: str, before: ElfFile | None = None
) -> tuple[bytearray, PatchReport]:
    """Patch an ELF image held in memory with the built-in patcher and verify the result as
    :func:`apply_patches` verifies a file; ``before`` is what is already known of ``data``
    (else it is read). PatchError names ``name``."""
    from .elfpatch import patch_bytes

    try:
        facts = before or read_elf(data, name=name)
    except ElfError as exc:
        raise PatchError(f"cannot patch {exc}") from exc
    out = data if ops.changes_nothing else patch_bytes(data, ops, name=name)
    _check(out, name, ops.expected(facts), "builtin")
    return out, PatchReport(None, name, len(data), len(out))


def _check(source: ElfSource, name: str, expectation: Expectation, patcher: str) -> ElfFile:
    try:
        after = read_elf(source, name=name)
    except ElfError as exc:
        raise PatchError(f"{patcher} wrote an unreadable file: {exc}") from exc
    problems = expectation.mismatches(after)
    if problems:
        raise PatchError(f"{name}: {patcher} produced a wrong file: {'; '.join(problems)}")
    return after


def _show(value: object, sep: str) -> str:
    if value is None or value == ():
        return "(none)"
    if isinstance(value, tuple):
        return sep.join(
            f"{v.library}:{v.name}{' (weak)' if v.weak else ''}"
            if isinstance(v, VersionNeed)
            else v
            for v in value
        )
    return str(value)
