"""Host-library facts: each library a wheel loads from outside itself, read once from the host.

One mapping of the file gives the dependency facts the verdict weighs (symbol versions, ISA
level) and the SHA-256 a graft is named after, so no later stage reads the file again. Reads
are cached by (path, mtime, size): host libraries are shared by many files and wheels.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .elf import ElfFile, open_source, read_elf, read_elf_and_symbols
from .errors import ElfError, ResourceError
from .scan import ElfMember, facts_from_symbols, is_loader
from .verdict import MemberDeps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostLibrary:
    """A library outside the wheel, as read from the host during the audit."""

    path: str  # its real path
    elf: ElfFile
    sha256: str  # hex digest of the file as read: the graft's name carries its first 8 digits
    stat_key: tuple[int, int]  # (mtime_ns, size) when read: a graft checks it still holds
    facts: ElfMember | None  # what the policies look at; None when its symbols are unreadable
    problem: str | None = None  # why ``facts`` is None (warned on every audit)


def read_host_libraries(all_deps: Iterable[MemberDeps]) -> dict[str, HostLibrary]:
    """Every library outside the wheel that the members load (the loader excepted), by path.

    A file that is no ELF file the C core can read is warned about and left out.
    """
    paths = {
        dep.path
        for deps in all_deps
        for dep in deps.libraries.values()
        if not dep.in_wheel and dep.path is not None and not is_loader(dep.soname)
    }
    libraries = {}
    for path in sorted(paths):
        try:
            library = _read_cached(path, *_stat_key(path))
        except ElfError as exc:
            log.warning("%s", exc)
            continue
        if library.problem is not None:
            log.warning("%s", library.problem)
        libraries[path] = library
    return libraries


def library_facts(libraries: Mapping[str, HostLibrary]) -> dict[str, ElfMember]:
    """Path -> facts, for the libraries whose symbols could be read."""
    return {path: lib.facts for path, lib in libraries.items() if lib.facts is not None}


def graft_source(libraries: Mapping[str, HostLibrary], path: str) -> HostLibrary:
    """The library at ``path``, checked to be the file the audit read (its digest names the
    graft): ResourceError when it is gone or changed since, ElfError when it was unreadable."""
    try:
        st = os.stat(path)
    except OSError as exc:
        reason = f"cannot read the library to graft: {exc.strerror or exc}"
        raise ResourceError(f"{path}: {reason}", member=path, reason=reason) from None
    library = libraries.get(path)
    if library is None:
        reason = "cannot graft it: it is not an ELF file the audit could read"
        raise ElfError(f"{path}: {reason}", member=path, reason=reason)
    if (st.st_mtime_ns, st.st_size) != library.stat_key:
        reason = "the library to graft changed while the wheel was repaired"
        raise ResourceError(f"{path}: {reason}; run the repair again", member=path, reason=reason)
    return library


def _stat_key(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ResourceError(
            f"{path}: cannot read the library: {exc.strerror or exc} (it was readable moments "
            "ago, while dependencies were resolved)",
            member=path,
        ) from exc
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=4096)
def _read_cached(path: str, mtime_ns: int, size: int) -> HostLibrary:
    """Parse and hash one version of a host file, from one mapping of it."""
    with open_source(path) as (buf, _):
        digest = hashlib.sha256(buf).hexdigest()
        try:
            elf, symbols = read_elf_and_symbols(buf, name=path, imports_only=True)
        except ElfError as exc:
            # The headers may still be sound (only the symbol table is not): a graft needs no
            # more, and the verdict goes without this file's facts.
            try:
                elf = read_elf(path)
            except ElfError:
                raise exc from None
            return HostLibrary(path, elf, digest, (mtime_ns, size), None, str(exc))
    return HostLibrary(path, elf, digest, (mtime_ns, size), facts_from_symbols(path, elf, symbols))
