"""Where the resolver reads candidate files from: the host, or a wheel's members laid over it.

A candidate is a path a search tries.  Reading one gives its ELF file, or the reason the file
there cannot be loaded ("is a linker script, not a shared library", "cannot be read (...)"):
ld.so stops at a file that is not valid ELF ("invalid ELF header") and passes over only
unreadable ones; we pass over both, and record the reason in ``Library.rejected``.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from typing import Protocol

from ..elf import ElfFile, is_elf, read_elf
from ..errors import ElfError

# A GNU ld script (what libc.so and many lib*.so development names are on glibc systems).
_LINKER_SCRIPT = re.compile(rb"\b(?:GROUP|INPUT|OUTPUT_FORMAT|SEARCH_DIR|AS_NEEDED)\s*\(")


class Filesystem(Protocol):
    """Where the resolver reads files from: the host, or a wheel's members laid over it.

    A filesystem may also have ``examine(path) -> (ElfFile | None, str | None)``: the ELF file,
    or why the file at ``path`` is none ("is a linker script, not a shared library"); the
    reason is None when there is no file at all.  Without it, rejections are not explained.
    """

    def elf_at(self, path: str) -> ElfFile | None:
        """The ELF file at ``path``; None if there is none or it is not ELF."""

    def realpath(self, path: str) -> str:
        """``path`` with symlinks resolved (it need not exist)."""


def examine(fs: Filesystem, path: str) -> tuple[ElfFile | None, str | None]:
    """The ELF file at ``path`` in ``fs``, or why the file there is none (None: no file, or a
    filesystem that cannot say)."""
    method = getattr(fs, "examine", None)
    return method(path) if method is not None else (fs.elf_at(path), None)


class HostFilesystem:
    """Real files, each read once: system libraries are shared by many files and wheels."""

    def __init__(self) -> None:
        self._listings: dict[str, frozenset[str]] = {}
        self._realpaths: dict[str, str] = {}
        self._elves: dict[str, tuple[ElfFile | None, str | None]] = {}

    def realpath(self, path: str) -> str:
        real = self._realpaths.get(path)
        if real is None:
            real = self._realpaths[path] = os.path.realpath(path)
        return real

    def elf_at(self, path: str) -> ElfFile | None:
        return self.examine(path)[0]

    def examine(self, path: str) -> tuple[ElfFile | None, str | None]:
        """The ELF file at ``path``, or why the file there is none (None: no file)."""
        directory, name = os.path.split(path)
        if name not in self._listing(directory or "."):
            return None, None
        real = self.realpath(path)
        if real not in self._elves:
            self._elves[real] = _read_host_elf(real)
        return self._elves[real]

    def _listing(self, directory: str) -> frozenset[str]:
        """Names in a directory: one listdir answers every miss there (most lookups miss)."""
        names = self._listings.get(directory)
        if names is None:
            try:
                names = frozenset(os.listdir(directory))
            except OSError:
                names = frozenset()
            self._listings[directory] = names
        return names


def _read_host_elf(path: str) -> tuple[ElfFile | None, str | None]:
    """The ELF file at a real path, or why the file there is none.

    The head is checked first, as most candidates are ELF and a non-ELF file (a linker script
    named libc.so) need not be mapped.  A file that cannot be read is a rejected candidate,
    as for ld.so, which passes over files it may not open.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except FileNotFoundError:
        return None, None  # a dangling symlink: the loader's open fails with ENOENT
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if not is_elf(head):
        return None, _not_elf(head)
    try:
        return read_elf(path), None
    except ElfError as exc:
        text = str(exc)
        text = text[len(path) + 2 :] if text.startswith(f"{path}: ") else text
        return None, f"is not a valid ELF file ({text})"


def _not_elf(head: bytes) -> str:
    if _LINKER_SCRIPT.search(head) and b"\0" not in head:
        return "is a linker script, not a shared library"
    if not head:
        return "is empty, not a shared library"
    return "is not an ELF file"


class WheelFilesystem:
    """A wheel's ELF members seen under the directory ``root``, over a base filesystem.

    Every path under ``fence`` (by default ``root`` itself; for a wheel, a directory a few
    levels above it, standing for the install prefix) is the wheel's: nothing there falls
    through to the base.  That includes a path that ``..`` takes out of ``fence``
    (``$ORIGIN/../../../../../usr/lib``): at install time it lands somewhere under or above
    the unknown prefix, never reliably in this host's directories, so nothing is found there.
    Members are never symlinks, so paths under ``root`` resolve lexically.
    """

    def __init__(
        self,
        root: str,
        members: Mapping[str, ElfFile],
        base: Filesystem | None = None,
        *,
        fence: str | None = None,
    ) -> None:
        self.root = os.path.abspath(root)
        self.fence = self.root if fence is None else os.path.abspath(fence)
        if not _under(self.root, self.fence):
            raise ValueError(f"the wheel root {self.root} is not under its fence {self.fence}")
        self._members = {self.path_of(name): elf for name, elf in members.items()}
        self._base: Filesystem = base if base is not None else HostFilesystem()

    def path_of(self, member: str) -> str:
        """The path a wheel member appears at."""
        return posixpath.normpath(posixpath.join(self.root, member.lstrip("/")))

    def member_of(self, path: str) -> str | None:
        """The wheel member name for ``path``, or None if the path is outside the wheel."""
        inside = self._inside(path)
        if inside is None or inside == self.root:
            return None
        return inside[len(self.root.rstrip("/")) + 1 :]

    def elf_at(self, path: str) -> ElfFile | None:
        owned = self._owned(path)
        return self._base.elf_at(path) if owned is None else self._members.get(owned)

    def examine(self, path: str) -> tuple[ElfFile | None, str | None]:
        owned = self._owned(path)
        if owned is not None:
            return self._members.get(owned), None
        return examine(self._base, path)

    def realpath(self, path: str) -> str:
        owned = self._owned(path)
        return self._base.realpath(path) if owned is None else owned

    def _owned(self, path: str) -> str | None:
        """``path`` normalised if the wheel answers for it (it starts under the fence, or
        ends there), else None."""
        normal = posixpath.normpath(path)
        if _under(path, self.fence) or _under(normal, self.fence):
            return normal
        return None

    def _inside(self, path: str) -> str | None:
        """``path`` normalised if it is the root or under it, else None."""
        normal = posixpath.normpath(path)
        return normal if _under(normal, self.root) else None


def _under(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or, as written, below it."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")
