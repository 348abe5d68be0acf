"""repairwheel: audit and repair Linux binary wheels for manylinux / musllinux.

Public API: :func:`read_elf` (ELF facts from the C core), :func:`analyze_wheel` (the audit
behind ``show``), :func:`repair_wheel` (``fix``), :func:`check_wheel` (``check``), and the error
hierarchy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
from .errors import (
    DependencyError,
    ElfError,
    NotPlatformWheelError,
    PatchError,
    PolicyError,
    RepairwheelError,
    ResourceError,
    UsageError,
    WheelError,
)
from .lazy import lazy_attributes

if TYPE_CHECKING:
    from .audit import WheelReport, analyze_wheel
    from .check import CheckResult, check_wheel
    from .elf import ElfFile, Symbol, VersionNeed, read_elf
    from .providers import ProvidedLibrary
    from .repair import RepairResult, repair_wheel

# Imported on first use: a command loads only what it runs (the whole API costs 0.2 s).
_LAZY = {
    "WheelReport": "audit",
    "analyze_wheel": "audit",
    "CheckResult": "check",
    "check_wheel": "check",
    "ElfFile": "elf",
    "Symbol": "elf",
    "VersionNeed": "elf",
    "read_elf": "elf",
    "ProvidedLibrary": "providers",
    "RepairResult": "repair",
    "repair_wheel": "repair",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "CheckResult",
    "DependencyError",
    "ElfError",
    "ElfFile",
    "NotPlatformWheelError",
    "PatchError",
    "PolicyError",
    "ProvidedLibrary",
    "RepairResult",
    "RepairwheelError",
    "ResourceError",
    "Symbol",
    "UsageError",
    "VersionNeed",
    "WheelError",
    "WheelReport",
    "__version__",
    "analyze_wheel",
    "check_wheel",
    "read_elf",
    "repair_wheel",
]
