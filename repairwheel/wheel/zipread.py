"""Zip archives read in place: the central directory is validated on open, and members are read
with ``os.pread`` as compressed bytes or inflated with their size and CRC checked.

Nothing here knows about wheels; :mod:`.archive` builds the wheel layer on top.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import stat
import struct
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar, Union

from .._zlib import ZlibError, zlib
from ..errors import ResourceError, WheelError
from . import inflate
from .reuse import OldStream

if TYPE_CHECKING:
    from .early import EarlyInflate

StrPath = Union[str, "os.PathLike[str]"]
DateTime = tuple[int, int, int, int, int, int]
Bytes = Union[bytes, bytearray, mmap.mmap]

MAX_MEMBER_SIZE = 8 << 30
"""Largest declared uncompressed member size: the biggest real wheels hold ~1 GB files."""
MAX_RATIO = 1000
"""Largest ratio accepted above RATIO_MIN_SIZE; deflate itself tops out near 1032:1."""
RATIO_MIN_SIZE = 1 << 20
CHUNK = 1 << 20
"""Compressed bytes read from the file at a time."""
OUT_CHUNK = 8 << 20
"""Inflated bytes produced at a time."""
HEAD_BATCH = 1024
"""Members whose heads one call of the C core reads."""

LOCAL_HEADER = struct.Struct("<4s5H3L2H")
UTF8_NAME = 0x800
"""General-purpose flag bit: the name is UTF-8 (else cp437)."""
UNIX = 3
"""The "made by" system whose external attributes hold a Unix mode."""
_UNICODE_PATH = 0x7075  # Info-ZIP Unicode Path extra field: version 1, CRC32 of the name, UTF-8
_ENCRYPTED = 0x1
# copy_file_range errors that mean "not here" (an old kernel, filesystems that cannot)
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})
_DRIVE = re.compile("[A-Za-z]:")

_Reader = TypeVar("_Reader", bound="ZipReader")
RawCopy = Callable[[int, int, int, int], bool]
"""copy(start, end, fd, offset): a member's compressed bytes start:end copied to ``offset`` of
``fd`` inside the kernel; False, with nothing written, where it cannot."""


@dataclass(frozen=True)
class Member:
    """One member's central-directory header: everything a copy carries over unchanged."""

    name: str
    compress_type: int
    crc: int
    compress_size: int
    file_size: int
    date_time: DateTime
    external_attr: int
    create_system: int = UNIX
    internal_attr: int = 0
    flags: int = 0
    comment: bytes = b""

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @property
    def mode(self) -> int:
        """The Unix permission bits, 0 if none are recorded."""
        return stat.S_IMODE(self.external_attr >> 16)


@dataclass(frozen=True)
class Stored:
    """Where a member lies in the zip it is read from: its local header at ``header_offset``,
    its compressed bytes from ``data_offset`` on; ``read(offset, size)`` reads that file (fewer
    bytes at its end). Members of one file share one ``read``."""

    read: Callable[[int, int], bytes] = field(repr=False)
    header_offset: int
    data_offset: int


@dataclass(frozen=True)
class RawEntry:
    """A member as stored: its header and its compressed bytes (read lazily, once), so a writer
    can copy it without inflating or recompressing."""

    member: Member
    chunks: Iterator[bytes] = field(compare=False, repr=False)
    # copy(start, end, fd, offset): copy the compressed bytes start:end to that file offset
    # inside the kernel, False (nothing written) where it cannot; None: only ``chunks`` can
    copy: RawCopy | None = field(default=None, compare=False, repr=False)
    # where it lies in its file, so that a writer may copy neighbours with their local headers
    # in one read; None for a member made in memory
    stored: Stored | None = field(default=None, compare=False, repr=False)


class _Entry:
    """Where one member lies: its header, where its local header starts and where the next
    record starts (its data must end by then), the stored name where an installer sees another
    one, and where its compressed bytes start (-1 until its local header is read)."""

    __slots__ = ("member", "header_offset", "end", "stored_name", "data_offset")

    def __init__(self, member: Member, header_offset: int, end: int, stored_name: str | None):
        self.member = member
        self.header_offset = header_offset
        self.end = end
        self.stored_name = stored_name
        self.data_offset = -1

    @property
    def raw_name(self) -> bytes:
        """The name's bytes as stored in the archive."""
        name = self.member.name if self.stored_name is None else self.stored_name
        return _stored_bytes(name, self.member.flags)


class ZipReader:
    """A zip archive opened for reading and validated on open, never extracted.

    Refused on open: unsafe, duplicated or undecodable names, a name that is both a file and a
    directory, symlinks and special files, encryption, methods other than stored and deflate,
    sizes or ratios past the limits, and members whose data overlaps the next record. Reads use
    ``os.pread`` on one descriptor, so threads may read members at once.

    Member names are the names an installer sees: the Info-ZIP Unicode Path (0x7075) name when
    its CRC matches the stored name (what ``zipfile`` reports from Python 3.12 on), else the
    stored name, decoded as UTF-8 when flagged so and as cp437 otherwise (as ``zipfile`` does).

    ``early`` (see :class:`.WheelArchive`) is owned by the reader from the call on.
    """

    def __init__(self, path: StrPath, *, early: EarlyInflate | None = None) -> None:
        self.path = Path(path)
        self._early = early
        self._early_lock = threading.Lock()
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            self._drop_early()
            raise self._error(f"cannot open: {exc.strerror}") from None
        self._fd = self._file.fileno()
        try:
            infos, start_dir = self._read_directory()
            self._check_members(infos)
            ends = self._check_layout(infos, start_dir)
        except BaseException:
            self.close()
            raise
        # The ZipInfo objects are dropped: one compact entry a member is what reads need.
        dates: dict[DateTime, DateTime] = {}
        self.members = tuple(_member(info, dates) for info in infos)
        self._entries = {
            member.name: _Entry(
                member,
                info.header_offset,
                end,
                None if info.orig_filename == member.name else info.orig_filename,
            )
            for member, info, end in zip(self.members, infos, ends)
        }

    def __enter__(self: _Reader) -> _Reader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._drop_early()
        self._file.close()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def member(self, name: str) -> Member:
        return self._entry(name).member

    def raw_entry(self, name: str) -> RawEntry:
        """The member's header and its compressed bytes in pieces of at most CHUNK bytes."""
        entry = self._entry(name)
        stored = Stored(self._pread_at, entry.header_offset, self._data_offset(entry))
        return RawEntry(entry.member, self._raw_chunks(entry, CHUNK), self._copier(entry), stored)

    def deflate_stream(self, name: str) -> OldStream | None:
        """The member's deflate stream, to reuse its blocks (:mod:`.reuse`); None when it is
        not deflated."""
        entry = self._entry(name)
        if entry.member.compress_type != zipfile.ZIP_DEFLATED:
            return None
        base = self._data_offset(entry)

        def read(start: int, end: int) -> Iterator[bytes]:
            for position in range(start, end, CHUNK):
                want = min(CHUNK, end - position)
                data = self._pread(want, base + position)
                if len(data) != want:
                    raise self._error(f"member {name!r} is truncated")
                yield data

        return OldStream(entry.member.compress_size, read, self._copier(entry))

    def contents(
        self, name: str, raw_chunk: int = CHUNK, out_chunk: int = OUT_CHUNK
    ) -> Iterator[bytes]:
        """The member's bytes, checked against the declared size as they come, then the CRC.

        Inflation stops as soon as the output passes the declared size, so a lying header cannot
        make a reader allocate more than it announced. Each piece is at most ``out_chunk`` bytes.
        """
        return self._contents(self._entry(name), raw_chunk, out_chunk)

    def inflate_whole(
        self,
        name: str,
        out: bytearray | None = None,
        out_fd: int = -1,
        sha256: bool = False,
        blocks: bool = False,
        keep: inflate.Keep | None = None,
    ) -> inflate.Inflated | None:
        """Put the member's bytes in ``out`` (exactly its size) or else write them to
        ``out_fd`` (-1: nowhere), checked as :meth:`contents` checks them (and with
        ``sha256`` hashed where OpenSSL can be called, with ``blocks`` its deflate blocks'
        ends recorded, with ``keep`` the bytes it names copied out), in one call of the C
        core that holds no GIL. A prefix ``keep`` asks for is not checked. None, with
        nothing done, where the C inflate cannot be loaded; an OSError writing ``out_fd`` is
        the caller's to explain."""
        engine = inflate.inflater()
        if engine is None:
            return None
        entry = self._entry(name)
        member = entry.member
        deflated = member.compress_type == zipfile.ZIP_DEFLATED
        offset = self._data_offset(entry)
        done = None
        if out is None and out_fd < 0 and not blocks:
            done = self._take_early(entry, sha256, keep)
        if done is None:
            done = engine.member(
                self._fd,
                offset,
                member.compress_size,
                deflated,
                member.file_size,
                out,
                out_fd,
                sha256,
                blocks,
                keep,
            )
        if done.status == inflate.OK and done.crc == member.crc:
            return done
        if keep is not None and keep.stop and done.status == inflate.PREFIX:
            return done
        raise self._inflate_error(name, done)

    def _inflate_error(self, name: str, done: inflate.Inflated) -> Exception:
        if done.status == inflate.WRITE:
            return OSError(done.err_no, os.strerror(done.err_no))
        if done.status in (inflate.NOMEM, inflate.DIGEST):
            return ResourceError(f"{self.path.name}: member {name!r}: out of memory to inflate it")
        if done.status == inflate.READ and done.err_no:
            exc = OSError(done.err_no, os.strerror(done.err_no))
            return resource_error(self.path, "cannot read", exc)
        problem = {
            inflate.OK: "fails its CRC check",
            inflate.CORRUPT: f"is corrupt ({done.message})",
            inflate.TRUNCATED: "has a truncated deflate stream",
            inflate.TOO_LONG: "inflates beyond its declared size",
            inflate.SHORT: "is shorter than its declared size",
            inflate.READ: "is truncated",
        }[done.status]
        return self._error(f"member {name!r} {problem}")

    def head(self, name: str, n: int) -> bytes:
        """The first ``n`` bytes of the member, inflating only the start of its stream."""
        entry = self._entry(name)
        member = entry.member
        if n <= 0:
            return b""
        if member.compress_type == zipfile.ZIP_DEFLATED:
            # One read of the stream's start is almost always enough for a few bytes.
            start = self._data_offset(entry)
            raw = self._pread(min(member.compress_size, inflate.HEAD_READ), start)
            try:
                out = zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, n)
            except ZlibError as exc:
                raise self._error(f"member {name!r} is corrupt ({exc})") from None
            if len(out) >= min(n, member.file_size) and len(out) <= member.file_size:
                return out
        out = b""
        for piece in self.contents(name, max(n, 4096), max(n, 1)):
            out += piece
            if len(out) >= n:
                break
        return out[:n]

    def heads(self, names: Sequence[str], n: int) -> dict[str, bytes]:
        """The first ``n`` bytes of each member, as :meth:`head` gives them. Calls of the C
        core, which hold no GIL, settle most members, HEAD_BATCH at a time; :meth:`head` reads
        the others (and every one where that inflate cannot be loaded), raising what is wrong
        with them."""
        found: dict[str, bytes] = {}
        engine = inflate.inflater()
        if engine is not None and 0 < n <= inflate.HEAD_MAX:
            for start in range(0, len(names), HEAD_BATCH):
                found.update(self._batch_heads(engine, names[start : start + HEAD_BATCH], n))
        return {name: found[name] if name in found else self.head(name, n) for name in names}

    def _batch_heads(
        self, engine: inflate.Inflater, names: Sequence[str], n: int
    ) -> dict[str, bytes]:
        entries = [self._entry(name) for name in names]
        raw = [entry.raw_name for entry in entries]
        queries: list[inflate.HeadQuery] = []
        at = 0
        for entry, name in zip(entries, raw):
            member = entry.member
            queries.append(
                (
                    entry.header_offset,
                    member.compress_size,
                    member.file_size,
                    entry.end,
                    at,
                    len(name),
                    member.compress_type == zipfile.ZIP_DEFLATED,
                )
            )
            at += len(name)
        found = {}
        for entry, head in zip(entries, engine.heads(self._fd, queries, b"".join(raw), n)):
            if head is None:
                continue
            entry.data_offset = head.data_offset
            member = entry.member
            # A stored member shorter than n is all in its head, which :meth:`head` reads to
            # the end and so checks against the CRC: a head that fails it is left to head.
            whole = member.compress_type == zipfile.ZIP_STORED and member.file_size < n
            if not whole or zlib.crc32(head.data) == member.crc:
                found[member.name] = head.data
        return found

    def _take_early(
        self, entry: _Entry, sha256: bool, keep: inflate.Keep | None
    ) -> inflate.Inflated | None:
        """What the early inflate made (:mod:`.early`), where it is of this member of this
        file, at the offsets the checked archive gives, and made all a read that writes
        nothing and keeps ``keep`` asks for; its kept bytes are copied into ``keep``'s
        buffer. None otherwise (the early inflate, if of this member, is dropped)."""
        early = self._early
        if early is None or (entry.header_offset, entry.data_offset) != (
            early.spot.header_offset,
            early.spot.data_offset,
        ):
            return None
        member = entry.member
        found = early.spot
        same = (
            (found.compress_size, found.file_size, found.crc, found.deflated)
            == (
                member.compress_size,
                member.file_size,
                member.crc,
                member.compress_type == zipfile.ZIP_DEFLATED,
            )
            and early.same_file(self._fd)
            and (early.sha256 or not sha256)
            and (
                keep is None
                or (
                    keep.stop == 0
                    and keep.wake == early.wake
                    and list(keep.ranges) == [(0, early.head)]
                )
            )
        )
        with self._early_lock:
            if self._early is not early:
                return None  # another read took it
            self._early = None
        if not same:
            early.cancel()
            return None
        taken = early.take()
        if taken is None:
            return None
        done, buf = taken
        with buf:
            if keep is not None and done.kept is not None:
                for start, end in done.kept:
                    keep.base[start:end] = buf[start:end]
        return done

    def _drop_early(self) -> None:
        with self._early_lock:
            early, self._early = self._early, None
        if early is not None:
            early.cancel()

    def _error(self, problem: str) -> WheelError:
        return WheelError(f"{self.path.name}: {problem}")

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise self._error(f"no member {name!r}") from None

    def _read_directory(self) -> tuple[list[zipfile.ZipInfo], int]:
        try:
            # Closing a ZipFile built on an open file leaves that file open. Python 3.12+ warns
            # about an empty Unicode Path field on stderr; it is ignored, as by _unicode_path.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with zipfile.ZipFile(self._file) as archive:
                    return archive.infolist(), archive.start_dir
        except UnicodeDecodeError as exc:  # a name flagged UTF-8 that is not
            raise self._error(f"member name is not valid UTF-8: {bytes(exc.object)!r}") from None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
            if os.pread(self._fd, 4, 0) == b"PK\x03\x04":
                raise self._error(f"truncated or corrupt zip archive ({exc})") from None
            raise self._error("not a zip file") from None

    def _check_members(self, infos: list[zipfile.ZipInfo]) -> None:
        """Name every member as an installer sees it (``info.filename`` is set to that name),
        and refuse names that are unsafe, duplicated, or both a file and a directory."""
        by_name: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            stored = info.orig_filename
            try:
                name = _unicode_path(info) or stored
            except ValueError as exc:
                raise self._error(f"member {stored!r} has {exc}") from None
            for seen in dict.fromkeys((stored, name)):  # an older installer sees the stored one
                reason = unsafe_name(seen)
                if reason is not None:
                    raise self._error(f"member {seen!r} has an unsafe name ({reason})")
            info.filename = name
            if name in by_name:
                raise self._error(f"duplicate member {name!r}")
            by_name[name] = info
            problem = _member_problem(info)
            if problem is not None:
                raise self._error(f"member {name!r} {problem}")
        files = {name for name, info in by_name.items() if not info.is_dir()}
        for name in by_name:
            parts = name.rstrip("/").split("/")
            for depth in range(1, len(parts) + name.endswith("/")):
                prefix = "/".join(parts[:depth])
                if prefix in files:
                    raise self._error(f"{prefix!r} is both a file and a directory")

    def _check_layout(self, infos: list[zipfile.ZipInfo], start_dir: int) -> list[int]:
        """Bound every member's data by the next local header, so members cannot overlap: where
        the record after each member (in ``infos``' order) starts."""
        ordered = sorted(infos, key=lambda info: info.header_offset)
        if ordered and ordered[0].header_offset < 0:  # zipfile shifts offsets by a lost prefix
            name = ordered[0].filename
            raise self._error(f"member {name!r} would start before the archive does")
        bounds = [info.header_offset for info in ordered[1:]] + [start_dir]
        ends = {}
        for info, end in zip(ordered, bounds):
            if info.header_offset + LOCAL_HEADER.size + info.compress_size > end:
                raise self._error(f"member {info.filename!r} overlaps the next zip record")
            ends[info.filename] = end
        return [ends[info.filename] for info in infos]

    def _data_offset(self, entry: _Entry) -> int:
        """Where the member's compressed bytes start, from its local header (read once)."""
        if entry.data_offset >= 0:
            return entry.data_offset
        name = entry.member.name
        raw_name = entry.raw_name
        header = self._pread(LOCAL_HEADER.size + len(raw_name), entry.header_offset)
        if len(header) < LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise self._error(f"member {name!r} has no local header")
        *_, name_length, extra_length = LOCAL_HEADER.unpack_from(header)
        if name_length != len(raw_name) or header[LOCAL_HEADER.size :] != raw_name:
            raise self._error(f"local header of member {name!r} names another file")
        offset: int = entry.header_offset + LOCAL_HEADER.size + name_length + extra_length
        if offset + entry.member.compress_size > entry.end:
            raise self._error(f"member {name!r} overlaps the next zip record")
        entry.data_offset = offset
        return offset

    def _raw_chunks(self, entry: _Entry, chunk: int) -> Iterator[bytes]:
        """The member's compressed bytes, in pieces of at most ``chunk`` bytes."""
        start = self._data_offset(entry)
        size = entry.member.compress_size
        for position in range(0, size, max(chunk, 1)):
            want = min(chunk, size - position)
            data = self._pread(want, start + position)
            if len(data) != want:
                raise self._error(f"member {entry.member.name!r} is truncated")
            yield data

    def _copier(self, entry: _Entry) -> RawCopy:
        """The member's :data:`RawCopy`: copy_file_range of its compressed bytes, False when
        the kernel or the filesystems cannot (before anything is written). Other OSErrors
        propagate: they may be the output's (ENOSPC)."""

        def copy(start: int, end: int, out_fd: int, out_offset: int) -> bool:
            return self._copy_raw(entry, start, end, out_fd, out_offset)

        return copy

    def _copy_raw(self, entry: _Entry, start: int, end: int, out_fd: int, out_offset: int) -> bool:
        base, done, size = self._data_offset(entry) + start, 0, end - start
        while done < size:
            try:
                left = size - done
                n = os.copy_file_range(self._fd, out_fd, left, base + done, out_offset + done)
            except OSError as exc:
                if done == 0 and exc.errno in _NO_KERNEL_COPY:
                    return False
                raise
            if n == 0:
                raise self._error(f"member {entry.member.name!r} is truncated")
            done += n
        return True

    def _pread_at(self, offset: int, size: int) -> bytes:
        return self._pread(size, offset)

    def _pread(self, size: int, offset: int) -> bytes:
        try:
            return os.pread(self._fd, size, offset)
        except OSError as exc:
            raise resource_error(self.path, "cannot read", exc) from None

    def _contents(self, entry: _Entry, raw_chunk: int, out_chunk: int) -> Iterator[bytes]:
        member = entry.member
        name = member.name
        pieces = self._raw_chunks(entry, raw_chunk)
        if member.compress_type == zipfile.ZIP_DEFLATED:
            pieces = self._inflate(member, pieces, out_chunk)
        size = crc = 0
        for piece in pieces:
            size += len(piece)
            if size > member.file_size:
                raise self._error(f"member {name!r} inflates beyond its declared size")
            crc = zlib.crc32(piece, crc)
            yield piece
        if size != member.file_size:
            raise self._error(f"member {name!r} is shorter than its declared size")
        if crc != member.crc:
            raise self._error(f"member {name!r} fails its CRC check")

    def _inflate(self, member: Member, pieces: Iterator[bytes], out_chunk: int) -> Iterator[bytes]:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            for data in pieces:
                while data and not inflater.eof:
                    yield inflater.decompress(data, out_chunk)
                    data = inflater.unconsumed_tail
                if inflater.eof:
                    return
        except ZlibError as exc:
            raise self._error(f"member {member.name!r} is corrupt ({exc})") from None
        if member.compress_size or member.file_size:
            raise self._error(f"member {member.name!r} has a truncated deflate stream")


def unsafe_name(name: str) -> str | None:
    """Why a member name could escape or alias its place in the install tree; None if it cannot."""
    if "\x00" in name:
        return "NUL byte"
    if "\\" in name:
        return "backslash"
    if name.startswith("/"):
        return "absolute path"
    if _DRIVE.match(name):
        return "drive letter"
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    if ".." in parts:
        return "'..' component"
    if "" in parts or "." in parts:
        return "empty or '.' component"
    return None


def resource_error(path: StrPath, what: str, exc: OSError) -> ResourceError:
    """``path: cannot write: No space left on device``, for any OSError (ENOSPC, EDQUOT,
    EACCES, EROFS, EIO): the machine, not the archive, is what failed."""
    return ResourceError(f"{os.fspath(path)}: {what}: {exc.strerror or exc}")


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return f"is a special file (type {kind:#o})"
    if kind == stat.S_IFDIR and not info.is_dir():
        return "has a directory's mode but no trailing '/'"
    if info.is_dir() and (info.file_size or info.compress_size > 2):
        return "is a directory entry holding data"
    if info.flag_bits & _ENCRYPTED:
        return "is encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"uses compression method {info.compress_type}, not deflate or stored"
    if info.file_size > MAX_MEMBER_SIZE:
        return f"declares {info.file_size} bytes, above the {MAX_MEMBER_SIZE}-byte limit"
    if info.file_size > RATIO_MIN_SIZE and info.file_size > MAX_RATIO * info.compress_size:
        return f"declares a compression ratio above {MAX_RATIO}:1 (zip bomb?)"
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        return "is stored but declares different compressed and uncompressed sizes"
    return None


def _member(info: zipfile.ZipInfo, dates: dict[DateTime, DateTime]) -> Member:
    """The member's header; ``dates`` shares one tuple among the members of a date."""
    year, month, day, hour, minute, second = info.date_time
    date_time = (year, month, day, hour, minute, second)
    return Member(
        name=info.filename,
        compress_type=info.compress_type,
        crc=info.CRC,
        compress_size=info.compress_size,
        file_size=info.file_size,
        date_time=dates.setdefault(date_time, date_time),
        external_attr=info.external_attr,
        create_system=info.create_system,
        internal_attr=info.internal_attr,
        flags=info.flag_bits,
        comment=info.comment,
    )


def _stored_bytes(name: str, flags: int) -> bytes:
    """A stored name's bytes, undoing zipfile's decoding: UTF-8 where ``flags`` say so."""
    return name.encode("utf-8" if flags & UTF8_NAME else "cp437")


def _unicode_path(info: zipfile.ZipInfo) -> str | None:
    """The name in the member's Info-ZIP Unicode Path extra field, by CPython 3.12+'s rule:
    the last field of version 1 whose CRC32 is that of the stored name's bytes and whose name
    is not empty (others are stale and ignored). ValueError for a field too short to hold its
    header, or one that applies but is not UTF-8: 3.12+ refuses to open such a zip."""
    found = None
    extra = info.extra
    position = 0
    while position + 4 <= len(extra):
        tag, size = struct.unpack_from("<2H", extra, position)
        data = extra[position + 4 : position + 4 + size]
        position += 4 + size
        if tag != _UNICODE_PATH:
            continue
        if len(data) < 5:
            raise ValueError("a truncated Unicode Path extra field (0x7075)")
        version, crc = struct.unpack_from("<BL", data)
        if version != 1 or crc != zlib.crc32(_stored_bytes(info.orig_filename, info.flag_bits)):
            continue
        try:
            name = data[5:].decode("utf-8")
        except UnicodeDecodeError:
            problem = "a Unicode Path extra field (0x7075) that is not valid UTF-8"
            raise ValueError(problem) from None
        found = name or found
    return found
