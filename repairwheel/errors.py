"""One exception hierarchy: every failure a user can cause is a RepairwheelError.

The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``;
anything else escaping is a bug and gets a traceback. API users read the optional fields
(``wheel``, ``member``, ``reason``) instead of parsing the message.
"""

from __future__ import annotations


class RepairwheelError(Exception):
    """Base of every error repairwheel reports to its user.

    ``str(error)`` is the one-line message. Where they are known, ``wheel`` is the wheel's file
    name, ``member`` the path inside it (or the host library) the error is about, and
    ``reason`` what is wrong, without the names the message puts before it.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        wheel: str | None = None,
        member: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.wheel = wheel
        self.member = member
        self.reason = reason


class ElfError(RepairwheelError, ValueError):
    """An ELF file is malformed or unreadable (bad input: the exit code of a bad wheel)."""

    exit_code = 2


class WheelError(RepairwheelError):
    """A wheel archive is malformed, unsafe, or not a wheel."""

    exit_code = 2


class PolicyError(RepairwheelError):
    """A platform policy or tag is unknown or cannot be met."""

    exit_code = 3


class DependencyError(RepairwheelError):
    """A needed shared library cannot be located."""

    exit_code = 4


class PatchError(RepairwheelError):
    """patchelf is missing, too old, failed, or produced a wrong file."""

    exit_code = 5


class NotPlatformWheelError(RepairwheelError):
    """The wheel holds no ELF file of an architecture any policy covers (or none at all)."""


class UsageError(RepairwheelError):
    """A bad command-line argument or environment variable value."""

    exit_code = 2


class ResourceError(RepairwheelError):
    """The machine lacks something the work needs: memory, temp or disk space, a readable
    file, a writable output folder."""
