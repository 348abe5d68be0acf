"""Staging: the files a repair changes, put in files for strip and patchelf, then read back.

With the built-in patcher and no stripping, a member the writer compresses whole (under
STREAM_MIN) is not staged at all: it is inflated, patched and checked in memory as it is
written (:class:`InMemory`), so 3000 small extensions cost no file each.

Only the ELF members that change and the libraries to graft are staged, in private scratch
folders in /dev/shm when it has room, else in the repair's temp folder: creating a file on a
disk filesystem can cost half a millisecond (a wheel of 3000 extensions stages 3000 files),
and writing a 400 MB member to it costs more than inflating it, and slows the writing of the
output after it. A member over LATE_SIZE to patch (torch's 434 MB library) is left to be
staged and patched "late", on a thread while the members before it are written
(``Staged.late``). TMPDIR, when set, is respected for everything.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .audit import WheelReport
from .debuginfo import plan_debug_files
from .elf import ElfFile
from .errors import ResourceError
from .patch import PatchOps, Strip
from .plan import RepairPlan
from .wheel import WheelArchive
from .wheel.inflate import Blocks
from .wheel.zipwrite import STREAM_MIN

SMALL_FILE = 8 << 20  # staged files up to this size go to the small-file scratch folder
LATE_SIZE = 32 << 20  # members over this to patch are staged late, while the output is written
_SHM = "/dev/shm"


@dataclass(frozen=True)
class InMemory:
    """A member patched as it is written: its edits and the audit's read of it, if any."""

    ops: PatchOps
    before: ElfFile | None


@dataclass
class Staged:
    """The staged files of one repair."""

    files: dict[str, Path] = field(default_factory=dict)  # output member name -> staged file
    jobs: list[tuple[Path, PatchOps]] = field(default_factory=list)  # what patchelf does
    names: dict[Path, str] = field(default_factory=dict)  # staged file -> name in messages
    facts: dict[Path, ElfFile] = field(default_factory=dict)  # the audit's read of a staged file
    strip: Strip | None = None  # how every staged file is stripped before it is patched
    strip_only: set[Path] = field(default_factory=set)  # staged only to be stripped
    in_memory: dict[str, InMemory] = field(default_factory=dict)  # member -> its patch
    late: dict[str, tuple[Path, PatchOps]] = field(default_factory=dict)  # member -> its job
    blocks: dict[str, Blocks] = field(default_factory=dict)  # member -> its old block ends


@contextlib.contextmanager
def scratch(
    tmp: Path, archive: WheelArchive, report: WheelReport, plan: RepairPlan, *, big: bool
) -> Iterator[Path]:
    """The folder for staged files up to SMALL_FILE (bigger ones with ``big``): one in
    /dev/shm when it has room for every such file the repair may stage (strip may stage
    every ELF member), else ``tmp``."""
    sizes = [archive.member(m.path).file_size for m in report.members]
    sizes += [os.path.getsize(g.source) for g in plan.grafts]
    needed = sum(size for size in sizes if (size > SMALL_FILE) == big)
    with _shm_folder(needed) as folder:
        yield folder or tmp


@contextlib.contextmanager
def _shm_folder(needed: int) -> Iterator[Path | None]:
    """A private folder in /dev/shm, removed after use, when TMPDIR is unset and both the
    tmpfs and the memory behind it have room for four times ``needed`` and 64 MiB to spare;
    else None."""
    room = 4 * needed + (64 << 20)
    if "TMPDIR" in os.environ or needed == 0 or not os.access(_SHM, os.W_OK):
        yield None
        return
    stats = os.statvfs(_SHM)
    if stats.f_bavail * stats.f_frsize < room or _available_memory() < room:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="repairwheel-", dir=_SHM) as folder:
        yield Path(folder)


def _available_memory() -> int:
    """MemAvailable from /proc/meminfo in bytes, 0 when it cannot be read."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def stage(
    archive: WheelArchive,
    report: WheelReport,
    plan: RepairPlan,
    tmp: Path,
    small: Path,
    big: Path,
    strip_level: str | None = None,
    debug_symbols: bool = False,
    in_memory: bool = False,
) -> Staged:
    """Stage every file that changes: the members to patch, the grafts and, with a
    ``strip_level``, every other ELF member too (as a job that only strips); the jobs are the
    caller's to run. With ``debug_symbols`` each file's debug information is to be saved
    under ``tmp/debug`` (:mod:`.debuginfo`). Files up to SMALL_FILE are staged in ``small``,
    bigger ones in ``big``. Without ``strip_level``, a staged member from STREAM_MIN on has
    its old deflate block ends in ``Staged.blocks`` (for the writer to reuse), members over
    LATE_SIZE are left for the caller to stage (:func:`extract_member`) and patch later
    (``Staged.late``), and with ``in_memory`` (the built-in patcher) members under STREAM_MIN
    are left to be patched in memory as they are written (``Staged.in_memory``)."""
    staged = Staged()

    def stage_member(name: str, late: bool = False) -> Path:
        size = archive.member(name).file_size
        file = (small if size <= SMALL_FILE else big) / f"m{len(staged.files)}"
        if not late:
            reusable = strip_level is None and size >= STREAM_MIN
            blocks = extract_member(archive, name, file, blocks=reusable)
            if blocks is not None:
                staged.blocks[name] = blocks
        staged.files[name] = file
        staged.names[file] = name
        return file

    audited = {m.path: m.elf for m in report.members}
    for patch in plan.patches:
        size = archive.member(patch.member).file_size
        if in_memory and strip_level is None and size < STREAM_MIN:
            staged.in_memory[patch.member] = InMemory(patch.ops, audited.get(patch.member))
            continue
        late = strip_level is None and size > LATE_SIZE
        file = stage_member(patch.member, late)
        if late:
            staged.late[patch.member] = (file, patch.ops)
        else:
            staged.jobs.append((file, patch.ops))
        if patch.member in audited:
            staged.facts[file] = audited[patch.member]
    for graft in plan.grafts:
        try:
            size = os.path.getsize(graft.source)
            file = (small if size <= SMALL_FILE else big) / f"g{len(staged.files)}"
            shutil.copyfile(graft.source, file)
        except OSError as exc:
            reason = f"cannot copy the library to graft: {exc.strerror or exc}"
            raise ResourceError(
                f"{graft.source}: {reason}", member=graft.source, reason=reason
            ) from None
        file.chmod(file.stat().st_mode | stat.S_IWUSR)
        staged.files[graft.member] = file
        staged.names[file] = f"{graft.member} (from {graft.source})"
        staged.jobs.append((file, graft.ops))
    if strip_level is None:
        return staged
    for member in report.members:
        if member.path not in staged.files:
            file = stage_member(member.path)
            staged.jobs.append((file, PatchOps()))
            staged.facts[file] = member.elf
            staged.strip_only.add(file)
    debug_files = {}
    if debug_symbols:
        members = {file: name for name, file in staged.files.items()}
        debug_files = plan_debug_files(members, tmp / "debug")
    staged.strip = Strip(strip_level, debug_files)
    return staged


def extract_member(archive: WheelArchive, name: str, file: Path, blocks: bool) -> Blocks | None:
    """Inflate member ``name`` into ``file`` to stage it (with ``blocks``, returning its
    deflate block ends where found); a file that cannot be written is a ResourceError."""
    try:
        return archive.extract_to(name, file, blocks=blocks)
    except OSError as exc:
        reason = f"cannot stage the member in {file.parent}: {exc.strerror or exc}"
        raise ResourceError(
            f"{archive.path.name}: {name}: {reason} (set TMPDIR to a folder with room)",
            wheel=archive.path.name,
            member=name,
            reason=reason,
        ) from None


@contextlib.contextmanager
def mapped(path: Path) -> Iterator[mmap.mmap | bytes]:
    """A staged file's bytes as a read-only map: a 400 MB member is compressed from the page
    cache instead of being copied into memory."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped_file:
            yield mapped_file
