"""Whole members inflated by one call of the C core (``csrc/inflate.c``), which reads the
archive, inflates into a buffer or writes to a descriptor and computes the CRC with the GIL
released throughout.

The SHA-256 a RECORD row is checked against is computed in the same pass where OpenSSL's
EVP functions can be reached (through Python's ``_hashlib``, which links them), so a big member's
bytes are hashed while they are still in cache instead of read again.

Python's ``decompress`` releases the GIL only for each piece, and a thread taking it back waits
for whichever thread holds it: beside one busy Python thread, a 414 MB member took 5.9 s to
inflate instead of 0.6. The inflate is zlib-ng's (found in the ``zlib_ng`` extension, which
exports its native API), else the system zlib's, reached by function pointers; where neither
can be loaded :func:`inflater` is None and readers stream with Python's zlib instead.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._elfcore import ffi, lib
from .native import OpenSSL, function_pointer, openssl, system_zlib, zlib_version

log = logging.getLogger(__name__)

OK = lib.RW_INF_OK
CORRUPT = lib.RW_INF_CORRUPT
TRUNCATED = lib.RW_INF_TRUNCATED
TOO_LONG = lib.RW_INF_TOO_LONG
SHORT = lib.RW_INF_SHORT
READ = lib.RW_INF_READ
WRITE = lib.RW_INF_WRITE
NOMEM = lib.RW_INF_NOMEM
DIGEST = lib.RW_INF_DIGEST
PREFIX = lib.RW_INF_PREFIX
CANCELLED = lib.RW_INF_CANCELLED


@dataclass(frozen=True)
class Inflated:
    """What one call did: an RW_INF_* status, the bytes written and their CRC-32."""

    status: int
    produced: int
    crc: int
    err_no: int
    message: str
    sha256: bytes | None  # the digest of the bytes, when it was asked for and could be had
    blocks: Blocks | None = None  # with ``blocks``: where its blocks end (None: not all known)
    kept: tuple[tuple[int, int], ...] | None = None  # with ``keep``: the ranges it ended with


Blocks = tuple[tuple[int, int], ...]
"""A deflate stream's byte-aligned block ends as (uncompressed, compressed) offsets, in order,
from (0, 0); the last block's end is not one."""


@dataclass(frozen=True)
class Inflater:
    """The library's functions in the C core's ``rw_inflater``, with what keeps them alive."""

    name: str
    struct: Any
    keep: tuple[object, ...]

    def member(
        self,
        fd: int,
        offset: int,
        csize: int,
        deflated: bool,
        usize: int,
        out: bytearray | None = None,
        out_fd: int = -1,
        sha256: bool = False,
        blocks: bool = False,
        keep: Keep | None = None,
    ) -> Inflated:
        """The member whose ``csize`` bytes start at ``offset`` in ``fd``, into ``out`` (of
        ``usize`` bytes) or else written to ``out_fd`` (-1: nowhere); with ``sha256``, hashed
        on the way where OpenSSL can be called (else ``Inflated.sha256`` is None); with
        ``blocks``, a deflated member's block ends recorded (:data:`Blocks`; None when there
        are more than one per BLOCK_SPAN compressed bytes, which no real deflater writes);
        with ``keep``, the bytes it names copied out (status PREFIX where it asks for a
        prefix and the member is longer)."""
        res = ffi.new("rw_inflate_result *")
        buf = ffi.NULL if out is None else ffi.from_buffer("uint8_t[]", out)
        ends, _pairs = _block_room(csize) if blocks and deflated else (ffi.NULL, None)
        digest = _Sha256.start() if sha256 else None
        kept = ffi.NULL if keep is None else ffi.new("rw_keep *")
        base = ranges = None
        try:
            where = ffi.NULL if digest is None else digest.struct
            if keep is not None:
                flat = [at for pair in keep.ranges for at in pair]
                ranges = ffi.new("uint64_t[]", 2 * KEEP_CAP)
                ranges[0 : len(flat)] = flat
                base = ffi.from_buffer("uint8_t[]", keep.base, require_writable=True)
                kept.ranges, kept.n, kept.cap = ranges, len(keep.ranges), KEEP_CAP
                kept.base, kept.stop = base, keep.stop
                kept.wake = ffi.addressof(lib, "rw_elf_wanted") if keep.wake else ffi.NULL
                kept.cancel = ffi.NULL if keep.cancel is None else keep.cancel.flag
            lib.rw_inflate_member(
                self.struct,
                fd,
                offset,
                csize,
                int(deflated),
                usize,
                buf,
                out_fd,
                where,
                ends,
                kept,
                res,
            )
            value = None if digest is None else digest.value()
        finally:
            if digest is not None:
                digest.close()
            if base is not None:
                ffi.release(base)
        message = ffi.string(res.msg).decode("utf-8", "replace")
        held = None
        if keep is not None:
            flat = ffi.unpack(ranges, 2 * kept.n)
            held = tuple(zip(flat[::2], flat[1::2]))
        found = None
        if ends != ffi.NULL and not ends.overflow:
            pairs = ffi.unpack(ends.pairs, 2 * ends.count)
            found = ((0, 0), *zip(pairs[::2], pairs[1::2]))
        return Inflated(res.status, res.produced, res.crc, res.err_no, message, value, found, held)

    def heads(
        self, fd: int, members: Sequence[HeadQuery], names: bytes, n: int
    ) -> list[Head | None]:
        """The first ``n`` bytes (at most HEAD_MAX) of each member in ``fd``, from one call of
        the C core; a None head is one a short read could not settle (the caller reads it the
        slow way)."""
        heads = ffi.new("rw_head[]", len(members))
        for h, (header_offset, csize, usize, limit, name_at, name_len, deflated) in zip(
            heads, members
        ):
            h.header_offset, h.csize, h.usize, h.limit = header_offset, csize, usize, limit
            h.name_at, h.name_len, h.deflated = name_at, name_len, deflated
        lib.rw_member_heads(self.struct, fd, names, heads, len(members), n)
        return [
            Head(h.data_offset, ffi.buffer(h.head, h.got)[:])
            if h.status == lib.RW_HEAD_OK
            else None
            for h in heads
        ]


@dataclass(frozen=True)
class Keep:
    """Bytes to copy out of a member as it inflates (:meth:`Inflater.member`): its sorted,
    disjoint ``(start, end)`` ranges, into ``base`` (writable, of the member's size) at their
    own offsets. With ``wake``, each range complete adds what the C core's ``rw_elf_wanted``
    names from the bytes kept so far (an ELF parse's tables, as the inflate reaches them;
    ``Inflated.kept`` says what the call ended with). With ``stop``, only the member's first
    ``stop`` bytes are made. With ``cancel``, setting it ends the inflate (status
    CANCELLED) before its next window."""

    ranges: Sequence[tuple[int, int]]
    base: bytearray | mmap.mmap
    stop: int = 0
    wake: bool = False
    cancel: Cancel | None = None


class Cancel:
    """A flag another thread sets to end an inflate (see :class:`Keep`)."""

    def __init__(self) -> None:
        self.flag = ffi.new("int *")

    def set(self) -> None:
        self.flag[0] = 1


KEEP_CAP = 64  # ranges a keep may grow to


HEAD_MAX = lib.RW_HEAD_MAX
HEAD_READ = lib.RW_HEAD_READ
"""Compressed bytes read for a member's first bytes, by the C core and by ZipReader.head."""
HeadQuery = tuple[int, int, int, int, int, int, bool]
"""One member for :meth:`Inflater.heads`: its local header's offset, compressed and declared
sizes, where the next zip record starts, its raw name's offset and length in the names given,
and whether it is deflated."""


@dataclass(frozen=True)
class Head:
    """Where a member's compressed bytes start, and its first bytes."""

    data_offset: int
    data: bytes


BLOCK_SPAN = 256  # compressed bytes per recorded block end that the room is made for


def _block_room(csize: int) -> tuple[Any, Any]:
    """An empty ``rw_blocks`` for a stream of ``csize`` bytes, and the array it points to
    (which the caller keeps alive)."""
    capacity = csize // BLOCK_SPAN + 16
    ends = ffi.new("rw_blocks *")
    pairs = ffi.new("uint64_t[]", 2 * capacity)
    ends.pairs, ends.capacity = pairs, capacity
    return ends, pairs


class _Sha256:
    """One OpenSSL SHA-256 context, fed by the C core through ``rw_digest``."""

    def __init__(self, crypto: OpenSSL, ctx: int) -> None:
        self._crypto = crypto
        self._ctx = ctx
        self.struct = ffi.new("rw_digest *")
        self.struct.update = crypto.update_pointer
        self.struct.ctx = ffi.cast("void *", ctx)

    @classmethod
    def start(cls) -> _Sha256 | None:
        crypto = openssl()
        if crypto is None:
            return None
        ctx = crypto.lib.EVP_MD_CTX_new()
        if not ctx:
            return None
        if crypto.lib.EVP_DigestInit_ex(ctx, crypto.sha256, None) != 1:
            crypto.lib.EVP_MD_CTX_free(ctx)
            return None
        return cls(crypto, ctx)

    def value(self) -> bytes | None:
        out = ctypes.create_string_buffer(64)
        size = ctypes.c_uint(0)
        if self._crypto.lib.EVP_DigestFinal_ex(self._ctx, out, ctypes.byref(size)) != 1:
            return None
        return out.raw[: size.value] if size.value == 32 else None

    def close(self) -> None:
        self._crypto.lib.EVP_MD_CTX_free(self._ctx)


def _load(
    name: str, cdll: ctypes.CDLL, flavor: int, names: tuple[str, str, str, str, str]
) -> Inflater:
    struct = ffi.new("rw_inflater *")
    struct.flavor = flavor
    functions = (function_pointer(cdll, n) for n in names)
    struct.init, struct.inflate, struct.end, struct.reset, struct.crc32 = functions
    keep: tuple[object, ...] = (cdll,)
    if flavor == lib.RW_ZLIB:
        struct.version = version = zlib_version(cdll)
        keep += (version,)
    return Inflater(name, struct, keep)


def _zlib_ng() -> Inflater:
    from zlib_ng import zlib_ng

    names = ("zng_inflateInit2", "zng_inflate", "zng_inflateEnd", "zng_inflateReset", "zng_crc32")
    return _load("zlib-ng", ctypes.CDLL(zlib_ng.__file__), lib.RW_ZNG, names)


def _system_zlib() -> Inflater:
    names = ("inflateInit2_", "inflate", "inflateEnd", "inflateReset", "crc32")
    return _load("zlib", system_zlib(), lib.RW_ZLIB, names)


@functools.lru_cache(maxsize=1)
def inflater() -> Inflater | None:
    """zlib-ng's inflate, else the system zlib's, or None where neither loads."""
    for load in (_zlib_ng, _system_zlib):
        try:
            return load()
        except (ImportError, OSError, AttributeError) as exc:
            log.debug("%s cannot be called here: %s", load.__name__, exc)
    return None
