"""The dependency graph: every ELF member's libraries, resolved like the loader, wheel-wide.

The members are laid out under a made-up install prefix over the host (:mod:`.resolve` walks
one file at a time); files with the same needs share one resolution, a relative DT_NEEDED is
refused, and a wheel library gets what the wheel file loading it finds for it at run time.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import PolicyError
from .providers import ProvidedLibrary, Providers
from .resolve import DependencyTree, WheelFilesystem, loader_config, resolve
from .scan import LIBPYTHON, ElfMember
from .verdict import Dependency, MemberDeps

if TYPE_CHECKING:
    from .include import IncludedLibrary

# Where the wheel's members appear to the resolver: site-packages under a made-up install
# prefix (WHEEL_PREFIX, nothing on the host is consulted under it), so an $ORIGIN/../..
# entry that leaves the wheel lands in the prefix's directories, found empty, as at install
# time it lands in directories no wheel can rely on; never in the host's root.
WHEEL_PREFIX = "/__repairwheel__"
WHEEL_ROOT = f"{WHEEL_PREFIX}/lib/python3/site-packages"


def roots(members: Sequence[ElfMember]) -> list[ElfMember]:
    """Extensions, and the other ELF files no wheel file loads (by file name, as auditwheel)."""
    needed = {soname for m in members for soname in m.elf.needed}
    return [m for m in members if m.is_extension or posixpath.basename(m.path) not in needed]


def resolve_members(
    members: Sequence[ElfMember],
    libc: str,
    arch: str,
    ldpaths: str | None,
    exclude: Sequence[str],
    providers: Providers | None = None,
    included: Sequence[IncludedLibrary] = (),
) -> dict[str, MemberDeps]:
    """Resolve every member with the wheel laid out under a virtual root over the host.

    A name one of ``providers`` ships, and no wheel file answers to, is that distribution's
    (checked against the wheel's architecture and class when first met) and is not walked.
    An ``included`` library (--include) is the file found for its name wherever it is
    needed, and every extension loads it after its DT_NEEDED tree, as dlopen() does.
    """
    opened = {lib.name: lib.path for lib in included}
    names = tuple(opened)
    fs = WheelFilesystem(WHEEL_ROOT, {m.path: m.elf for m in members}, fence=WHEEL_PREFIX)
    config = loader_config(libc, arch, ldpaths)
    own = {posixpath.basename(m.path) for m in members}
    own |= {m.elf.soname for m in members if m.elf.soname}
    provided_names = providers.names - own if providers is not None else frozenset()
    provided: dict[str, ProvidedLibrary] = {}
    result: dict[str, MemberDeps] = {}
    # Files in one folder with the same needs and search paths resolve identically: a wheel
    # of 3000 small extensions resolves a handful of times.
    memo: dict[tuple[object, ...], dict[str, Dependency]] = {}
    for member in members:
        key = _memo_key(member)
        if key in memo:
            result[member.path] = MemberDeps(member, memo[key], names)
            continue
        tree = resolve(
            fs.path_of(member.path),
            member.elf,
            fs,
            config,
            exclude,
            provided_names,
            opened,
            dlopen=member.is_extension,
        )
        _refuse_relative_needed(tree, fs, member)
        libraries: dict[str, Dependency] = {}
        memo[key] = libraries
        for soname, lib in tree.libraries.items():
            if lib.excluded:
                continue
            if lib.provided and providers is not None:
                if soname not in provided:
                    provided[soname] = providers.lookup(soname, member.elf, member.path)
                libraries[soname] = Dependency(soname, None, False, provided=provided[soname])
                continue
            if LIBPYTHON.match(soname):
                # The interpreter provides it; a repair drops the DT_NEEDED instead.
                libraries[soname] = Dependency(soname, None, False, interpreter=True)
                continue
            inside = fs.member_of(lib.path) if lib.path else None
            path = inside if inside is not None else lib.realpath
            rejected = lib.rejected if lib.path is None else ()
            libraries[soname] = Dependency(
                soname, path, inside is not None, lib.needed, rejected=rejected
            )
        result[member.path] = MemberDeps(member, libraries, names)
    return _borrow_from_loaders(result)


def _memo_key(member: ElfMember) -> tuple[object, ...]:
    """Everything of a member the walk depends on besides the wheel and the host: its needs,
    SONAME, every DT_RPATH/DT_RUNPATH entry, folder ($ORIGIN), interpreter (loaded first, and
    its default directories), what a candidate must match (class, machine, byte order,
    OS ABI, ARM float ABI flags), and whether it dlopen()s the --include libraries."""
    elf = member.elf
    return (
        member.is_extension,
        elf.needed,
        getattr(elf, "rpaths", elf.rpath),
        getattr(elf, "runpaths", elf.runpath),
        elf.soname,
        posixpath.dirname(member.path),
        elf.interpreter,
        elf.elf_class,
        elf.machine,
        elf.byte_order,
        elf.osabi,
        elf.flags,
    )


def _refuse_relative_needed(tree: DependencyTree, fs: WheelFilesystem, member: ElfMember) -> None:
    """A DT_NEEDED path relative to the working directory loads only when the program starts
    in one folder: no wheel can rely on it, and no search path or repair changes it."""
    for needer, name in tree.relative_needed:
        where = fs.member_of(needer) or needer
        via = "" if where == member.path else f" (loaded by {member.path})"
        raise PolicyError(
            f"{where}{via} has DT_NEEDED {name!r}, a path the loader opens relative to the "
            "current directory at run time, so it loads only when the program is started from "
            "one folder: relink it by SONAME (-L<dir> -l<name>) and set an RPATH such as "
            "$ORIGIN/<dir> if the library ships beside it",
            member=where,
            reason=f"DT_NEEDED {name!r} is relative to the current directory",
        )


def _borrow_from_loaders(result: dict[str, MemberDeps]) -> dict[str, MemberDeps]:
    """A wheel library that cannot find a dependency on its own, but is loaded by a wheel file
    whose resolution does find it, gets it from there: at run time it is loaded that way.

    Only a name in the borrower's own closure as that loader's resolution loads it (what the
    borrower and the libraries it pulls in need there) is borrowed.  Such a name is, in that
    resolution, loaded either before the borrower's DT_NEEDED are processed (ld.so then
    answers them with it) or by the borrower's part of the tree, searched with the inherited
    DT_RPATH: both are what ld.so does.  A name the loader's tree loads elsewhere, for a
    library the borrower does not pull in there, is not the borrower's.
    """
    fixed = dict(result)
    for path, deps in result.items():
        missing = {n for n, d in deps.libraries.items() if d.missing}
        if not missing:
            continue
        borrowed = dict(deps.libraries)
        for other in result.values():
            if not any(d.in_wheel and d.path == path for d in other.libraries.values()):
                continue
            closure = _closure_in(deps.member.elf.needed, other.libraries)
            for name in sorted(missing & closure):
                found = other.libraries.get(name)
                if found is None or found.path is None:
                    continue
                missing.discard(name)
                # What it pulls in there comes along, as ld.so loads it.
                for pulled in _closure_in((name,), other.libraries):
                    there = other.libraries.get(pulled)
                    if there is not None and (pulled not in borrowed or borrowed[pulled].missing):
                        borrowed[pulled] = there
                        if not there.missing:
                            missing.discard(pulled)
            if not missing:
                break
        if borrowed != deps.libraries:
            fixed[path] = replace(deps, libraries=borrowed)
    return fixed


def _closure_in(needed: Iterable[str], libraries: Mapping[str, Dependency]) -> set[str]:
    """The names ``needed`` pulls in, transitively, as ``libraries`` resolves them."""
    seen: set[str] = set()
    stack = list(needed)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        dep = libraries.get(name)
        if dep is not None:
            stack.extend(dep.needed)
    return seen
