"""``check``: is every claim a wheel makes true? The verdict a CI gate can trust.

A wheel claims platform tags (its file name and WHEEL), a RECORD of its members, a
``.dist-info`` of the distribution its name says, dependencies that are found where it is
installed, and, for ``cpXY-abi3``, that CPython X.Y and every later one can load it. Each
false claim is one :class:`Problem`: one line naming the file, library, symbol or member. The
audit (:func:`~repairwheel.audit.analyze_wheel`) supplies the facts; this module only weighs
the claims against them.
"""

from __future__ import annotations

import enum
import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.tags import Tag, parse_tag

from .abi3 import Abi3Verdict
from .audit import WheelReport, analyze_wheel
from .errors import (
    ElfError,
    NotPlatformWheelError,
    PolicyError,
    RepairwheelError,
    ResourceError,
    UsageError,
    WheelError,
)
from .graph import roots
from .host import library_facts
from .policy import ANDROID, ARCHES, Policy, get_policy
from .scan import is_loader, start_early
from .verdict import Blocker, BlockerKind, PolicyCheck, decide
from .wheel import WheelArchive
from .wheel.early import EarlyInflate

_LIBRARY_KINDS = (BlockerKind.EXTERNAL_LIBRARY, BlockerKind.MISSING_LIBRARY)
_FAMILY = {"glibc": "manylinux", "musl": "musllinux", ANDROID: "android"}


class ProblemKind(str, enum.Enum):
    """What a false claim is about; the value is its name in JSON output."""

    MALFORMED = "malformed"  # the zip, an ELF member, WHEEL, METADATA, the .dist-info name
    RECORD = "record"  # RECORD disagrees with a member or misses one
    PLATFORM_TAG = "platform-tag"  # a platform tag the content does not satisfy
    DEPENDENCY = "dependency"  # a DT_NEEDED found neither in the wheel nor in the whitelist
    ABI3 = "abi3"  # the abi3 tag: a symbol its CPython version lacks

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]

    def __str__(self) -> str:
        return self.value


_EXIT_CODES = {
    ProblemKind.MALFORMED: 2,
    ProblemKind.RECORD: 2,
    ProblemKind.PLATFORM_TAG: 3,
    ProblemKind.DEPENDENCY: 4,
    ProblemKind.ABI3: 6,
}


@dataclass(frozen=True)
class Problem:
    """One false claim. ``file`` is the member (or host library) it is about, if one."""

    kind: ProblemKind
    file: str | None
    message: str  # the line, without the wheel's name

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind.value, "file": self.file, "message": self.message}


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one wheel: the claims checked and every one found false."""

    wheel: str  # file name
    path: str
    platform_tags: tuple[str, ...]  # every platform tag checked (file name, WHEEL, --plat)
    abi3_tag: str | None  # the abi3 promise checked (cp39-abi3), None when it makes none
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        """0 when every claim holds, else the highest code of the problems found."""
        return max((p.kind.exit_code for p in self.problems), default=0)

    def lines(self) -> list[str]:
        if self.ok:
            claims = ", ".join((*self.platform_tags, *([self.abi3_tag] if self.abi3_tag else [])))
            return [f"{self.wheel}: OK ({claims}; RECORD, metadata and dependencies)"]
        return [f"{self.wheel}: {p.message}" for p in self.problems]

    def to_json(self) -> dict[str, object]:
        return {
            "wheel": self.wheel,
            "path": self.path,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "platform_tags": list(self.platform_tags),
            "abi3_tag": self.abi3_tag,
            "problems": [p.to_json() for p in self.problems],
        }


def validate_tag(tag: str) -> str:
    """``--plat``'s value: a policy tag or alias, ``linux_<arch>`` or ``android_<N>_<arch>``;
    UsageError otherwise (before any wheel is read)."""
    if re.fullmatch(r"linux_\w+|android_\d+_\w+", tag):
        return tag
    try:
        get_policy(tag)
    except PolicyError as exc:
        raise UsageError(f"--plat={tag!r}: {exc}") from None
    return tag


def check_wheel(
    path: str | os.PathLike[str],
    *,
    plat: str | None = None,
    ldpaths: str | None = None,
    exclude: Sequence[str] = (),
    provided_by: Sequence[str] = (),
    site_packages: Sequence[str] | None = None,
    early: EarlyInflate | None = None,
) -> CheckResult:
    """Check every claim of the wheel at ``path`` (and the tag ``plat``, if given).

    ``provided_by`` (with ``site_packages``, as for a repair): distributions whose libraries
    the wheel may link where they install, if it declares them in Requires-Dist and the file
    that needs one has an RPATH entry leading to that folder. ``early``: the biggest member's
    inflate already started by :func:`.scan.start_early` (the CLI starts it before it imports
    this module), taken if it is that member of this file, else cancelled.

    Problems of the wheel itself are returned, never raised; only a failure of the machine
    (ResourceError: memory, temp space) propagates.
    """
    name = os.path.basename(path)
    problems: list[Problem] = []
    tags: list[str] = []
    report = None
    try:
        if early is None:
            early = start_early(path, hashed=True)
        opened = WheelArchive(path, hash_reads=True, refuse_record_mismatch=False, early=early)
        with opened as archive:
            tags = list(archive.filename.platform_tags)
            try:
                archive.check_metadata()  # what installers refuse; the audit needs it too
            except WheelError as exc:
                problems.append(
                    Problem(ProblemKind.MALFORMED, exc.member, _without_name(exc, name))
                )
            else:
                listed, tag_problems = _wheel_tags(archive)
                tags += listed
                problems += tag_problems
                report, audit_problems = _audit(
                    archive, name, ldpaths, exclude, provided_by, site_packages
                )
                problems += audit_problems
            elf = archive.elf_members()
            problems += [
                Problem(ProblemKind.RECORD, m.path, str(m)) for m in archive.verify_record()
            ]
    except (WheelError, ElfError) as exc:
        problems.append(Problem(ProblemKind.MALFORMED, exc.member, _without_name(exc, name)))
        return CheckResult(name, os.fspath(path), tuple(tags), None, tuple(problems))
    tags = list(dict.fromkeys([*tags, *([plat] if plat else [])]))
    if "any" in tags and elf:
        more = f" (and {len(elf) - 1} more)" if len(elf) > 1 else ""
        message = f"claims platform any, but {elf[0]} is an ELF file{more}"
        problems.append(Problem(ProblemKind.PLATFORM_TAG, elf[0], message))
    abi3_tag = None
    if report is not None:
        problems += _claim_problems([t for t in tags if t != "any"], report)
        if report.abi3 is not None:
            abi3_tag = report.abi3.tag
            problems += _abi3_problems(report.abi3)
    return CheckResult(name, os.fspath(path), tuple(tags), abi3_tag, tuple(problems))


def _without_name(exc: RepairwheelError, name: str) -> str:
    message = str(exc)
    return message[len(name) + 2 :] if message.startswith(f"{name}: ") else message


def _wheel_tags(archive: WheelArchive) -> tuple[list[str], list[Problem]]:
    """The platform tags of WHEEL's Tag lines, and how those lines fail to be well-formed or
    to list exactly the file name's tags."""
    wheel = f"{archive.dist_info}/WHEEL"
    listed: set[Tag] = set()
    problems = []
    for line in archive.wheel_metadata.tags:
        fields = line.split("-")
        if len(fields) != 3 or not all(fields):
            message = f"{wheel} has a malformed Tag line {line!r}"
            problems.append(Problem(ProblemKind.MALFORMED, wheel, message))
            continue
        listed |= parse_tag(line)
    if not listed and not problems:
        problems.append(Problem(ProblemKind.MALFORMED, wheel, f"{wheel} has no Tag line"))
    named = archive.filename.tags
    if listed:
        for extra, where, other in (
            (listed - named, wheel, "the file name"),
            (named - listed, "the file name", wheel),
        ):
            if extra:
                shown = ", ".join(sorted(map(str, extra)))
                message = f"{where} has tags {other} lacks: {shown}"
                problems.append(Problem(ProblemKind.MALFORMED, wheel, message))
    return sorted({t.platform for t in listed}), problems


def _audit(
    archive: WheelArchive,
    name: str,
    ldpaths: str | None,
    exclude: Sequence[str],
    provided_by: Sequence[str],
    site_packages: Sequence[str] | None,
) -> tuple[WheelReport | None, list[Problem]]:
    """The audit of the wheel's ELF files, or None and why there is none."""
    with archive.checking_others() as others_checked:
        try:
            report = analyze_wheel(
                archive,
                ldpaths=ldpaths,
                exclude=exclude,
                provided_by=provided_by,
                site_packages=site_packages,
            )
        except NotPlatformWheelError as exc:
            if not archive.elf_members():
                return None, []  # no compiled code: no platform claim can be false
            return None, [Problem(ProblemKind.PLATFORM_TAG, exc.member, _without_name(exc, name))]
        except PolicyError as exc:  # a DT_NEEDED relative to the working directory
            return None, [Problem(ProblemKind.DEPENDENCY, exc.member, _without_name(exc, name))]
        except (WheelError, ElfError, ResourceError):
            raise
        except RepairwheelError as exc:
            if exc.reason == "cannot tell glibc from musl":
                # The tags are linux_* (any other names the libc) and the files need no libc:
                # no policy is claimed, so no policy's claim can be false.
                return None, []
            return None, [Problem(ProblemKind.PLATFORM_TAG, exc.member, _without_name(exc, name))]
        others_checked()
    return report, []


def _claim_problems(tags: Sequence[str], report: WheelReport) -> list[Problem]:
    """The platform tags the content does not satisfy, and the dependencies found neither in
    the wheel nor among the system libraries the strictest claimed tag allows."""
    problems: list[Problem] = []
    checks: list[tuple[str, PolicyCheck]] = []
    for tag in tags:
        check, why = _policy_check(tag, report)
        if why is not None:
            problems.append(Problem(ProblemKind.PLATFORM_TAG, None, f"claims {tag}, but {why}"))
        elif check is not None:
            checks.append((tag, check))
    # The libraries are weighed once, below, against the strictest claim; the rest of what
    # blocks a claimed policy here, for the wheel's own files.
    members = {m.path for m in report.members}
    falsified: dict[Blocker, list[str]] = {}
    for tag, check in checks:
        for blocker in check.as_is_blockers:
            if blocker.kind not in _LIBRARY_KINDS and blocker.file in members:
                falsified.setdefault(blocker, []).append(tag)
    for blocker, claims in falsified.items():
        message = f"claims {', '.join(claims)}, but {blocker}"
        problems.append(Problem(ProblemKind.PLATFORM_TAG, blocker.file, message))
    strictest = max((c.policy for _, c in checks), key=lambda p: p.priority, default=None)
    return problems + _dependency_problems(report, strictest) + _provided_problems(report)


def _policy_check(tag: str, report: WheelReport) -> tuple[PolicyCheck | None, str | None]:
    """How the policy ``tag`` names fares (None for ``linux_<arch>``, which asks nothing of
    the content but its architecture), or why the tag cannot be the content's at all."""
    arch, libc = report.arch or "", report.libc or ""
    if tag.startswith("linux_") and tag[len("linux_") :] not in ARCHES:
        return None, None  # an arch no policy knows (armv6l): its ELF files cannot tell
    for check in report.verdict.checks:
        if tag in _names(check.policy, arch):
            return check, None
    try:
        policy = get_policy(tag, libc=libc)
    except PolicyError:
        try:
            other = get_policy(tag)
        except PolicyError:
            return None, f"no Linux policy knows that tag (its ELF files are {libc} {arch})"
        return None, f"its ELF files are built for {libc}, not {other.libc}"
    if arch not in policy.arches or tag not in _names(policy, arch):
        return None, f"its ELF files are {arch}"
    if policy.priority == 0:
        return None, None
    linux = get_policy("linux", libc=libc)
    deps = report.dependencies
    verdict = decide(
        [deps[m.path] for m in roots(report.members)],
        [policy, linux],
        arch,
        library_facts(report.host_libraries),
        all_members=report.members,
    )
    return verdict.checks[0], None


def _names(policy: Policy, arch: str) -> set[str]:
    """The tags of ``policy`` on ``arch``, and its bare names (``--plat manylinux2014``)."""
    return {*policy.tags(arch), policy.name, *policy.aliases}


def _dependency_problems(report: WheelReport, strictest: Policy | None) -> list[Problem]:
    """Every DT_NEEDED of every ELF member, resolved as installed: in the wheel, or a system
    library ``strictest`` (without a policy claim, the most permissive of the family) allows."""
    arch = report.arch or ""
    policy = strictest or min(
        (c.policy for c in report.verdict.checks if c.policy.priority > 0),
        key=lambda p: p.priority,
        default=None,
    )
    if policy is None:
        return []
    family = _FAMILY.get(report.libc or "", "manylinux")
    allowed_by = policy.tag(arch) if strictest else f"any {family} tag"
    needers: dict[str, list[str]] = {}
    found: dict[str, str] = {}
    for member in report.members:
        libraries = report.dependencies[member.path].libraries
        for soname in member.elf.needed:
            dep = libraries.get(soname)
            if (
                is_loader(soname)
                or soname in policy.whitelist
                or dep is None
                or dep.in_wheel
                or dep.provided
            ):
                continue  # a system library the policy allows, excluded, the wheel's own, or
                # another distribution's (--provided-by: _provided_problems)
            if dep.interpreter and policy.keeps_libpython:
                continue
            needers.setdefault(soname, []).append(member.path)
            if dep.interpreter:
                found[soname] = "libpython: the interpreter loads it, a wheel must not link it"
            elif dep.path is None:
                found[soname] = "not found on this machine either"
                if dep.rejected:
                    found[soname] += " (" + "; ".join(f"{p} {why}" for p, why in dep.rejected) + ")"
            else:
                found[soname] = f"found outside the wheel at {dep.path}" + _through_rpath(
                    member.elf.rpath + member.elf.runpath, soname
                )
    problems = []
    for soname, files in needers.items():
        who = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more files)"
        message = (
            f"{who} needs {soname}, which is neither in the wheel nor a system library "
            f"{allowed_by} allows: {found[soname]}"
        )
        problems.append(Problem(ProblemKind.DEPENDENCY, files[0], message))
    return problems


def _provided_problems(report: WheelReport) -> list[Problem]:
    """Each library linked from another distribution that the wheel does not declare, or that
    the file needing it has no RPATH entry to (it would load only if the provider had been)."""
    provided = {lib.soname: lib for lib in report.provided}
    problems = []
    for member in report.members:
        entries = member.elf.runpath or member.elf.rpath
        origin = posixpath.dirname(member.path)
        reached = {
            posixpath.normpath(posixpath.join(origin, entry[len(prefix) :].lstrip("/")))
            for entry in entries
            for prefix in ("$ORIGIN", "${ORIGIN}")
            if entry == prefix or entry.startswith(prefix + "/")
        }
        for soname in member.elf.needed:
            lib = provided.get(soname)
            if lib is None:
                continue
            source = f"{lib.soname} from {lib.distribution} {lib.version}"
            if lib.requirement_problem is not None:
                why = f"{member.path} links {source}, but {lib.requirement_problem}"
            elif posixpath.normpath(lib.install_dir) not in reached:
                why = f"{member.path} links {source}, but no RPATH entry leads to {lib.install_dir}"
            else:
                continue
            problems.append(Problem(ProblemKind.DEPENDENCY, member.path, why))
    return problems


def _through_rpath(entries: Iterable[str], soname: str) -> str:
    """Which absolute RPATH/RUNPATH entry (a folder of the build machine) holds ``soname``."""
    for entry in entries:
        if posixpath.isabs(entry) and os.path.exists(posixpath.join(entry, soname)):
            return f", through the build-time RPATH entry {entry}"
    return ""


def _abi3_problems(abi3: Abi3Verdict) -> list[Problem]:
    """A line for every symbol the tag's CPython version lacks, and every extension named
    for one interpreter."""
    problems = [
        Problem(ProblemKind.ABI3, symbol.file, f"claims {abi3.tag}, but {symbol.blocker()}")
        for symbol in abi3.symbols
    ]
    problems += [
        Problem(
            ProblemKind.ABI3,
            path,
            f"claims {abi3.tag}, but {path} is named for one CPython version, so no other "
            "version imports it (an abi3 extension is named *.abi3.so)",
        )
        for path in abi3.versioned_files
    ]
    return problems
