"""The repair plan: the target tag, what to graft under which name, the patchelf operations
for every file, and the launcher left where a program is moved — computed from an audit report
(host libraries included: no host file is read again) before anything is written.

An Android wheel keeps its tag (its API level is the build's choice, not a verdict), keeps its
DT_NEEDED on libpython, and gets DT_RUNPATH instead of DT_RPATH: bionic ignores DT_RPATH and
inherits no DT_RUNPATH, so each grafted library that needs another one gets its own $ORIGIN.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from .audit import WheelReport
from .errors import DependencyError, PolicyError, UsageError
from .host import HostLibrary, graft_source
from .patch import PatchOps
from .policy import ANDROID, Policy, get_policy
from .providers import ProvidedLibrary
from .scan import LIBPYTHON
from .verdict import Blocker, BlockerKind, describe_group, external_closure, group_blockers
from .wheel import WheelFilename

_SCRIPTS_SUFFIX = ".scripts"
_LAUNCHER = '''#!python
"""Launcher: repairwheel moved the real program to {dest} when it grafted its libraries."""
import os
import sys
import sysconfig

if __name__ == "__main__":
    os.execv(os.path.join(sysconfig.get_path("platlib"), {dest!r}), sys.argv)
'''


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

    @property
    def launcher(self) -> bytes | None:
        """The script written in the moved program's place (an installer puts it on PATH)."""
        return None if self.moved_to is None else _LAUNCHER.format(dest=self.moved_to).encode()


@dataclass(frozen=True)
class RepairPlan:
    """What a repair does: the new tags, the libraries to graft, the files to patch."""

    platform_tags: tuple[str, ...]  # the repaired wheel's platform tags (unsorted)
    grafts: tuple[Graft, ...]
    patches: tuple[MemberPatch, ...]
    removed_tags: tuple[str, ...]
    provided: tuple[ProvidedLibrary, ...] = ()  # linked from other distributions


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
    if report.libc == ANDROID:
        own = next(c for c in verdict.checks if c.policy.priority > 0)
        if plat not in (None, "auto", own.tag):
            raise PolicyError(
                f"cannot repair {report.wheel} to {plat}: an Android wheel keeps its own tag "
                f"{own.tag} (its API level is chosen by the build)",
                wheel=report.wheel,
                reason=f"an Android wheel keeps its own tag {own.tag}",
            )
        if own.blockers:
            _refuse(report.wheel, own.tag, own.blockers)
        return (own.policy,)
    if plat in (None, "auto"):
        if best.priority == 0:
            newest = min(verdict.checks, key=lambda c: c.policy.priority)
            _refuse(report.wheel, "any manylinux/musllinux tag", newest.blockers)
        return (best,)
    requested = get_policy(plat)  # either family: a tag of the other libc is named as such
    if requested.libc != report.libc:
        raise PolicyError(
            f"cannot repair {report.wheel} to {plat}: {plat} is a {requested.libc} tag and "
            f"the wheel is built for {report.libc}",
            wheel=report.wheel,
            reason=f"{plat} is a {requested.libc} tag",
        )
    requested = get_policy(plat, arch, libc=report.libc)
    if requested.priority == 0:
        raise PolicyError(
            f"{plat} is not a manylinux/musllinux tag to repair to", wheel=report.wheel
        )
    check = next((c for c in verdict.checks if c.policy == requested), None)
    if check is None:
        raise PolicyError(
            f"cannot repair {report.wheel} to {plat}: no such policy for {arch}",
            wheel=report.wheel,
            reason=f"no such policy for {arch}",
        )
    if check.blockers:
        _refuse(report.wheel, requested.tag(arch), check.blockers)
    if not only_plat and best.priority > requested.priority:
        return (best, requested)
    return (requested,)


def _refuse(wheel: str, target: str, blockers: Sequence[Blocker]) -> NoReturn:
    """Raise the error for ``blockers``: DependencyError when only missing libraries stand in
    the way (the user can point at them), PolicyError otherwise. ``member`` is the first
    blocker's file, ``reason`` the obstacles."""
    groups = group_blockers(blockers)
    shown = [describe_group(first, files) for first, files in groups[:3]]
    more = f" (and {len(groups) - 3} more)" if len(groups) > 3 else ""
    reason = "; ".join(shown) + more
    text = f"cannot repair {wheel} to {target}: {reason}"
    fields = {"wheel": wheel, "member": blockers[0].file if blockers else None, "reason": reason}
    if all(b.kind == BlockerKind.MISSING_LIBRARY for b in blockers):
        raise DependencyError(
            text + " (give its directory with --ldpaths or REPAIRWHEEL_LD_LIBRARY_PATH, "
            "or --exclude it)",
            **fields,
        )
    raise PolicyError(text, **fields)


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
    no_mangle: Sequence[str] = (),
    keep_rpath: Sequence[str] = (),
    requires_check: bool = True,
) -> RepairPlan:
    """Work out every graft and patch for repairing ``report``'s wheel to ``policies``
    (from :func:`choose_policies`, which guarantees every library to graft was found).

    Libraries whose soname or host file name matches a ``no_mangle`` glob are grafted under
    their own file name (no hash); RPATH entries outside the wheel matching a ``keep_rpath``
    glob are kept (after the grafted-libraries folder) instead of dropped. The libraries the
    report includes (--include) keep their name and SONAME, and every extension gets the
    grafted-libraries folder on its RPATH to dlopen() them. A file needing a
    library another distribution provides gets an RPATH entry to where that one installs it;
    with ``requires_check`` the wheel must declare that distribution (PolicyError if not)."""
    if requires_check:
        _check_requirements(report)
    provided = {p.soname: p for p in report.provided}
    arch = report.arch or ""
    policy = policies[0]
    check = report.verdict.check(policy)
    filename = WheelFilename.parse(report.wheel)
    lib_dir = posixpath.normpath(filename.name + lib_sdir)
    included = {lib.name for lib in report.included}
    new_names = _graft_names(
        check.external_libs, lib_dir, report.host_libraries, no_mangle, report.wheel, included
    )
    own_soname = {new_names[n][0] for n in included if n in new_names}
    android = policy.libc == ANDROID

    patches = []
    for member in report.members:
        deps = report.dependencies[member.path]
        closure = external_closure(deps, policy.whitelist, allow_libpython=policy.keeps_libpython)
        grafted_here = [n for n in closure if n in new_names]
        linked = _provider_dirs(member.elf.needed, provided)
        libpython: tuple[str, ...] = ()
        if not policy.keeps_libpython:
            libpython = tuple(n for n in member.elf.needed if LIBPYTHON.match(n))
        if not grafted_here and not linked and not libpython:
            continue
        replace = _replacements(member.elf.needed, new_names)
        destination = _script_destination(member.path, filename.name)
        rpath = None
        if grafted_here or linked:
            # bionic reads DT_RUNPATH only (patchelf --print-rpath prefers it too)
            elf = member.elf
            old = (elf.runpath or elf.rpath) if android else (elf.rpath or elf.runpath)
            rpath = _member_rpath(
                member.path,
                destination or member.path,
                old,
                ([lib_dir] if grafted_here else []) + linked,
                keep_rpath,
            )
        ops = PatchOps(
            replace_needed=replace,
            remove_needed=libpython,
            rpath=rpath,
            runpath=android and rpath is not None,
        )
        patches.append(MemberPatch(member.path, ops, destination))

    # Several DT_NEEDED names can reach one host file (``-lfoo`` and ``-l:libfoo.so.1``): the
    # file is grafted once, under one member name, and every name is replaced by it.
    by_member: dict[str, list[str]] = {}
    for soname, (lib_member, _, _) in sorted(new_names.items()):
        by_member.setdefault(lib_member, []).append(soname)
    grafts = []
    for lib_member, sonames in by_member.items():
        _, source, library = new_names[sonames[0]]
        host = library.elf
        needed = host.needed
        siblings = tuple(n for n in needed if n in new_names)
        search = ([lib_dir] if siblings else []) + _provider_dirs(needed, provided)
        rpath = ":".join(_origin_path(d, lib_dir) for d in search) or None
        new_soname = posixpath.basename(lib_member)
        keep_soname = host.soname == new_soname or lib_member in own_soname
        ops = PatchOps(
            set_soname=None if keep_soname else new_soname,
            replace_needed=_replacements(needed, new_names),
            rpath=rpath,
            remove_rpath=rpath is None and bool(host.rpath or host.runpath),
            runpath=android and rpath is not None,
        )
        grafts.append(Graft(sonames[0], source, library.sha256, lib_member, ops, tuple(sonames)))

    tags = [t for p in policies for t in p.tags(arch)[:1]]
    tags += [t for p in policies for t in p.tags(arch)[1:]]
    return RepairPlan(
        platform_tags=tuple(dict.fromkeys(tags)),
        grafts=tuple(grafts),
        patches=tuple(patches),
        removed_tags=() if android else (f"linux_{arch}",),
        provided=report.provided,
    )


def _check_requirements(report: WheelReport) -> None:
    """Refuse a wheel that links another distribution's library without declaring it."""
    for lib in report.provided:
        problem = lib.requirement_problem
        if problem is None:
            continue
        # The file that links it itself, else (a grafted library links it) one loading it.
        loading = [d for d in report.dependencies.values() if lib.soname in d.libraries]
        direct = [d for d in loading if lib.soname in d.member.elf.needed]
        needer = (direct or loading)[0].member.path
        reason = (
            f"{needer} links {lib.soname} from {lib.distribution} {lib.version}, but {problem} "
            "(declare it, or pass --no-requires-check)"
        )
        raise PolicyError(
            f"cannot repair {report.wheel}: {reason}",
            wheel=report.wheel,
            member=needer,
            reason=reason,
        )


def _provider_dirs(needed: Sequence[str], provided: Mapping[str, ProvidedLibrary]) -> list[str]:
    """The site-packages folders the libraries of ``needed`` that others provide live in."""
    return list(dict.fromkeys(provided[n].install_dir for n in needed if n in provided))


def _replacements(
    needed: Sequence[str], new_names: Mapping[str, tuple[str, str, HostLibrary]]
) -> tuple[tuple[str, str], ...]:
    """(old, new) DT_NEEDED pairs for the grafted names in ``needed`` that change."""
    pairs = ((n, posixpath.basename(new_names[n][0])) for n in needed if n in new_names)
    return tuple((old, new) for old, new in pairs if old != new)


def _graft_names(
    external: Mapping[str, str | None],
    lib_dir: str,
    libraries: Mapping[str, HostLibrary],
    no_mangle: Sequence[str] = (),
    wheel: str = "",
    included: Collection[str] = (),
) -> dict[str, tuple[str, str, HostLibrary]]:
    """soname -> (member path, source path, library): ``libfoo-<8 hex of sha256>.so.N``, or
    the host file name itself when a name or the file name matches a ``no_mangle`` glob,
    or the name an ``included`` library is dlopen()ed by.

    Names that reach one host file (by real path) share one member, named after the path
    whose file name is the library's own SONAME when there is one (else the first name's).
    Two different files (by sha256) that would get one member name are refused.
    """
    by_file: dict[str, list[tuple[str, str]]] = {}
    for soname, source in sorted(external.items()):
        if source is not None:  # None is libpython: dropped, not grafted
            by_file.setdefault(os.path.realpath(source), []).append((soname, source))
    names: dict[str, tuple[str, str, HostLibrary]] = {}
    for reaching in by_file.values():
        library = graft_source(libraries, reaching[0][1])
        digest, own = library.sha256, library.elf.soname
        source = next((src for _, src in reaching if os.path.basename(src) == own), reaching[0][1])
        file_name = next((n for n, _ in reaching if n in included), os.path.basename(source))
        keep = file_name in included or any(
            fnmatch.fnmatch(text, glob)
            for glob in no_mangle
            for name, src in reaching
            for text in (name, os.path.basename(src))
        )
        base, dot, ext = file_name.partition(".")
        if not keep and not base.endswith(f"-{digest[:8]}"):
            base = f"{base}-{digest[:8]}"
        member = posixpath.join(lib_dir, base + dot + ext)
        other = next((lib for m, _, lib in names.values() if m == member), None)
        if other is not None and other.sha256 != digest:
            reason = (
                f"{'--include' if keep and file_name in included else '--no-mangle'} would "
                f"graft two different files as {member}: "
                f"{other.path} and {library.path}"
            )
            raise PolicyError(f"cannot repair {wheel}: {reason}", wheel=wheel, reason=reason)
        for soname, _ in reaching:
            names[soname] = (member, source, library)
    return names


def _member_rpath(
    member: str, destination: str, old: Sequence[str], dirs: Sequence[str], keep: Sequence[str]
) -> str:
    """The member's in-wheel search entries, then the paths to ``dirs`` (the grafted
    libraries' folder, the providers' folders), all relative to where the file ends up
    (``destination``: scripts are moved), then the entries outside the wheel matching a
    ``keep`` glob, as they are (searched after the grafts)."""
    old_dir, new_dir = posixpath.dirname(member), posixpath.dirname(destination)
    entries, kept = [], []
    for entry in old:
        target = _in_wheel_target(entry, old_dir)
        if target is not None:
            entries.append(entry if old_dir == new_dir else _origin_path(target, new_dir))
        elif any(fnmatch.fnmatchcase(entry, glob) for glob in keep):
            kept.append(entry)
    entries += [_origin_path(d, new_dir) for d in dirs]
    return ":".join(dict.fromkeys(entries + kept))


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
