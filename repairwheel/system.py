"""What this machine accepts: libc kind and version, architecture, platform tags (PEP 600/656).

Tag logic is packaging.tags' (which honours a ``_manylinux`` module); this module only reports it.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass

from packaging import tags

_LIBC_TAG = re.compile(r"^(manylinux|musllinux)_(\d+)_(\d+)_(.+)$")


@dataclass(frozen=True)
class SystemReport:
    """The answer to "which platform tags does this interpreter accept?"."""

    libc: str | None  # "glibc", "musl" or None (not Linux, or unknown)
    libc_version: str | None
    arch: str
    platform_tags: tuple[str, ...]  # most preferred first
    best_tag: str | None  # the most specific manylinux/musllinux tag accepted

    def to_json(self) -> dict[str, object]:
        return {
            "libc": self.libc,
            "libc_version": self.libc_version,
            "arch": self.arch,
            "best_tag": self.best_tag,
            "platform_tags": list(self.platform_tags),
        }


def check_system() -> SystemReport:
    """Describe the running interpreter's platform compatibility."""
    platform_tags = tuple(tags.platform_tags())
    best = next((t for t in platform_tags if _LIBC_TAG.match(t)), None)
    libc, version = None, None
    if best is not None:
        match = _LIBC_TAG.match(best)
        assert match is not None
        libc = "glibc" if match.group(1) == "manylinux" else "musl"
        version = f"{match.group(2)}.{match.group(3)}"
    if libc in (None, "glibc"):
        # The tags may stop below the real glibc when _manylinux vetoes newer ones.
        confstr = _glibc_confstr()
        if confstr is not None:
            libc, version = "glibc", confstr
    arch = best.split("_", 3)[3] if best else platform.machine()
    return SystemReport(libc, version, arch, platform_tags, best)


def _glibc_confstr() -> str | None:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, OSError, ValueError):
        return None
    if not value or not value.startswith("glibc "):
        return None
    return value.split()[1]


def format_report(report: SystemReport) -> str:
    lines = [
        f"libc: {report.libc or 'unknown'} {report.libc_version or ''}".rstrip(),
        f"architecture: {report.arch}",
        f"python: {sys.implementation.name} {platform.python_version()}",
    ]
    if report.best_tag:
        lines.append(f"this interpreter accepts wheels up to {report.best_tag}")
    else:
        lines.append("this interpreter accepts no manylinux or musllinux wheels")
    lines.append("platform tags, most preferred first:")
    lines.extend(f"  {tag}" for tag in report.platform_tags)
    return "\n".join(lines)
