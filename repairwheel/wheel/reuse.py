"""A patched member's new deflate stream built from its old one: the old blocks that decode to
bytes the patch left alone are copied as they are, and only the rest is compressed again.

A deflate block may copy from up to 32 KiB before it, so a run of old blocks is reused only
where the new file equals the old one from 32 KiB before the run to its end. Runs start and end
at block boundaries that fall on a byte boundary (zlib's ``Z_BLOCK`` stops say where the
boundaries are; about one in eight is byte-aligned), and the compressed pieces between runs end
on a sync flush, so every joint is byte-aligned and reused bytes are copied without shifting.
The last block (it carries the end-of-stream bit) is never reused.

Where the repair staged the member, the inflate staging it recorded the boundaries, and where
the built-in patcher patched it, the patcher says which bytes it wrote (:func:`runs_around`):
nothing is inflated again. Otherwise (:func:`find_runs`) boundaries and the comparison with
the new bytes come from one inflate of the old stream, through ctypes because Python's zlib
modules cannot stop at block ends: with zlib-ng (the inflate the ``zlib_ng`` package carries,
twice as fast) or else the system's zlib; where neither can be called, nothing is
reused and the member is compressed whole, as before.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import functools
import logging
import mmap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .zipread import Bytes, RawCopy

log = logging.getLogger(__name__)

WINDOW = 1 << 15  # how far back a deflate block may copy from
_OUT = 1 << 20  # the scan's output buffer
_RELEASE = 16 << 20  # a mapped new file's pages are released behind the scan in steps of this
_Z_OK, _Z_STREAM_END, _Z_BUF_ERROR, _Z_BLOCK = 0, 1, -5, 5
_AT_BLOCK_END, _IN_LAST_BLOCK = 128, 64  # z_stream.data_type flags after a Z_BLOCK stop


@dataclass(frozen=True)
class OldStream:
    """A member's deflate stream as the input wheel holds it: its compressed size, a reader
    of its bytes ``start:end`` in pieces and, where there is one, a copier of them
    ``(start, end, fd, offset)`` to a file offset inside the kernel (False: it cannot)."""

    size: int
    read: Callable[[int, int], Iterator[bytes]]
    copy: RawCopy | None = None


@dataclass(frozen=True)
class Run:
    """Complete old blocks, bytes ``raw_start:raw_end`` of the old stream, that decode to
    ``new[start:end]`` given the 32 KiB of ``new`` before ``start``."""

    start: int
    end: int
    raw_start: int
    raw_end: int


@dataclass(frozen=True)
class Reuse:
    """What a member's writer copies from its old stream: the stream and the runs in it."""

    old: OldStream
    runs: tuple[Run, ...]


class _ZStream(ctypes.Structure):
    """zlib's z_stream (zlib.h): the layout every zlib 1.x build shares."""

    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_uint),
        ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_uint),
        ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p),
        ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong),
        ("reserved", ctypes.c_ulong),
    ]


class _ZngStream(ctypes.Structure):
    """zlib-ng's zng_stream (zlib-ng.h): sizes and the adler field differ from z_stream's."""

    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_uint32),
        ("total_in", ctypes.c_size_t),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_uint32),
        ("total_out", ctypes.c_size_t),
        ("msg", ctypes.c_char_p),
        ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int),
        ("adler", ctypes.c_uint32),
        ("reserved", ctypes.c_ulong),
    ]


@dataclass(frozen=True)
class _Inflate:
    """A raw-inflate implementation callable with Z_BLOCK: its stream type and functions."""

    name: str
    stream: type[ctypes.Structure]
    init: Callable[[Any], int]  # (stream pointer) -> status, raw deflate, 32 KiB window
    inflate: Callable[[Any, int], int]
    end: Callable[[Any], int]


def _zlib_ng() -> _Inflate:
    from zlib_ng import zlib_ng  # the extension exports zlib-ng's native API

    lib = ctypes.CDLL(zlib_ng.__file__)
    pointer = ctypes.POINTER(_ZngStream)
    lib.zng_inflateInit2.argtypes = [pointer, ctypes.c_int]
    lib.zng_inflate.argtypes = [pointer, ctypes.c_int]
    lib.zng_inflateEnd.argtypes = [pointer]
    init = lib.zng_inflateInit2
    return _Inflate(
        "zlib-ng", _ZngStream, lambda s: init(s, -15), lib.zng_inflate, lib.zng_inflateEnd
    )


def _system_zlib() -> _Inflate:
    lib = ctypes.CDLL(ctypes.util.find_library("z") or "libz.so.1")
    lib.zlibVersion.restype = ctypes.c_char_p
    lib.zlibVersion.argtypes = []
    pointer = ctypes.POINTER(_ZStream)
    lib.inflateInit2_.argtypes = [pointer, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.inflate.argtypes = [pointer, ctypes.c_int]
    lib.inflateEnd.argtypes = [pointer]
    version, size, init = lib.zlibVersion(), ctypes.sizeof(_ZStream), lib.inflateInit2_
    return _Inflate(
        "zlib", _ZStream, lambda s: init(s, -15, version, size), lib.inflate, lib.inflateEnd
    )


@functools.lru_cache(maxsize=1)
def _inflater() -> _Inflate | None:
    """The fastest inflate that stops at block ends here, or None."""
    for load in (_zlib_ng, _system_zlib):
        try:
            return load()
        except (ImportError, OSError, AttributeError) as exc:
            log.debug("%s cannot find deflate blocks here: %s", load.__name__, exc)
    return None


def find_runs(old: OldStream, new: Bytes) -> tuple[Run, ...]:
    """The runs of ``old``'s blocks that ``new`` can reuse, in order; none when the old stream
    cannot be read to its end (it is then compressed whole: nothing here decides validity)."""
    scan = _scan(old, new)
    if scan is None:
        return ()
    boundaries, changed, old_size = scan
    return _runs(boundaries, changed, min(old_size, len(new)))


def runs_around(
    blocks: Sequence[tuple[int, int]],
    written: Sequence[tuple[int, int]],
    old_size: int,
    new_size: int,
) -> tuple[Run, ...]:
    """The runs a new file can reuse when it is the old one with only the ``written`` ranges
    (offset, length) changed, from the old stream's byte-aligned block ``blocks`` (as
    :func:`.inflate.Inflater.member` records them, from (0, 0)): what :func:`find_runs`
    finds, or fewer where a write kept some bytes, without inflating the stream again."""
    changed: list[int] = []
    for offset, length in sorted(written):
        if length > 0:
            _mark(changed, offset, offset + length)
    return _runs(blocks, changed, min(old_size, new_size))


def _scan(old: OldStream, new: Bytes) -> tuple[list[tuple[int, int]], list[int], int] | None:
    """Inflate ``old`` once: its byte-aligned block boundaries as (uncompressed, compressed)
    offsets, the sorted bounds [lo0, hi0, lo1, hi1, ...] of where it differs from ``new``
    (within the old length), and the old uncompressed size."""
    zlib = _inflater()
    if zlib is None:
        return None
    stream = zlib.stream()
    if zlib.init(ctypes.byref(stream)):
        return None
    out = ctypes.create_string_buffer(_OUT)
    out_address = ctypes.addressof(out)
    boundaries = [(0, 0)]
    changed: list[int] = []
    position = consumed = released = 0  # uncompressed, compressed bytes so far; pages let go
    release = getattr(new, "madvise", None)
    try:
        for piece in old.read(0, old.size):
            holder = ctypes.c_char_p(piece)
            stream.next_in = ctypes.cast(holder, ctypes.c_void_p)
            stream.avail_in = len(piece)
            while True:
                stream.next_out = out_address
                stream.avail_out = _OUT
                status = zlib.inflate(ctypes.byref(stream), _Z_BLOCK)
                if status not in (_Z_OK, _Z_STREAM_END, _Z_BUF_ERROR):
                    return None
                produced = _OUT - stream.avail_out
                if produced:
                    _compare(ctypes.string_at(out_address, produced), new, position, changed)
                    position += produced
                if release is not None and position - released >= _RELEASE:
                    released = _release(release, released, min(position, len(new)))
                at = consumed + len(piece) - stream.avail_in
                if status == _Z_STREAM_END:
                    if at != old.size or stream.avail_in:
                        return None  # bytes after the end of the stream
                    return boundaries, changed, position
                flags = stream.data_type
                if flags & _AT_BLOCK_END and not flags & _IN_LAST_BLOCK and not flags & 7:
                    if boundaries[-1][0] < position:
                        boundaries.append((position, at))
                if status == _Z_BUF_ERROR:  # no progress without more input
                    break
                if not stream.avail_in and stream.avail_out and not flags & _IN_LAST_BLOCK:
                    break  # (after the last block, one more call ends the stream)
            consumed += len(piece)
    finally:
        zlib.end(ctypes.byref(stream))
    return None  # the stream ended early


def _release(madvise: Callable[[int, int, int], None], start: int, end: int) -> int:
    """Let go of a mapped file's pages from ``start`` to ``end`` (rounded down to pages): the
    scan reads each once, and they would otherwise count as the process's memory."""
    end = end // mmap.PAGESIZE * mmap.PAGESIZE
    if end > start:
        try:
            madvise(mmap.MADV_DONTNEED, start, end - start)
        except (OSError, ValueError):
            return start
    return max(start, end)


def _compare(old: bytes, new: Bytes, position: int, changed: list[int]) -> None:
    """Add the span of ``old`` (at ``position``) that differs from ``new`` to ``changed``."""
    end = position + len(old)
    if end <= len(new) and new[position:end] == old:
        return
    same = max(len(new) - position, 0)  # what both have; a shorter new file differs past it
    if same < len(old):
        first, last = _first_difference(old[:same], new, position), len(old)
    else:
        first = _first_difference(old, new, position)
        last = len(old) - _first_difference(old[::-1], new[position:end][::-1], 0)
    _mark(changed, position + first, position + last)


def _mark(changed: list[int], lo: int, hi: int) -> None:
    """Add the span ``lo:hi`` (starting at or after every span so far) to the sorted bounds
    ``changed``, merged with the last span where they touch."""
    if changed and changed[-1] >= lo:
        changed[-1] = max(changed[-1], hi)
    else:
        changed += [lo, hi]


def _first_difference(old: bytes, new: Bytes, position: int) -> int:
    """The index of the first byte where ``old`` and ``new[position:]`` differ (len(old) if
    none), by bisection over slice comparisons (each a memcmp)."""
    lo, hi = 0, len(old)
    while lo < hi:
        mid = (lo + hi) // 2
        if new[position + lo : position + mid + 1] == old[lo : mid + 1]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _runs(boundaries: Sequence[tuple[int, int]], changed: list[int], size: int) -> tuple[Run, ...]:
    """The longest run in each unchanged gap of the first ``size`` bytes: from the first
    boundary at least WINDOW past the change before it (or at the start of the file) to the
    last boundary before the next change."""
    starts = [u for u, _ in boundaries]
    gaps = [0, *changed, size]
    runs = []
    for lo, hi in zip(gaps[::2], gaps[1::2]):
        first = bisect.bisect_left(starts, lo + WINDOW if lo else 0)
        last = bisect.bisect_right(starts, hi) - 1
        if first < last:
            (start, raw_start), (end, raw_end) = boundaries[first], boundaries[last]
            runs.append(Run(start, end, raw_start, raw_end))
    return tuple(runs)
