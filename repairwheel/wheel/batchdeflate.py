"""Small members deflated many at a time by one call of the C core (``csrc/deflate.c``),
with their CRC-32 and SHA-256, and a big member's 1 MiB pieces one call each, the GIL released
throughout: zlib-ng's deflate (from the ``zlib_ng`` extension), else the system zlib's.

Compressing each member from Python takes the GIL back between members: on a thread beside
the one patching the next members, 3000 small extensions took longer to write than on one
thread. One call per batch leaves the other thread the GIL. A stream depends on the data, the
level and the library's version only (not on how Python hands it its output room, which can
move block ends, so it may differ from ``zipwrite.deflate``'s). Where neither library or
OpenSSL can be reached, :func:`batch_deflater` is None and the writer compresses from Python.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._elfcore import ffi, lib
from ..errors import ResourceError
from .native import OpenSSL, function_pointer, openssl, system_zlib, zlib_version
from .zipread import Bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deflated:
    """One buffer's raw deflate stream, CRC-32 and SHA-256 digest."""

    stream: bytes
    crc: int
    sha256: bytes


class Batch:
    """Buffers to deflate in one call: prepared, run (on any thread: the call needs the GIL
    only to start) and read back by the thread that made it, so the thread that runs it
    takes no Python time from the caller."""

    def __init__(self, deflater: BatchDeflater, buffers: Sequence[Bytes], level: int) -> None:
        self._deflater = deflater
        self._level = _zlib_level(level)
        self._count = len(buffers)
        self._jobs = ffi.new("rw_deflate_job[]", self._count)
        self._keep = [ffi.from_buffer(data) for data in buffers]
        for job, data in zip(self._jobs, self._keep):
            job.data, job.len, job.finish = data, len(data), 1
        self._hasher = ffi.new("rw_hasher *")
        crypto = deflater.crypto
        self._hasher.init, self._hasher.update = crypto.init_pointer, crypto.update_pointer
        self._hasher.final = crypto.final_pointer
        self._hasher.md = ffi.cast("void *", crypto.sha256)
        self._ran = False

    def run(self) -> None:
        """Deflate, CRC and hash every buffer."""
        crypto = self._deflater.crypto
        ctx = crypto.lib.EVP_MD_CTX_new()
        if not ctx:
            return  # results() reports the batch as not run
        self._hasher.ctx = ffi.cast("void *", ctx)
        try:
            lib.rw_deflate_jobs(
                self._deflater.struct, self._hasher, self._level, self._jobs, self._count
            )
            self._ran = True
        finally:
            crypto.lib.EVP_MD_CTX_free(ctx)

    def __del__(self) -> None:  # a batch dropped unread (a failed write) frees its streams
        lib.rw_deflate_free(self._jobs, self._count)

    def results(self) -> list[Deflated]:
        """What :meth:`run` made, in order (the C memory is freed); ResourceError when memory
        ran out, ValueError for a level or buffer the deflater refused."""
        try:
            if not self._ran:
                raise _failure(lib.RW_DEF_NOMEM)  # no SHA-256 context could be had
            for job in self._jobs:
                if job.status != lib.RW_DEF_OK:
                    raise _failure(job.status)
            return [
                Deflated(ffi.buffer(job.out, job.out_len)[:], job.crc, ffi.buffer(job.sha256)[:])
                for job in self._jobs
            ]
        finally:
            lib.rw_deflate_free(self._jobs, self._count)


@dataclass(frozen=True)
class BatchDeflater:
    """zlib-ng's (or zlib's) deflate and OpenSSL's SHA-256 as the C core takes them."""

    struct: Any
    crypto: OpenSSL
    keep: tuple[object, ...]

    def deflate(self, buffers: Sequence[Bytes], level: int) -> list[Deflated]:
        """Each buffer deflated at zlib ``level`` (-1 is 6; 1..9), in order, on this thread."""
        batch = Batch(self, buffers, level)
        batch.run()
        return batch.results()

    def piece(
        self, data: Bytes | memoryview, start: int, end: int, last: bool, level: int
    ) -> bytes:
        """``data[start:end]`` raw-deflated with the 32 KiB before it as dictionary, ending
        the stream when ``last`` (else on a sync flush): one piece of a stream compressed
        piece by piece, byte-identical to what a whole-buffer call writes there when the
        pieces are its blocks."""
        window = min(start, lib.RW_DEF_WINDOW)
        job = ffi.new("rw_deflate_job *")
        with ffi.from_buffer(memoryview(data)[start - window : end]) as buf:
            job.data, job.len, job.window, job.finish = buf + window, end - start, window, last
            lib.rw_deflate_jobs(self.struct, ffi.NULL, _zlib_level(level), job, 1)
        try:
            if job.status != lib.RW_DEF_OK:
                raise _failure(job.status)
            stream: bytes = ffi.buffer(job.out, job.out_len)[:]
            return stream
        finally:
            lib.rw_deflate_free(job, 1)


def _zlib_level(level: int) -> int:
    """zlib's level for ``level``: -1 (Z_DEFAULT_COMPRESSION) is 6."""
    return 6 if level == -1 else level


def _failure(status: int) -> Exception:
    if status == lib.RW_DEF_NOMEM:
        return ResourceError("out of memory while compressing", reason="out of memory")
    if status == lib.RW_DEF_TOO_BIG:
        return ValueError(f"a buffer of {lib.RW_DEF_MAX} bytes or more")
    if status == lib.RW_DEF_DIGEST:
        return ResourceError("OpenSSL's SHA-256 failed", reason="SHA-256 failed")
    return ValueError("the deflater refused the level or the data")


def _load(cdll: ctypes.CDLL, flavor: int, names: tuple[str, ...]) -> Any:
    struct = ffi.new("rw_deflater *")
    struct.flavor = flavor
    pointers = (function_pointer(cdll, name) for name in names)
    struct.init, struct.deflate, struct.end, struct.bound, struct.dictionary, struct.crc32 = (
        pointers
    )
    return struct


def _zlib_ng() -> tuple[Any, tuple[object, ...]]:
    from zlib_ng import zlib_ng

    names = (
        "zng_deflateInit2",
        "zng_deflate",
        "zng_deflateEnd",
        "zng_deflateBound",
        "zng_deflateSetDictionary",
        "zng_crc32",
    )
    cdll = ctypes.CDLL(zlib_ng.__file__)
    return _load(cdll, lib.RW_ZNG, names), (cdll,)


def _system_zlib() -> tuple[Any, tuple[object, ...]]:
    names = (
        "deflateInit2_",
        "deflate",
        "deflateEnd",
        "deflateBound",
        "deflateSetDictionary",
        "crc32",
    )
    cdll = system_zlib()
    struct = _load(cdll, lib.RW_ZLIB, names)
    struct.version = version = zlib_version(cdll)
    return struct, (cdll, version)


@functools.lru_cache(maxsize=1)
def batch_deflater() -> BatchDeflater | None:
    """The C core's batch deflate with zlib-ng, else the system zlib, where OpenSSL can be
    called too; else None."""
    crypto = openssl()
    if crypto is None:
        return None
    for load in (_zlib_ng, _system_zlib):
        try:
            struct, keep = load()
        except (ImportError, OSError, AttributeError) as exc:
            log.debug("%s's deflate cannot be called here: %s", load.__name__, exc)
            continue
        return BatchDeflater(struct, crypto, keep)
    return None
