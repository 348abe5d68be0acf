"""The repair plan: the target tag, what to graft under which name, and the patchelf operations
for every file — computed from an audit report before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from .audit import LIBPYTHON, WheelReport
from .elf import read_elf
from .errors import DependencyError, PolicyError
from .patch import PatchOps
from .policy import Policy, get_policy
from .verdict import Blocker, external_closure
from .wheelfile import WheelFilename

_SCRIPTS_SUFFIX = ".scripts"


@dataclass(frozen=True)
class Graft:
    """One host library copied into the wheel."""

    soname: str  # the DT_NEEDED name it replaces
    source: str  # host path it is copied from
    sha256: str  # of the source, before patching
    member: str  # its path inside the repaired wheel
    ops: PatchOps

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
    policy: Policy  # the policy whose whitelist decides what is grafted
    platform_tags: tuple[str, ...]  # the repaired wheel's platform tags (unsorted)
    lib_dir: str
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
            raise PolicyError(
                f"cannot repair {report.wheel} to any manylinux/musllinux tag: "
                + _blockers_text(newest.blockers)
            )
        return (best,)
    requested = get_policy(plat, arch, libc=report.libc)
    if requested.libc != report.libc:
        raise PolicyError(
            f"cannot repair {report.wheel} ({report.libc}) to {plat}: that is a "
            f"{requested.libc} tag"
        )
    if requested.priority == 0:
        raise PolicyError(f"{plat} is not a manylinux/musllinux tag to repair to")
    check = next((c for c in verdict.checks if c.policy == requested), None)
    if check is None:
        raise PolicyError(f"cannot repair {report.wheel} to {plat}: no such policy for {arch}")
    if check.blockers:
        raise PolicyError(
            f"cannot repair {report.wheel} to {requested.tag(arch)}: "
            + _blockers_text(check.blockers)
        )
    if not only_plat and best.priority > requested.priority:
        return (best, requested)
    return (requested,)


def _blockers_text(blockers: Sequence[Blocker]) -> str:
    shown = [str(b) for b in blockers[:3]]
    more = f" (and {len(blockers) - 3} more)" if len(blockers) > 3 else ""
    return "; ".join(shown) + more


def make_plan(
    report: WheelReport,
    policies: Sequence[Policy],
    *,
    lib_sdir: str = ".libs",
) -> RepairPlan:
    """Work out every graft and patch for repairing ``report``'s wheel to ``policies``."""
    arch = report.arch or ""
    policy = policies[0]
    check = report.verdict.check(policy)
    filename = WheelFilename.parse(report.wheel)
    lib_dir = posixpath.normpath(filename.name + lib_sdir)
    missing = sorted(
        n for n, p in check.external_libs.items() if p is None and not LIBPYTHON.match(n)
    )
    if missing:
        needers = _needers(report, policy, missing[0])
        raise DependencyError(
            f"cannot repair {report.wheel}: {needers} needs {missing[0]}, which cannot be found "
            "(give its directory with --ldpaths or REPAIRWHEEL_LD_LIBRARY_PATH, or --exclude it)"
        )
    new_names = _graft_names(check.external_libs, lib_dir)

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
        rpath = None
        if grafted_here:
            rpath = _member_rpath(member.path, member.elf.rpath or member.elf.runpath, lib_dir)
        patches.append(
            MemberPatch(
                member.path,
                PatchOps(replace_needed=replace, remove_needed=libpython, rpath=rpath),
                _script_destination(member.path, filename.name),
            )
        )

    grafts = []
    for soname, (member, source, digest) in sorted(new_names.items()):
        known = report.host_libraries.get(source)
        host = known.elf if known is not None else read_elf(source)  # ElfError names the file
        needed = host.needed
        siblings = tuple((n, posixpath.basename(new_names[n][0])) for n in needed if n in new_names)
        ops = PatchOps(
            set_soname=posixpath.basename(member),
            replace_needed=siblings,
            rpath="$ORIGIN" if siblings else None,
            remove_rpath=not siblings and bool(host.rpath or host.runpath),
        )
        grafts.append(Graft(soname, source, digest, member, ops))

    tags = [p.tag(arch) for p in policies] + [a + "_" + arch for p in policies for a in p.aliases]
    return RepairPlan(
        policy=policy,
        platform_tags=tuple(dict.fromkeys(tags)),
        lib_dir=lib_dir,
        grafts=tuple(grafts),
        patches=tuple(patches),
        removed_tags=(f"linux_{arch}",),
    )


def _needers(report: WheelReport, policy: Policy, soname: str) -> str:
    for path, deps in report.dependencies.items():
        if soname in external_closure(deps, policy.whitelist):
            return path
    return report.wheel


def _graft_names(external: dict[str, str | None], lib_dir: str) -> dict[str, tuple[str, str, str]]:
    """soname -> (member path, source path, sha256): ``libfoo-<8 hex of sha256>.so.N``."""
    names = {}
    for soname, source in external.items():
        if source is None:  # libpython: dropped, not grafted
            continue
        digest = _sha256(source)
        base_name = os.path.basename(source)
        base, dot, ext = base_name.partition(".")
        if not base.endswith(f"-{digest[:8]}"):
            base = f"{base}-{digest[:8]}"
        names[soname] = (posixpath.join(lib_dir, base + dot + ext), source, digest)
    return names


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _member_rpath(member: str, old: Sequence[str], lib_dir: str) -> str:
    """The member's in-wheel search entries, kept as written, then the path to ``lib_dir``."""
    directory = posixpath.dirname(member)
    kept = [entry for entry in old if _inside_wheel(entry, directory)]
    relative = posixpath.relpath(lib_dir, directory or ".")
    entries = [*kept, f"$ORIGIN/{relative}" if relative != "." else "$ORIGIN"]
    return ":".join(dict.fromkeys(entries))


def _inside_wheel(entry: str, directory: str) -> bool:
    for token in ("${ORIGIN}", "$ORIGIN"):
        if entry.startswith(token):
            rest = entry[len(token) :].lstrip("/")
            target = posixpath.normpath(posixpath.join(directory, rest))
            return target != ".." and not target.startswith("../")
    return False


def _script_destination(member: str, dist_name: str) -> str | None:
    parts = member.split("/")
    if len(parts) == 3 and parts[0].endswith(".data") and parts[1] == "scripts":
        return f"{dist_name}{_SCRIPTS_SUFFIX}/{parts[2]}"
    return None
