"""repairwheel: audit and repair Linux binary wheels for manylinux / musllinux.

Public API: :func:`read_elf` (ELF facts from the C core), and the error hierarchy.
"""

from .elf import ElfFile, Symbol, VersionNeed, read_elf
from .errors import (
    DependencyError,
    ElfError,
    PatchError,
    PolicyError,
    RepairwheelError,
    WheelError,
)

__version__ = "0.1.0"

__all__ = [
    "DependencyError",
    "ElfError",
    "ElfFile",
    "PatchError",
    "PolicyError",
    "RepairwheelError",
    "Symbol",
    "VersionNeed",
    "WheelError",
    "__version__",
    "read_elf",
]
