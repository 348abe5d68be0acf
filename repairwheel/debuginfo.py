"""``--debug-symbols DIR``: the debug information of stripped files, kept for debuggers.

Before a file is stripped, ``objcopy --only-keep-debug`` copies its debug sections (and symbol
table) into ``<build-id>.debug`` (the hex GNU build id), or ``<name>.debug`` for a file
without one; after stripping, ``objcopy --add-gnu-debuglink`` records that file's name and
CRC in the file's ``.gnu_debuglink``, where gdb and eu-unstrip look. Each file's debug
information is written into a private staging folder while files are stripped in parallel,
and moved into DIR once every file is done.
"""

from __future__ import annotations

import mmap
import os
import shutil
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import PatchError, ResourceError, UsageError
from .tool import run_tool

_PT_NOTE = 4
_NT_GNU_BUILD_ID = 3


def build_id(path: str | os.PathLike[str]) -> str | None:
    """The hex GNU build id of the ELF file at ``path`` (its PT_NOTE segments), or None."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < 64:
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _build_id(data)


def _build_id(data: mmap.mmap) -> str | None:
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if wide:
        phoff, phentsize, phnum = struct.unpack_from(order + "Q14xHH", data, 0x20)
    else:
        phoff, phentsize, phnum = struct.unpack_from(order + "I10xHH", data, 0x1C)
    header = order + ("IIQQ" if wide else "IIII")  # p_type, (flags,) p_offset, ...
    for i in range(phnum):
        start = phoff + i * phentsize
        if start + phentsize > len(data):
            return None
        if wide:
            p_type, _, offset, _ = struct.unpack_from(header, data, start)
            size = struct.unpack_from(order + "Q", data, start + 0x20)[0]
        else:
            p_type, offset, _, _ = struct.unpack_from(header, data, start)
            size = struct.unpack_from(order + "I", data, start + 0x10)[0]
        if p_type == _PT_NOTE:
            found = _note_build_id(data, offset, min(offset + size, len(data)), order)
            if found is not None:
                return found
    return None


def _note_build_id(data: mmap.mmap, pos: int, end: int, order: str) -> str | None:
    while pos + 12 <= end:
        namesz, descsz, kind = struct.unpack_from(order + "III", data, pos)
        name_at = pos + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        if desc_at + descsz > end:
            return None
        if kind == _NT_GNU_BUILD_ID and data[name_at : name_at + namesz] == b"GNU\0":
            return bytes(data[desc_at : desc_at + descsz]).hex() or None
        pos = desc_at + (descsz + 3) // 4 * 4
    return None


def plan_debug_files(files: Mapping[Path, str], staging: Path) -> dict[Path, Path]:
    """Staged file -> where its debug information is staged: ``staging/<n>/<build-id>.debug``
    or ``staging/<n>/<name>.debug`` (``files`` maps each staged file to its path in the
    wheel). UsageError when two different files without a build id share a name."""
    named: dict[str, str] = {}
    result = {}
    for n, (file, member) in enumerate(files.items()):
        found = build_id(file)
        name = f"{found}.debug" if found else f"{os.path.basename(member)}.debug"
        if not found and name in named:
            raise UsageError(
                f"--debug-symbols: {named[name]} and {member} have no build id and one file "
                f"name, so both debug files would be {name}"
            )
        if not found:
            named[name] = member
        result[file] = staging / str(n) / name
    return result


def keep_debug(path: Path, debug_file: Path, name: str) -> None:
    """Copy the debug sections of ``path`` into ``debug_file`` (before it is stripped)."""
    debug_file.parent.mkdir(parents=True, exist_ok=True)
    run_tool([_objcopy(name), "--only-keep-debug", str(path), str(debug_file)], name, "objcopy")


def link_debug(path: Path, debug_file: Path, name: str) -> None:
    """Give the stripped ``path`` a .gnu_debuglink naming ``debug_file``."""
    run_tool([_objcopy(name), f"--add-gnu-debuglink={debug_file}", str(path)], name, "objcopy")


def publish(debug_files: Iterable[Path], directory: Path) -> tuple[Path, ...]:
    """Move the staged debug files into ``directory`` (created); the first of a name wins
    (files with one build id come from one build). Returns the files written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for staged in debug_files:
            if staged.name not in written:
                target = directory / staged.name
                shutil.move(staged, target)
                written[staged.name] = target
    except OSError as exc:
        reason = f"cannot save debug information: {exc.strerror or exc}"
        raise ResourceError(f"{directory}: {reason}", reason=reason) from None
    return tuple(written.values())


def _objcopy(name: str) -> str:
    tool = shutil.which("objcopy")
    if tool is None:
        raise PatchError(
            f"cannot save the debug information of {name}: 'objcopy' not found (install binutils)"
        )
    return tool
