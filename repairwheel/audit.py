"""Audit a wheel: which platform tag it satisfies, which a repair reaches, and why not better.

The recipe, one stage a module: scan the ELF members out of the zip (:mod:`.scan`), settle
the architecture and libc (:mod:`.target`), resolve every member's dependencies like the
loader over the wheel and the host (:mod:`.graph`), read the host libraries they reach
(:mod:`.host`), then let :mod:`.verdict` weigh every policy.
"""

from __future__ import annotations

import email.parser
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .clock import StageClock, Timings
from .errors import NotPlatformWheelError, PolicyError, WheelError
from .graph import resolve_members, roots
from .host import HostLibrary, library_facts, read_host_libraries
from .include import IncludedLibrary, IncludeEffect, find_included
from .policy import ANDROID, get_policy
from .providers import ProvidedLibrary, covering_requirement, find_providers
from .scan import ElfMember, ElfScan, scan_elf_members
from .target import android_policies, policies_for, settle_platform
from .verdict import BlockerKind, MemberDeps, Verdict, decide
from .wheel import WheelArchive, WheelFilename

if TYPE_CHECKING:
    from .abi3 import Abi3Verdict
    from .system import SystemReport

JSON_SCHEMA_VERSION = 1


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
    host_libraries: Mapping[str, HostLibrary]  # host path -> facts, for every library outside
    verdict: Verdict
    duplicates: tuple[tuple[str, ...], ...] = ()  # groups of ELF members that look alike
    unrecorded: tuple[str, ...] = ()  # ELF members missing from RECORD
    provided: tuple[ProvidedLibrary, ...] = ()  # linked from other distributions, by soname
    abi3: Abi3Verdict | None = None  # for a cpXY-abi3 wheel: what keeps that tag from true
    included: tuple[IncludedLibrary, ...] = ()  # --include: libraries it dlopen()s
    verdict_without_include: Verdict | None = None  # the verdict without them (for show)
    # the audit's stages: "read ELF" (metadata checked, every ELF member inflated and parsed),
    # "resolve" (dependencies found on the wheel and the host), "decide" (the policies weighed)
    timings: Timings = ()

    @property
    def tag(self) -> str:
        return self.verdict.tag.tag(self.arch) if self.arch else ""

    @property
    def repair_tag(self) -> str | None:
        """The best tag ``fix`` can reach, None when no manylinux/musllinux tag (for Android:
        the wheel's own tag) is reachable."""
        best = self.verdict.repair_tag
        return None if best.priority == 0 or not self.arch else best.tag(self.arch)

    @property
    def false_tags(self) -> tuple[str, ...]:
        """manylinux/musllinux tags of the file name that no repair can make true: more
        compatible than the best tag ``fix`` reaches. A repair keeps the tags a wheel already
        has (as auditwheel's does), so such a claim survives it."""
        if self.libc == ANDROID or not self.arch:
            return ()
        claimed = WheelFilename.parse(self.wheel).platform_tags
        false = []
        for tag in claimed:
            try:
                policy = get_policy(tag, self.arch, libc=self.libc)
            except PolicyError:  # linux_*, another family's, or not a policy tag at all
                continue
            if policy.priority > self.verdict.repair_tag.priority:
                false.append(tag)
        return tuple(false)

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
                if b.kind == BlockerKind.BLACKLISTED_SYMBOL
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
            "lower_api_levels": [c.to_json() for c in v.lower],
            "elf_files": [m.path for m in self.members],
            "duplicates": [list(group) for group in self.duplicates],
            "unrecorded": list(self.unrecorded),
            "ignored_files": [{"file": f, "reason": r} for f, r in self.ignored],
            "false_tags": list(self.false_tags),
            "provided_libs": {p.soname: p.to_json() for p in self.provided},
            "abi3": None if self.abi3 is None else self.abi3.to_json(),
            "include": None if (effect := IncludeEffect.of(self)) is None else effect.to_json(),
        }


def analyze_wheel(
    path: str | os.PathLike[str] | WheelArchive,
    *,
    ldpaths: str | None = None,
    exclude: Sequence[str] = (),
    disable_isa_ext_check: bool = False,
    host: SystemReport | None = None,
    provided_by: Sequence[str] = (),
    site_packages: Sequence[str] | None = None,
    include: Sequence[str] = (),
    started: ElfScan | None = None,
) -> WheelReport:
    """Audit the wheel at ``path``.

    ``include``: paths or names (globs allowed) of libraries the wheel loads with dlopen,
    found on the library search path; they count as grafted by every extension.

    ``provided_by``: names or globs of installed distributions (in ``site_packages``, default
    this interpreter's environment) whose libraries the wheel links instead of grafting.

    ``started``: the reads of the archive's ELF members, begun by the caller, so that its
    biggest member inflates while the caller starts up.
    ``host`` is what decides the libc when no file names it, and musl's minor version (the
    running machine's :func:`~repairwheel.system.check_system` when None).
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
                host=host,
                provided_by=provided_by,
                site_packages=site_packages,
                include=include,
            )
    wheel = archive.path.name
    clock = StageClock()
    archive.check_metadata()
    if started is None:
        members = scan_elf_members(archive)
    else:
        members = started.members()
    clock.lap("read ELF")
    in_purelib = [m.path for m in members if _in_purelib(m.path)]
    if in_purelib:
        raise WheelError(
            f"{wheel}: {in_purelib[0]} is a shared library in purelib; a platform wheel installs "
            "its compiled files to platlib",
            wheel=wheel,
            member=in_purelib[0],
            reason="a shared library in purelib",
        )
    if not members:
        raise NotPlatformWheelError(
            f"{wheel}: not a platform wheel: it holds no ELF file (no compiled extension or "
            "shared library)",
            wheel=wheel,
            reason="not a platform wheel: it holds no ELF file",
        )
    arch, libc, kept, ignored = settle_platform(wheel, members, host)
    policies = policies_for(libc, arch, host, wheel)
    providers = find_providers(provided_by, site_packages) if provided_by else None
    included = find_included(include, libc, arch, ldpaths, kept[0].elf) if include else ()
    dependencies = resolve_members(kept, libc, arch, ldpaths, exclude, providers, included)
    host_libraries = read_host_libraries(dependencies.values())
    clock.lap("resolve")
    root_deps = [dependencies[m.path] for m in roots(kept)]
    facts = library_facts(host_libraries)
    verdict = decide(
        root_deps,
        policies,
        arch,
        facts,
        all_members=kept,
        disable_isa_ext_check=disable_isa_ext_check,
    )
    without_include = None
    if included:  # what show compares with: the same walk, nothing shipped or dlopen()ed
        without_include = decide(
            [replace(deps, included=()) for deps in root_deps],
            policies,
            arch,
            facts,
            all_members=kept,
            disable_isa_ext_check=disable_isa_ext_check,
        )
    if libc == ANDROID:
        # The tag is kept; the levels below it are weighed only to say what blocks them.
        lower = android_policies(wheel, arch)[1]
        if lower:
            linux = [p for p in policies if p.priority == 0]
            lower_verdict = decide(
                root_deps,
                [*lower, *linux],
                arch,
                facts,
                all_members=kept,
                disable_isa_ext_check=disable_isa_ext_check,
            )
            verdict = replace(verdict, lower=lower_verdict.checks)
    provided = _provided(archive, dependencies.values())
    if provided:  # the versions a provider's library defines are not the system's
        names = {lib.soname for lib in provided}
        versions = {k: v for k, v in verdict.versioned_symbols.items() if k not in names}
        verdict = replace(verdict, versioned_symbols=versions)
    report = WheelReport(
        wheel=wheel,
        path=str(archive.path),
        libc=libc,
        arch=arch,
        members=tuple(kept),
        ignored=tuple(ignored),
        dependencies=dependencies,
        host_libraries=host_libraries,
        verdict=verdict,
        duplicates=_duplicates(archive, kept),
        unrecorded=tuple(m.path for m in members if archive.record_row(m.path) is None),
        provided=provided,
        abi3=_abi3(archive.filename, kept),
        included=included,
        verdict_without_include=without_include,
    )
    clock.lap("decide")
    return replace(report, timings=clock.timings)


def _abi3(filename: WheelFilename, members: Sequence[ElfMember]) -> Abi3Verdict | None:
    """The abi3 verdict of a wheel with a CPython abi3 tag, None for any other wheel."""
    from .abi3 import abi3_baseline, check_abi3  # loads the stable ABI table only if needed

    baseline = abi3_baseline((tag.interpreter, tag.abi) for tag in filename.tags)
    return None if baseline is None else check_abi3(members, baseline)


def _provided(archive: WheelArchive, all_deps: Iterable[MemberDeps]) -> tuple[ProvidedLibrary, ...]:
    """The libraries other distributions provide, each with the Requires-Dist covering it."""
    found = {
        dep.soname: dep.provided
        for deps in all_deps
        for dep in deps.libraries.values()
        if dep.provided is not None
    }
    if not found:
        return ()
    text = bytes(archive.read(f"{archive.dist_info}/METADATA")).decode("utf-8")
    message = email.parser.Parser().parsestr(text, headersonly=True)
    requires = message.get_all("Requires-Dist") or []
    return tuple(
        replace(lib, requirement=covering_requirement(requires, lib.distribution))
        for _, lib in sorted(found.items())
    )


def _in_purelib(member: str) -> bool:
    parts = member.split("/")
    return len(parts) > 2 and parts[0].endswith(".data") and parts[1] == "purelib"


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
