"""Libraries that other installed distributions provide (``--provided-by``): linked, not grafted.

An installed distribution's RECORD says where each of its files lives relative to its
site-packages, so a library it ships is found there at run time: the wheel keeps the
DT_NEEDED and gets an RPATH entry from its own install folder to that one (both wheels are
assumed to install into one site-packages). The wheel must then declare the distribution in a
``Requires-Dist`` whose version range admits the installed one.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from .elf import ElfFile, read_elf
from .errors import DependencyError, ElfError, UsageError

if TYPE_CHECKING:  # importlib.metadata and packaging.requirements load only when used
    from importlib import metadata

_SHARED_LIBRARY = re.compile(r"\.so(\.\d+)*$")


@dataclass(frozen=True)
class ProvidedLibrary:
    """A needed library an installed distribution ships: the wheel links it where it lives."""

    soname: str  # the DT_NEEDED name, the file name the loader looks for
    distribution: str  # its Name, as the provider's METADATA spells it
    version: str
    path: str  # the file on this machine
    install_dir: str  # its folder relative to site-packages, e.g. nvidia/cuda_runtime/lib
    requirement: str | None = None  # the wheel's Requires-Dist line that covers it

    @property
    def requirement_problem(self) -> str | None:
        """Why the wheel does not declare this provider as it is installed, or None."""
        if self.requirement is None:
            return f"the wheel's METADATA has no Requires-Dist for {self.distribution}"
        from packaging.requirements import Requirement

        specifier = Requirement(self.requirement).specifier
        if not specifier.contains(self.version, prereleases=True):
            return (
                f"its Requires-Dist {self.requirement!r} excludes the installed "
                f"{self.distribution} {self.version}"
            )
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "distribution": self.distribution,
            "version": self.version,
            "path": self.path,
            "install_dir": self.install_dir,
            "requirement": self.requirement,
        }


@dataclass(frozen=True)
class Providers:
    """The shared libraries of the installed distributions ``--provided-by`` names, by file
    name (what the loader looks up in an RPATH folder), first distribution on the path first."""

    shipped: Mapping[str, tuple[ProvidedLibrary, ...]]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.shipped)

    def lookup(self, name: str, like: ElfFile, needer: str) -> ProvidedLibrary:
        """The first file named ``name`` of the wheel's architecture and class (``like``);
        DependencyError naming each candidate when none is."""
        reasons = []
        for candidate in self.shipped[name]:
            try:
                elf = read_elf(candidate.path)
            except ElfError as exc:
                reasons.append(f"{candidate.path} is not a readable ELF file ({exc})")
                continue
            if _kind(elf) == _kind(like):
                return candidate
            reasons.append(
                f"{candidate.distribution} {candidate.version} ships {candidate.path}, built "
                f"for {_describe(elf)}"
            )
        reason = f"needs {name} for {_describe(like)}, but {'; '.join(reasons)}"
        raise DependencyError(f"{needer} {reason}", member=needer, reason=reason)


def find_providers(
    patterns: Sequence[str], site_packages: Sequence[str] | None = None
) -> Providers:
    """The distributions matching ``patterns`` (names or globs, compared canonicalized)
    installed in ``site_packages`` (default: this interpreter's ``sys.path``).

    UsageError for a pattern that matches no installed distribution.
    """
    from importlib import metadata

    path = list(site_packages) if site_packages is not None else sys.path
    globs = {pattern: canonicalize_name(pattern) for pattern in patterns}
    unmatched = set(patterns)
    seen: set[str] = set()
    shipped: dict[str, list[ProvidedLibrary]] = {}
    for dist in metadata.distributions(path=path):
        name = dist.metadata["Name"] or ""
        key = canonicalize_name(name)
        hits = {p for p, glob in globs.items() if fnmatch.fnmatchcase(key, glob)}
        if not name or key in seen or not hits:
            continue
        seen.add(key)  # the first on the path is the one imported
        unmatched -= hits
        for library in _shared_libraries(dist, name):
            shipped.setdefault(library.soname, []).append(library)
    if unmatched:
        where = (
            "in --site-packages " + ", ".join(path)
            if site_packages is not None
            else "in this interpreter's environment"
        )
        pattern = next(p for p in patterns if p in unmatched)
        raise UsageError(
            f"--provided-by {pattern!r}: no distribution matching it is installed {where}"
        )
    return Providers({name: tuple(libraries) for name, libraries in shipped.items()})


def covering_requirement(requires_dist: Iterable[str], distribution: str) -> str | None:
    """The first Requires-Dist line naming ``distribution`` whose marker holds here without
    extras (a requirement behind an extra does not make the wheel load)."""
    from packaging.requirements import InvalidRequirement, Requirement

    key = canonicalize_name(distribution)
    for line in requires_dist:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) != key:
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            return line.strip()
    return None


def _shared_libraries(dist: metadata.Distribution, name: str) -> Iterable[ProvidedLibrary]:
    """The shared library files RECORD lists inside the distribution's site-packages."""
    for file in dist.files or ():
        relative = file.as_posix()
        if relative.startswith("../") or not _SHARED_LIBRARY.search(relative):
            continue
        location = str(dist.locate_file(file))
        if os.path.isfile(location):
            folder, soname = posixpath.split(relative)
            yield ProvidedLibrary(soname, name, dist.version, location, folder)


def _kind(elf: ElfFile) -> tuple[int, int, str]:
    """Machine, class and byte order: what a library must share with the wheel to load."""
    return elf.machine, elf.elf_class, elf.byte_order


def _describe(elf: ElfFile) -> str:
    machine = elf.arch or f"machine {elf.machine}"
    return f"{machine} (ELF{elf.elf_class}, {elf.byte_order}-endian)"
