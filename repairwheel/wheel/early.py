"""A zip's biggest member inflated on a thread from a command's first moments, before the
archive is opened and checked.

For torch, inflating its 434 MB library is most of an audit, while opening the archive (the
imports, zipfile's reading of 12k central-directory entries, the checks) takes a fifth of a
second before any read can start. So a command starts this first: a quick pass over the
central directory finds the member that declares the most bytes, its local header says where
its data starts, and a thread inflates it as an audit's first read does (its head and what
an ELF parse reads kept, CRC and SHA-256 on the way). Nothing from the quick pass is trusted:
:meth:`.ZipReader.inflate_whole` takes the result only for the member its own checked reading
places at the same offsets with the same sizes, CRC and method, in the same file, and only for
a read that asks for no more than was made; otherwise the inflate is cancelled and dropped.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from . import inflate
from .zipread import LOCAL_HEADER, MAX_MEMBER_SIZE, MAX_RATIO, RATIO_MIN_SIZE, StrPath

EARLY_MIN = 32 << 20
"""The fewest bytes a member must declare for an early inflate to be worth a thread."""
_END = struct.Struct("<4s4H2LH")  # end of central directory record
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header
_SIZES = struct.Struct("<L3H")  # a central header's uncompressed size and three lengths
_END_SEARCH = _END.size + 0xFFFF  # the record and the longest comment
_ZIP64 = 0xFFFFFFFF
_DEFLATED = 8


@dataclass(frozen=True)
class Spot:
    """Where a member's bytes lie, as the quick pass found them."""

    header_offset: int
    data_offset: int
    compress_size: int
    file_size: int
    crc: int
    deflated: bool


@dataclass(frozen=True)
class Identity:
    """What tells one file from another: device, inode, size and modification time."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, fd: int) -> Identity:
        st = os.fstat(fd)
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class EarlyInflate:
    """The biggest member's inflate, running on its own thread and descriptor (see the
    module's docstring). :meth:`take` waits for it; :meth:`cancel` ends it."""

    def __init__(self, fd: int, spot: Spot, head: int, wake: bool, sha256: bool) -> None:
        self.spot = spot
        self.identity = Identity.of(fd)
        self.head = min(head, spot.file_size)
        self.wake = wake
        self.sha256 = sha256
        self._fd = fd
        self._cancel = inflate.Cancel()
        self._done: tuple[inflate.Inflated, mmap.mmap] | None = None
        self._thread = threading.Thread(target=self._run, name="repairwheel-early")
        self._thread.start()

    @classmethod
    def start(cls, path: StrPath, *, head: int, wake: bool, sha256: bool) -> EarlyInflate | None:
        """Start inflating the biggest member of the zip at ``path``, keeping its first
        ``head`` bytes (and with ``wake`` what an ELF parse reads), SHA-256 on the way with
        ``sha256``. None, with nothing started, where the C inflate cannot be loaded, the quick
        pass finds no member of EARLY_MIN bytes that the checks would let through, or the file
        cannot be read (the checked open then says what is wrong), and where this process may
        run on one core only: nothing would run beside the start-up then."""
        if _cores() < 2 or inflate.inflater() is None:
            return None
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO could block the open
                return None
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            spot = _biggest(fd)
            if spot is not None:
                return cls(fd, spot, head, wake, sha256)
        except (OSError, struct.error, RuntimeError):
            pass
        os.close(fd)
        return None

    def same_file(self, fd: int) -> bool:
        """Whether ``fd`` is open on the file this inflate reads, unchanged since."""
        return Identity.of(fd) == self.identity

    def take(self) -> tuple[inflate.Inflated, mmap.mmap] | None:
        """Wait for the inflate: what it did and the buffer its kept bytes are in (the
        caller's to close), or None where it could not run. Only the first call gets it."""
        self._thread.join()
        done, self._done = self._done, None
        return done

    def cancel(self) -> None:
        """End the inflate, wait for its thread and drop what it made."""
        self._cancel.set()
        done = self.take()
        if done is not None:
            done[1].close()

    def _run(self) -> None:
        spot = self.spot
        try:
            engine = inflate.inflater()
            buf = mmap.mmap(-1, max(spot.file_size, 1), flags=mmap.MAP_PRIVATE)
        except (OSError, ValueError):
            os.close(self._fd)
            return
        keep = inflate.Keep([(0, self.head)], buf, 0, self.wake, self._cancel)
        done = None
        try:
            if engine is not None:  # start() loaded it
                done = engine.member(
                    self._fd,
                    spot.data_offset,
                    spot.compress_size,
                    spot.deflated,
                    spot.file_size,
                    sha256=self.sha256,
                    keep=keep,
                )
        except Exception:  # nothing to take: the checked read does the work and says why
            done = None
        finally:
            os.close(self._fd)
        if done is None or done.status == inflate.CANCELLED:
            buf.close()
        else:
            self._done = (done, buf)


@contextlib.contextmanager
def cancelled_on_error(early: EarlyInflate | None) -> Iterator[None]:
    """Cancel ``early`` if the block raises: what would have taken it never will."""
    try:
        yield
    except BaseException:
        if early is not None:
            early.cancel()
        raise


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _biggest(fd: int) -> Spot | None:
    """The file member that declares the most bytes, if it has at least EARLY_MIN and would
    pass the open's size, ratio, method and encryption checks; None where the end of the
    central directory is not found where a plain zip has it (zip64, data before the zip)."""
    size = os.fstat(fd).st_size
    tail_at = max(0, size - _END_SEARCH)
    tail = os.pread(fd, size - tail_at, tail_at)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END.size > len(tail):
        return None
    *_, count, cd_size, cd_offset, _comment = _END.unpack_from(tail, at)
    if cd_offset == _ZIP64 or count == 0xFFFF or cd_offset + cd_size != tail_at + at:
        return None
    directory = os.pread(fd, cd_size, cd_offset)
    if len(directory) != cd_size:
        return None
    best, best_at, position = -1, -1, 0
    unpack = _SIZES.unpack_from
    for _ in range(count):
        if position + _CENTRAL.size > cd_size:
            return None
        usize, name_len, extra_len, comment_len = unpack(directory, position + 24)
        if usize > best and usize != _ZIP64:
            best, best_at = usize, position
        position += _CENTRAL.size + name_len + extra_len + comment_len
    if best < EARLY_MIN:
        return None
    fields = _CENTRAL.unpack_from(directory, best_at)
    signature, _made, _need, flags, method, _time, _date, crc, csize, usize = fields[:10]
    name_len, header_offset = fields[10], fields[-1]
    name = directory[best_at + _CENTRAL.size : best_at + _CENTRAL.size + name_len]
    if signature != b"PK\x01\x02" or name.endswith(b"/") or flags & 1 or _ZIP64 in fields:
        return None
    if method not in (0, _DEFLATED) or usize > MAX_MEMBER_SIZE:
        return None
    if (usize > RATIO_MIN_SIZE and usize > MAX_RATIO * csize) or (method == 0 and csize != usize):
        return None
    local = os.pread(fd, LOCAL_HEADER.size, header_offset)
    if len(local) != LOCAL_HEADER.size or local[:4] != b"PK\x03\x04":
        return None
    local_name, local_extra = LOCAL_HEADER.unpack_from(local)[-2:]
    data_offset = header_offset + LOCAL_HEADER.size + local_name + local_extra
    if data_offset + csize > cd_offset:
        return None
    return Spot(header_offset, data_offset, csize, usize, crc, method == _DEFLATED)
