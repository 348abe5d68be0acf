"""The repair plan: the target tag, what to graft under which name, and the patchelf operations
for every file — computed from an audit report before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from .audit import LIBPYTHON, WheelReport
from .elf import ElfFile, read_elf
from .errors import DependencyError, PolicyError, ResourceError, UsageError
from .patch import PatchOps
from .policy import Policy, get_policy
from .verdict import Blocker, describe_group, external_closure, group_blockers
from .wheelfile import WheelFilename

_SCRIPTS_SUFFIX = ".scripts"


@dataclass(frozen=True)
class Graft:
    """One host library copied into the wheel."""

    soname: str  # the first DT_NEEDED name (in sorted order) it replaces
    source: str  # host path it is copied from
    sha256: str  # of the source, before patching
    member: str  # its path inside the repaired wheel
    ops: PatchOps
    replaces: tuple[str, ...] = ()  # every DT_NEEDED name that reaches this file, sorted

    @property
    def new_soname(self) -> str:
        return posixpath.basename(self.member)


@dataclass(frozen=True)
class MemberPatch:
    """Changes to one ELF file already in the wheel."""

    member: str  # path in the input wheel
    ops: PatchOps
    moved_to: str | None = None  # scripts are moved to <name>.scripts/ and replaced by a shim


@dataclass(frozen=True)
class RepairPlan:
    """What a repair does: the new tags, the libraries to graft, the files to patch."""

    platform_tags: tuple[str, ...]  # the repaired wheel's platform tags (unsorted)
    grafts: tuple[Graft, ...]
    patches: tuple[MemberPatch, ...]
    removed_tags: tuple[str, ...]


def choose_policies(
    report: WheelReport, plat: str | None, *, only_plat: bool
) -> tuple[Policy, ...]:
    """The policies whose tags the repaired wheel gets, the one grafting decides on first.

    ``plat`` None (or "auto") takes the best reachable; an explicit one must be reachable, and
    unless ``only_plat`` a better reachable policy is tagged too (auditwheel's behaviour).
    """
    verdict = report.verdict
    arch = report.arch or ""
    best = verdict.repair_tag
    if plat in (None, "auto"):
        if best.priority == 0:
            newest = min(verdict.checks, key=lambda c: c.policy.priority)
            _refuse(f"cannot repair {report.wheel} to any manylinux/musllinux tag", newest.blockers)
        return (best,)
    requested = get_policy(plat)  # either family: a tag of the other libc is named as such
    if requested.libc != report.libc:
        raise PolicyError(
            f"cannot repair {report.wheel} to {plat}: {plat} is a {requested.libc} tag and "
            f"the wheel is built for {report.libc}"
        )
    requested = get_policy(plat, arch, libc=report.libc)
    if requested.priority == 0:
        raise PolicyError(f"{plat} is not a manylinux/musllinux tag to repair to")
    check = next((c for c in verdict.checks if c.policy == requested), None)
    if check is None:
        raise PolicyError(f"cannot repair {report.wheel} to {plat}: no such policy for {arch}")
    if check.blockers:
        _refuse(f"cannot repair {report.wheel} to {requested.tag(arch)}", check.blockers)
    if not only_plat and best.priority > requested.priority:
        return (best, requested)
    return (requested,)


def _refuse(what: str, blockers: Sequence[Blocker]) -> NoReturn:
    """Raise the error for ``blockers``: DependencyError when only missing libraries stand in
    the way (the user can point at them), PolicyError otherwise."""
    groups = group_blockers(blockers)
    shown = [describe_group(first, files) for first, files in groups[:3]]
    more = f" (and {len(groups) - 3} more)" if len(groups) > 3 else ""
    text = f"{what}: " + "; ".join(shown) + more
    if all(b.kind == "missing-library" for b in blockers):
        raise DependencyError(
            text + " (give its directory with --ldpaths or REPAIRWHEEL_LD_LIBRARY_PATH, "
            "or --exclude it)"
        )
    raise PolicyError(text)


def check_lib_sdir(lib_sdir: str) -> None:
    """Refuse a ``--lib-sdir`` that does not make one folder name beside the package."""
    if not lib_sdir or any(c in lib_sdir for c in "/\\\0") or lib_sdir in (".", ".."):
        raise UsageError(
            f"--lib-sdir {lib_sdir!r}: expected a suffix for one folder name, such as .libs "
            "(no '/', not empty)"
        )


def make_plan(
    report: WheelReport,
    policies: Sequence[Policy],
    *,
    lib_sdir: str = ".libs",
) -> RepairPlan:
    """Work out every graft and patch for repairing ``report``'s wheel to ``policies``
    (from :func:`choose_policies`, which guarantees every library to graft was found)."""
    arch = report.arch or ""
    policy = policies[0]
    check = report.verdict.check(policy)
    filename = WheelFilename.parse(report.wheel)
    lib_dir = posixpath.normpath(filename.name + lib_sdir)
    new_names = _graft_names(
        check.external_libs, lib_dir, lambda src: _host_elf(report, src).soname
    )

    patches = []
    for member in report.members:
        deps = report.dependencies[member.path]
        closure = external_closure(deps, policy.whitelist)
        grafted_here = [n for n in closure if n in new_names]
        libpython = tuple(n for n in member.elf.needed if LIBPYTHON.match(n))
        if not grafted_here and not libpython:
            continue
        replace = tuple(
            (n, posixpath.basename(new_names[n][0])) for n in member.elf.needed if n in new_names
        )
        destination = _script_destination(member.path, filename.name)
        rpath = None
        if grafted_here:
            old = member.elf.rpath or member.elf.runpath
            rpath = _member_rpath(member.path, destination or member.path, old, lib_dir)
        patches.append(
            MemberPatch(
                member.path,
                PatchOps(replace_needed=replace, remove_needed=libpython, rpath=rpath),
                destination,
            )
        )

    # Several DT_NEEDED names can reach one host file (``-lfoo`` and ``-l:libfoo.so.1``): the
    # file is grafted once, under one member name, and every name is replaced by it.
    by_member: dict[str, list[str]] = {}
    for soname, (lib_member, _, _) in sorted(new_names.items()):
        by_member.setdefault(lib_member, []).append(soname)
    grafts = []
    for lib_member, sonames in by_member.items():
        _, source, digest = new_names[sonames[0]]
        host = _host_elf(report, source)
        needed = host.needed
        siblings = tuple((n, posixpath.basename(new_names[n][0])) for n in needed if n in new_names)
        ops = PatchOps(
            set_soname=posixpath.basename(lib_member),
            replace_needed=siblings,
            rpath="$ORIGIN" if siblings else None,
            remove_rpath=not siblings and bool(host.rpath or host.runpath),
        )
        grafts.append(Graft(sonames[0], source, digest, lib_member, ops, tuple(sonames)))

    tags = [p.tag(arch) for p in policies] + [a + "_" + arch for p in policies for a in p.aliases]
    return RepairPlan(
        platform_tags=tuple(dict.fromkeys(tags)),
        grafts=tuple(grafts),
        patches=tuple(patches),
        removed_tags=(f"linux_{arch}",),
    )


def _graft_names(
    external: Mapping[str, str | None], lib_dir: str, own_soname: Callable[[str], str | None]
) -> dict[str, tuple[str, str, str]]:
    """soname -> (member path, source path, sha256): ``libfoo-<8 hex of sha256>.so.N``.

    Names that reach one host file (by real path) share one member, named after the path
    whose file name is the library's own SONAME when there is one (else the first name's).
    """
    by_file: dict[str, list[tuple[str, str]]] = {}
    for soname, source in sorted(external.items()):
        if source is not None:  # None is libpython: dropped, not grafted
            by_file.setdefault(os.path.realpath(source), []).append((soname, source))
    names = {}
    for real, reaching in by_file.items():
        digest = _sha256(real)
        own = own_soname(reaching[0][1])
        source = next((src for _, src in reaching if os.path.basename(src) == own), reaching[0][1])
        base, dot, ext = os.path.basename(source).partition(".")
        if not base.endswith(f"-{digest[:8]}"):
            base = f"{base}-{digest[:8]}"
        for soname, _ in reaching:
            names[soname] = (posixpath.join(lib_dir, base + dot + ext), source, digest)
    return names


def _host_elf(report: WheelReport, source: str) -> ElfFile:
    known = report.host_libraries.get(source)
    return known.elf if known is not None else read_elf(source)  # ElfError names the file


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ResourceError(
            f"{path}: cannot read the library to graft: {exc.strerror or exc}"
        ) from None
    return digest.hexdigest()


def _member_rpath(member: str, destination: str, old: Sequence[str], lib_dir: str) -> str:
    """The member's in-wheel search entries, then the path to ``lib_dir``, all relative to
    where the file ends up (``destination``: scripts are moved)."""
    old_dir, new_dir = posixpath.dirname(member), posixpath.dirname(destination)
    entries = []
    for entry in old:
        target = _in_wheel_target(entry, old_dir)
        if target is not None:
            entries.append(entry if old_dir == new_dir else _origin_path(target, new_dir))
    entries.append(_origin_path(lib_dir, new_dir))
    return ":".join(dict.fromkeys(entries))


def _origin_path(target: str, directory: str) -> str:
    relative = posixpath.relpath(target, directory or ".")
    return "$ORIGIN" if relative == "." else f"$ORIGIN/{relative}"


def _in_wheel_target(entry: str, directory: str) -> str | None:
    """The wheel path an ``$ORIGIN`` entry names, None for entries pointing outside."""
    for token in ("${ORIGIN}", "$ORIGIN"):
        if entry.startswith(token):
            rest = entry[len(token) :].lstrip("/")
            target = posixpath.normpath(posixpath.join(directory, rest))
            return None if target == ".." or target.startswith("../") else target
    return None


def _script_destination(member: str, dist_name: str) -> str | None:
    parts = member.split("/")
    if len(parts) == 3 and parts[0].endswith(".data") and parts[1] == "scripts":
        return f"{dist_name}{_SCRIPTS_SUFFIX}/{parts[2]}"
    return None
