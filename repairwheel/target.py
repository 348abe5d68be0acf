"""The target platform: which architecture and libc a wheel is built for, and its policies.

The wheel's file name says what it claims; every ELF member says what it is (machine, class,
byte order, ARM float ABI; libc from the interpreter, the needed libraries or the extension
suffix). Members of another architecture or libc are left out, with the reason. Only when no
file names its libc, and for musl's minor version (nothing in a binary tells 1.1 from 1.2),
does the host decide: pass ``host`` to make that input explicit.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from packaging.utils import parse_wheel_filename

from .elf import ElfFile, Machine
from .errors import NotPlatformWheelError, RepairwheelError
from .policy import ARCHES, Policy, load_policies
from .scan import ElfMember

if TYPE_CHECKING:
    from .system import SystemReport

log = logging.getLogger(__name__)

_GNU_SUFFIX = re.compile(r"\.cpython-3(\d+)[a-z]*-[^.]*-linux-gnu(?:eabihf)?\.so$")
_LIBC_PREFIXES = {"manylinux": "glibc", "musllinux": "musl"}


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
                "musllinux policies only",
                wheel=wheel,
                member=member.path,
                reason="built for Android",
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
            f"{wheel}: no manylinux or musllinux policy applies to its ELF files ({found})",
            wheel=wheel,
            reason="no manylinux or musllinux policy applies to its ELF files",
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


def policies_for(libc: str, arch: str, host: SystemReport | None = None) -> list[Policy]:
    """The policies of ``libc`` on ``arch``, ``linux`` included; for musl the host's minor
    version (or the newest) alone."""
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
