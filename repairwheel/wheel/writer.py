"""WheelWriter, a wheel written over the zip writer: ``.dist-info`` members last, RECORD
generated, and the file published under its name only once it is complete."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Callable, Union

from ..errors import UsageError, WheelError
from .archive import WheelArchive
from .batchdeflate import Batch, batch_deflater
from .records import RecordHash, RecordRow, write_record
from .reuse import Reuse
from .zipread import CHUNK, Bytes, DateTime, RawEntry, StrPath, resource_error, unsafe_name
from .zipwrite import NEW_MEMBER_TIME, ZipWriter, compressed, dos_date_time, new_entry, streams

log = logging.getLogger(__name__)

_MAX_EPOCH = 253402300799  # 9999-12-31 23:59:59 UTC, the last second a timestamp can name


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` in seconds since 1970-01-01 UTC, None when unset or empty.

    UsageError (exit 2) naming the variable and its value when it is not a plain non-negative
    decimal integer (the reproducible-builds spec: the output of ``date +%s``) or lies past the
    year 9999. Zip timestamps clamp it to what DOS dates hold (see WheelWriter); the SBOM
    timestamp uses it as it is.
    """
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not re.fullmatch("[0-9]+", value):
        raise UsageError(
            f"SOURCE_DATE_EPOCH must be a non-negative integer (seconds since 1970-01-01 UTC), "
            f"not {value!r}"
        )
    epoch = int(value)
    if epoch > _MAX_EPOCH:
        raise UsageError(f"SOURCE_DATE_EPOCH={value} is after the year 9999")
    return epoch


class WheelWriter:
    """Write a wheel under a hidden temporary name and rename it into place once complete.

    Use it as a context manager. Members are written in call order, except that members of
    ``dist_info`` are held back to the end (they are small), so new files such as
    ``<name>.libs/`` land before ``.dist-info`` whatever the call order; RECORD is generated
    and written last. If the block raises (KeyboardInterrupt included) or finishing fails, the
    temporary file is removed and nothing appears at ``path``. Archives copied from must stay
    open until the writer has finished; ``path`` may be the file being copied from. An OSError
    writing (a full disk, a read-only or unwritable folder) is a ResourceError naming ``path``;
    once the rename has published the wheel, a failing fsync of the folder is only logged.

    With ``SOURCE_DATE_EPOCH`` set, every member gets that time (clamped to what zip can hold),
    so runs are byte-identical; without it, copied members keep their times and added ones get
    1980-01-01 unless given one, which is just as deterministic. Extra fields are dropped: they
    hold uid/gid and second copies of timestamps, and nothing in a wheel needs them.
    """

    def __init__(self, path: StrPath, dist_info: str) -> None:
        self.path = Path(path)
        self.dist_info = dist_info.rstrip("/")
        self._record_path = f"{self.dist_info}/RECORD"
        self._not_copied = {self._record_path, f"{self._record_path}.jws"}
        self._not_copied.add(f"{self._record_path}.p7s")
        epoch = source_date_epoch()
        self._epoch_time = None if epoch is None else dos_date_time(epoch)
        self._tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        self._out: BinaryIO | None = None
        self._zip: ZipWriter | None = None
        self._names: set[str] = set()
        self._deferred: list[Callable[[], None]] = []
        self._batch: list[_Small] = []  # small members waiting to be compressed together
        self._batch_bytes = 0
        self._pool: ThreadPoolExecutor | None = None
        self._deflater = batch_deflater()
        # writes waiting for a batch before them to be compressed, in order
        self._queue: deque[_Queued] = deque()
        self._in_flight = 0  # batches in _queue being compressed
        self._in_flight_bytes = 0  # and the bytes they compress
        self._rows: list[RecordRow] = []
        # copies waiting to be written together, after everything before them was
        self._copies: list[tuple[RawEntry, RecordHash | None]] = []

    def __enter__(self) -> WheelWriter:
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            self._out = open(fd, "wb", buffering=CHUNK)
        except BaseException as exc:  # Ctrl-C may land once the file exists: do not leave it
            with contextlib.suppress(OSError):  # (a read-only folder refuses even the unlink)
                self._tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise resource_error(self.path, "cannot write", exc) from None
            raise
        self._zip = ZipWriter(self._out, date_time=self._epoch_time)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
            self._discard()

    def copy(self, archive: WheelArchive, name: str) -> None:
        """Copy a member as its compressed bytes, with its CRC, sizes, method, mode and comment.

        The member is checked against its CRC and hashed for RECORD first (members already read
        are not inflated again), and compared with the input's RECORD row: a corrupt member, or
        one whose size or hash RECORD does not vouch for, is refused (WheelError) rather than
        passed on under a new RECORD that hides it. The input's RECORD and signatures are
        skipped: RECORD is regenerated and the signatures would no longer match.
        """
        if name in self._not_copied:
            return
        member = archive.member(name)
        self._claim(name)
        digest = None if member.is_dir else archive.digest(name)

        def write() -> None:
            self._write(archive.raw_entry(name), digest)

        if self._deferred_name(name):
            self._deferred.append(write)
            return
        self._flush()
        if self._queue:
            self._queue.append(write)
            return
        self._copies.append((archive.raw_entry(name), digest))
        if len(self._copies) >= _COPY_RUN:
            self._write_copies()

    def add(
        self,
        name: str,
        data: Bytes,
        *,
        mode: int = 0o644,
        date_time: DateTime | None = None,
        level: int = -1,
        reuse: Reuse | None = None,
    ) -> None:
        """Add a new or changed file member, deflated at zlib ``level`` (-1 is 6, 0 stores it).

        ``reuse``: for a big member patched from one of the input, the runs of its old deflate
        stream that still decode to the same bytes, kept as they are; only the rest is
        compressed at ``level`` (:mod:`.reuse`)."""
        if not -1 <= level <= 9:
            raise ValueError(f"compression level must be -1..9, not {level}")
        if name == self._record_path:
            raise ValueError(f"{name} is generated by WheelWriter")
        reason = "it names a directory" if name.endswith("/") else unsafe_name(name)
        if reason is None and not _encodes(name):
            reason = "not encodable as UTF-8"
        if reason is not None:
            raise WheelError(f"{self.path.name}: cannot add {name!r}: {reason}")
        self._claim(name)
        when = date_time or NEW_MEMBER_TIME
        if self._deferred_name(name):
            entry = compressed(name, data, level=level, mode=mode, date_time=when)
            digest = RecordHash.of(data)
            self._deferred.append(lambda: self._write(entry, digest))
            return
        if level == 0 or not streams(len(data)):
            # (copied: the caller's buffer, a map, may close once add returns)
            self._batch.append(_Small(name, bytes(data), level, mode, when))
            self._batch_bytes += len(data)
            if len(self._batch) >= _BATCH_COUNT or self._batch_bytes >= _BATCH_BYTES:
                self._flush()
            return
        self._flush()
        self._drain(everything=True)
        with self._writing() as out:
            member, sha256 = out.write_deflated(
                name, data, level=level, mode=mode, date_time=when, reuse=reuse
            )
        self._rows.append(RecordRow(name, RecordHash.from_hasher(sha256), member.file_size))

    def _claim(self, name: str) -> None:
        if name in self._names:
            raise WheelError(f"{self.path.name}: duplicate member {name!r}")
        self._names.add(name)

    def _deferred_name(self, name: str) -> bool:
        return name.startswith(f"{self.dist_info}/")

    def _flush(self) -> None:
        """Compress the batched small members: with the C core's batch deflate, on a thread
        while the caller goes on (written, in order, as :meth:`_drain` finds them done); else
        a share per thread from Python, written at once."""
        if not self._batch:
            return
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        deflater, levels = self._deflater, {m.level for m in batch}
        if deflater is not None and 0 not in levels and len(levels) == 1:
            threads = os.cpu_count() or 1
            if self._pool is None:
                self._pool = ThreadPoolExecutor(threads)
            job = Batch(deflater, [m.data for m in batch], batch[0].level)
            self._queue.append((batch, job, self._pool.submit(job.run)))
            self._in_flight += 1
            self._in_flight_bytes += sum(len(m.data) for m in batch)
            self._drain(everything=False, keep=2 * threads)
            return
        self._drain(everything=True)
        threads = min(os.cpu_count() or 1, len(batch) // _BATCH_SHARE or 1)
        if threads == 1:
            done = _compress(batch)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(threads)
            shares = [batch[i::threads] for i in range(threads)]
            results = list(self._pool.map(_compress, shares))
            done = [results[i % threads][i // threads] for i in range(len(batch))]
        for entry, digest in done:
            self._write(entry, digest)

    def _drain(self, everything: bool, keep: int = 0) -> None:
        """Write the queue's head while it is ready; waiting for it while more than ``keep``
        batches (or _IN_FLIGHT_BYTES) are being compressed, or (``everything``) until the
        queue is empty."""
        while self._queue:
            head = self._queue[0]
            if isinstance(head, tuple):
                batch, job, future = head
                crowded = self._in_flight > keep or self._in_flight_bytes > _IN_FLIGHT_BYTES
                if not (everything or crowded or future.done()):
                    return
                future.result()
                results = job.results()
                self._queue.popleft()
                self._in_flight -= 1
                self._in_flight_bytes -= sum(len(m.data) for m in batch)
                for small, done in zip(batch, results):
                    entry = new_entry(
                        small.name,
                        [done.stream],
                        True,
                        done.crc,
                        len(small.data),
                        small.mode,
                        small.date_time,
                    )
                    self._write(entry, RecordHash.from_digest("sha256", done.sha256))
            else:
                self._queue.popleft()
                head()

    def _write(self, entry: RawEntry, digest: RecordHash | None) -> None:
        with self._writing() as out:
            out.write(entry)
        self._row(entry, digest)

    def _row(self, entry: RawEntry, digest: RecordHash | None) -> None:
        """The RECORD row of a member written (none for a folder or RECORD itself)."""
        if digest is not None:
            self._rows.append(RecordRow(entry.member.name, digest, entry.member.file_size))

    def _write_copies(self) -> None:
        """Write the copies waiting in :attr:`_copies`, together (:meth:`ZipWriter.write_run`)."""
        copies, self._copies = self._copies, []
        if not copies:
            return
        if self._zip is None:
            raise RuntimeError("WheelWriter used outside its with block")
        try:
            self._zip.write_run([entry for entry, _ in copies])
        except OSError as exc:
            raise resource_error(self.path, "cannot write", exc) from None
        for entry, digest in copies:
            self._row(entry, digest)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[ZipWriter]:
        """The zip writer, the copies waiting written first."""
        self._write_copies()
        if self._zip is None:
            raise RuntimeError("WheelWriter used outside its with block")
        try:
            yield self._zip
        except OSError as exc:
            raise resource_error(self.path, "cannot write", exc) from None

    def _finish(self) -> None:
        self._flush()
        self._drain(everything=True)
        for write in self._deferred:
            write()
        record = write_record([*self._rows, RecordRow(self._record_path, None, None)])
        self._write(compressed(self._record_path, record, level=-1, mode=0o644), None)
        with self._writing() as out:
            out.finish()
        if self._out is None or self._zip is None:
            raise RuntimeError("WheelWriter used outside its with block")
        try:
            self._out.flush()
            os.fsync(self._out.fileno())
            self._zip.close()  # (the writebacks started: the fsync waited for their bytes)
            self._out.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise resource_error(self.path, "cannot write", exc) from None
        try:  # the wheel is published: a failure here must not report the repair as failed
            directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            log.warning("%s: written, but syncing its folder failed: %s", self.path, exc)

    def _discard(self) -> None:
        """Remove what is left of the temporary file; after a successful rename, nothing is."""
        if self._zip is not None:
            self._zip.close()
        if self._out is not None:
            with contextlib.suppress(OSError):
                self._out.close()
        with contextlib.suppress(OSError):  # gone once renamed; else report the first error
            self._tmp.unlink()


_COPY_RUN = 1024  # copied members written together, at most this many
_BATCH_COUNT = 64  # small members compressed together, at most this many
_BATCH_BYTES = 16 << 20  # or this many bytes
_BATCH_SHARE = 8  # members per thread below which one thread does it all
_IN_FLIGHT_BYTES = 2 * _BATCH_BYTES  # batched bytes being compressed while the caller goes on


@dataclass(frozen=True)
class _Small:
    """A small member waiting in a batch."""

    name: str
    data: bytes
    level: int
    mode: int
    date_time: DateTime


_Queued = Union[tuple[list[_Small], Batch, Future[None]], Callable[[], None]]
"""A batch being compressed, or a write that waits for the batches before it."""


def _compress(members: list[_Small]) -> list[tuple[RawEntry, RecordHash]]:
    return [
        (
            compressed(m.name, m.data, level=m.level, mode=m.mode, date_time=m.date_time),
            RecordHash.of(m.data),
        )
        for m in members
    ]


def _encodes(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
