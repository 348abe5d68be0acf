"""``--include``: libraries a wheel loads with dlopen, which no DT_NEEDED names.

A request is a path or a file name (a glob allowed) looked up where the resolver looks: the
``REPAIRWHEEL_LD_LIBRARY_PATH`` / ``AUDITWHEEL_LD_LIBRARY_PATH`` and ``LD_LIBRARY_PATH``
directories, then ``--ldpaths`` or the system's. Each library found gets the name code
``dlopen``s it by: the name asked for, or (for a path or a glob) its SONAME. The resolver then
loads it after every extension's DT_NEEDED (:mod:`.graph`), the repair grafts it under that
name with its SONAME kept (:mod:`.plan`), and :class:`IncludeEffect` says what it changes.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .elf import ElfFile
from .errors import DependencyError, UsageError
from .resolve import HostFilesystem, loader_config
from .resolve.fs import examine
from .resolve.rules import rules_for
from .verdict import Blocker, PolicyCheck, Verdict, describe_group, group_blockers

if TYPE_CHECKING:
    from .audit import WheelReport

_GLOB = frozenset("*?[")


@dataclass(frozen=True)
class IncludedLibrary:
    """One host library an ``--include`` request found."""

    request: str  # as the user gave it
    name: str  # what the wheel dlopen()s: its file name in the graft folder
    path: str  # where it was found on the host


@dataclass(frozen=True)
class _Root:
    """The search's stand-in for the program loading the wheel: LD_LIBRARY_PATH entries are
    expanded for it, and a candidate must be compatible with its ELF file."""

    path: str
    realpath: str
    elf: ElfFile
    loader: None = None


def find_included(
    requests: Sequence[str], libc: str, arch: str, ldpaths: str | None, like: ElfFile
) -> tuple[IncludedLibrary, ...]:
    """The libraries ``requests`` name, each compatible with ``like`` (the wheel's first ELF
    file). UsageError for a malformed request, DependencyError when one finds nothing."""
    config = loader_config(libc, arch, ldpaths)
    rules = rules_for(config)
    root = _Root("/", "/", like)
    dirs = [d.directory for d in (*rules.env_dirs(root), *rules.system_dirs(like))]
    fs = HostFilesystem()
    found: dict[str, IncludedLibrary] = {}
    for request in requests:
        _check_request(request)
        hits = _lookup(request, dirs, fs, like, rules.incompatibility)
        if not hits:
            where = "" if "/" in request else f" in {':'.join(dict.fromkeys(dirs)) or '(none)'}"
            reason = f"--include {request}: no compatible shared library found{where}"
            raise DependencyError(reason, member=request, reason=reason)
        for lib in hits:
            found.setdefault(lib.name, lib)
    return tuple(found.values())


def _check_request(request: str) -> None:
    folder, _, name = request.rpartition("/")
    if not name or "\0" in request:
        raise UsageError(f"--include {request!r}: expected a library file name or path")
    if _GLOB & set(folder):
        raise UsageError(f"--include {request}: only the file name may be a glob, not the folder")
    if name.count("[") != name.count("]") or "[]" in name:
        raise UsageError(f"--include {request}: malformed glob (unbalanced '[' ... ']')")


def _lookup(
    request: str,
    dirs: Sequence[str],
    fs: HostFilesystem,
    like: ElfFile,
    incompatible: Callable[[ElfFile, ElfFile], str | None],
) -> list[IncludedLibrary]:
    """Every compatible file ``request`` names, the first directory winning for each name."""
    folder, _, pattern = request.rpartition("/")
    glob = bool(_GLOB & set(pattern))
    searched = [os.path.abspath(folder or "/")] if "/" in request else dirs
    hits: list[IncludedLibrary] = []
    names: set[str] = set()
    real: set[str] = set()
    for directory in dict.fromkeys(searched):
        try:
            listing = sorted(os.listdir(directory)) if glob else [pattern]
        except OSError:
            continue
        for file_name in fnmatch.filter(listing, pattern) if glob else listing:
            path = posixpath.join(directory, file_name)
            elf, _ = examine(fs, path)
            if elf is None or incompatible(elf, like) is not None:
                continue
            name = file_name if not glob and "/" not in request else (elf.soname or file_name)
            if name in names or fs.realpath(path) in real:
                continue
            names.add(name)
            real.add(fs.realpath(path))
            hits.append(IncludedLibrary(request, name, path))
    return hits


@dataclass(frozen=True)
class BlockerChange:
    """An obstacle ``--include`` removes or adds, with the tags it concerns."""

    blocker: Blocker
    files: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def message(self) -> str:
        return describe_group(self.blocker, self.files)

    def to_json(self) -> dict[str, object]:
        b = self.blocker
        return {
            "kind": b.kind.value,
            "library": b.library,
            "detail": b.detail,
            "files": list(self.files),
            "tags": list(self.tags),
            "message": self.message,
        }


@dataclass(frozen=True)
class IncludeEffect:
    """What the ``--include`` libraries change in a wheel's verdict."""

    included: tuple[IncludedLibrary, ...]
    shipped: frozenset[str]  # the included names a repair grafts
    grafted: dict[str, str | None]  # what the repair grafts that it did not without them
    repair_tag_before: str | None
    repair_tag_after: str | None
    removed: tuple[BlockerChange, ...]  # obstacles a repair could not remove before
    added: tuple[BlockerChange, ...]

    @classmethod
    def of(cls, report: WheelReport) -> IncludeEffect | None:
        """The effect for ``report`` (audited with ``include``), None without includes."""
        before = report.verdict_without_include
        if before is None or not report.arch:
            return None
        after, arch = report.verdict, report.arch
        external = _target(after).external_libs
        return cls(
            included=report.included,
            shipped=frozenset(lib.name for lib in report.included if lib.name in external),
            grafted={
                name: path
                for name, path in _target(after).external_libs.items()
                if name not in _target(before).external_libs
            },
            repair_tag_before=_tag(before, arch),
            repair_tag_after=_tag(after, arch),
            removed=_changes(before.checks, after.checks),
            added=_changes(after.checks, before.checks),
        )

    def lines(self) -> list[str]:
        """The text ``show`` prints."""
        lines = ["Included with --include (grafted under their own names, SONAME kept):"]
        for lib in self.included:
            state = (
                "grafted"
                if lib.name in self.shipped
                else "not grafted (--exclude, or in the wheel)"
            )
            lines.append(f"  {lib.name} => {lib.path} (--include {lib.request}): {state}")
        deps = [n for n in self.grafted if n not in {lib.name for lib in self.included}]
        if deps:
            lines.append(f"  their dependencies grafted too: {', '.join(deps)}")
        before = self.repair_tag_before or "none"
        after = self.repair_tag_after or "none"
        if before != after:
            lines.append(f"  the best tag fix reaches: {before} without them, {after} with them")
        lines += [f"  removes {_span(c.tags)}: {c.message}" for c in self.removed]
        lines += [f"  adds {_span(c.tags)}: {c.message}" for c in self.added]
        return lines

    def to_json(self) -> dict[str, object]:
        return {
            "libraries": [
                {
                    "request": lib.request,
                    "name": lib.name,
                    "path": lib.path,
                    "grafted": lib.name in self.shipped,
                }
                for lib in self.included
            ],
            "grafted": dict(self.grafted),
            "repair_tag_before": self.repair_tag_before,
            "repair_tag_after": self.repair_tag_after,
            "removed_blockers": [c.to_json() for c in self.removed],
            "added_blockers": [c.to_json() for c in self.added],
        }


def _target(verdict: Verdict) -> PolicyCheck:
    """The check a repair grafts for: the reachable tag's, else the most compatible one's."""
    best = verdict.repair_tag
    return verdict.check(best) if best.priority > 0 else verdict.checks[0]


def _tag(verdict: Verdict, arch: str) -> str | None:
    return verdict.repair_tag.tag(arch) if verdict.repair_tag.priority > 0 else None


def _changes(
    these: Sequence[PolicyCheck], others: Sequence[PolicyCheck]
) -> tuple[BlockerChange, ...]:
    """The unrepairable obstacles of ``these`` checks that the same policies in ``others``
    lack, one per obstacle, with the tags it blocks (those blocking the most first)."""
    found: dict[object, tuple[Blocker, dict[str, None], list[str]]] = {}
    for mine, theirs in zip(these, others):
        keep = {b.key for b in theirs.blockers}
        for first, files in group_blockers(mine.blockers):
            if first.key not in keep:
                entry = found.setdefault(first.key, (first, {}, []))
                entry[1].update(dict.fromkeys(files))
                entry[2].append(mine.tag)
    changes = [BlockerChange(b, tuple(f), tuple(t)) for b, f, t in found.values()]
    return tuple(sorted(changes, key=lambda c: -len(c.tags)))  # the widest first, as show


def _span(tags: Sequence[str]) -> str:
    return tags[0] if len(tags) == 1 else f"{tags[0]} … {tags[-1]}"
