"""repairwheel: audit and repair Linux binary wheels for manylinux / musllinux.

Public API: :func:`read_elf` (ELF facts from the C core), :func:`analyze_wheel` (the audit
behind ``show``), :func:`repair_wheel` (``fix``), :func:`check_wheel` (``check``), and the error
hierarchy.
"""

from ._version import __version__
from .audit import WheelReport, analyze_wheel
from .check import CheckResult, check_wheel
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
from .providers import ProvidedLibrary
from .repair import RepairResult, repair_wheel

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
