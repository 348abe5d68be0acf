"""RECORD, the wheel's list of files with their hashes and sizes: rows with a typed hash,
parsing (strict, as installers read it), comparing a member with its row, and writing."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .zipread import Bytes

_HASH = re.compile(r"[A-Za-z0-9_]+=[A-Za-z0-9_-]+=*")
_SIZE = re.compile("[0-9]+")
ALGORITHMS = frozenset(hashlib.algorithms_guaranteed - {"shake_128", "shake_256"})
"""The hash algorithms a RECORD row may use and be checked (``shake_*`` need a length)."""
_ALGORITHM_NAMES = {name: name for name in ALGORITHMS}  # one string per name, not one per row


class RecordInvalid(ValueError):
    """RECORD cannot be parsed: the message says where (``line 3: ...``) or why."""


@dataclass(frozen=True)
class RecordHash:
    """A RECORD hash: the algorithm and the digest in urlsafe base64 without padding."""

    algorithm: str
    value: str

    @classmethod
    def parse(cls, text: str) -> RecordHash:
        """``algorithm=digest`` as RECORD holds it; padding is dropped, as installers do."""
        algorithm, _, value = text.partition("=")
        return cls(_ALGORITHM_NAMES.get(algorithm, algorithm), value.rstrip("="))

    @classmethod
    def of(cls, data: Bytes, algorithm: str = "sha256") -> RecordHash:
        """The hash of ``data``; sha256 is what RECORD rows get when they are written."""
        return cls.from_hasher(hashlib.new(algorithm, data))

    @classmethod
    def from_hasher(cls, hasher: hashlib._Hash) -> RecordHash:
        return cls.from_digest(hasher.name, hasher.digest())

    @classmethod
    def from_digest(cls, algorithm: str, digest: bytes) -> RecordHash:
        return cls(algorithm, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())

    def __str__(self) -> str:
        return f"{self.algorithm}={self.value}"


@dataclass(frozen=True)
class RecordRow:
    """One RECORD line; ``digest`` and ``size`` are None where the line leaves them empty."""

    path: str
    digest: RecordHash | None
    size: int | None

    @property
    def hash(self) -> str:
        """The hash field as RECORD writes it: ``algorithm=digest``, or empty."""
        return "" if self.digest is None else str(self.digest)


@dataclass(frozen=True)
class RecordMismatch:
    """Where RECORD and the wheel disagree. ``fatal`` ones (a hash or size that differs, a hash
    that cannot be checked) mean the bytes are not the ones RECORD vouches for: installers
    refuse them, and so does a repair, which would otherwise write a RECORD that hides it.
    The others (a file RECORD does not list, a row without hash or size, a row for a file that
    is not there) are warnings: installers accept them and a repair's new RECORD is complete."""

    path: str
    problem: str
    fatal: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class RecordHasher:
    """Hashes a member's bytes as they pass: sha256 (the hash a new RECORD gets) and, when the
    member's row uses another algorithm it can check, that one too."""

    def __init__(self, row: RecordRow | None) -> None:
        self.sha256 = hashlib.sha256()
        algorithm = self.other_algorithm(row)
        self._other = None if algorithm is None else hashlib.new(algorithm)

    @staticmethod
    def other_algorithm(row: RecordRow | None) -> str | None:
        """The algorithm besides sha256 the row is checked with, if any."""
        algorithm = row.digest.algorithm if row is not None and row.digest else "sha256"
        return algorithm if algorithm in ALGORITHMS - {"sha256"} else None

    def update(self, data: Bytes) -> None:
        self.sha256.update(data)
        if self._other is not None:
            self._other.update(data)

    def result(self) -> tuple[RecordHash, RecordHash]:
        """The sha256 hash, and the hash to compare with the row."""
        sha256 = RecordHash.from_hasher(self.sha256)
        return sha256, (sha256 if self._other is None else RecordHash.from_hasher(self._other))


def record_hash(data: Bytes) -> str:
    """The RECORD hash of ``data`` as text: ``sha256=`` and the digest in urlsafe base64,
    unpadded (what a tool writing RECORD lines by hand needs)."""
    return str(RecordHash.of(data))


def parse_record(text: str) -> dict[str, RecordRow]:
    """RECORD's rows by path, in file order; RecordInvalid for a line an installer would refuse
    (not three fields, an empty path, a malformed hash or size, a path listed twice)."""
    rows: dict[str, RecordRow] = {}
    try:
        for number, fields in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
            if not fields:
                continue
            problem = _problem(fields)
            if problem is None and fields[0] in rows:
                problem = f"{fields[0]!r} is listed twice"
            if problem is not None:
                raise RecordInvalid(f"line {number}: {problem}")
            path, digest, size = fields
            rows[path] = RecordRow(
                path, RecordHash.parse(digest) if digest else None, int(size) if size else None
            )
    except csv.Error as exc:
        raise RecordInvalid(f"is not valid CSV: {exc}") from None
    return rows


def record_mismatch(row: RecordRow, size: int, actual: RecordHash | None) -> RecordMismatch | None:
    """How a member's ``size`` and hash (``actual``, None if not known yet) disagree with its
    RECORD row, None if they do not."""
    if row.size is not None and row.size != size:
        problem = f"size differs from RECORD (recorded {row.size} bytes, actual {size})"
        return RecordMismatch(row.path, problem, fatal=True)
    recorded = row.digest
    if recorded is None:
        return None
    if recorded.algorithm not in ALGORITHMS:
        problem = f"RECORD uses unsupported hash {recorded.algorithm!r}"
        return RecordMismatch(row.path, problem, fatal=True)
    if actual is not None and actual != recorded:
        problem = f"hash differs from RECORD (recorded {recorded}, actual {actual})"
        return RecordMismatch(row.path, problem, fatal=True)
    return None


def write_record(rows: Iterable[RecordRow]) -> bytes:
    """RECORD's text, one CSV line per row, ``\\n``-terminated, UTF-8."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerows((row.path, row.hash, "" if row.size is None else row.size) for row in rows)
    return text.getvalue().encode("utf-8")


def _problem(fields: list[str]) -> str | None:
    if len(fields) != 3:
        return f"expected 3 fields, found {len(fields)}"
    path, digest, size = fields
    if not path:
        return "empty path"
    if digest and not _HASH.fullmatch(digest):
        return f"malformed hash {digest!r}"
    if size and not _SIZE.fullmatch(size):
        return f"malformed size {size!r}"
    return None
