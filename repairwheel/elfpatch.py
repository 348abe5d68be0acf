"""The built-in ELF patcher: the C core computes the few writes an edit needs (csrc/elfpatch.c)
and they are applied to the file in place, so a 400 MB library costs a few kilobytes of I/O.

Where the new strings fit, nothing grows; otherwise what had to move (the string table copy,
the dynamic table, and the notes or hash tables that followed the program header table, to
make room for one more entry) goes into one new PT_LOAD at the end of the file, and the file
grows by that, never by a page-size pad. Only a file with no such room has its program header
table moved instead (an executable then pads, to keep it where old kernels look for it).
"""

from __future__ import annotations

import functools
import mmap
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._elfcore import ffi, lib
from .errors import PatchError, ResourceError
from .patch import PatchOps, Written

_ERRLEN = 256
_WHOLE = 1 << 20  # files up to this size are patched in memory and written back whole


@dataclass(frozen=True)
class Layout:
    """What one patch moved: the tables copied into the new segment, and its padding."""

    new_size: int
    strtab_moved: bool
    dynamic_moved: bool
    phdrs_moved: bool
    head_moved: bool
    padding: int
    # (offset, length) of every byte range that may differ from the file before, growth included
    written: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class BuiltinPatcher:
    """repairwheel's own patcher (``--patcher builtin``)."""

    name: str = "builtin"
    batch_size: int = 256
    parallel: bool = False  # microseconds of C per file: threads would contend for the GIL

    def patch(
        self, paths: Sequence[Path], ops: PatchOps, names: Mapping[Path, str]
    ) -> dict[Path, Written]:
        edits = _edits(ops)
        return {
            path: _patch_file(path, edits, names.get(path) or os.fspath(path)).written
            for path in paths
        }


class _Edits:
    """PatchOps as the C core takes them (the cffi strings live as long as this does)."""

    def __init__(self, ops: PatchOps) -> None:
        self._keep: list[Any] = []
        c_ops = ffi.new("rw_patch_ops *")
        if ops.set_soname is not None:
            c_ops.set_soname = self._cstr(ops.set_soname)
        c_ops.n_replace = len(ops.replace_needed)
        c_ops.replace_old = self._carray([old for old, _ in ops.replace_needed])
        c_ops.replace_new = self._carray([new for _, new in ops.replace_needed])
        c_ops.n_remove = len(ops.remove_needed)
        c_ops.remove = self._carray(list(ops.remove_needed))
        if ops.rpath is not None:
            c_ops.path_action = lib.RW_PATH_SET_RUNPATH if ops.runpath else lib.RW_PATH_SET_RPATH
            c_ops.path = self._cstr(ops.rpath)
        else:
            c_ops.path_action = lib.RW_PATH_REMOVE if ops.remove_rpath else lib.RW_PATH_KEEP
        self.c_ops = c_ops

    def _cstr(self, text: str) -> Any:
        self._keep.append(ffi.new("char[]", os.fsencode(text)))
        return self._keep[-1]

    def _carray(self, texts: Sequence[str]) -> Any:
        self._keep.append(ffi.new("const char *[]", [self._cstr(t) for t in texts] or [ffi.NULL]))
        return self._keep[-1]


def patch_bytes(
    data: bytes | bytearray | memoryview, ops: PatchOps, *, name: str = "<buffer>"
) -> bytearray:
    """The patched copy of an ELF image held in memory."""
    return _patched(data, _edits(ops), name)[0]


@functools.lru_cache(maxsize=64)
def _edits(ops: PatchOps) -> _Edits:
    """``ops`` converted once for every file it patches (a wheel of 3000 extensions has a few
    distinct ones)."""
    return _Edits(ops)


def _patched(
    data: bytes | bytearray | memoryview, edits: _Edits, label: str
) -> tuple[bytearray, Layout]:
    with _writes(data, edits, label) as (writes, layout):
        out = bytearray(data)
        out.extend(bytes(layout.new_size - len(out)))
        for offset, chunk in writes:
            out[offset : offset + len(chunk)] = chunk
    return out, layout


def patch_file(path: str | os.PathLike[str], ops: PatchOps, *, name: str | None = None) -> Layout:
    """Patch the file at ``path`` in place: only the bytes that change are written (a file up
    to 1 MiB is read and written back whole: one write costs less than its dozen small ones).

    The writes are computed from a read-only map of the whole file before anything is written,
    so a file the core cannot patch is left exactly as it was (PatchError).
    """
    return _patch_file(path, _Edits(ops), name or os.fspath(path))


def _patch_file(path: str | os.PathLike[str], edits: _Edits, label: str) -> Layout:
    try:
        with open(path, "r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise PatchError(f"{label}: cannot patch: the file is empty")
            if size <= _WHOLE:
                data = os.pread(fh.fileno(), size, 0)
                if len(data) != size:
                    raise PatchError(f"{label}: cannot patch: the file changed while read")
                out, layout = _patched(data, edits, label)
                os.pwrite(fh.fileno(), out, 0)
                return layout
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                with _writes(mapped, edits, label) as (writes, layout):
                    pending = [(offset, bytes(chunk)) for offset, chunk in writes]
            if layout.new_size > size:
                os.ftruncate(fh.fileno(), layout.new_size)
            for offset, chunk in pending:
                os.pwrite(fh.fileno(), chunk, offset)
    except OSError as exc:
        raise PatchError(f"{label}: cannot patch: {exc.strerror or exc}") from exc
    return layout


@contextmanager
def _writes(
    data: bytes | bytearray | memoryview | mmap.mmap, edits: _Edits, label: str
) -> Iterator[tuple[list[tuple[int, memoryview]], Layout]]:
    """The core's writes for ``edits`` (views into its memory, valid inside the block)."""
    out = ffi.new("rw_patch **")
    err = ffi.new("char[]", _ERRLEN)
    with ffi.from_buffer(data) as cbuf:
        rc = lib.rw_elf_patch(cbuf, len(cbuf), edits.c_ops, out, err, _ERRLEN)
    if rc == lib.RW_NOMEM:
        reason = "out of memory while patching"
        raise ResourceError(f"{label}: {reason}", member=label, reason=reason)
    if rc != lib.RW_OK:
        raise PatchError(f"{label}: cannot patch: {ffi.string(err).decode('utf-8', 'replace')}")
    raw = out[0]
    try:
        spans = [(w.offset, w.data, w.len) for w in (raw.writes[i] for i in range(raw.n_writes))]
        new_size = raw.new_size
        grown = ((len(data), new_size - len(data)),) if new_size > len(data) else ()
        layout = Layout(
            new_size=new_size,
            strtab_moved=bool(raw.strtab_moved),
            dynamic_moved=bool(raw.dynamic_moved),
            phdrs_moved=bool(raw.phdrs_moved),
            head_moved=bool(raw.head_moved),
            padding=raw.padding,
            written=tuple((offset, length) for offset, _, length in spans) + grown,
        )
        writes = [(offset, memoryview(ffi.buffer(p, length))) for offset, p, length in spans]
        yield writes, layout
    finally:
        lib.rw_patch_free(raw)
