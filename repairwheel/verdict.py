"""The policy verdict: which tag a wheel satisfies as it is, which one a repair reaches, and why
not a better one.

The decision follows auditwheel 6.8 (so verdicts agree), and records for every policy the
concrete blockers — the file, the library, the symbol version and the symbols bound to it —
instead of only the outcome.

Android adds two rules of its own (``api-level`` blockers, never repairable): a library to graft
needs API level 24 (bionic reads DT_RUNPATH from then on), and a library that is a system
library only from a later level is not there at this one.  A DT_NEEDED on libpython is allowed
as it is.
"""

from __future__ import annotations

import enum
import functools
import itertools
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from .policy import MIN_GRAFT_API_LEVEL, Policy, android_system_level
from .providers import ProvidedLibrary
from .scan import ElfMember, is_loader

X86_ISA_NAMES = {2: "x86-64-v2", 4: "x86-64-v3", 8: "x86-64-v4"}


@dataclass(frozen=True)
class Dependency:
    """A library some wheel file loads, as the loader would find it."""

    soname: str
    path: str | None  # host path, member name when in_wheel, None when not found
    in_wheel: bool
    needed: tuple[str, ...] = ()
    interpreter: bool = False  # libpython: the interpreter provides it; a repair drops it
    # When missing: the files of the name the loader passed over, and why
    # ("/usr/lib/x86_64-linux-gnu/libc.so", "is a linker script, not a shared library")
    rejected: tuple[tuple[str, str], ...] = ()
    provided: ProvidedLibrary | None = None  # another distribution's (--provided-by): linked

    @property
    def missing(self) -> bool:
        """Needed, outside the wheel, and nowhere to be found: a repair cannot graft it."""
        return (
            self.path is None
            and not self.in_wheel
            and not self.interpreter
            and self.provided is None
        )


@dataclass(frozen=True)
class MemberDeps:
    """The transitive dependencies of one wheel file, keyed by soname."""

    member: ElfMember
    libraries: Mapping[str, Dependency]
    # --include names: shipped whatever the whitelist; an extension dlopen()s them
    included: tuple[str, ...] = ()


class BlockerKind(str, enum.Enum):
    """What kind of obstacle a :class:`Blocker` is; the value is its name in JSON output."""

    SYMBOL_VERSION = "symbol-version"
    EXTERNAL_LIBRARY = "external-library"
    MISSING_LIBRARY = "missing-library"
    BLACKLISTED_SYMBOL = "blacklisted-symbol"
    ISA = "isa"
    PYFPE = "pyfpe"
    UCS2 = "ucs2"
    API_LEVEL = "api-level"
    ABI3_SYMBOL = "abi3-symbol"  # of the abi3 tag, not of a platform policy (see abi3.py)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Blocker:
    """One reason a policy is out of reach."""

    kind: BlockerKind
    file: str  # the wheel member, or the host path of a library a repair would graft
    library: str | None = None
    detail: str | None = None  # the version, symbol, ISA level or path
    symbols: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()  # missing-library: "<path> <why it is not used>", each

    def __str__(self) -> str:
        if self.kind == BlockerKind.SYMBOL_VERSION:
            shown = ", ".join(self.symbols[:3]) + (", ..." if len(self.symbols) > 3 else "")
            via = f" ({shown})" if shown else ""
            return f"{self.file} needs {self.detail} from {self.library}{via}"
        if self.kind == BlockerKind.EXTERNAL_LIBRARY:
            where = self.detail or "provided by the interpreter"
            return f"{self.file} needs {self.library} ({where}), which the policy does not allow"
        if self.kind == BlockerKind.MISSING_LIBRARY:
            text = f"{self.file} needs {self.library}, which cannot be found"
            if self.detail:
                text += f" (the wheel has {self.detail}, but not on the search path)"
            if self.rejected:
                text += f" ({'; '.join(self.rejected)})"
            return text
        if self.kind == BlockerKind.BLACKLISTED_SYMBOL:
            return f"{self.file} uses {', '.join(self.symbols)} from {self.library}, blacklisted"
        if self.kind == BlockerKind.ISA:
            return f"{self.file} requires the {self.detail} instruction set"
        if self.kind == BlockerKind.API_LEVEL:
            return f"{self.file} needs {self.library}: {self.detail}"
        if self.kind == BlockerKind.ABI3_SYMBOL:
            used = f"{self.file} uses {', '.join(self.symbols)}"
            if self.detail is None:
                return f"{used}, which is not in the stable ABI (abi3) of any CPython"
            return f"{used}, in the stable ABI only from CPython {self.detail} on"
        if self.kind == BlockerKind.PYFPE:
            return f"{self.file} uses PyFPE_jbuf (fpectl builds only)"
        return f"{self.file} is built for a narrow-unicode (UCS2) Python"

    @property
    def key(self) -> tuple[BlockerKind, str | None, str | None]:
        """What the obstacle is, whichever file has it."""
        return (self.kind, self.library, self.detail)


def group_blockers(blockers: Iterable[Blocker]) -> list[tuple[Blocker, tuple[str, ...]]]:
    """Fold blockers that differ only in the file: (first blocker, every file with it)."""
    groups: dict[tuple[BlockerKind, str | None, str | None], tuple[Blocker, dict[str, None]]] = {}
    for blocker in blockers:
        groups.setdefault(blocker.key, (blocker, {}))[1][blocker.file] = None
    return [(first, tuple(files)) for first, files in groups.values()]


def describe_group(first: Blocker, files: Sequence[str]) -> str:
    who = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more files)"
    return str(replace(first, file=who))


@dataclass(frozen=True)
class PolicyCheck:
    """How one policy fares: what a repair would graft, and what blocks it."""

    policy: Policy
    tag: str
    external_libs: Mapping[str, str | None]  # soname -> host path (None: not found)
    blockers: tuple[Blocker, ...]  # those a repair cannot remove
    as_is_blockers: tuple[Blocker, ...]  # also the external libraries themselves

    def to_json(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "priority": self.policy.priority,
            "external_libs": dict(sorted(self.external_libs.items())),
            "blockers": [
                {
                    "kind": first.kind.value,
                    "library": first.library,
                    "detail": first.detail,
                    "files": list(files),
                    "symbols": list(first.symbols),
                    "rejected": list(first.rejected),
                    "repairable": first not in self.blockers,
                    "message": describe_group(first, files),
                }
                for first, files in group_blockers(self.as_is_blockers)
            ],
            "repairable": not self.blockers,
        }


@dataclass(frozen=True)
class Verdict:
    """The outcome over all policies of one libc and architecture, most compatible first."""

    checks: tuple[PolicyCheck, ...]
    tag: Policy  # satisfied as it is
    repair_tag: Policy  # reachable by a repair (linux: none)
    sym_tag: Policy  # bounded by symbol versions only
    versioned_symbols: Mapping[str, tuple[str, ...]]
    unsupported_isa: bool
    pyfpe: bool
    ucs2: bool
    # Android: how the more compatible API levels below the wheel's tag fare (informative:
    # the tag is kept), most compatible first
    lower: tuple[PolicyCheck, ...] = ()

    def check(self, policy: Policy) -> PolicyCheck:
        return next(c for c in self.checks if c.policy == policy)


def external_closure(
    deps: MemberDeps, whitelist: frozenset[str], *, allow_libpython: bool = False
) -> dict[str, Dependency]:
    """Libraries outside the wheel and the whitelist that ``deps.member`` loads, transitively.

    Whitelisted libraries are not walked into; libraries inside the wheel are walked through.
    ``allow_libpython`` (Android) leaves libpython out, like a whitelisted library. An
    extension loads the ``included`` names too, and those are never taken as whitelisted.
    """
    found: dict[str, Dependency] = {}
    seen: set[str] = set()
    todo = [*deps.member.elf.needed, *(deps.included if deps.member.is_extension else ())]
    while todo:
        soname = todo.pop()
        whitelisted = soname in whitelist and soname not in deps.included
        if soname in seen or is_loader(soname) or whitelisted:
            continue
        seen.add(soname)
        dep = deps.libraries.get(soname)
        if dep is None:  # excluded by the user
            continue
        if (allow_libpython and dep.interpreter) or dep.provided is not None:
            continue  # another distribution's libraries are its own business
        if not dep.in_wheel:
            found[soname] = dep
        todo.extend(dep.needed)
    return found


_Versioned = tuple[tuple[str, frozenset[str]], ...]


class _Needs(NamedTuple):
    """A file's symbol-version needs, sorted once for every policy to look at: library ->
    versions, the ``shipped`` libraries (--include) left out (their versions are the graft's,
    not the system's)."""

    file: str
    member: ElfMember
    versioned: _Versioned

    @classmethod
    def of(
        cls,
        file: str,
        member: ElfMember,
        shipped: frozenset[str],
        shared: dict[_Versioned, _Versioned],
    ) -> _Needs:
        """``shared`` holds one copy of each distinct need (10000 extensions have a few)."""
        items = sorted(member.versioned_symbols.items())
        versioned = tuple(item for item in items if item[0] not in shipped)
        return cls(file, member, shared.setdefault(versioned, versioned))


def _symbol_blockers(policy: Policy, arch: str, sources: Iterable[_Needs]) -> list[Blocker]:
    """Versions ``policy`` does not allow, with the file and library needing each."""
    blockers: list[Blocker] = []
    verdicts: dict[frozenset[str], tuple[str, ...]] = {}  # files mostly share their needs
    for needs in sources:
        for library, versions in needs.versioned:
            if versions not in verdicts:
                verdicts[versions] = policy.disallowed_versions(arch, versions)
            for version in verdicts[versions]:
                blockers.append(
                    Blocker(
                        BlockerKind.SYMBOL_VERSION,
                        needs.file,
                        library,
                        version,
                        needs.member.symbols_by_version.get(version, ()),
                    )
                )
    return blockers


def _blacklist_blockers(
    policy: Policy, roots: Iterable[tuple[ElfMember, frozenset[str]]]
) -> list[Blocker]:
    """The blacklisted symbols each root (with its DT_NEEDED names as a set) takes from a
    library ``policy`` blacklists them in."""
    blockers = []
    for member, needed in roots:
        for library in sorted(needed.intersection(policy.blacklist)):
            banned = policy.blacklist[library]
            hits = banned & member.undefined
            if "*" in banned:
                hits = hits | {"*"}
            if hits:
                blockers.append(
                    Blocker(
                        BlockerKind.BLACKLISTED_SYMBOL,
                        member.path,
                        library,
                        symbols=tuple(sorted(hits)),
                    )
                )
    return blockers


def extended_isa(member: ElfMember) -> str | None:
    """The x86-64 level beyond the baseline a file requires, or None."""
    if member.elf.arch != "x86_64" or member.elf.isa_needed is None:
        return None
    bits = member.elf.isa_needed & ~1
    for bit in (8, 4, 2):
        if bits & bit:
            return X86_ISA_NAMES[bit]
    return "an unknown x86-64 level" if bits else None


@dataclass(frozen=True)
class _Reach:
    """What the wheel loads from outside itself under one policy's whitelist."""

    external: dict[str, Dependency]  # soname -> how it resolves, in first-needed order
    needers: dict[str, list[str]]  # soname -> the wheel files that load it


def decide(
    roots: Sequence[MemberDeps],
    policies: Sequence[Policy],
    arch: str,
    host_facts: Mapping[str, ElfMember],
    *,
    all_members: Sequence[ElfMember],
    disable_isa_ext_check: bool = False,
) -> Verdict:
    """Evaluate every policy (most compatible first; the last is ``linux``) for a wheel.

    ``roots`` are the wheel files whose dependency trees count (extensions, and libraries no
    other wheel file loads); ``all_members`` every ELF member (their symbol versions count);
    ``host_facts`` the facts of each host library by path (symbol versions, ISA level).
    """
    ordered = sorted(policies, key=lambda p: -p.priority)
    linux = next(p for p in ordered if p.priority == 0)
    candidates = list(itertools.takewhile(lambda p: p is not linux, ordered))
    groups = _share_resolution(roots)

    @functools.cache
    def places() -> dict[str, int]:  # only where roots of two groups need one library
        return {deps.member.path: i for i, deps in enumerate(roots)}

    reach = {policy.name: _reach(groups, places, policy) for policy in candidates}
    isa_blockers: dict[str, list[Blocker]] = {}
    if disable_isa_ext_check:
        isa_cap = ordered[0]
    else:
        external_names = {name for r in reach.values() for name in r.external}
        isa_cap, isa_blockers = _machine_cap(roots, ordered, host_facts, external_names, linux)
    # Blockers every policy shares: the interpreter ABI the wheel's extensions are built for.
    abi_blockers = [Blocker(BlockerKind.PYFPE, m.path) for m in all_members if m.uses_pyfpe]
    abi_blockers += [Blocker(BlockerKind.UCS2, m.path) for m in all_members if m.uses_ucs2]

    shipped = frozenset(n for deps in roots for n in deps.included)  # their versions are ours
    distinct: dict[_Versioned, _Versioned] = {}
    wheel_sources = [_Needs.of(m.path, m, shipped, distinct) for m in all_members]
    needed_sets: dict[tuple[str, ...], frozenset[str]] = {}  # one set per distinct DT_NEEDED
    root_needed = []
    for deps in roots:
        needed = deps.member.elf.needed
        if needed not in needed_sets:
            needed_sets[needed] = frozenset(needed)
        root_needed.append((deps.member, needed_sets[needed]))
    in_wheel = {posixpath.basename(m.path): m.path for m in all_members}
    in_wheel.update({m.elf.soname: m.path for m in all_members if m.elf.soname})
    checks: list[PolicyCheck] = []
    grafts: dict[tuple[str, str, str | None], Blocker] = {}
    sym_best: Policy = linux
    wheel_versions = _versions_of(wheel_sources)
    sym_versions = wheel_versions
    for policy in candidates:
        external = reach[policy.name].external
        grafted = [
            _Needs.of(d.path, host_facts[d.path], shipped, distinct)
            for d in external.values()
            if d.path is not None and d.path in host_facts
        ]
        symbol_blockers = _symbol_blockers(policy, arch, [*wheel_sources, *grafted])
        if sym_best is linux:
            # Reported versions: those of the best policy's repair, else of the newest policy's.
            sym_versions = _versions_of(grafted, wheel_versions)
            if not symbol_blockers:
                sym_best = policy
        other_blockers = [*isa_blockers.get(policy.name, ()), *abi_blockers]
        checks.append(
            _check(
                policy,
                arch,
                reach[policy.name],
                root_needed,
                in_wheel,
                symbol_blockers,
                other_blockers,
                grafts,
            )
        )

    # Every constraint only loosens as policies get newer, so "the best policy with no
    # blocker" equals auditwheel's minimum over the best policy of each constraint (the ISA
    # cap included: its blockers are on every policy above it).
    return Verdict(
        checks=tuple(checks),
        tag=_best([c.policy for c in checks if not c.as_is_blockers], linux),
        repair_tag=_best([c.policy for c in checks if not c.blockers], linux),
        sym_tag=sym_best,
        versioned_symbols={k: tuple(sorted(v)) for k, v in sorted(sym_versions.items())},
        unsupported_isa=isa_cap is linux,
        pyfpe=any(m.uses_pyfpe for m in all_members),
        ucs2=any(m.uses_ucs2 for m in all_members),
    )


def _share_resolution(roots: Sequence[MemberDeps]) -> list[tuple[MemberDeps, list[str]]]:
    """The roots in groups that share one resolution (one ``libraries`` mapping: so one
    closure under every whitelist), in the order each group first appears: the group's first
    root and the paths of all of its roots, in order."""
    groups: dict[int, tuple[MemberDeps, list[str]]] = {}
    for deps in roots:
        groups.setdefault(id(deps.libraries), (deps, []))[1].append(deps.member.path)
    return list(groups.values())


def _reach(
    groups: Sequence[tuple[MemberDeps, list[str]]],
    places: Callable[[], Mapping[str, int]],
    policy: Policy,
) -> _Reach:
    """What the roots (:func:`_share_resolution`'s groups; ``places``: each root's place
    among them) load from outside the wheel under ``policy``: in first-needed order, each
    library with the roots needing it, in root order."""
    reach = _Reach({}, {})
    needing: dict[str, list[list[str]]] = {}
    for deps, paths in groups:
        closure = external_closure(deps, policy.whitelist, allow_libpython=policy.keeps_libpython)
        for name, dep in closure.items():
            reach.external.setdefault(name, dep)
            needing.setdefault(name, []).append(paths)
    for name, lists in needing.items():
        if len(lists) == 1:
            reach.needers[name] = list(lists[0])
        else:
            reach.needers[name] = sorted(itertools.chain(*lists), key=places().__getitem__)
    return reach


def _check(
    policy: Policy,
    arch: str,
    reach: _Reach,
    roots: Sequence[tuple[ElfMember, frozenset[str]]],
    in_wheel: Mapping[str, str],
    symbol_blockers: list[Blocker],
    other_blockers: list[Blocker],
    grafts: dict[tuple[str, str, str | None], Blocker],
) -> PolicyCheck:
    """One policy's outcome (``roots``: each root file with its DT_NEEDED names as a set).
    ``other_blockers`` (ISA, interpreter ABI) come last, after the symbol versions, the
    blacklist and the missing libraries. ``grafts`` holds the would-be-grafted entries made
    so far, shared by every policy's check (10000 extensions linking two libraries under 16
    policies would otherwise hold 320000 of them)."""
    external, needers = reach.external, reach.needers
    level = policy.api_level
    too_new: dict[str, str] = {}  # Android: soname -> why this API level cannot have it
    if level is not None:
        for name, dep in external.items():
            since = android_system_level(name)
            if since is not None and since > level and (dep.missing or level < MIN_GRAFT_API_LEVEL):
                too_new[name] = f"a system library from Android API level {since} on"
            elif level < MIN_GRAFT_API_LEVEL and not dep.missing:
                too_new[name] = (
                    f"{dep.path} would be grafted, and grafting needs Android API level "
                    f"{MIN_GRAFT_API_LEVEL} or higher (bionic reads DT_RUNPATH from then on)"
                )
    missing = [
        Blocker(
            BlockerKind.MISSING_LIBRARY,
            file,
            name,
            in_wheel.get(name),
            rejected=tuple(f"{path} {why}" for path, why in dep.rejected),
        )
        for name, dep in sorted(external.items())
        if dep.missing and name not in too_new
        for file in needers[name]
    ]
    missing += [
        Blocker(BlockerKind.API_LEVEL, file, name, why)
        for name, why in sorted(too_new.items())
        for file in needers[name]
    ]
    blockers = [
        *symbol_blockers,
        *_blacklist_blockers(policy, roots),
        *missing,
        *other_blockers,
    ]
    grafted = [
        _graft(grafts, file, name, dep.path)
        for name, dep in sorted(external.items())
        if not dep.missing and name not in too_new
        for file in needers[name]
    ]
    return PolicyCheck(
        policy,
        policy.tag(arch),
        {name: dep.path for name, dep in external.items()},
        tuple(blockers),
        tuple(grafted + blockers),
    )


def _graft(
    grafts: dict[tuple[str, str, str | None], Blocker], file: str, name: str, path: str | None
) -> Blocker:
    key = (file, name, path)
    found = grafts.get(key)
    if found is None:
        found = grafts[key] = Blocker(BlockerKind.EXTERNAL_LIBRARY, file, name, path)
    return found


def _versions_of(
    sources: Iterable[_Needs], base: Mapping[str, set[str]] | None = None
) -> dict[str, set[str]]:
    """Library -> every version the sources need from it, added to a copy of ``base``."""
    result = {library: set(versions) for library, versions in (base or {}).items()}
    for needs in sources:
        for library, versions in needs.versioned:
            result.setdefault(library, set()).update(versions)
    return result


def _best(candidates: Sequence[Policy], linux: Policy) -> Policy:
    return max(candidates, key=lambda p: p.priority, default=linux)


def _machine_cap(
    roots: Sequence[MemberDeps],
    ordered: Sequence[Policy],
    host_facts: Mapping[str, ElfMember],
    external_names: set[str],
    linux: Policy,
) -> tuple[Policy, dict[str, list[Blocker]]]:
    """The best policy the instruction-set levels allow, and blockers per policy name.

    A wheel file beyond the baseline caps at ``linux``; a library that some policy whitelists
    caps at the best policy whitelisting it (that policy's systems provide the same library).
    """
    cap = ordered[0]
    blockers: dict[str, list[Blocker]] = {}
    seen: set[str] = set()

    def block(limit: Policy, blocker: Blocker) -> None:
        for policy in ordered:
            if policy.priority > limit.priority:
                blockers.setdefault(policy.name, []).append(blocker)

    for deps in roots:
        level = extended_isa(deps.member)
        if level and deps.member.path not in seen:
            seen.add(deps.member.path)
            cap = linux
            block(linux, Blocker(BlockerKind.ISA, deps.member.path, detail=level))
        for dep in deps.libraries.values():
            if dep.soname not in external_names or dep.path is None or dep.path in seen:
                continue
            seen.add(dep.path)
            facts = host_facts.get(dep.path)
            level = extended_isa(facts) if facts else None
            if not level:
                continue
            allowing = [p for p in ordered if dep.soname in p.whitelist]
            limit = max(allowing, key=lambda p: p.priority, default=linux)
            if limit.priority < cap.priority:
                cap = limit
            block(limit, Blocker(BlockerKind.ISA, dep.path, dep.soname, level))
    return cap, blockers
