"""WheelArchive, a wheel opened for reading: the zip reader plus the wheel's ``.dist-info``,
its WHEEL and METADATA checks, and RECORD checked against the bytes as they are read."""

from __future__ import annotations

import contextlib
import email.parser
import mmap
import re
import threading
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import inflate
from .batchverify import VerifyJob, verify_members
from .early import EarlyInflate, cancelled_on_error
from .inflate import Blocks, Keep
from .names import WheelFilename
from .records import (
    RecordHash,
    RecordHasher,
    RecordInvalid,
    RecordMismatch,
    RecordRow,
    parse_record,
    record_mismatch,
)
from .zipread import Bytes, Member, StrPath, ZipReader

_ELF_MAGIC = b"\x7fELF"
_HASH_WINDOW = 32 << 20  # a written member is hashed through maps of this size
_HASH_IN_C = 1 << 20  # members from this size are hashed as the C core inflates them
_VERIFY_IN_MEMORY = 4 << 20  # members up to this size are checked from a buffer
_BATCH_MEMBER = 256 << 10  # members up to this size are checked many to a C call
_BATCH_BYTES = 8 << 20  # the most a batch inflates
_BATCH_COUNT = 1024  # the most members a batch checks
_OTHERS_PART = 8 << 20  # bytes of other members checked by one task on an audit's pool


@dataclass(frozen=True)
class WheelMetadata:
    """``.dist-info/WHEEL`` as installers read it: its Wheel-Version, whether the root installs
    to purelib, and its ``Tag:`` lines."""

    wheel_version: tuple[int, int]
    root_is_purelib: bool
    tags: tuple[str, ...]


class WheelArchive(ZipReader):
    """A wheel opened for reading, validated on open, read in place (never extracted).

    Besides what :class:`ZipReader` refuses, the file name must be a wheel's and the archive
    must hold exactly one ``.dist-info``. Several threads may read members at once (RECORD is
    parsed once, under a lock, by whichever thread needs it first).

    With ``hash_reads`` every full read also hashes the member and compares it with its RECORD
    row (size and hash), as the bytes go by: a writer copying the members needs the hashes
    (see :meth:`digest`), and nothing is inflated twice to check RECORD. A member that
    disagrees raises WheelError at the end of its read, unless ``refuse_record_mismatch`` is
    false: then the finding waits for :meth:`verify_record`, which reports every mismatch and
    inflates only the members no read has hashed yet. An audit alone needs neither.

    With ``early`` (:mod:`.early`, started on this file) the first read that its inflate can
    stand for takes its result instead of inflating; the archive owns it, and cancels it if
    the open fails or when it closes unused.
    """

    def __init__(
        self,
        path: StrPath,
        *,
        hash_reads: bool = False,
        refuse_record_mismatch: bool = True,
        early: EarlyInflate | None = None,
    ) -> None:
        with cancelled_on_error(early):
            self.filename = WheelFilename.parse(Path(path).name)
        self.hash_reads = hash_reads
        self.refuse_record_mismatch = refuse_record_mismatch
        self._digests: dict[str, RecordHash] = {}  # sha256 of members a full read has checked
        self._checked: dict[str, RecordMismatch | None] = {}  # compared with RECORD as read
        self._record_lock = threading.RLock()
        self._is_elf: dict[str, bool] = {}
        self._classify_lock = threading.Lock()
        self._rows: dict[str, RecordRow] | None = None
        super().__init__(path, early=early)
        try:
            self.dist_info = self._find_dist_info()
        except BaseException:
            self.close()
            raise
        record = self.record_path
        self._not_in_record = frozenset({record, f"{record}.jws", f"{record}.p7s"})

    def stream(self, name: str) -> Iterator[bytes]:
        """The member's contents in pieces (size and CRC checked by the end), for members too
        big to hold in memory."""
        return self._read(name, hash_it=self.hash_reads)

    def extract_to(self, name: str, file: StrPath, blocks: bool = False) -> Blocks | None:
        """Write the member's contents to ``file`` (created or truncated) without holding it;
        with ``blocks``, the ends of its deflate blocks are returned where they were found
        (:data:`.inflate.Blocks`). An OSError writing ``file`` is the caller's to explain (it
        knows what the file is for: a spill, a staged member); reading the wheel fails as
        WheelError or ResourceError."""
        with open(file, "w+b") as out:  # readable too: the bytes are hashed from the page cache
            return self.extract_fd(name, out.fileno(), blocks)

    def extract_fd(self, name: str, fd: int, blocks: bool = False) -> Blocks | None:
        """Write the member's contents to ``fd`` (open for reading and writing, empty), as
        :meth:`extract_to` does."""
        sha256 = self._hash_on_the_way(name)
        done = self.inflate_whole(name, out_fd=fd, sha256=sha256, blocks=blocks)
        if done is not None:
            if self.hash_reads:
                self._hash_result(name, done.sha256, lambda: self._written(name, fd))
            return done.blocks
        with open(fd, "wb", closefd=False) as out:
            for piece in self.stream(name):
                out.write(piece)
        return None

    def keep_ranges(
        self,
        name: str,
        into: bytearray | mmap.mmap,
        ranges: Sequence[tuple[int, int]],
        *,
        prefix: int = 0,
        elf: bool = False,
    ) -> tuple[tuple[int, int], ...] | None:
        """Inflate the member once, copying only ``ranges`` of its bytes into ``into`` (a
        writable buffer of its size) at their own offsets, and writing nothing else; with
        ``elf``, also what an ELF parse reads, as the bytes kept tell it (:class:`.Keep`).
        Returns the ranges kept. The member is checked as :meth:`extract_fd` checks it (CRC,
        size, RECORD when reads are hashed); with ``prefix``, only its first ``prefix``
        bytes are made, unchecked (for bytes a checked read has made already). None, with
        nothing done, where the C core cannot do this here (no C inflate, or a hashed read
        it cannot hash)."""
        hashed = not prefix and self.hash_reads and name not in self._digests
        if hashed and not self._hash_on_the_way(name):
            return None
        done = self.inflate_whole(name, sha256=hashed, keep=Keep(ranges, into, prefix, elf))
        if done is None:
            return None
        if hashed:  # the digest made on the way (a second, Python read if OpenSSL failed)
            self._hash_result(name, done.sha256, lambda: self._read(name, hash_it=False))
        return done.kept

    def read(self, name: str) -> bytearray:
        """The member's contents, checked against its declared size and CRC.

        A bytearray filled in place: a 480 MB member costs 480 MB, where building ``bytes``
        would need a second, final copy.
        """
        out = bytearray(self.member(name).file_size)
        done = self.inflate_whole(name, out, sha256=self._hash_on_the_way(name))
        if done is not None:
            if self.hash_reads:
                self._hash_result(name, done.sha256, lambda: iter((out,)))
            return out
        position = 0
        with memoryview(out) as view:
            for piece in self._read(name, hash_it=self.hash_reads):
                view[position : position + len(piece)] = piece
                position += len(piece)
        return out

    def elf_members(self) -> list[str]:
        """Every file member that starts with the ELF magic, whatever RECORD or its name say."""
        return list(self._elf_members)

    @cached_property
    def _elf_members(self) -> tuple[str, ...]:
        self._classify()
        return tuple(member.name for member in self.members if self._is_elf[member.name])

    def is_elf(self, name: str) -> bool:
        """Whether the member is a file that starts with the ELF magic (looked at once)."""
        known = self._is_elf.get(name)
        if known is None:
            known = self._is_elf[name] = self._starts_elf((name,))[name]
        return known

    def _classify(self) -> None:
        """Tell every member whether it is ELF, all heads looked at in one batch (once: an
        audit's thread checking the other members waits for its caller's batch)."""
        with self._classify_lock:
            unknown = [m.name for m in self.members if m.name not in self._is_elf]
            if unknown:
                self._is_elf.update(self._starts_elf(unknown))

    def _starts_elf(self, names: Sequence[str]) -> dict[str, bool]:
        members = [self.member(name) for name in names]
        files = [m.name for m in members if not m.is_dir and m.file_size >= len(_ELF_MAGIC)]
        heads = self.heads(files, len(_ELF_MAGIC))
        return {name: heads.get(name) == _ELF_MAGIC for name in names}

    @property
    def record_path(self) -> str:
        return f"{self.dist_info}/RECORD"

    @cached_property
    def wheel_metadata(self) -> WheelMetadata:
        """WHEEL, parsed; WheelError without a Wheel-Version of the form ``1.x``."""
        path = f"{self.dist_info}/WHEEL"
        message = email.parser.Parser().parsestr(self._text(path))
        version = message.get("Wheel-Version")
        if version is None:
            raise self._error(f"{path} has no Wheel-Version")
        match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", version)
        if match is None:
            raise self._error(f"{path} has a malformed Wheel-Version {version!r}")
        if match[1] != "1":
            raise self._error(f"{path} has unsupported Wheel-Version {version.strip()}")
        return WheelMetadata(
            wheel_version=(int(match[1]), int(match[2])),
            root_is_purelib=message.get("Root-Is-Purelib", "").strip().lower() == "true",
            tags=tuple(tag.strip() for tag in message.get_all("Tag", [])),
        )

    def check_metadata(self) -> None:
        """Refuse a wheel whose WHEEL or METADATA an installer would reject: the ``.dist-info``
        folder must name the file name's distribution and version, WHEEL must parse with a 1.x
        Wheel-Version, METADATA must be UTF-8 with a Name and a Version."""
        self._check_dist_info_name()
        self.wheel_metadata  # noqa: B018 (parsing is the check)
        path = f"{self.dist_info}/METADATA"
        if path not in self:
            raise self._error(f"{path} is missing")
        message = email.parser.Parser().parsestr(self._text(path), headersonly=True)
        for field in ("Name", "Version"):
            if not (message.get(field) or "").strip():
                raise self._error(f"{path} has no {field}")

    def _check_dist_info_name(self) -> None:
        """pip and installer refuse a wheel whose ``.dist-info`` is another distribution's.
        Names compare canonicalized, versions as PEP 440 versions where both parse."""
        stem = self.dist_info[: -len(".dist-info")]
        name, _, version = stem.rpartition("-")
        wheel = self.filename
        same = bool(name) and canonicalize_name(name) == canonicalize_name(wheel.name)
        if same:
            try:
                same = Version(version) == Version(wheel.version)
            except InvalidVersion:
                same = version == wheel.version
        if not same:
            raise self._error(
                f"{self.dist_info}/ does not match the file name's distribution and version "
                f"({wheel.name} {wheel.version}); installers refuse such a wheel"
            )

    @property
    def record(self) -> tuple[RecordRow, ...]:
        """Every RECORD row, in file order; WheelError if RECORD does not parse."""
        return tuple(self._record_index.values())

    def record_row(self, path: str) -> RecordRow | None:
        return self._record_index.get(path)

    @property
    def _record_index(self) -> dict[str, RecordRow]:
        with self._record_lock:
            if self._rows is None:
                self._rows = self._parse_record()
            return self._rows

    def _parse_record(self) -> dict[str, RecordRow]:
        path = self.record_path
        try:
            return parse_record(self._text(path))
        except RecordInvalid as exc:
            raise self._error(f"{path} {exc}") from None

    def verify_record(self, *, contents: bool = True) -> list[RecordMismatch]:
        """Every disagreement between RECORD and the wheel, fatal ones first (see
        RecordMismatch), in archive order; never raises for one.

        Members a read has already hashed (an audit's, with ``hash_reads``) are not read
        again; with ``contents`` the others are inflated and hashed once, else only what
        costs no inflating is checked: names, declared sizes, and the members already read.
        """
        rows = self._record_index
        fatal, notes = [], []
        if contents:  # every listed member no read has hashed yet (_verify_all skips those)
            listed = [m for m in self.members if not m.is_dir and m.name in rows]
            self._verify_all([m for m in listed if m.name not in self._not_in_record], False)
        for member in self.members:
            name = member.name
            if member.is_dir or name in self._not_in_record:
                continue
            row = rows.get(name)
            if row is None:
                notes.append(RecordMismatch(name, "not listed in RECORD"))
                continue
            if row.digest is None:
                notes.append(RecordMismatch(name, "has no hash in RECORD"))
            if row.size is None:
                notes.append(RecordMismatch(name, "has no size in RECORD"))
            if name in self._checked:
                mismatch = self._checked[name]
            else:
                mismatch = record_mismatch(row, member.file_size, None)
            if mismatch is not None:
                fatal.append(mismatch)
        notes += [
            RecordMismatch(path, "listed in RECORD but not in the wheel")
            for path in rows
            if path not in self and path not in self._not_in_record
        ]
        return fatal + notes

    @contextlib.contextmanager
    def checking_others(self, pool: Executor | None = None) -> Iterator[Callable[[], None]]:
        """CRC-check and hash every member that is not ELF while the caller (an audit) reads
        the ELF ones: on ``pool`` (the audit's own, so that no more threads are busy than
        there are cores, and the last parts go to whichever is free first) in parts of about
        _OTHERS_PART bytes, or else on a thread of its own. Yields a function that waits for
        all of it and re-raises a failure (a RECORD mismatch only if
        ``refuse_record_mismatch``); on exit the parts not started are cancelled and the
        others waited for, before the archive can close."""
        stop = threading.Event()
        own = None
        if pool is None:
            pool = own = ThreadPoolExecutor(max_workers=1)
        parts = self._others(in_parts=own is None)
        futures = [pool.submit(self._verify_all, part, None, stop) for part in parts]

        def checked() -> None:
            for future in futures:
                future.result()

        try:
            yield checked
        finally:
            stop.set()
            for future in futures:
                future.cancel()
            if own is not None:
                own.shutdown(wait=True)
            else:
                wait(futures)

    def _others(self, *, in_parts: bool) -> list[list[Member]]:
        """The members that are not ELF, in archive order: with ``in_parts`` in parts of
        about _OTHERS_PART bytes, else in one."""
        self._classify()
        others = [m for m in self.members if not m.is_dir and not self.is_elf(m.name)]
        if not in_parts:
            return [others]
        parts: list[list[Member]] = [[]]
        size = 0
        for member in others:
            if size >= _OTHERS_PART:
                parts.append([])
                size = 0
            parts[-1].append(member)
            size += member.file_size
        return parts

    def digest(self, name: str) -> RecordHash:
        """The member's sha256 for a new RECORD, size and CRC checked; computed once (by the
        first read when ``hash_reads`` is set: sha256 runs at over 1 GB/s, inflating is the
        cost).

        WheelError if the member disagrees with its RECORD row, whatever
        ``refuse_record_mismatch`` says: this is the hash a writer vouches for.
        """
        self._verify(name, True)
        mismatch = self._checked.get(name)
        if mismatch is not None:
            raise self._error(str(mismatch))
        return self._digests[name]

    def _read(self, name: str, *, hash_it: bool, refuse: bool | None = None) -> Iterator[bytes]:
        """The member's checked contents; with ``hash_it``, hashed and compared with RECORD."""
        pieces = self.contents(name)
        return self._hashed(name, pieces, refuse) if hash_it else pieces

    def _hashed(self, name: str, pieces: Iterator[bytes], refuse: bool | None) -> Iterator[bytes]:
        """``pieces``, hashed as they pass (unless the member is hashed already) and compared
        with the member's RECORD row at the end; a mismatch raises if ``refuse`` (default:
        ``refuse_record_mismatch``), and is kept for verify_record and digest."""
        if name in self._digests:
            yield from pieces
            return
        hasher = RecordHasher(self._row(name))
        for piece in pieces:
            hasher.update(piece)
            yield piece
        self._settle(name, *hasher.result(), refuse)

    def _row(self, name: str) -> RecordRow | None:
        return None if name in self._not_in_record else self._record_index.get(name)

    def _settle(
        self, name: str, sha256: RecordHash, actual: RecordHash, refuse: bool | None
    ) -> None:
        """Keep the member's hash and how it compares with its RECORD row."""
        row = self._row(name)
        size = self.member(name).file_size  # the reader has checked the bytes against it
        mismatch = None if row is None else record_mismatch(row, size, actual)
        self._checked[name] = mismatch
        self._digests[name] = sha256
        if mismatch is not None and (self.refuse_record_mismatch if refuse is None else refuse):
            raise self._error(str(mismatch))

    def _hash_on_the_way(self, name: str, hash_it: bool | None = None) -> bool:
        """Whether a whole read of the member should compute its sha256 as it inflates: a
        hashed read (``hash_it``, default ``hash_reads``) of a member not hashed yet, big
        enough to be worth it, whose row needs no other algorithm."""
        return (
            (self.hash_reads if hash_it is None else hash_it)
            and name not in self._digests
            and self.member(name).file_size >= _HASH_IN_C
            and RecordHasher.other_algorithm(self._row(name)) is None
        )

    def _verify_all(
        self,
        members: Sequence[Member],
        refuse: bool | None,
        stop: threading.Event | None = None,
    ) -> None:
        """:meth:`_verify` each member in order (until ``stop`` is set), runs of small ones
        not hashed yet in one call of the C core each (:func:`.batchverify.verify_members`)."""
        batch: list[Member] = []
        size = 0
        for member in members:
            if stop is not None and stop.is_set():
                return
            name = member.name
            if name in self._digests:
                continue
            small = member.file_size <= _BATCH_MEMBER
            if small and RecordHasher.other_algorithm(self._row(name)) is None:
                if len(batch) == _BATCH_COUNT or size + member.file_size > _BATCH_BYTES:
                    self._verify_batch(batch, refuse)
                    batch, size = [], 0
                batch.append(member)
                size += member.file_size
                continue
            self._verify_batch(batch, refuse)
            batch, size = [], 0
            self._verify(name, refuse)
        self._verify_batch(batch, refuse)

    def _verify_batch(self, batch: Sequence[Member], refuse: bool | None) -> None:
        """:meth:`_verify` the members in one call of the C core; one it does not settle (or
        all, where it cannot be called) takes :meth:`_verify`, which says what is wrong."""
        if not batch:
            return
        jobs = [
            VerifyJob(
                self._data_offset(self._entry(m.name)),
                m.compress_size,
                m.file_size,
                m.compress_type == zipfile.ZIP_DEFLATED,
            )
            for m in batch
        ]
        done = verify_members(self._fd, jobs)
        for i, member in enumerate(batch):
            found = None if done is None else done[i]
            if found is not None and found.status == inflate.OK and found.crc == member.crc:
                digest = RecordHash.from_digest("sha256", found.sha256)
                self._settle(member.name, digest, digest, refuse)
            else:
                self._verify(member.name, refuse)

    def _verify(self, name: str, refuse: bool | None) -> None:
        """Inflate, CRC-check and hash the member, keeping nothing but its hash; a RECORD
        mismatch raises if ``refuse`` (default: ``refuse_record_mismatch``)."""
        if name in self._digests:
            return
        if self.member(name).file_size <= _VERIFY_IN_MEMORY:
            out = bytearray(self.member(name).file_size)
            if self.inflate_whole(name, out) is not None:
                self._hash_result(name, None, lambda: iter((out,)), refuse)
                return
        elif self._hash_on_the_way(name, hash_it=True):
            done = self.inflate_whole(name, sha256=True)
            if done is not None and done.sha256 is not None:
                digest = RecordHash.from_digest("sha256", done.sha256)
                self._settle(name, digest, digest, refuse)
                return
        for _ in self._read(name, hash_it=True, refuse=refuse):
            pass

    def _hash_result(
        self,
        name: str,
        sha256: bytes | None,
        pieces: Callable[[], Iterator[Bytes]],
        refuse: bool | None = None,
    ) -> None:
        """Settle a whole read's hash: the digest computed on the way, or else ``pieces``
        (the bytes read back) hashed here; ``refuse`` as for :meth:`_settle`."""
        if name in self._digests:
            return
        if sha256 is None:
            hasher = RecordHasher(self._row(name))
            for piece in pieces():
                hasher.update(piece)
            self._settle(name, *hasher.result(), refuse)
            return
        digest = RecordHash.from_digest("sha256", sha256)
        self._settle(name, digest, digest, refuse)

    def _written(self, name: str, fd: int) -> Iterator[Bytes]:
        """A member just written to ``fd``, read back from the page cache a window at a time
        (so a 400 MB member does not count 400 MB towards this process's memory)."""
        size = self.member(name).file_size
        for offset in range(0, size, _HASH_WINDOW):
            length = min(_HASH_WINDOW, size - offset)
            with mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=offset) as window:
                yield window

    def _text(self, name: str) -> str:
        try:
            return self.read(name).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._error(f"{name} is not UTF-8: {exc}") from None

    def _find_dist_info(self) -> str:
        tops = {member.name.split("/", 1)[0] for member in self.members if "/" in member.name}
        found = sorted(top for top in tops if top.endswith(".dist-info"))
        if not found:
            raise self._error("no .dist-info directory")
        if len(found) > 1:
            raise self._error(f"several .dist-info directories: {', '.join(found)}")
        return found[0]
