"""Zip archives written member by member: local headers, the central directory, zip64 where a
size, offset or count needs it, and deflate in parallel 1 MiB blocks.

Nothing here knows about wheels; :mod:`.writer` builds the wheel layer on top.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import itertools
import logging
import mmap
import os
import stat
import struct
import time
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Callable

from .._elfcore import lib
from .._zlib import zlib
from .batchdeflate import batch_deflater
from .native import start_writeback
from .reuse import OldStream, Reuse, Run
from .zipread import LOCAL_HEADER, UTF8_NAME, Bytes, DateTime, Member, RawCopy, RawEntry

log = logging.getLogger(__name__)

NEW_MEMBER_TIME: DateTime = (1980, 1, 1, 0, 0, 0)
"""The time of a new member given none: the earliest a zip can hold, so output is reproducible."""

_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR64 = struct.Struct("<4sLQL")
_ZIP64_LIMIT = 0xFFFFFFFF  # sizes and offsets from here on go to zip64 fields (tests lower it)
_IN_ZIP64 = 0xFFFFFFFF  # a 32-bit field holding this means "read the zip64 extra field"
_ZIP64_COUNT = 0xFFFF
_DEFLATE_OPTIONS = 0x6  # the flag bits kept from a copied member: deflate's speed/size hint
_DOS_EPOCH_RANGE = (315532800, 4354819198)  # 1980-01-01 .. 2107-12-31, what DOS dates can hold
_DEFLATE_BLOCK = lib.RW_DEF_BLOCK  # 1 MiB: the blocks of csrc/deflate.c, whichever path
_WINDOW = lib.RW_DEF_WINDOW  # 32 KiB
KERNEL_COPY_MIN = 64 << 10  # copied members from this size on go straight from file to file
STREAM_MIN = 8 << 20  # members from this size on are compressed as they are written
SPAN_MAX = 1 << 20  # the most bytes of small copied members read and written at once
WRITEBACK_STEP = 16 << 20  # bytes written between two starts of their writeback to the disk


class ZipWriter:
    """Write members to ``out`` in call order, then the central directory and end records.

    Every member gets ``date_time`` when it is given (for reproducible output), else its own.
    Names are written as UTF-8 (flagged when not ASCII); extra fields are dropped, and so is a
    data descriptor: the sizes go in the local header. OSErrors from ``out`` propagate. Each
    WRITEBACK_STEP bytes written to a file have their writeback to the disk started, on a thread
    of the writer's (for torch's 114 MB member that takes up to 50 ms), so that the caller's
    fsync at the end waits for the last ones only (192 MB: 0.075 s to 0.005). :meth:`close`
    waits for that thread: call it before closing ``out``.
    """

    def __init__(self, out: BinaryIO, *, date_time: DateTime | None = None) -> None:
        self._out = out
        self._date_time = date_time
        self._offset = 0
        self._central: list[bytes] = []
        try:
            self._fd: int | None = out.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):  # a BytesIO
            self._fd = None
        self._sync_fd = self._fd
        self._written_back = 0  # writeback has been started for the bytes before this
        self._writeback: ThreadPoolExecutor | None = None

    def write(self, entry: RawEntry) -> None:
        """Write one member: its local header, its compressed bytes as they are, and keep its
        central-directory record for :meth:`finish`."""
        offset = self._offset
        self._emit(self._local_header(entry.member))
        if not self._kernel_copy(entry.copy, 0, entry.member.compress_size):
            for piece in entry.chunks:
                self._emit(piece)
        self._central.append(self._central_record(entry.member, offset))

    def write_run(self, entries: Sequence[RawEntry]) -> None:
        """Write members in order, each as :meth:`write` would. Small ones lying one after
        another in one file, as :attr:`RawEntry.stored` says, are read together, up to
        SPAN_MAX bytes at a time; where a local header read is the one this writer would write,
        it goes out with the member's data in one write, so 12k small members cost a few hundred
        reads and writes, not 36k."""
        at = 0
        while at < len(entries):
            end = _span_end(entries, at)
            if end - at > 1:
                self._write_span(entries[at:end])
            else:
                self.write(entries[at])
            at = end

    def _write_span(self, entries: Sequence[RawEntry]) -> None:
        first, last = entries[0].stored, entries[-1].stored
        assert first is not None and last is not None  # _span_end's
        base = first.header_offset
        size = last.data_offset + entries[-1].member.compress_size - base
        data = first.read(base, size)
        if len(data) != size:  # cut short: write() names the member
            for entry in entries:
                self.write(entry)
            return
        view = memoryview(data)
        done = 0  # data[:done] is written or replaced
        for entry in entries:
            member, stored = entry.member, entry.stored
            assert stored is not None
            header = self._local_header(member)
            at, body = stored.header_offset - base, stored.data_offset - base
            # (equal bytes hold the same name and extra lengths: its data follows the header)
            if data.startswith(header, at):
                self._central.append(self._central_record(member, self._offset + at - done))
                continue
            self._emit(view[done:at])
            self._central.append(self._central_record(member, self._offset))
            self._emit(header)
            done = body + member.compress_size
            self._emit(view[body:done])
        self._emit(view[done:])

    def _kernel_copy(self, copy: RawCopy | None, start: int, end: int) -> bool:
        """Whether compressed bytes ``start:end`` of 64 KiB or more were copied file to file
        here by ``copy`` (no trip through Python)."""
        if copy is None or self._fd is None or end - start < KERNEL_COPY_MIN:
            return False
        self._out.flush()
        if not copy(start, end, self._fd, self._offset):
            self._fd = None  # not on these filesystems: never try again
            return False
        self._offset += end - start
        self._out.seek(self._offset)
        self._write_back()
        return True

    def _copy_run(self, old: OldStream, run: Run) -> bool:
        return self._kernel_copy(old.copy, run.raw_start, run.raw_end)

    def _shared(self, member: Member) -> tuple[int, int, int, int, int]:
        """The fields both headers hold: flags, method, time, date, CRC."""
        flags = (member.flags & _DEFLATE_OPTIONS) | (0 if member.name.isascii() else UTF8_NAME)
        dos_date, dos_time = _dos(self._date_time or member.date_time)
        return (flags, member.compress_type, dos_time, dos_date, member.crc)

    def _local_header(self, member: Member) -> bytes:
        raw_name = member.name.encode("utf-8")
        sizes = (member.file_size, member.compress_size)
        zip64 = max(sizes) >= _ZIP64_LIMIT
        extra = struct.pack("<2H2Q", 1, 16, *sizes) if zip64 else b""
        local = LOCAL_HEADER.pack(
            b"PK\x03\x04",
            45 if zip64 else 20,
            *self._shared(member),
            _IN_ZIP64 if zip64 else member.compress_size,
            _IN_ZIP64 if zip64 else member.file_size,
            len(raw_name),
            len(extra),
        )
        return local + raw_name + extra

    def _central_record(self, member: Member, offset: int) -> bytes:
        raw_name = member.name.encode("utf-8")
        sizes = (member.file_size, member.compress_size)
        large = [value for value in (*sizes, offset) if value >= _ZIP64_LIMIT]
        extra = struct.pack(f"<2H{len(large)}Q", 1, 8 * len(large), *large) if large else b""
        version = 45 if large else 20
        central = _CENTRAL.pack(
            b"PK\x01\x02",
            version,
            member.create_system,
            version,
            0,
            *self._shared(member),
            _cap(member.compress_size),
            _cap(member.file_size),
            len(raw_name),
            len(extra),
            len(member.comment),
            0,
            member.internal_attr,
            member.external_attr,
            _cap(offset),
        )
        return central + raw_name + extra + member.comment

    def write_deflated(
        self,
        name: str,
        data: Bytes,
        *,
        level: int,
        mode: int,
        date_time: DateTime,
        reuse: Reuse | None = None,
    ) -> tuple[Member, hashlib._Hash]:
        """Write ``data`` as a new deflated member while it is compressed, block by block, and
        return its header and sha256: the local header is written first and its CRC and
        compressed size filled in afterwards, so the output is the bytes write() would give
        for the same member. For members whose sizes cannot reach zip64 (``streams``).

        With ``reuse``, runs of an earlier version's deflate stream that still decode to the
        same bytes are copied instead of compressed (:mod:`.reuse`)."""
        if not streams(len(data)):
            raise ValueError("write_deflated() is for members below the zip64 limit")
        if reuse is not None:
            reused = sum(run.end - run.start for run in reuse.runs)
            log.debug("%s: %d of %d bytes keep their old deflate blocks", name, reused, len(data))
        crc, sha256 = 0, hashlib.sha256()

        def consumed(block: memoryview) -> None:
            nonlocal crc
            crc = zlib.crc32(block, crc)
            sha256.update(block)

        member = Member(
            name=name,
            compress_type=zipfile.ZIP_DEFLATED,
            crc=0,
            compress_size=0,
            file_size=len(data),
            date_time=date_time,
            external_attr=(stat.S_IFREG | stat.S_IMODE(mode)) << 16,
        )
        start = self._offset
        self._emit(self._local_header(member))
        body = self._offset
        for piece in _deflate_blocks(data, level, consumed, reuse, self._copy_run):
            self._emit(piece)
        member = dataclasses.replace(member, crc=crc, compress_size=self._offset - body)
        self._out.seek(start)
        self._out.write(self._local_header(member))
        self._out.seek(self._offset)
        self._central.append(self._central_record(member, start))
        return member, sha256

    def finish(self) -> None:
        """Write the central directory and the end records (zip64 ones when needed)."""
        start = self._offset
        self._emit(b"".join(self._central))
        size = self._offset - start
        count = len(self._central)
        if count >= _ZIP64_COUNT or max(size, start) >= _ZIP64_LIMIT:
            end64 = self._offset
            self._emit(_END64.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, start))
            self._emit(_LOCATOR64.pack(b"PK\x06\x07", 0, end64, 1))
        small_count = min(count, _ZIP64_COUNT)
        self._emit(
            _END.pack(b"PK\x05\x06", 0, 0, small_count, small_count, _cap(size), _cap(start), 0)
        )

    def close(self) -> None:
        """Wait for the writebacks started so far to be handed to the kernel."""
        if self._writeback is not None:
            self._writeback.shutdown()
            self._writeback = None

    def _emit(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._offset += len(data)
        self._write_back()

    def _write_back(self) -> None:
        """Start the writeback of the bytes written since the last start, every
        WRITEBACK_STEP of them."""
        if self._sync_fd is None or self._offset - self._written_back < WRITEBACK_STEP:
            return
        self._out.flush()
        if self._writeback is None:
            self._writeback = ThreadPoolExecutor(1, thread_name_prefix="writeback")
        length = self._offset - self._written_back
        self._writeback.submit(start_writeback, self._sync_fd, self._written_back, length)
        self._written_back = self._offset


def _span_end(entries: Sequence[RawEntry], start: int) -> int:
    """Where the span of small members from ``entries[start]`` ends: each stored right after
    the one before, in the same file, the span at most SPAN_MAX bytes."""
    entry = entries[start]
    first = entry.stored
    if first is None or entry.member.compress_size >= KERNEL_COPY_MIN:
        return start + 1
    limit = first.header_offset + SPAN_MAX
    position = first.data_offset + entry.member.compress_size
    end = start + 1
    for entry in entries[end:]:
        stored, size = entry.stored, entry.member.compress_size
        if stored is None or stored.header_offset != position or size >= KERNEL_COPY_MIN:
            break
        if stored.data_offset + size > limit or stored.read != first.read:
            break
        position = stored.data_offset + size
        end += 1
    return end


def compressed(
    name: str, data: Bytes, *, level: int, mode: int, date_time: DateTime = NEW_MEMBER_TIME
) -> RawEntry:
    """A new regular-file member holding ``data``, deflated at zlib ``level`` (-1 is 6, 0
    stores it)."""
    chunks = [bytes(data)] if level == 0 else deflate(data, level)
    return new_entry(name, chunks, level != 0, zlib.crc32(data), len(data), mode, date_time)


def new_entry(
    name: str,
    chunks: list[bytes],
    deflated: bool,
    crc: int,
    size: int,
    mode: int,
    date_time: DateTime,
) -> RawEntry:
    """A new regular-file member of ``size`` bytes whose stored bytes are ``chunks``: a raw
    deflate stream, or (not ``deflated``) the bytes themselves."""
    member = Member(
        name=name,
        compress_type=zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED,
        crc=crc,
        compress_size=sum(map(len, chunks)),
        file_size=size,
        date_time=date_time,
        external_attr=(stat.S_IFREG | stat.S_IMODE(mode)) << 16,
    )
    return RawEntry(member, iter(chunks))


def streams(size: int) -> bool:
    """True if a member of ``size`` bytes can be written while it is compressed: big enough
    for that to matter, and its compressed size cannot reach zip64 (deflate adds at most a
    few bytes per 16 KiB)."""
    return STREAM_MIN <= size and size + size // 256 + (1 << 16) < _ZIP64_LIMIT


def deflate(data: Bytes, level: int) -> list[bytes]:
    """Raw-deflate ``data`` in 1 MiB blocks compressed in parallel, the way pigz does.

    Each block gets the 32 KiB before it as dictionary and ends on a sync flush, so the
    concatenated blocks form one valid stream. The result depends only on the data and the
    level, never on the number of threads. A block is one call of the C core's deflate
    (:mod:`.batchdeflate`, the GIL released throughout), the same bytes the writer's batches
    of small members get; where that cannot load, zlib's compressobj, which releases the GIL
    while it compresses.
    """
    return list(_deflate_blocks(data, level, lambda block: None))


def _pieces(size: int, runs: Sequence[Run]) -> list[tuple[int, int, Run | None]]:
    """The stream's pieces in order as (start, end, run): blocks of at most 1 MiB to compress
    around the reused runs, and a last compressed block (empty if need be) to end the stream."""
    pieces: list[tuple[int, int, Run | None]] = []
    position = 0
    for run in (*runs, None):
        stop = size if run is None else run.start
        pieces += [
            (s, min(s + _DEFLATE_BLOCK, stop), None) for s in range(position, stop, _DEFLATE_BLOCK)
        ]
        if run is not None:
            pieces.append((run.start, run.end, run))
            position = run.end
    if not pieces or pieces[-1][2] is not None:
        pieces.append((size, size, None))
    return pieces


def _deflate_blocks(
    data: Bytes,
    level: int,
    consumed: Callable[[memoryview], None],
    reuse: Reuse | None = None,
    copy_run: Callable[[OldStream, Run], bool] = lambda old, run: False,
) -> Iterator[bytes]:
    """deflate()'s blocks in order, at most two per thread in flight, with the runs ``reuse``
    keeps from the old stream in their places (yielded, unless ``copy_run`` copied one to
    the output itself); ``consumed`` sees the input, in order, as each
    piece's output is ready (to hash it), and a mapped file's pages are released after that,
    so a 400 MB member costs a few MB of memory, not 400."""
    view = memoryview(data)
    release = getattr(data, "madvise", None)
    pieces = _pieces(len(data), reuse.runs if reuse is not None else ())

    native = batch_deflater()

    def block(index: int) -> bytes:
        start, end, _ = pieces[index]
        if native is not None:
            return native.piece(view, start, end, index == len(pieces) - 1, level)
        window = view[max(start - _WINDOW, 0) : start]
        deflater = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=window)
        last = zlib.Z_FINISH if index == len(pieces) - 1 else zlib.Z_SYNC_FLUSH
        return deflater.compress(view[start:end]) + deflater.flush(last)

    def done(start: int, end: int) -> None:
        for low in range(start, end, _DEFLATE_BLOCK):
            high = min(low + _DEFLATE_BLOCK, end)
            consumed(view[low:high])
            if release is not None and low >= _WINDOW:
                # the next blocks' windows may still fault these pages back in: harmless
                page = (low - _WINDOW) // mmap.PAGESIZE * mmap.PAGESIZE
                with contextlib.suppress(OSError, ValueError):
                    release(mmap.MADV_DONTNEED, page, high - low)

    if len(pieces) == 1:
        consumed(view)
        yield block(0)
        return
    fresh = [index for index, (_, _, run) in enumerate(pieces) if run is None]
    threads = min(len(fresh), os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        futures: dict[int, Future[bytes]] = {}
        ahead = iter(fresh)
        for index in itertools.islice(ahead, 2 * threads):
            futures[index] = pool.submit(block, index)
        for index, (start, end, run) in enumerate(pieces):
            if run is None:
                out = futures.pop(index).result()
                done(start, end)
                for following in itertools.islice(ahead, 1):
                    futures[following] = pool.submit(block, following)
                yield out
            else:
                assert reuse is not None  # only reuse's runs are pieces with a run
                if not copy_run(reuse.old, run):
                    yield from reuse.old.read(run.raw_start, run.raw_end)
                done(start, end)


def dos_date_time(epoch: int) -> DateTime:
    """The UTC date and time of ``epoch``, clamped to what a zip (DOS) timestamp can hold."""
    low, high = _DOS_EPOCH_RANGE
    year, month, day, hour, minute, second = time.gmtime(min(max(epoch, low), high))[:6]
    return (year, month, day, hour, minute, second)


def _dos(date_time: DateTime) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return (year - 1980) << 9 | month << 5 | day, hour << 11 | minute << 5 | second // 2


def _cap(value: int) -> int:
    """A 32-bit zip field: the value, or 0xFFFFFFFF meaning "see the zip64 record"."""
    return value if value < _ZIP64_LIMIT else _IN_ZIP64
