"""The target platform: which architecture and libc a wheel is built for, and its policies.

The wheel's file name says what it claims; every ELF member says what it is (machine, class,
byte order, ARM float ABI; libc from the interpreter, the needed libraries or the extension
suffix). Members of another architecture or libc are left out, with the reason. Only when no
file names its libc, and for musl's minor version (nothing in a binary tells 1.1 from 1.2),
does the host decide: pass ``host`` to make that input explicit.

Android: the tag decides.  A wheel tagged ``android_<N>_<arch>`` (exactly one platform tag) is
bionic's, whatever compiler built it; a member that says glibc or musl is left out, one that
says Android (PT_INTERP /system/bin/linker*, an ``-android.so`` extension suffix) in a wheel not
tagged so is refused.  Nothing of the host is asked for an Android wheel.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from packaging.utils import parse_wheel_filename

from .elf import ElfFile, Machine
from .errors import NotPlatformWheelError, RepairwheelError, WheelError
from .policy import (
    ANDROID,
    ANDROID_TAG_ARCHES,
    ARCHES,
    Policy,
    android_policy,
    load_policies,
)
from .scan import ElfMember

if TYPE_CHECKING:
    from .system import SystemReport

log = logging.getLogger(__name__)

_GNU_SUFFIX = re.compile(r"\.cpython-3(\d+)[a-z]*-[^.]*-linux-gnu(?:eabihf)?\.so$")
_LIBC_PREFIXES = {"manylinux": "glibc", "musllinux": "musl", "android": ANDROID}
_ANDROID_TAG = re.compile(r"android_(\d+)_(.+)")


class Platform(NamedTuple):
    """What the members settle: the architecture and libc, and which members count."""

    arch: str
    libc: str
    kept: list[ElfMember]  # the members of that architecture and libc
    ignored: list[tuple[str, str]]  # (member, why it is left out)


def tags_facts(wheel: str) -> tuple[str | None, str | None]:
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
        if family == ANDROID:
            arches.update(a for spelled, a in ANDROID_TAG_ARCHES.items() if plat.endswith(spelled))
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


def settle_platform(
    wheel: str, members: Sequence[ElfMember], host: SystemReport | None = None
) -> Platform:
    """The architecture and libc of a wheel's members; the file name's claim decides ties.

    Raises NotPlatformWheelError when no member is of an architecture and libc a policy covers.
    """
    name_arch, name_libc = tags_facts(wheel)
    arch = name_arch
    libc: str | None = None
    if name_libc == ANDROID:
        android_tag(wheel)  # exactly one android_<N>_<arch> tag, or a clear error
        libc = ANDROID
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
        if member_libc == ANDROID and libc != ANDROID:
            raise NotPlatformWheelError(
                f"{wheel}: {member.path} is built for Android, but the wheel is not tagged "
                "android_<API level>_<arch>: an Android wheel carries exactly one such tag",
                wheel=wheel,
                member=member.path,
                reason="built for Android, not tagged android_<API level>_<arch>",
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
        family = "Android" if libc == ANDROID else "manylinux or musllinux"
        raise NotPlatformWheelError(
            f"{wheel}: no {family} policy applies to its ELF files ({found})",
            wheel=wheel,
            reason=f"no {family} policy applies to its ELF files",
        )
    assert arch is not None
    libc = libc or name_libc
    if libc is None:
        extensions = [m.path for m in kept if m.is_extension]
        if extensions:
            raise RepairwheelError(
                f"{wheel}: cannot tell glibc from musl: {extensions[0]} needs no libc and the "
                "wheel's tag names none",
                wheel=wheel,
                member=extensions[0],
                reason="cannot tell glibc from musl",
            )
        libc = _or_this_machine(host).libc or "glibc"
        log.warning("%s: no ELF file names its libc; assuming the host's (%s)", wheel, libc)
    return Platform(arch, libc, kept, ignored)


def android_tag(wheel: str) -> tuple[int, str]:
    """The API level and the platform tag of an Android wheel, which must carry exactly one
    platform tag, ``android_<N>_<arch>`` (WheelError otherwise)."""
    try:
        _, _, _, tags = parse_wheel_filename(wheel)
    except ValueError as exc:
        raise WheelError(f"{wheel}: not a valid wheel file name: {exc}", wheel=wheel) from None
    platforms = sorted({t.platform for t in tags})
    match = _ANDROID_TAG.fullmatch(platforms[0]) if len(platforms) == 1 else None
    if match is None:
        reason = f"an Android wheel carries exactly one platform tag, not {', '.join(platforms)}"
        raise WheelError(
            f"{wheel}: {reason} (android_<API level>_<arch>)", wheel=wheel, reason=reason
        )
    return int(match.group(1)), platforms[0]


def android_policies(wheel: str, arch: str) -> tuple[Policy, tuple[Policy, ...]]:
    """The policy deciding an Android wheel (its own level, under its own tag), and the more
    compatible levels below it (only informative: the tag is kept, never lowered).

    Raises NotPlatformWheelError below API level 21 or for an arch no Android policy covers.
    """
    level, tag = android_tag(wheel)
    spelled = tag.split("_", 2)[2]
    if ANDROID_TAG_ARCHES.get(spelled) != arch:
        if spelled in ANDROID_TAG_ARCHES:
            reason = f"{tag} names {spelled}, but its ELF files are {arch}"
        else:
            known = ", ".join(sorted(ANDROID_TAG_ARCHES))
            reason = f"no Android policy covers {spelled} (only {known})"
        raise NotPlatformWheelError(f"{wheel}: {reason}", wheel=wheel, reason=reason)
    own = android_policy(level, arch)
    if own is None:
        covered = sorted({a for p in load_policies(ANDROID) if p.priority > 0 for a in p.arches})
        if arch not in covered:
            reason = f"no Android policy covers {arch} (only {', '.join(covered)})"
        else:
            reason = f"{tag} is below API level 21, the lowest any Android policy (PEP 738) covers"
        raise NotPlatformWheelError(f"{wheel}: {reason}", wheel=wheel, reason=reason)
    lower = tuple(
        p
        for p in load_policies(ANDROID, arch)
        if p.api_level is not None and p.priority > own.priority
    )
    return own, lower


def policies_for(
    libc: str, arch: str, host: SystemReport | None = None, wheel: str | None = None
) -> list[Policy]:
    """The policies of ``libc`` on ``arch``, ``linux`` included; for musl the host's minor
    version (or the newest) alone; for Android the one ``wheel``'s tag names (see
    :func:`android_policies`)."""
    if libc == ANDROID:
        if wheel is None:
            raise ValueError("the Android policy is chosen by the wheel's tag: pass wheel")
        linux = [p for p in load_policies(ANDROID, arch) if p.priority == 0]
        return [android_policies(wheel, arch)[0], *linux]
    policies = list(load_policies(libc, arch))
    if libc != "musl":
        return policies
    # musl has no symbol versioning, so nothing in a wheel tells 1.1 from 1.2 builds; like
    # auditwheel, trust the host's musl when there is one, else the newest policy.
    host = _or_this_machine(host)
    musl = [p for p in policies if p.priority > 0]
    chosen = musl[-1] if musl else None
    if host.libc == "musl" and host.libc_version:
        major, minor = (int(x) for x in host.libc_version.split(".")[:2])
        matching = [p for p in musl if p.musl_version == (major, minor)]
        chosen = matching[0] if matching else chosen
    return [p for p in policies if p.priority == 0 or p is chosen]


def _or_this_machine(host: SystemReport | None) -> SystemReport:
    from .system import check_system  # only a wheel that leaves it open asks the host

    return host if host is not None else check_system()
