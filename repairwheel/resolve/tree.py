"""What a resolution found, and how it is shown.

A :class:`DependencyTree` holds, for every DT_NEEDED name of a root and of what it loads, one
:class:`Library`: where the loader opens it and the :class:`SearchDir` (with its :class:`Step`)
that supplied the directory, or why nothing of the name could be used.  Rendering is here too:
``to_json`` for ``lddtree --json`` and the audit report, ``format_tree`` for lddtree's text.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..elf import ElfFile


class Step(str, enum.Enum):
    """The rule or search list that supplied the directory a library was found in."""

    RPATH = "DT_RPATH"
    LD_LIBRARY_PATH = "LD_LIBRARY_PATH"
    EXTRA = "REPAIRWHEEL_LD_LIBRARY_PATH"
    RUNPATH = "DT_RUNPATH"
    LD_SO_CONF = "ld.so.conf"
    MUSL_PATH = "ld-musl path file"
    DEFAULT = "default directories"
    LDPATHS = "--ldpaths"
    INTERPRETER = "interpreter"
    NAME = "path in DT_NEEDED"
    INCLUDE = "--include"


@dataclass(frozen=True)
class SearchDir:
    """A directory to search, and where it came from (for explaining a verdict)."""

    directory: str  # as searched: tokens expanded, sysroot prefixed, absolute
    step: Step
    entry: str  # as written, before expansion
    owner: str | None  # the object whose DT_RPATH/DT_RUNPATH, the file or variable listing it

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step.value,
            "directory": self.directory,
            "entry": self.entry,
            "owner": self.owner,
        }


@dataclass(frozen=True)
class Library:
    """How one DT_NEEDED name was resolved."""

    soname: str  # the DT_NEEDED name
    path: str | None  # where the loader opens it; None if not found or excluded by name
    realpath: str | None
    elf: ElfFile | None
    found_by: SearchDir | None  # None when not found or matched an object already loaded
    loader: str | None  # the name of the object whose DT_NEEDED loaded it; None for the root
    same_as: str | None = None  # the name it was first loaded as, if this is a second name for it
    excluded: bool = False  # matched an exclusion: its own needs are not followed
    skipped: tuple[str, ...] = ()  # candidates passed over as incompatible with the root
    # Every file of the name passed over, with why: "is a linker script, not a shared library"
    rejected: tuple[tuple[str, str], ...] = ()
    # A DT_NEEDED path relative to the working directory at run time: not looked up
    relative: bool = False
    # Left to another installed distribution (--provided-by): not looked up, not followed
    provided: bool = False

    @property
    def needed(self) -> tuple[str, ...]:
        if self.elf is None or self.excluded:
            return ()
        return self.elf.needed

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "realpath": self.realpath,
            "needed": list(self.needed),
            "found_by": self.found_by.to_json() if self.found_by else None,
            "loader": self.loader,
            "same_as": self.same_as,
            "excluded": self.excluded,
            "skipped": list(self.skipped),
            "rejected": [{"path": path, "reason": why} for path, why in self.rejected],
            "relative": self.relative,
            "provided": self.provided,
        }

    def why_not_found(self) -> str | None:
        """What was found under the name and why it is not used, for a library not found."""
        if self.path is not None or self.excluded or self.provided:
            return None
        if self.relative:
            return "a path relative to the working directory at run time"
        if not self.rejected:
            return None
        return "; ".join(f"{path} {why}" for path, why in self.rejected)


@dataclass(frozen=True)
class DependencyTree:
    """The transitive closure of one root's DT_NEEDED, in the order the loader resolves it."""

    path: str
    realpath: str
    elf: ElfFile
    libc: str
    libraries: Mapping[str, Library]  # breadth first

    @property
    def relative_needed(self) -> tuple[tuple[str, str], ...]:
        """(needer path, DT_NEEDED) for each DT_NEEDED path relative to the working directory."""
        pairs = []
        for name, lib in self.libraries.items():
            if lib.relative:
                loader = self.libraries.get(lib.loader) if lib.loader is not None else None
                needer = self.path if loader is None else (loader.path or lib.loader)
                pairs.append((str(needer), name))
        return tuple(pairs)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "realpath": self.realpath,
            "soname": self.elf.soname,
            "interpreter": self.elf.interpreter,
            "libc": self.libc,
            "needed": list(self.elf.needed),
            "rpath": list(self.elf.rpath),
            "runpath": list(self.elf.runpath),
            "libraries": {name: lib.to_json() for name, lib in self.libraries.items()},
        }

    def format_tree(self) -> str:
        """lddtree-style text: each library under the object that loaded it."""
        head = self.path
        if self.elf.interpreter:
            head += f" (interpreter => {self.elf.interpreter})"
        lines = [head]
        self._format_children(None, self.elf.needed, 1, lines)
        return "\n".join(lines)

    def _format_children(
        self, loader: str | None, needed: Iterable[str], depth: int, lines: list[str]
    ) -> None:
        for name in dict.fromkeys(needed):
            lib = self.libraries[name]
            if lib.loader != loader:
                continue
            lines.append("    " * depth + _describe(lib))
            if lib.same_as is None:
                self._format_children(name, lib.needed, depth + 1, lines)


def _describe(lib: Library) -> str:
    if lib.excluded:
        return f"{lib.soname} => excluded"
    if lib.provided:
        return f"{lib.soname} => provided by another distribution"
    if lib.path is not None:
        return f"{lib.soname} => {lib.path}"
    if lib.relative:
        return f"{lib.soname} => not looked up (relative to the working directory at run time)"
    why = lib.why_not_found()
    return f"{lib.soname} => not found ({why})" if why else f"{lib.soname} => not found"
