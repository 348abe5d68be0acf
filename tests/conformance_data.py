"""What auditwheel 6.8.2 said of the bundled wheels, and where repairwheel deliberately differs.

The recording (``auditwheel-6.8.2-show.json`` beside the wheels) was made with
``auditwheel show --json`` on x86_64 Debian 12 with the default search paths; each entry
holds the exit status and either the verdict fields or the error.  ``DEVIATIONS`` lists the
wheels where repairwheel's answer is not auditwheel's, with the answer it gives instead and
why that answer is the better one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pypi_wheels import BUNDLED_DIR

from repairwheel.errors import NotPlatformWheelError, RepairwheelError

RECORDING = BUNDLED_DIR / "auditwheel-6.8.2-show.json"
# auditwheel's wording for "no ELF file of a covered architecture" (NonPlatformWheelError).
_NOT_PLATFORM_WORDS = ("does not look like a platform wheel", "Invalid binary wheel")


@dataclass(frozen=True)
class Deviation:
    """Our answer for a wheel auditwheel judges differently: the error we raise and words
    its message must contain (so the user learns what is wrong), and why."""

    error: type[RepairwheelError]
    says: tuple[str, ...]
    why: str


DEVIATIONS: dict[str, Deviation] = {
    "glibc/testsimple-0.0.1-cp313-cp313-linux_armv5l.whl": Deviation(
        NotPlatformWheelError,
        ("no policy covers", "arm", "testsimple.cpython-313-arm-linux-gnueabi.so"),
        "The wheel does hold a compiled extension, so auditwheel's 'not a platform wheel' "
        "(no ELF file found) is false: the file is a soft-float/old-EABI ARM object, for which "
        "no manylinux policy exists (armv7l requires EABI5 hard-float).",
    ),
    "glibc/testsimple-0.0.1-cp313-cp313-linux_mips64.whl": Deviation(
        NotPlatformWheelError,
        ("no policy covers", "mips", "testsimple.cpython-311-mips64el-linux-gnuabi64.so"),
        "As for armv5l: the extension exists, it is a mips64el object and no policy covers "
        "mips64; saying so tells the user why, where 'no ELF file found' misleads.",
    ),
    "musllinux_1_2/testsimple-0.0.1-cp310-cp310-linux_x86_64.whl": Deviation(
        RepairwheelError,
        ("testsimple.cpython-310-x86_64-linux-gnu.so", "musl"),
        "The extension has no PT_INTERP and no DT_NEEDED, and before CPython 3.11 musl builds "
        "also used the '-linux-gnu' suffix, so nothing tells glibc from musl. auditwheel "
        "agrees but dies with an InvalidLibcError traceback; we raise a RepairwheelError "
        "naming the file, which the CLI prints as one line.",
    ),
}


def recorded() -> dict[str, dict[str, Any]]:
    """Wheel path relative to the bundled folder -> what auditwheel said of it."""
    if not RECORDING.is_file():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(RECORDING.read_text())
    return data


def expected_error(auditwheel_error: str) -> type[RepairwheelError]:
    """The error class of ours that corresponds to one of auditwheel's recorded errors."""
    if any(words in auditwheel_error for words in _NOT_PLATFORM_WORDS):
        return NotPlatformWheelError
    return RepairwheelError


def bundled_path(relative: str) -> Path:
    return BUNDLED_DIR / relative
