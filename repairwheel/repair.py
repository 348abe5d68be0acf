"""Repair a wheel: audit, plan, stage and patch the few files that change, write the new wheel.

Only the ELF files that change and the grafted libraries touch the disk (:mod:`.stage`);
every other member is copied into the output as its compressed bytes. The output is written
under a temporary name and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .audit import analyze_wheel
from .clock import StageClock, Timings
from .debuginfo import publish
from .elfpatch import BuiltinPatcher
from .errors import NotPlatformWheelError, ResourceError
from .patch import (
    Patcher,
    PatchReport,
    Written,
    apply_patches,
    choose_strip_level,
    get_patcher,
    patch_buffer,
)
from .plan import Graft, RepairPlan, check_lib_sdir, choose_policies, make_plan
from .progress import Progress
from .provenance import Provider, find_providers
from .providers import ProvidedLibrary
from .sbom import SBOM_PATH, graft_sbom
from .scan import ElfScan, start_early
from .stage import InMemory, Staged, extract_member, mapped, scratch, stage
from .wheel import (
    Reuse,
    WheelArchive,
    WheelFilename,
    WheelWriter,
    find_runs,
    replace_platform_tags,
    runs_around,
    streams,
)
from .wheel.early import EarlyInflate, cancelled_on_error
from .wheel.inflate import Blocks
from .wheel.zipwrite import STREAM_MIN

log = logging.getLogger(__name__)


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
    provided: tuple[ProvidedLibrary, ...] = ()  # linked from other distributions (--provided-by)
    pure: bool = False
    patcher: str = "none"  # the patcher that rewrote the ELF files
    timings: Timings = ()  # (stage, wall-clock seconds), in order
    debug_files: tuple[str, ...] = ()  # --debug-symbols: the debug files saved

    def to_json(self) -> dict[str, object]:
        return {
            "input": self.input,
            "output": self.output,
            "pure": self.pure,
            "platform_tags": list(self.platform_tags),
            "patcher": self.patcher,
            "timings": dict(self.timings),
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
            "provided": {p.soname: p.to_json() for p in self.provided},
            "debug_files": list(self.debug_files),
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
    no_mangle: Sequence[str] = (),
    keep_rpath: Sequence[str] = (),
    patcher: str | None = None,
    provided_by: Sequence[str] = (),
    site_packages: Sequence[str] | None = None,
    requires_check: bool = True,
    include: Sequence[str] = (),
    strip_level: str | None = None,
    debug_symbols: str | os.PathLike[str] | None = None,
    early: EarlyInflate | None = None,
) -> RepairResult:
    """Repair the wheel at ``path`` into ``out_dir``; the input is never modified.

    ``no_mangle``: globs (soname or host file name) of libraries grafted under their own file
    name, without the hash; ``keep_rpath``: globs of RPATH entries outside the wheel that are
    kept (searched after the grafts) instead of dropped; ``patcher``: ``builtin`` (the
    default, or $REPAIRWHEEL_PATCHER / $AUDITWHEEL_PATCHER), ``patchelf``, ``lief-patchelf``
    or ``none``; ``provided_by``: names or globs of distributions installed in
    ``site_packages`` (default: this interpreter's environment) whose libraries are linked
    where they install instead of grafted, which the wheel must declare in Requires-Dist
    unless ``requires_check`` is false; ``include``: paths or names (globs allowed) on the
    library search path of libraries the wheel dlopen()s, grafted with their dependencies
    under their own names, the grafted-libraries folder put on every extension's RPATH;
    ``strip_level``: ``all`` (what ``strip_symbols`` means), ``debug`` or ``unneeded``, every
    ELF file written stripped so, its debug information first saved under ``debug_symbols``
    (``<build-id>.debug``, linked from the file's .gnu_debuglink); ``early``: the biggest
    member's inflate already started by :func:`.scan.start_early` (the CLI starts it before it
    imports this module), taken if it is that member of this file, else cancelled."""
    path, out = Path(path), Path(out_dir)
    with cancelled_on_error(early):
        check_lib_sdir(lib_sdir)
        level = choose_strip_level(strip_symbols, strip_level, debug_symbols)
        elf_patcher = get_patcher(patcher)
    clock = StageClock()
    if early is None:
        early = start_early(path, hashed=True)
    archive = WheelArchive(path, hash_reads=True, early=early)
    clock.lap("open")
    with archive, contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="repairwheel-")))
        scan = stack.enter_context(ElfScan(archive))
        others_checked = stack.enter_context(archive.checking_others(scan.pool))
        try:
            report = analyze_wheel(
                archive,
                ldpaths=ldpaths,
                exclude=exclude,
                disable_isa_ext_check=disable_isa_ext_check,
                provided_by=provided_by,
                site_packages=site_packages,
                include=include,
                started=scan,
            )
        except NotPlatformWheelError:
            if not (allow_pure_python_wheel and archive.filename.is_pure):
                raise
            _make_out_dir(out)
            return _copy_pure(path, out)
        clock.take(report.timings)
        for member, why in report.ignored:
            log.warning("warning: %s: %s; it is left as it is", member, why)
        policies = choose_policies(report, plat, only_plat=only_plat)
        plan = make_plan(
            report,
            policies,
            lib_sdir=lib_sdir,
            no_mangle=no_mangle,
            keep_rpath=keep_rpath,
            requires_check=requires_check,
        )
        clock.lap("plan")
        # The grafts' distro packages (a dpkg or rpm query, 0.1 s) are asked on a thread while
        # the repair goes on; the SBOM written last takes them.
        owners = None
        if plan.grafts:
            asking = stack.enter_context(ThreadPoolExecutor(max_workers=1))
            owners = asking.submit(find_providers, [g.source for g in plan.grafts])
        small = stack.enter_context(scratch(tmp, archive, report, plan, big=False))
        big = stack.enter_context(scratch(tmp, archive, report, plan, big=True))
        buffers = isinstance(elf_patcher, BuiltinPatcher)
        debug = debug_symbols is not None
        staged = stage(archive, report, plan, tmp, small, big, level, debug, in_memory=buffers)
        # The big members to patch are staged, patched and their old blocks found on a thread,
        # in archive order, while the rest is patched and the members before them are written.
        late: dict[str, Future[tuple[PatchReport, Reuse | None]]] = {}
        if staged.late:
            finishing = stack.enter_context(ThreadPoolExecutor(max_workers=1))
            late = {
                m.name: finishing.submit(_finish_late, archive, elf_patcher, staged, m.name)
                for m in archive.members
                if m.name in staged.late
            }
        clock.lap("stage")
        reports = apply_patches(
            elf_patcher,
            staged.jobs,
            strip_first=staged.strip or False,
            display_names=staged.names,
            known=staged.facts,
            ranges_from=STREAM_MIN,  # the members whose old blocks _write may reuse
        )
        patched = [r for r in reports if r.path not in staged.strip_only]
        for r in patched:
            log.debug("patched %s: %d -> %d bytes", r.display_name, r.size_before, r.size_after)
        clock.lap("patch")
        filename, wheel_text = _retag(archive, plan, update_tags)
        others_checked()  # a corrupt member fails here, before anything is written
        clock.lap("record check")
        debug_files: tuple[Path, ...] = ()
        if debug_symbols is not None and staged.strip is not None:
            debug_files = publish(staged.strip.debug_files.values(), Path(debug_symbols))
        _make_out_dir(out)
        target = out / str(filename)
        try:
            # no stripped member reuses old deflate blocks
            known = {} if level is not None else _known_changes(staged, patched)
            owned = None if owners is None else owners.result()
            changes = _Changed(staged.files, staged.in_memory, known, late)
            patched += _write(archive, target, plan, changes, wheel_text, compression_level, owned)
            rank = {p.member: i for i, p in enumerate(plan.patches)}  # the grafts' come last
            patched.sort(key=lambda r: rank.get(r.display_name, len(rank)))
        except OSError as exc:
            reason = f"cannot write: {exc.strerror or exc}"
            raise ResourceError(f"{target}: {reason}", wheel=path.name, reason=reason) from None
        clock.lap("write")
    return RepairResult(
        input=str(path),
        output=str(target),
        platform_tags=filename.platform_tags,
        grafted=plan.grafts,
        patched=tuple(patched),
        patcher=elf_patcher.name,
        duplicates=report.duplicates,
        unrecorded=report.unrecorded,
        ignored=report.ignored,
        provided=plan.provided,
        debug_files=tuple(map(str, debug_files)),
        timings=clock.timings,
    )


def _streams(path: Path) -> bool:
    return streams(os.path.getsize(path))


_Changes = Optional[tuple[Blocks, Written]]
"""What is known of how a patched member changed: its old stream's block ends and the byte
ranges its patch wrote; None when its blocks must be found by inflating it again."""


def _known_changes(staged: Staged, patched: Sequence[PatchReport]) -> dict[str, _Changes]:
    """Every patched member's :data:`_Changes` (the members whose old blocks may be reused)."""
    written = {r.path: r.written for r in patched}
    known: dict[str, _Changes] = {}
    for name, file in staged.files.items():
        if file in written:
            ends, ranges = staged.blocks.get(name), written[file]
            known[name] = None if ends is None or ranges is None else (ends, ranges)
    return known


def _finish_late(
    archive: WheelArchive, patcher: Patcher, staged: Staged, name: str
) -> tuple[PatchReport, Reuse | None]:
    """Stage and patch a big member left late (``Staged.late``), then find the runs of its
    old deflate stream the output can keep: the patch report and those runs."""
    file, ops = staged.late[name]
    blocks = extract_member(archive, name, file, blocks=True)
    (report,) = apply_patches(
        patcher,
        [(file, ops)],
        display_names=staged.names,
        known=staged.facts,
        ranges_from=STREAM_MIN,
    )
    log.debug("patched %s: %d -> %d bytes", name, report.size_before, report.size_after)
    written = report.written
    changes = None if blocks is None or written is None else (blocks, written)
    return report, _reuse(archive, name, file, changes)


def _reuse(archive: WheelArchive, name: str, patched: Path, changes: _Changes) -> Reuse | None:
    """The runs of member ``name``'s deflate stream that its patched copy can keep."""
    old = archive.deflate_stream(name)
    if old is None:
        return None
    if changes is not None:
        blocks, written = changes
        old_size = archive.member(name).file_size
        runs = runs_around(blocks, written, old_size, os.path.getsize(patched))
    else:
        with mapped(patched) as data:
            runs = find_runs(old, data)
    return Reuse(old, runs) if runs else None


def _make_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = f"cannot create the output folder: {exc.strerror}"
        raise ResourceError(f"{out}: {reason}", reason=reason) from None


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
            reason = f"cannot write: {exc.strerror}"
            raise ResourceError(f"{target}: {reason}", wheel=path.name, reason=reason) from None
        raise
    return result


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


@dataclass(frozen=True)
class _Changed:
    """What the output writes anew: the staged files (member -> file), the members patched
    in memory as they are written, the :data:`_Changes` of the patched files, and the big
    members staged late (their patch reports and reusable runs, once done)."""

    files: dict[str, Path]
    in_memory: Mapping[str, InMemory]
    reusable: dict[str, _Changes]
    late: Mapping[str, Future[tuple[PatchReport, Reuse | None]]]


def _write(
    archive: WheelArchive,
    target: Path,
    plan: RepairPlan,
    changes: _Changed,
    wheel_text: bytes | None,
    level: int,
    owners: Mapping[str, Provider | None] | None,
) -> list[PatchReport]:
    """Write the repaired wheel: staged files deflated, the members to patch in memory
    inflated, patched and checked on the way, the rest copied, the SBOM naming the grafts'
    ``owners`` (see :func:`graft_sbom`); returns the reports of the members patched in
    memory and of those staged late (waited for as the writer reaches them). A big reusable
    member keeps the old deflate blocks its patch left alone: they are found on a thread of
    their own (from what is known of its changes, else by inflating it again) while the
    members before it are copied."""
    changed, reusable = changes.files, changes.reusable
    big = [m.name for m in archive.members if m.name in reusable and _streams(changed[m.name])]
    moved = {p.member: p.moved_to for p in plan.patches if p.moved_to}
    launchers = {p.member: shim for p in plan.patches if (shim := p.launcher) is not None}
    wheel_path = f"{archive.dist_info}/WHEEL"
    total = sum(m.compress_size for m in archive.members)
    reports: list[PatchReport] = []
    with (
        ThreadPoolExecutor(1) as scans,
        Progress(f"writing {target.name}", total) as progress,
        WheelWriter(target, archive.dist_info) as writer,
    ):
        reusing = {
            name: scans.submit(_reuse, archive, name, changed[name], reusable[name]) for name in big
        }
        for member in archive.members:
            progress.advance(member.compress_size)
            name = member.name
            if name in changes.in_memory or name in changed:
                mode, when = member.mode or 0o755, member.date_time
                if name in changes.in_memory:
                    job = changes.in_memory[name]
                    fresh, report = patch_buffer(archive.read(name), job.ops, name, job.before)
                    log.debug("patched %s: %d -> %d bytes", name, report.size_before, len(fresh))
                    reports.append(report)
                    writer.add(moved.get(name, name), fresh, mode=mode, date_time=when, level=level)
                else:
                    if name in changes.late:
                        late_report, reuse = changes.late[name].result()
                        reports.append(late_report)
                    else:
                        reuse = reusing[name].result() if name in reusing else None
                    with mapped(changed[name]) as data:
                        writer.add(
                            moved.get(name, name),
                            data,
                            mode=mode,
                            date_time=when,
                            level=level,
                            reuse=reuse,
                        )
                if name in launchers:
                    writer.add(name, launchers[name], mode=mode, date_time=when, level=level)
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
            with mapped(changed[graft.member]) as data:
                writer.add(graft.member, data, mode=0o755, level=level)
        if plan.grafts or plan.provided:
            dist = archive.filename
            sbom = graft_sbom(
                dist.name, dist.version, target.name, plan.grafts, plan.provided, owners
            )
            writer.add(f"{archive.dist_info}/{SBOM_PATH}", sbom, level=level)
    return reports
