"""Wheel archives, read in place and rewritten without recompressing what did not change.

A repair touches a handful of members of wheels that hold up to 12k files and 500 MB of
compressed data. So nothing is extracted to disk: members are read straight from the zip,
unchanged members are copied as their compressed bytes, and only new or patched members are
deflated. The output appears under its final name only once it is complete.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import email.parser
import hashlib
import io
import itertools
import logging
import mmap
import os
import re
import secrets
import stat
import struct
import threading
import time
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property, partial
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Callable, Union

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ._zlib import ZlibError, zlib
from .errors import ResourceError, UsageError, WheelError

log = logging.getLogger(__name__)

StrPath = Union[str, "os.PathLike[str]"]
Bytes = Union[bytes, bytearray, mmap.mmap]
DateTime = tuple[int, int, int, int, int, int]

MAX_MEMBER_SIZE = 8 << 30
"""Largest declared uncompressed member size: the biggest real wheels hold ~1 GB files."""
MAX_RATIO = 1000
"""Largest ratio accepted above RATIO_MIN_SIZE; deflate itself tops out near 1032:1."""
RATIO_MIN_SIZE = 1 << 20

_ELF_MAGIC = b"\x7fELF"
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR64 = struct.Struct("<4sLQL")
_ZIP64_LIMIT = 0xFFFFFFFF
_IN_ZIP64 = 0xFFFFFFFF  # a 32-bit field holding this means "read the zip64 extra field"
_ZIP64_COUNT = 0xFFFF
_UTF8_NAME = 0x800
_UNICODE_PATH = 0x7075  # Info-ZIP Unicode Path extra field: version 1, CRC32 of the name, UTF-8
_ENCRYPTED = 0x1
_DEFLATE_OPTIONS = 0x6
_UNIX = 3
_NEW_MEMBER_TIME: DateTime = (1980, 1, 1, 0, 0, 0)
_DOS_EPOCH_RANGE = (315532800, 4354819198)  # 1980-01-01 .. 2107-12-31, what DOS dates can hold
_MAX_EPOCH = 253402300799  # 9999-12-31 23:59:59 UTC, the last second a timestamp can name
_DEFLATE_BLOCK = 1 << 20
_WINDOW = 1 << 15
_CHUNK = 1 << 20
_OUT_CHUNK = 8 << 20
_RECORD_HASH = re.compile(r"[A-Za-z0-9_]+=[A-Za-z0-9_-]+=*")
_TAG = re.compile(r"[A-Za-z0-9_]+")
_DRIVE = re.compile("[A-Za-z]:")
_RECORD_ALGORITHMS = hashlib.algorithms_guaranteed - {"shake_128", "shake_256"}


@dataclass(frozen=True)
class WheelFilename:
    """The components of a wheel file name, exactly as written (dot-joined tag sets split)."""

    name: str
    version: str
    build: str
    python_tags: tuple[str, ...]
    abi_tags: tuple[str, ...]
    platform_tags: tuple[str, ...]

    @classmethod
    def parse(cls, filename: str) -> WheelFilename:
        """Split a validated wheel file name; WheelError if it is not one."""
        try:
            parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise WheelError(f"{filename}: not a valid wheel file name: {exc}") from None
        parts = filename[: -len(".whl")].split("-")
        python, abi, platform = (tuple(part.split(".")) for part in parts[-3:])
        return cls(parts[0], parts[1], parts[2] if len(parts) == 6 else "", python, abi, platform)

    @property
    def tags(self) -> frozenset[Tag]:
        return frozenset(
            Tag(py, abi, plat)
            for py in self.python_tags
            for abi in self.abi_tags
            for plat in self.platform_tags
        )

    @property
    def is_pure(self) -> bool:
        return self.platform_tags == ("any",)

    def __str__(self) -> str:
        return wheel_filename(
            self.name,
            self.version,
            self.build,
            self.python_tags,
            self.abi_tags,
            self.platform_tags,
        )


@dataclass(frozen=True)
class Member:
    """One central-directory entry. ``mode`` holds the Unix permission bits (0 if none recorded)."""

    name: str
    compress_size: int
    file_size: int
    crc: int
    compress_type: int
    is_dir: bool
    mode: int
    date_time: DateTime


@dataclass(frozen=True)
class WheelMetadata:
    """The parts of ``.dist-info/WHEEL`` a repair reads."""

    wheel_version: tuple[int, int]
    root_is_purelib: bool
    tags: tuple[str, ...]


@dataclass(frozen=True)
class RecordRow:
    """One RECORD line: ``hash`` is ``algorithm=urlsafe-b64`` or empty, ``size`` None if empty."""

    path: str
    hash: str
    size: int | None


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


def record_hash(data: Bytes) -> str:
    """The RECORD hash of ``data``: ``sha256=`` and the digest in urlsafe base64, unpadded."""
    return "sha256=" + _b64(hashlib.sha256(data).digest())


def wheel_filename(
    name: str,
    version: str,
    build: str,
    python_tags: Iterable[str],
    abi_tags: Iterable[str],
    platform_tags: Iterable[str],
) -> str:
    """Join wheel file name components; ``-`` in name and version becomes ``_`` as PEP 427 asks."""
    fields = [re.sub("-+", "_", name), re.sub("-+", "_", version)]
    fields += [build] if build else []
    fields += [".".join(python_tags), ".".join(abi_tags), ".".join(platform_tags)]
    return "-".join(fields) + ".whl"


def replace_platform_tags(
    filename: WheelFilename, wheel_text: Bytes, platform_tags: Iterable[str]
) -> tuple[WheelFilename, bytes]:
    """Give the file name and the WHEEL ``Tag:`` lines exactly ``platform_tags`` (sorted), and
    make the WHEEL say ``Root-Is-Purelib: false`` (see :func:`platlib_wheel_text`).

    Every python-abi pair of the existing ``Tag:`` lines gets one line per platform; other WHEEL
    lines are kept as they are, and the text is returned unchanged when nothing changes. Pure
    wheels are returned untouched.
    """
    if filename.is_pure:
        return filename, bytes(wheel_text)
    platforms = tuple(sorted(set(platform_tags)))
    if not platforms or not all(_TAG.fullmatch(tag) for tag in platforms):
        raise WheelError(f"{filename}: invalid platform tags {platforms!r}")
    text = _wheel_text(filename, wheel_text)
    lines = _platlib_lines(text.splitlines(keepends=True))
    text = "".join(lines)
    header_end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    tag_lines = [i for i in range(header_end) if _header_name(lines[i]) == "tag"]
    old = [lines[i].split(":", 1)[1].strip() for i in tag_lines]
    pairs: dict[tuple[str, str], None] = {}
    for value in old:
        fields = value.split("-")
        if len(fields) != 3:
            raise WheelError(f"{filename}: bad WHEEL Tag line {value!r}")
        pairs.update(dict.fromkeys(itertools.product(fields[0].split("."), fields[1].split("."))))
    if not old:
        pairs = dict.fromkeys(itertools.product(filename.python_tags, filename.abi_tags))
    new = [f"{py}-{abi}-{plat}" for py, abi in pairs for plat in platforms]
    if set(new) != set(old):
        eol = "\r\n" if "\r\n" in text else "\n"
        at = tag_lines[0] if tag_lines else header_end
        if at and not lines[at - 1].endswith(("\n", "\r")):
            lines[at - 1] += eol
        kept = [line for i, line in enumerate(lines) if i not in tag_lines]
        kept[at:at] = [f"Tag: {tag}{eol}" for tag in new]
        text = "".join(kept)
    return replace(filename, platform_tags=platforms), text.encode("utf-8")


def platlib_wheel_text(filename: WheelFilename, wheel_text: Bytes) -> bytes:
    """WHEEL with every ``Root-Is-Purelib: true`` header turned into ``Root-Is-Purelib: false``,
    each line keeping its header spelling and line ending; the rest is kept byte for byte.

    A wheel holding compiled code is a platlib wheel: with ``true`` its root (and the
    ``<name>.libs/`` a repair grafts) installs to purelib, which is not platlib on Fedora/RHEL
    (lib vs lib64). auditwheel makes the same change when it re-tags a wheel.
    """
    lines = _wheel_text(filename, wheel_text).splitlines(keepends=True)
    return "".join(_platlib_lines(lines)).encode("utf-8")


def _platlib_lines(lines: list[str]) -> list[str]:
    out = list(lines)
    for i, line in enumerate(out):
        if not line.strip():
            break  # the end of the headers
        if _header_name(line) == "root-is-purelib":
            key, value = line.split(":", 1)
            if value.strip().lower() == "true":  # pip's reading: case-insensitive
                out[i] = f"{key}: false{line[len(line.rstrip(chr(13) + chr(10))) :]}"
    return out


def _wheel_text(filename: WheelFilename, wheel_text: Bytes) -> str:
    try:
        return bytes(wheel_text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WheelError(f"{filename}: WHEEL is not UTF-8: {exc}") from None


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


class WheelArchive:
    """A wheel opened for reading, validated on open, read in place (never extracted).

    Reads use ``os.pread`` on one descriptor, so several threads may read members at once
    (RECORD is parsed once, under a lock, by whichever thread needs it first).

    With ``hash_reads`` every full read also hashes the member and compares it with its RECORD
    row (size and hash), as the bytes go by: a writer copying the members needs the hashes
    (see :meth:`digest`), and nothing is inflated twice to check RECORD. A member that
    disagrees raises WheelError at the end of its read, unless ``refuse_record_mismatch`` is
    false: then the finding waits for :meth:`verify_record`, which reports every mismatch and
    inflates only the members no read has hashed yet. An audit alone needs neither.

    Member names are the names an installer sees: the Info-ZIP Unicode Path (0x7075) name when
    its CRC matches the stored name (what ``zipfile`` reports from Python 3.12 on), else the
    stored name, decoded as UTF-8 when flagged so and as cp437 otherwise (as ``zipfile`` does).
    WheelWriter writes them UTF-8-flagged, so every reader then agrees.
    """

    def __init__(
        self, path: StrPath, *, hash_reads: bool = False, refuse_record_mismatch: bool = True
    ) -> None:
        self.path = Path(path)
        self.hash_reads = hash_reads
        self.refuse_record_mismatch = refuse_record_mismatch
        self.filename = WheelFilename.parse(self.path.name)
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise self._error(f"cannot open: {exc.strerror}") from None
        self._fd = self._file.fileno()
        self._data_offsets: dict[str, int] = {}
        self._digests: dict[str, str] = {}  # sha256 of members a full read has checked
        self._checked: dict[str, RecordMismatch | None] = {}  # compared with RECORD as read
        self._record_lock = threading.RLock()
        self._rows: dict[str, RecordRow] | None = None
        try:
            infos, start_dir = self._read_directory()
            self._infos = self._check_members(infos)
            self._ends = self._check_layout(infos, start_dir)
            self.dist_info = self._find_dist_info()
        except BaseException:
            self._file.close()
            raise
        record = f"{self.dist_info}/RECORD"
        self._not_in_record = frozenset({record, f"{record}.jws", f"{record}.p7s"})
        self.members = tuple(_member(info) for info in infos)
        self._members = {member.name: member for member in self.members}

    def __enter__(self) -> WheelArchive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def member(self, name: str) -> Member:
        member = self._members.get(name)
        if member is None:
            raise self._error(f"no member {name!r}")
        return member

    def stream(self, name: str) -> Iterator[bytes]:
        """The member's contents in pieces (size and CRC checked by the end), for members too
        big to hold in memory."""
        return self._contents(self._info(name), _CHUNK, _OUT_CHUNK, hash_it=self.hash_reads)

    def extract_to(self, name: str, file: StrPath) -> None:
        """Write the member's contents to ``file`` (created or truncated) without holding it.
        An OSError writing ``file`` is the caller's to explain (it knows what the file is for:
        a spill, a staged member); reading the wheel fails as WheelError or ResourceError."""
        with open(file, "wb") as out:
            for piece in self.stream(name):
                out.write(piece)

    def read(self, name: str) -> bytearray:
        """The member's contents, checked against its declared size and CRC.

        A bytearray filled in place: a 480 MB member costs 480 MB, where building ``bytes``
        would need a second, final copy.
        """
        info = self._info(name)
        out = bytearray(info.file_size)
        position = 0
        with memoryview(out) as view:
            for piece in self._contents(info, _CHUNK, _OUT_CHUNK, hash_it=self.hash_reads):
                view[position : position + len(piece)] = piece
                position += len(piece)
        return out

    def head(self, name: str, n: int) -> bytes:
        """The first ``n`` bytes of the member, inflating only the start of its stream."""
        out = b""
        for piece in self._contents(self._info(name), max(n, 4096), max(n, 1)):
            out += piece
            if len(out) >= n:
                break
        return out[:n]

    def elf_members(self) -> list[str]:
        """Every file member that starts with the ELF magic, whatever RECORD or its name say."""
        return list(self._elf_members)

    @cached_property
    def _elf_members(self) -> tuple[str, ...]:
        return tuple(
            member.name
            for member in self.members
            if not member.is_dir
            and member.file_size >= len(_ELF_MAGIC)
            and self.head(member.name, len(_ELF_MAGIC)) == _ELF_MAGIC
        )

    @property
    def record_path(self) -> str:
        return f"{self.dist_info}/RECORD"

    @cached_property
    def wheel_metadata(self) -> WheelMetadata:
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
        if path not in self._infos:
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
        rows: dict[str, RecordRow] = {}
        try:
            lines = list(csv.reader(io.StringIO(self._text(path), newline="")))
        except csv.Error as exc:
            raise self._error(f"{path} is not valid CSV: {exc}") from None
        for number, fields in enumerate(lines, 1):
            if not fields:
                continue
            problem = _record_problem(fields)
            if problem is None and fields[0] in rows:
                problem = f"{fields[0]!r} is listed twice"
            if problem is not None:
                raise self._error(f"{path} line {number}: {problem}")
            rows[fields[0]] = RecordRow(fields[0], fields[1], int(fields[2]) if fields[2] else None)
        return rows

    def verify_record(self, *, contents: bool = True) -> list[RecordMismatch]:
        """Every disagreement between RECORD and the wheel, fatal ones first (see
        RecordMismatch), in archive order; never raises for one.

        Members a read has already hashed (an audit's, with ``hash_reads``) are not read
        again; with ``contents`` the others are inflated and hashed once, else only what
        costs no inflating is checked: names, declared sizes, and the members already read.
        """
        rows = self._record_index
        fatal, notes = [], []
        for member in self.members:
            name = member.name
            if member.is_dir or name in self._not_in_record:
                continue
            row = rows.get(name)
            if row is None:
                notes.append(RecordMismatch(name, "not listed in RECORD"))
                continue
            if not row.hash:
                notes.append(RecordMismatch(name, "has no hash in RECORD"))
            if row.size is None:
                notes.append(RecordMismatch(name, "has no size in RECORD"))
            if name not in self._checked and contents:
                info = self._info(name)
                for _ in self._contents(info, _CHUNK, _OUT_CHUNK, hash_it=True, refuse=False):
                    pass
            if name in self._checked:
                mismatch = self._checked[name]
            else:
                mismatch = _record_mismatch(name, row, member.file_size, None)
            if mismatch is not None:
                fatal.append(mismatch)
        notes += [
            RecordMismatch(path, "listed in RECORD but not in the wheel")
            for path in rows
            if path not in self._members and path not in self._not_in_record
        ]
        return fatal + notes

    def _error(self, problem: str) -> WheelError:
        return WheelError(f"{self.path.name}: {problem}")

    def _info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise self._error(f"no member {name!r}") from None

    def _text(self, name: str) -> str:
        try:
            return self.read(name).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._error(f"{name} is not UTF-8: {exc}") from None

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

    def _check_members(self, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
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
                reason = _unsafe_name(seen)
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
        return by_name

    def _check_layout(self, infos: list[zipfile.ZipInfo], start_dir: int) -> dict[str, int]:
        """Bound every member's data by the next local header, so members cannot overlap."""
        ordered = sorted(infos, key=lambda info: info.header_offset)
        bounds = [info.header_offset for info in ordered[1:]] + [start_dir]
        ends = {}
        for info, end in zip(ordered, bounds):
            if info.header_offset + _LOCAL.size + info.compress_size > end:
                raise self._error(f"member {info.filename!r} overlaps the next zip record")
            ends[info.filename] = end
        return ends

    def _find_dist_info(self) -> str:
        tops = {name.split("/", 1)[0] for name in self._infos if "/" in name}
        found = sorted(top for top in tops if top.endswith(".dist-info"))
        if not found:
            raise self._error("no .dist-info directory")
        if len(found) > 1:
            raise self._error(f"several .dist-info directories: {', '.join(found)}")
        return found[0]

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        """Where the member's compressed bytes start, from its local header (read once)."""
        name = info.filename
        known = self._data_offsets.get(name)
        if known is not None:
            return known
        raw_name = _raw_name(info)
        header = self._pread(_LOCAL.size + len(raw_name), info.header_offset)
        if len(header) < _LOCAL.size or header[:4] != b"PK\x03\x04":
            raise self._error(f"member {name!r} has no local header")
        *_, name_length, extra_length = _LOCAL.unpack_from(header)
        if name_length != len(raw_name) or header[_LOCAL.size :] != raw_name:
            raise self._error(f"local header of member {name!r} names another file")
        offset: int = info.header_offset + _LOCAL.size + name_length + extra_length
        if offset + info.compress_size > self._ends[name]:
            raise self._error(f"member {name!r} overlaps the next zip record")
        self._data_offsets[name] = offset
        return offset

    def _raw_chunks(self, info: zipfile.ZipInfo, chunk: int) -> Iterator[bytes]:
        """The member's compressed bytes, in pieces of at most ``chunk`` bytes."""
        start = self._data_offset(info)
        size = info.compress_size
        for position in range(0, size, max(chunk, 1)):
            want = min(chunk, size - position)
            data = self._pread(want, start + position)
            if len(data) != want:
                raise self._error(f"member {info.filename!r} is truncated")
            yield data

    def _pread(self, size: int, offset: int) -> bytes:
        try:
            return os.pread(self._fd, size, offset)
        except OSError as exc:
            raise _resource_error(self.path, "cannot read", exc) from None

    def _contents(
        self,
        info: zipfile.ZipInfo,
        raw_chunk: int,
        out_chunk: int,
        *,
        hash_it: bool = False,
        refuse: bool | None = None,
    ) -> Iterator[bytes]:
        """The member's bytes, checked against the declared size as they come, then the CRC.

        Inflation stops as soon as the output passes the declared size, so a lying header cannot
        make a reader allocate more than it announced. Each piece is at most ``out_chunk`` bytes.
        With ``hash_it`` (ignored once the member is hashed) the bytes are hashed as they pass
        and compared with the member's RECORD row at the end; a mismatch raises if ``refuse``
        (default: ``refuse_record_mismatch``), and is kept for verify_record and digest.
        """
        name = info.filename
        pieces = self._raw_chunks(info, raw_chunk)
        if info.compress_type == zipfile.ZIP_DEFLATED:
            pieces = self._inflate(info, pieces, out_chunk)
        hashing = hash_it and name not in self._digests
        row = self._record_index.get(name) if hashing and name not in self._not_in_record else None
        digest = hashlib.sha256() if hashing else None
        other = _row_hasher(row)  # RECORD may use another algorithm than the sha256 written
        size = crc = 0
        for piece in pieces:
            size += len(piece)
            if size > info.file_size:
                raise self._error(f"member {name!r} inflates beyond its declared size")
            crc = zlib.crc32(piece, crc)
            if digest is not None:
                digest.update(piece)
                if other is not None:
                    other.update(piece)
            yield piece
        if size != info.file_size:
            raise self._error(f"member {name!r} is shorter than its declared size")
        if crc != info.CRC:
            raise self._error(f"member {name!r} fails its CRC check")
        if digest is not None:
            sha256 = f"sha256={_b64(digest.digest())}"
            actual = sha256 if other is None else f"{other.name}={_b64(other.digest())}"
            mismatch = None if row is None else _record_mismatch(name, row, size, actual)
            self._checked[name] = mismatch
            self._digests[name] = sha256
            if mismatch is not None and (self.refuse_record_mismatch if refuse is None else refuse):
                raise self._error(str(mismatch))

    @contextlib.contextmanager
    def checking_others(self) -> Iterator[Callable[[], None]]:
        """CRC-check and hash every member that is not ELF on a thread, while the caller (an
        audit) reads the ELF ones on the other cores. Yields a function that waits for it and
        re-raises a failure (a RECORD mismatch only if ``refuse_record_mismatch``); the thread
        is stopped and joined on exit, before the archive can close."""
        elf = set(self.elf_members())
        others = [m.name for m in self.members if not m.is_dir and m.name not in elf]
        stop = threading.Event()

        def check() -> None:
            for name in others:
                if stop.is_set():
                    return
                if name not in self._digests:
                    for _ in self._contents(self._info(name), _CHUNK, _OUT_CHUNK, hash_it=True):
                        pass

        pool = ThreadPoolExecutor(max_workers=1)
        future = pool.submit(check)
        try:
            yield future.result
        finally:
            stop.set()
            pool.shutdown(wait=True)

    def digest(self, name: str) -> str:
        """The member's RECORD hash, size and CRC checked; computed once (by the first read
        when ``hash_reads`` is set: sha256 runs at over 1 GB/s, inflating is the cost).

        WheelError if the member disagrees with its RECORD row, whatever
        ``refuse_record_mismatch`` says: this is the hash a writer vouches for.
        """
        if name not in self._digests:
            info = self._info(name)
            for _ in self._contents(info, _CHUNK, _OUT_CHUNK, hash_it=True, refuse=True):
                pass
        mismatch = self._checked.get(name)
        if mismatch is not None:
            raise self._error(str(mismatch))
        return self._digests[name]

    def _inflate(
        self, info: zipfile.ZipInfo, pieces: Iterator[bytes], out_chunk: int
    ) -> Iterator[bytes]:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            for data in pieces:
                while data and not inflater.eof:
                    yield inflater.decompress(data, out_chunk)
                    data = inflater.unconsumed_tail
                if inflater.eof:
                    return
        except ZlibError as exc:
            raise self._error(f"member {info.filename!r} is corrupt ({exc})") from None
        if info.compress_size or info.file_size:
            raise self._error(f"member {info.filename!r} has a truncated deflate stream")


@dataclass(frozen=True)
class _Entry:
    """The header fields of one member being written."""

    name: str
    method: int
    crc: int
    compress_size: int
    file_size: int
    date_time: DateTime
    external_attr: int
    create_system: int = _UNIX
    internal_attr: int = 0
    flags: int = 0
    comment: bytes = b""


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
        self._epoch_time = _source_date_time()
        self._tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        self._out: BinaryIO | None = None
        self._offset = 0
        self._names: set[str] = set()
        self._deferred: list[Callable[[], None]] = []
        self._central: list[bytes] = []
        self._rows: list[tuple[str, str, str]] = []

    def __enter__(self) -> WheelWriter:
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            self._out = open(fd, "wb", buffering=_CHUNK)
        except BaseException as exc:  # Ctrl-C may land once the file exists: do not leave it
            with contextlib.suppress(OSError):  # (a read-only folder refuses even the unlink)
                self._tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _resource_error(self.path, "cannot write", exc) from None
            raise
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
        info = archive._info(name)
        self._claim(name)
        digest = None if info.is_dir() else archive.digest(name)
        entry = _Entry(
            name=name,
            method=info.compress_type,
            crc=info.CRC,
            compress_size=info.compress_size,
            file_size=info.file_size,
            date_time=_date_time(info),
            external_attr=info.external_attr,
            create_system=info.create_system,
            internal_attr=info.internal_attr,
            flags=info.flag_bits & _DEFLATE_OPTIONS,
            comment=info.comment,
        )
        self._schedule(name, partial(self._write, entry, archive._raw_chunks(info, _CHUNK), digest))

    def add(
        self,
        name: str,
        data: Bytes,
        *,
        mode: int = 0o644,
        date_time: DateTime | None = None,
        level: int = -1,
    ) -> None:
        """Add a new or changed file member, deflated at zlib ``level`` (-1 is 6, 0 stores it)."""
        if not -1 <= level <= 9:
            raise ValueError(f"compression level must be -1..9, not {level}")
        if name == self._record_path:
            raise ValueError(f"{name} is generated by WheelWriter")
        reason = "it names a directory" if name.endswith("/") else _unsafe_name(name)
        if reason is None and not _encodes(name):
            reason = "not encodable as UTF-8"
        if reason is not None:
            raise WheelError(f"{self.path.name}: cannot add {name!r}: {reason}")
        self._claim(name)
        pieces = [bytes(data)] if level == 0 else _deflate(data, level)
        entry = _Entry(
            name=name,
            method=zipfile.ZIP_STORED if level == 0 else zipfile.ZIP_DEFLATED,
            crc=zlib.crc32(data),
            compress_size=sum(map(len, pieces)),
            file_size=len(data),
            date_time=date_time or _NEW_MEMBER_TIME,
            external_attr=(stat.S_IFREG | stat.S_IMODE(mode)) << 16,
        )
        self._schedule(name, partial(self._write, entry, pieces, record_hash(data)))

    def _claim(self, name: str) -> None:
        if name in self._names:
            raise WheelError(f"{self.path.name}: duplicate member {name!r}")
        self._names.add(name)

    def _schedule(self, name: str, write: Callable[[], None]) -> None:
        if name.startswith(f"{self.dist_info}/"):
            self._deferred.append(write)
        else:
            write()

    def _emit(self, data: bytes) -> None:
        if self._out is None:
            raise RuntimeError("WheelWriter used outside its with block")
        try:
            self._out.write(data)
        except OSError as exc:
            raise _resource_error(self.path, "cannot write", exc) from None
        self._offset += len(data)

    def _write(self, entry: _Entry, pieces: Iterable[bytes], digest: str | None) -> None:
        raw_name = entry.name.encode("utf-8")
        flags = entry.flags | (0 if entry.name.isascii() else _UTF8_NAME)
        dos_date, dos_time = _dos(self._epoch_time or entry.date_time)
        offset = self._offset
        sizes = (entry.file_size, entry.compress_size)
        zip64 = max(sizes) >= _ZIP64_LIMIT
        version = 45 if zip64 else 20
        extra = struct.pack("<2H2Q", 1, 16, *sizes) if zip64 else b""
        local = _LOCAL.pack(
            b"PK\x03\x04",
            version,
            flags,
            entry.method,
            dos_time,
            dos_date,
            entry.crc,
            _IN_ZIP64 if zip64 else entry.compress_size,
            _IN_ZIP64 if zip64 else entry.file_size,
            len(raw_name),
            len(extra),
        )
        self._emit(local + raw_name + extra)
        for piece in pieces:
            self._emit(piece)
        large = [value for value in (*sizes, offset) if value >= _ZIP64_LIMIT]
        extra = struct.pack(f"<2H{len(large)}Q", 1, 8 * len(large), *large) if large else b""
        version = 45 if large else 20
        central = _CENTRAL.pack(
            b"PK\x01\x02",
            version,
            entry.create_system,
            version,
            0,
            flags,
            entry.method,
            dos_time,
            dos_date,
            entry.crc,
            _cap(entry.compress_size),
            _cap(entry.file_size),
            len(raw_name),
            len(extra),
            len(entry.comment),
            0,
            entry.internal_attr,
            entry.external_attr,
            _cap(offset),
        )
        self._central.append(central + raw_name + extra + entry.comment)
        if digest is not None:
            self._rows.append((entry.name, digest, str(entry.file_size)))

    def _finish(self) -> None:
        for write in self._deferred:
            write()
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([*self._rows, (self._record_path, "", "")])
        record = text.getvalue().encode("utf-8")
        pieces = _deflate(record, -1)
        entry = _Entry(
            name=self._record_path,
            method=zipfile.ZIP_DEFLATED,
            crc=zlib.crc32(record),
            compress_size=sum(map(len, pieces)),
            file_size=len(record),
            date_time=_NEW_MEMBER_TIME,
            external_attr=(stat.S_IFREG | 0o644) << 16,
        )
        self._write(entry, pieces, None)
        self._write_end()
        out = self._out
        if out is None:
            raise RuntimeError("WheelWriter used outside its with block")
        try:
            out.flush()
            os.fsync(out.fileno())
            out.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise _resource_error(self.path, "cannot write", exc) from None
        try:  # the wheel is published: a failure here must not report the repair as failed
            directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            log.warning("%s: written, but syncing its folder failed: %s", self.path, exc)

    def _write_end(self) -> None:
        start = self._offset
        for record in self._central:
            self._emit(record)
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

    def _discard(self) -> None:
        """Remove what is left of the temporary file; after a successful rename, nothing is."""
        if self._out is not None:
            with contextlib.suppress(OSError):
                self._out.close()
        with contextlib.suppress(OSError):  # gone once renamed; else report the first error
            self._tmp.unlink()


def _deflate(data: Bytes, level: int) -> list[bytes]:
    """Raw-deflate ``data`` in 1 MiB blocks compressed in parallel, the way pigz does.

    Each block gets the 32 KiB before it as dictionary and ends on a sync flush, so the
    concatenated blocks form one valid stream. The result depends only on the data and the
    level, never on the number of threads; zlib releases the GIL while it compresses.
    """
    view = memoryview(data)

    def block(start: int) -> bytes:
        end = start + _DEFLATE_BLOCK
        window = view[max(start - _WINDOW, 0) : start]
        deflater = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=window)
        last = zlib.Z_FINISH if end >= len(data) else zlib.Z_SYNC_FLUSH
        return deflater.compress(view[start:end]) + deflater.flush(last)

    starts = range(0, max(len(data), 1), _DEFLATE_BLOCK)
    if len(starts) == 1:
        return [block(0)]
    with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
        return list(pool.map(block, starts))


def _encodes(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unsafe_name(name: str) -> str | None:
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


def _record_problem(fields: list[str]) -> str | None:
    if len(fields) != 3:
        return f"expected 3 fields, found {len(fields)}"
    path, digest, size = fields
    if not path:
        return "empty path"
    if digest and not _RECORD_HASH.fullmatch(digest):
        return f"malformed hash {digest!r}"
    if size and not re.fullmatch("[0-9]+", size):
        return f"malformed size {size!r}"
    return None


def _member(info: zipfile.ZipInfo) -> Member:
    return Member(
        name=info.filename,
        compress_size=info.compress_size,
        file_size=info.file_size,
        crc=info.CRC,
        compress_type=info.compress_type,
        is_dir=info.is_dir(),
        mode=stat.S_IMODE(info.external_attr >> 16),
        date_time=_date_time(info),
    )


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The name's bytes as stored, undoing zipfile's decoding."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_NAME else "cp437")


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
        if version != 1 or crc != zlib.crc32(_raw_name(info)):
            continue
        try:
            name = data[5:].decode("utf-8")
        except UnicodeDecodeError:
            problem = "a Unicode Path extra field (0x7075) that is not valid UTF-8"
            raise ValueError(problem) from None
        found = name or found
    return found


def _row_hasher(row: RecordRow | None) -> hashlib._Hash | None:
    """A hasher for the row's algorithm when it is one to compute besides sha256."""
    algorithm = row.hash.split("=", 1)[0] if row is not None and row.hash else "sha256"
    return hashlib.new(algorithm) if algorithm in _RECORD_ALGORITHMS - {"sha256"} else None


def _record_mismatch(
    name: str, row: RecordRow, size: int, actual: str | None
) -> RecordMismatch | None:
    """How the member's ``size`` and hash (``actual``: ``algorithm=b64``, None if not known)
    disagree with its RECORD row, None if they do not."""
    if row.size is not None and row.size != size:
        problem = f"size differs from RECORD (recorded {row.size} bytes, actual {size})"
        return RecordMismatch(name, problem, fatal=True)
    if not row.hash:
        return None
    algorithm = row.hash.split("=", 1)[0]
    if algorithm not in _RECORD_ALGORITHMS:
        return RecordMismatch(name, f"RECORD uses unsupported hash {algorithm!r}", fatal=True)
    recorded = row.hash.rstrip("=")
    if actual is not None and actual != recorded:
        problem = f"hash differs from RECORD (recorded {recorded}, actual {actual})"
        return RecordMismatch(name, problem, fatal=True)
    return None


def _resource_error(path: StrPath, what: str, exc: OSError) -> ResourceError:
    """``path: cannot write: No space left on device``, for any OSError (ENOSPC, EDQUOT,
    EACCES, EROFS, EIO): the machine, not the wheel, is what failed."""
    return ResourceError(f"{os.fspath(path)}: {what}: {exc.strerror or exc}")


def _date_time(info: zipfile.ZipInfo) -> DateTime:
    year, month, day, hour, minute, second = info.date_time
    return (year, month, day, hour, minute, second)


def _dos(date_time: DateTime) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return (year - 1980) << 9 | month << 5 | day, hour << 11 | minute << 5 | second // 2


def _cap(value: int) -> int:
    """A 32-bit zip field: the value, or 0xFFFFFFFF meaning "see the zip64 record"."""
    return value if value < _ZIP64_LIMIT else _IN_ZIP64


def _source_date_time() -> DateTime | None:
    epoch = source_date_epoch()
    if epoch is None:
        return None
    low, high = _DOS_EPOCH_RANGE
    year, month, day, hour, minute, second = time.gmtime(min(max(epoch, low), high))[:6]
    return (year, month, day, hour, minute, second)


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _header_name(line: str) -> str:
    return line.split(":", 1)[0].strip().lower() if ":" in line else ""
