"""Repair a wheel: audit, plan, patch the few files that change, and write the new wheel.

Only the ELF files that change and the grafted libraries touch the disk (in a private temp
dir); every other member is copied into the output as its compressed bytes. The output is
written under a temporary name and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .audit import WheelReport, analyze_wheel
from .errors import NotPlatformWheelError, ResourceError
from .patch import PatchOps, PatchReport, apply_patches, find_patchelf, strip
from .plan import Graft, RepairPlan, check_lib_sdir, choose_policies, make_plan
from .progress import Progress
from .sbom import SBOM_PATH, GraftedLib, build_sbom, find_providers, sbom_bytes
from .wheelfile import WheelArchive, WheelFilename, WheelWriter, replace_platform_tags

log = logging.getLogger(__name__)

SMALL_FILE = 8 << 20  # staged files up to this size go to the small-file scratch folder
_SHM = "/dev/shm"

_SHIM = '''#!python
"""Launcher: repairwheel moved the real program to {dest} when it grafted its libraries."""
import os
import sys
import sysconfig

if __name__ == "__main__":
    os.execv(os.path.join(sysconfig.get_path("platlib"), {dest!r}), sys.argv)
'''


@dataclass(frozen=True)
class RepairResult:
    """What ``fix`` did to one wheel."""

    input: str
    output: str
    platform_tags: tuple[str, ...]
    grafted: tuple[Graft, ...] = ()
    patched: tuple[PatchReport, ...] = ()
    duplicates: tuple[tuple[str, ...], ...] = ()  # groups of wheel ELF files that look alike
    unrecorded: tuple[str, ...] = ()  # ELF members the input's RECORD did not list
    ignored: tuple[tuple[str, str], ...] = ()  # (member, why): ELF files no policy applies to
    pure: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "input": self.input,
            "output": self.output,
            "pure": self.pure,
            "platform_tags": list(self.platform_tags),
            "grafted": [
                {"soname": g.soname, "source": g.source, "member": g.member, "sha256": g.sha256}
                for g in self.grafted
            ],
            "patched": [
                {"file": p.display_name, "size_before": p.size_before, "size_after": p.size_after}
                for p in self.patched
            ],
            "duplicates": [list(group) for group in self.duplicates],
            "unrecorded": list(self.unrecorded),
            "ignored_files": [{"file": f, "reason": r} for f, r in self.ignored],
        }


def repair_wheel(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] = "wheelhouse",
    *,
    plat: str | None = None,
    only_plat: bool = False,
    exclude: Sequence[str] = (),
    strip_symbols: bool = False,
    lib_sdir: str = ".libs",
    update_tags: bool = True,
    compression_level: int = -1,
    ldpaths: str | None = None,
    disable_isa_ext_check: bool = False,
    allow_pure_python_wheel: bool = False,
) -> RepairResult:
    """Repair the wheel at ``path`` into ``out_dir``; the input is never modified."""
    path, out = Path(path), Path(out_dir)
    check_lib_sdir(lib_sdir)
    archive = WheelArchive(path, hash_reads=True)
    with archive, contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="repairwheel-")))
        others_checked = stack.enter_context(archive.checking_others())
        try:
            report = analyze_wheel(
                archive,
                ldpaths=ldpaths,
                exclude=exclude,
                disable_isa_ext_check=disable_isa_ext_check,
                spill_dir=str(tmp),
            )
        except NotPlatformWheelError:
            if not (allow_pure_python_wheel and archive.filename.is_pure):
                raise
            _make_out_dir(out)
            return _copy_pure(path, out)
        for member, why in report.ignored:
            log.warning("warning: %s: %s; it is left as it is", member, why)
        policies = choose_policies(report, plat, only_plat=only_plat)
        plan = make_plan(report, policies, lib_sdir=lib_sdir)
        small = stack.enter_context(_small_scratch(tmp, _small_bytes(archive, plan, report)))
        changed, patched = _patch(archive, report, plan, tmp, small, strip_symbols)
        filename, wheel_text = _retag(archive, plan, update_tags)
        others_checked()  # a corrupt member fails here, before anything is written
        _make_out_dir(out)
        target = out / str(filename)
        try:
            _write(archive, target, plan, changed, wheel_text, compression_level)
        except OSError as exc:
            raise ResourceError(f"{target}: cannot write: {exc.strerror or exc}") from None
    return RepairResult(
        input=str(path),
        output=str(target),
        platform_tags=filename.platform_tags,
        grafted=plan.grafts,
        patched=tuple(patched),
        duplicates=report.duplicates,
        unrecorded=report.unrecorded,
        ignored=report.ignored,
    )


def _make_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResourceError(f"{out}: cannot create the output folder: {exc.strerror}") from None


def _copy_pure(path: Path, out: Path) -> RepairResult:
    target = out / path.name
    result = RepairResult(
        str(path), str(target), WheelFilename.parse(path.name).platform_tags, pure=True
    )
    if target.exists() and target.samefile(path):
        return result
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    except BaseException as exc:  # Ctrl-C included: never leave the temp file behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ResourceError(f"{target}: cannot write: {exc.strerror}") from None
        raise
    return result


def _patch(
    archive: WheelArchive,
    report: WheelReport,
    plan: RepairPlan,
    tmp: Path,
    small: Path,
    strip_symbols: bool,
) -> tuple[dict[str, Path], list[PatchReport]]:
    """Stage, strip and patch every file that changes; returns member name -> staged file.
    Files up to SMALL_FILE are staged in ``small``, bigger ones in ``tmp``."""
    staged: dict[str, Path] = {}
    jobs: list[tuple[Path, PatchOps]] = []
    names: dict[Path, str] = {}
    spilled = {m.path: m.spilled for m in report.members if m.spilled}
    to_strip = [m.path for m in report.members] if strip_symbols else []

    def stage_member(name: str) -> Path:
        file = (small if archive.member(name).file_size <= SMALL_FILE else tmp) / f"m{len(staged)}"
        try:
            if name in spilled:  # already inflated by the audit (a move across filesystems
                shutil.move(spilled[name], file)  # when ``small`` is in /dev/shm)
            else:
                archive.extract_to(name, file)
        except OSError as exc:
            raise ResourceError(
                f"{archive.path.name}: {name}: cannot stage the member in {file.parent}: "
                f"{exc.strerror or exc} (set TMPDIR to a folder with room)"
            ) from None
        staged[name] = file
        names[file] = name
        return file

    for patch in plan.patches:
        jobs.append((stage_member(patch.member), patch.ops))
    for graft in plan.grafts:
        try:
            size = os.path.getsize(graft.source)
            file = (small if size <= SMALL_FILE else tmp) / f"g{len(staged)}"
            shutil.copyfile(graft.source, file)
        except OSError as exc:
            raise ResourceError(
                f"{graft.source}: cannot copy the library to graft: {exc.strerror or exc}"
            ) from None
        file.chmod(file.stat().st_mode | stat.S_IWUSR)
        staged[graft.member] = file
        names[file] = f"{graft.member} (from {graft.source})"
        jobs.append((file, graft.ops))
    for name in to_strip:
        if name not in staged:
            strip(stage_member(name), display_name=name)
    reports = apply_patches(find_patchelf(), jobs, strip_first=strip_symbols, display_names=names)
    for r in reports:
        log.debug("patched %s: %d -> %d bytes", r.display_name, r.size_before, r.size_after)
    return staged, reports


def _small_bytes(archive: WheelArchive, plan: RepairPlan, report: WheelReport) -> int:
    """An upper bound of what a repair stages in small files (strip may stage every ELF)."""
    sizes = [archive.member(m.path).file_size for m in report.members]
    sizes += [os.path.getsize(g.source) for g in plan.grafts]
    return sum(size for size in sizes if size <= SMALL_FILE)


@contextlib.contextmanager
def _small_scratch(tmp: Path, needed: int) -> Iterator[Path]:
    """Where to stage small files: a folder in /dev/shm when it is there with room to spare,
    else ``tmp``. Creating a file on a disk filesystem can cost half a millisecond, and a
    wheel of 3000 extensions stages 3000 files. Big files always go to ``tmp``: in a tmpfs
    they would hold memory. TMPDIR, when set, is respected for everything."""
    if "TMPDIR" in os.environ or needed == 0 or not os.access(_SHM, os.W_OK):
        yield tmp
        return
    stats = os.statvfs(_SHM)
    if stats.f_bavail * stats.f_frsize < 4 * needed + (64 << 20):
        yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="repairwheel-", dir=_SHM) as folder:
        yield Path(folder)


def _retag(
    archive: WheelArchive, plan: RepairPlan, update_tags: bool
) -> tuple[WheelFilename, bytes | None]:
    """The output file name and, when it changes, the new WHEEL text."""
    filename = archive.filename
    if not update_tags:
        return filename, None
    tags = [t for t in filename.platform_tags if t not in plan.removed_tags and t != "any"]
    tags += plan.platform_tags
    wheel_path = f"{archive.dist_info}/WHEEL"
    old = archive.read(wheel_path)
    new_name, text = replace_platform_tags(filename, old, tags)  # check_metadata: it is UTF-8
    return new_name, (text if text != old else None)


def _write(
    archive: WheelArchive,
    target: Path,
    plan: RepairPlan,
    changed: dict[str, Path],
    wheel_text: bytes | None,
    level: int,
) -> None:
    moved = {p.member: p.moved_to for p in plan.patches if p.moved_to}
    wheel_path = f"{archive.dist_info}/WHEEL"
    total = sum(m.compress_size for m in archive.members)
    with (
        Progress(f"writing {target.name}", total) as progress,
        WheelWriter(target, archive.dist_info) as writer,
    ):
        for member in archive.members:
            progress.advance(member.compress_size)
            name = member.name
            if name in changed:
                mode, when = member.mode or 0o755, member.date_time
                with _mapped(changed[name]) as data:
                    writer.add(moved.get(name, name), data, mode=mode, date_time=when, level=level)
                if name in moved:
                    shim = _SHIM.format(dest=moved[name]).encode()
                    writer.add(name, shim, mode=mode, date_time=when, level=level)
            elif name == wheel_path and wheel_text is not None:
                writer.add(
                    name,
                    wheel_text,
                    mode=member.mode or 0o644,
                    date_time=member.date_time,
                    level=level,
                )
            else:
                writer.copy(archive, name)
        for graft in plan.grafts:
            with _mapped(changed[graft.member]) as data:
                writer.add(graft.member, data, mode=0o755, level=level)
        if plan.grafts:
            sbom = _sbom(archive, target.name, plan)
            writer.add(f"{archive.dist_info}/{SBOM_PATH}", sbom, level=level)


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap | bytes]:
    """A staged file's bytes as a read-only map: a 400 MB member is compressed from the page
    cache instead of being copied into memory."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped


def _sbom(archive: WheelArchive, output_name: str, plan: RepairPlan) -> bytes:
    """A CycloneDX record of what was grafted and which distro package it came from."""
    providers = find_providers([g.source for g in plan.grafts])
    grafted = [
        GraftedLib(g.soname, g.source, g.sha256, g.new_soname, providers.get(g.source))
        for g in plan.grafts
    ]
    name = archive.filename
    return sbom_bytes(build_sbom(name.name, name.version, output_name, grafted))
