"""Audit a wheel: which platform tag it satisfies, which a repair reaches, and why not better.

The recipe: scan the ELF members out of the zip (:mod:`.scan`), settle the architecture and
libc, resolve every member's dependencies like the loader (:mod:`.resolve`) over the wheel's
members and the host, then let :mod:`.verdict` weigh every policy.
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from packaging.utils import parse_wheel_filename

from .elf import ElfFile, Machine
from .errors import (
    ElfError,
    NotPlatformWheelError,
    PolicyError,
    RepairwheelError,
    ResourceError,
    WheelError,
)
from .policy import ARCHES, Policy, load_policies
from .resolve import DependencyTree, WheelFilesystem, loader_config, resolve
from .scan import ElfMember, is_loader, read_host_member, scan_elf_members
from .verdict import Dependency, MemberDeps, Verdict, decide
from .wheelfile import WheelArchive

log = logging.getLogger(__name__)

JSON_SCHEMA_VERSION = 1
# Where the wheel's members appear to the resolver: site-packages under a made-up install
# prefix (WHEEL_PREFIX, nothing on the host is consulted under it), so an $ORIGIN/../..
# entry that leaves the wheel lands in the prefix's directories, found empty, as at install
# time it lands in directories no wheel can rely on; never in the host's root.
WHEEL_PREFIX = "/__repairwheel__"
WHEEL_ROOT = f"{WHEEL_PREFIX}/lib/python3/site-packages"
_GNU_SUFFIX = re.compile(r"\.cpython-3(\d+)[a-z]*-[^.]*-linux-gnu(?:eabihf)?\.so$")
LIBPYTHON = re.compile(r"^libpython\d+\.\d+m?\.so(\.\d)*$")
_LIBC_PREFIXES = {"manylinux": "glibc", "musllinux": "musl"}


@dataclass(frozen=True)
class WheelReport:
    """Everything ``show`` says of a wheel, and what ``fix`` plans from."""

    wheel: str  # file name
    path: str
    libc: str | None
    arch: str | None
    members: tuple[ElfMember, ...]  # the ELF files that count (right arch and libc)
    ignored: tuple[tuple[str, str], ...]  # (member, why it was left out)
    dependencies: Mapping[str, MemberDeps]  # member path -> its resolved dependencies
    host_libraries: Mapping[str, ElfMember]  # host path -> facts, for every library outside
    verdict: Verdict
    duplicates: tuple[tuple[str, ...], ...] = ()  # groups of ELF members that look alike
    unrecorded: tuple[str, ...] = ()  # ELF members missing from RECORD

    @property
    def tag(self) -> str:
        return self.verdict.tag.tag(self.arch) if self.arch else ""

    @property
    def repair_tag(self) -> str | None:
        """The best tag ``fix`` can reach, None when no manylinux/musllinux tag is reachable."""
        best = self.verdict.repair_tag
        return None if best.priority == 0 or not self.arch else best.tag(self.arch)

    @property
    def external_libs(self) -> dict[str, str | None]:
        """What a repair to the most compatible policy would graft: soname -> host path."""
        return dict(sorted(self.verdict.checks[0].external_libs.items()))

    def to_json(self) -> dict[str, object]:
        """The documented ``show --json`` document (a superset of auditwheel's version 1)."""
        v = self.verdict
        arch = self.arch or ""
        upgrades = {}
        for check in v.checks:
            if check.policy.priority <= v.tag.priority:
                continue
            entry: dict[str, object] = {}
            if check.external_libs:
                entry["libs_to_eliminate"] = sorted(check.external_libs)
            blacklisted = {
                b.library: list(b.symbols)
                for b in check.as_is_blockers
                if b.kind == "blacklisted-symbol"
            }
            if blacklisted:
                entry["blacklisted_symbols"] = dict(sorted(blacklisted.items()))
            if entry:
                upgrades[check.tag] = entry
        return {
            "version": JSON_SCHEMA_VERSION,
            "wheel": self.wheel,
            "pure": False,
            "libc": self.libc,
            "arch": self.arch,
            "tag": self.tag,
            "repair_tag": self.repair_tag,
            "overall_tag": v.tag.tag(arch),
            "sym_tag": v.sym_tag.tag(arch),
            "pyfpe": v.pyfpe,
            "ucs2": v.ucs2,
            "unsupported_isa": v.unsupported_isa,
            "versioned_symbols": {k: list(vs) for k, vs in v.versioned_symbols.items()},
            "external_libs": self.external_libs,
            "policy_upgrades": upgrades,
            "policies": [c.to_json() for c in v.checks],
            "elf_files": [m.path for m in self.members],
            "duplicates": [list(group) for group in self.duplicates],
            "unrecorded": list(self.unrecorded),
            "ignored_files": [{"file": f, "reason": r} for f, r in self.ignored],
        }


def analyze_wheel(
    path: str | os.PathLike[str] | WheelArchive,
    *,
    ldpaths: str | None = None,
    exclude: Sequence[str] = (),
    disable_isa_ext_check: bool = False,
    spill_dir: str | None = None,
) -> WheelReport:
    """Audit the wheel at ``path``.

    ``spill_dir`` keeps big members inflated there (see ElfMember.spilled) for a repair.
    Raises NotPlatformWheelError when it has no ELF file any policy covers, WheelError for a
    malformed wheel, ElfError for a malformed ELF member.
    """
    if isinstance(path, WheelArchive):
        archive = path
    else:
        with WheelArchive(path) as archive:
            return analyze_wheel(
                archive,
                ldpaths=ldpaths,
                exclude=exclude,
                disable_isa_ext_check=disable_isa_ext_check,
                spill_dir=spill_dir,
            )
    wheel = archive.path.name
    archive.check_metadata()
    members = scan_elf_members(archive, spill_dir=spill_dir)
    in_purelib = [m.path for m in members if _in_purelib(m.path)]
    if in_purelib:
        raise WheelError(
            f"{wheel}: {in_purelib[0]} is a shared library in purelib; a platform wheel installs "
            "its compiled files to platlib"
        )
    name_arch, name_libc = _tags_facts(wheel)
    if not members:
        raise NotPlatformWheelError(
            f"{wheel}: not a platform wheel: it holds no ELF file (no compiled extension or "
            "shared library)"
        )
    arch, libc, kept, ignored = _settle_platform(wheel, members, name_arch, name_libc)
    policies = _policies_for(libc, arch)
    dependencies = _resolve_all(kept, libc, arch, ldpaths, exclude)
    roots = _roots(kept)
    host_facts = _host_facts(dependencies.values())
    verdict = decide(
        [dependencies[m.path] for m in roots],
        policies,
        arch,
        host_facts,
        all_members=kept,
        disable_isa_ext_check=disable_isa_ext_check,
    )
    return WheelReport(
        wheel=wheel,
        path=str(archive.path),
        libc=libc,
        arch=arch,
        members=tuple(kept),
        ignored=tuple(ignored),
        dependencies=dependencies,
        host_libraries=host_facts,
        verdict=verdict,
        duplicates=_duplicates(archive, kept),
        unrecorded=tuple(m.path for m in members if archive.record_row(m.path) is None),
    )


def _in_purelib(member: str) -> bool:
    parts = member.split("/")
    return len(parts) > 2 and parts[0].endswith(".data") and parts[1] == "purelib"


def _tags_facts(wheel: str) -> tuple[str | None, str | None]:
    """Architecture and libc the file name claims (None where it does not say)."""
    try:
        _, _, _, tags = parse_wheel_filename(wheel)
    except ValueError:
        return None, None
    arches: set[str] = set()
    libcs: set[str | None] = set()  # None: a linux_ tag, which names no libc
    for tag in tags:
        plat = tag.platform
        if plat == "any":
            continue
        family = plat.split("_", 1)[0]
        libcs.add(_LIBC_PREFIXES.get(family))
        arches.update(known for known in ARCHES if plat.endswith("_" + known))
    arch = arches.pop() if len(arches) == 1 else None
    libc = libcs.pop() if len(libcs) == 1 else None
    return arch, libc


def elf_libc(elf: ElfFile, member_name: str = "") -> str | None:
    """glibc, musl or android, from the interpreter, the needed libraries, or the file name."""
    base = posixpath.basename(member_name)
    if (elf.interpreter or "").startswith("/system/bin/linker") or base.endswith("-android.so"):
        return "android"
    if elf.interpreter:
        base = posixpath.basename(elf.interpreter)
        return "musl" if base.startswith("ld-musl-") else "glibc"
    for soname in elf.needed:
        if soname.startswith(("libc.musl-", "ld-musl-")):
            return "musl"
        if soname == "libc.so.6" or soname.startswith(("ld-linux-", "ld64.so.")):
            return "glibc"
    if base.endswith(("-linux-musl.so", "-arm-linux-musleabihf.so")):
        return "musl"
    # Since CPython 3.11 musl builds say "musl" in the suffix, so "gnu" there means glibc.
    match = _GNU_SUFFIX.search(base)
    if match and int(match.group(1)) >= 11:
        return "glibc"
    return None


def describe_machine(elf: ElfFile) -> str:
    """A human name for an ELF file's machine, including ones no policy covers."""
    names = {
        Machine.MIPS: "mips",
        Machine.ARM: "arm",
        Machine.PPC: "ppc",
        Machine.SPARCV9: "sparc64",
    }
    if elf.arch:
        return elf.arch
    try:
        base = names.get(Machine(elf.machine)) or Machine(elf.machine).name.lower()
    except ValueError:
        base = f"e_machine {elf.machine}"
    detail = f"{elf.elf_class}-bit {elf.byte_order}-endian"
    if elf.machine == Machine.ARM:
        detail += ", not EABI5 hard-float (armv7l needs both)"
    return f"{base} ({detail})"


def _settle_platform(
    wheel: str,
    members: Sequence[ElfMember],
    name_arch: str | None,
    name_libc: str | None,
) -> tuple[str, str, list[ElfMember], list[tuple[str, str]]]:
    arch = name_arch
    libc: str | None = None
    kept: list[ElfMember] = []
    ignored: list[tuple[str, str]] = []
    for member in members:
        elf_arch = member.elf.arch
        if elf_arch is None:
            ignored.append((member.path, f"no policy covers {describe_machine(member.elf)}"))
            continue
        if arch is None:
            arch = elf_arch
        elif elf_arch != arch:
            ignored.append((member.path, f"built for {elf_arch}, the wheel is {arch}"))
            continue
        member_libc = elf_libc(member.elf, member.path)
        if member_libc == "android":
            raise NotPlatformWheelError(
                f"{wheel}: {member.path} is built for Android; repairwheel has manylinux and "
                "musllinux policies only"
            )
        if member_libc is not None:
            if libc is None:
                libc = member_libc
            elif member_libc != libc:
                ignored.append((member.path, f"linked against {member_libc}, the wheel is {libc}"))
                continue
        kept.append(member)
    if not kept:
        found = "; ".join(f"{f}: {why}" for f, why in ignored)
        raise NotPlatformWheelError(
            f"{wheel}: no manylinux or musllinux policy applies to its ELF files ({found})"
        )
    assert arch is not None
    libc = libc or name_libc
    if libc is None:
        extensions = [m.path for m in kept if m.is_extension]
        if extensions:
            raise RepairwheelError(
                f"{wheel}: cannot tell glibc from musl: {extensions[0]} needs no libc and the "
                "wheel's tag names none"
            )
        libc = _host_libc()
        log.warning("%s: no ELF file names its libc; assuming the host's (%s)", wheel, libc)
    return arch, libc, kept, ignored


def _host_libc() -> str:
    from .system import check_system

    return check_system().libc or "glibc"


def _policies_for(libc: str, arch: str) -> list[Policy]:
    policies = list(load_policies(libc, arch))
    if libc != "musl":
        return policies
    # musl has no symbol versioning, so nothing in a wheel tells 1.1 from 1.2 builds; like
    # auditwheel, trust the host's musl when there is one, else the newest policy.
    from .system import check_system

    host = check_system()
    musl = [p for p in policies if p.priority > 0]
    chosen = musl[-1] if musl else None
    if host.libc == "musl" and host.libc_version:
        major, minor = (int(x) for x in host.libc_version.split(".")[:2])
        matching = [p for p in musl if p.musl_version == (major, minor)]
        chosen = matching[0] if matching else chosen
    return [p for p in policies if p.priority == 0 or p is chosen]


def _roots(members: Sequence[ElfMember]) -> list[ElfMember]:
    """Extensions, and the other ELF files no wheel file loads (by file name, as auditwheel)."""
    needed = {soname for m in members for soname in m.elf.needed}
    return [m for m in members if m.is_extension or posixpath.basename(m.path) not in needed]


def _host_facts(all_deps: Iterable[MemberDeps]) -> dict[str, ElfMember]:
    paths = {
        dep.path
        for deps in all_deps
        for dep in deps.libraries.values()
        if not dep.in_wheel and dep.path is not None and not is_loader(dep.soname)
    }
    facts = {}
    for p in sorted(paths):
        try:
            facts[p] = _read_host_cached(p, *_stat_key(p))
        except ElfError as exc:
            log.warning("%s", exc)
    return facts


def _stat_key(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ResourceError(
            f"{path}: cannot read the library: {exc.strerror or exc} (it was readable moments "
            "ago, while dependencies were resolved)"
        ) from exc
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=4096)
def _read_host_cached(path: str, mtime_ns: int, size: int) -> ElfMember:
    """Host libraries are shared by many files and wheels: parse each version of one once."""
    return read_host_member(path)


def _resolve_all(
    members: Sequence[ElfMember],
    libc: str,
    arch: str,
    ldpaths: str | None,
    exclude: Sequence[str],
) -> dict[str, MemberDeps]:
    """Resolve every member with the wheel laid out under a virtual root over the host."""
    fs = WheelFilesystem(WHEEL_ROOT, {m.path: m.elf for m in members}, fence=WHEEL_PREFIX)
    config = loader_config(libc, arch, ldpaths)
    result: dict[str, MemberDeps] = {}
    # Files in one folder with the same needs and search paths resolve identically: a wheel
    # of 3000 small extensions resolves a handful of times.
    memo: dict[tuple[object, ...], dict[str, Dependency]] = {}
    for member in members:
        key = _memo_key(member)
        if key in memo:
            result[member.path] = MemberDeps(member, memo[key])
            continue
        tree = resolve(fs.path_of(member.path), member.elf, fs, config, exclude)
        _refuse_relative_needed(tree, fs, member)
        libraries: dict[str, Dependency] = {}
        memo[key] = libraries
        for soname, lib in tree.libraries.items():
            if lib.excluded:
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
        result[member.path] = MemberDeps(member, libraries)
    return _borrow_from_loaders(result)


def _memo_key(member: ElfMember) -> tuple[object, ...]:
    """Everything of a member the walk depends on besides the wheel and the host: its needs,
    SONAME, every DT_RPATH/DT_RUNPATH entry, folder ($ORIGIN), interpreter (loaded first, and
    its default directories), and what a candidate must match (class, machine, byte order,
    OS ABI, ARM float ABI flags)."""
    elf = member.elf
    return (
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
            "$ORIGIN/<dir> if the library ships beside it"
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
            fixed[path] = MemberDeps(deps.member, borrowed)
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


def _duplicates(archive: WheelArchive, members: Sequence[ElfMember]) -> tuple[tuple[str, ...], ...]:
    """ELF files of the wheel that are probably the same library twice: same SONAME, or the same
    size and CRC-32 (free from the zip directory; no hashing)."""
    groups: dict[object, list[str]] = {}
    for m in members:
        if m.is_extension:  # extension modules are named for their import path, not shared
            continue
        info = archive.member(m.path)
        groups.setdefault(("content", info.file_size, info.crc), []).append(m.path)
        if m.elf.soname:
            groups.setdefault(("soname", m.elf.soname), []).append(m.path)
    # A library can match on both keys: keep each group of files once.
    return tuple(sorted({tuple(sorted(g)) for g in groups.values() if len(g) > 1}))
