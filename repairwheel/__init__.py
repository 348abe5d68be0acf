"""repairwheel: audit and repair Linux binary wheels for manylinux / musllinux.

Public API: :func:`read_elf` (ELF facts from the C core), :func:`analyze_wheel` (the audit
behind ``show``), :func:`repair_wheel` (``fix``), and the error hierarchy.
"""

from ._version import __version__
from .audit import WheelReport, analyze_wheel
from .elf import ElfFile, Symbol, VersionNeed, read_elf
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
from .repair import RepairResult, repair_wheel

__all__ = [
    "DependencyError",
    "ElfError",
    "ElfFile",
    "NotPlatformWheelError",
    "PatchError",
    "PolicyError",
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
    "read_elf",
    "repair_wheel",
]
