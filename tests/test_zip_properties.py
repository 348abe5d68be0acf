"""The hand-written zip layer, proven like a library: random member sets written by WheelWriter
(new members at every level, raw copies out of another archive, zip64 forced by a lowered
threshold) read back identically with ``zipfile`` and WheelArchive, pass ``unzip -t``, and
install with pypa's ``installer`` with a RECORD that validates.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import errno
import hashlib
import io
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
from installer.utils import SCHEME_NAMES

from repairwheel.errors import WheelError
from repairwheel.wheel import WheelArchive, WheelWriter, zipwrite
from repairwheel.wheel import writer as writer_module
from repairwheel.wheel.batchdeflate import batch_deflater
from repairwheel.wheel.zipwrite import deflate

NAME = "demo-1.0-py3-none-any.whl"
DIST = "demo-1.0.dist-info"
METADATA = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
WHEEL = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
BLOCK = 1 << 20  # zipwrite's parallel deflate block
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
END_SIZE = 22  # the end of central directory record, without a comment
STAMP = (2020, 2, 29, 13, 14, 16)
PROPERTY = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Names: ASCII, accented, CJK, an emoji (4 UTF-8 bytes), dots inside segments; nested folders.
SEGMENT = st.text(alphabet="abzAZ09_-.éüßø名字😀", min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")
)
PATHS = st.lists(st.lists(SEGMENT, min_size=1, max_size=3).map(tuple), min_size=1, max_size=7)
SIZES = st.one_of(
    st.just(0),
    st.integers(1, 4000),
    st.integers(BLOCK - 64, BLOCK + 64),  # either side of one block
    st.integers(2 * BLOCK + 1, 2 * BLOCK + 70_000),  # three blocks, the last one short
)
LEVELS = st.sampled_from([-1, 0, 1, 6, 9])
DATE_TIMES = st.tuples(
    st.integers(1980, 2107),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 58).map(lambda s: s - s % 2),  # DOS times hold even seconds
)


@dataclass(frozen=True)
class File:
    name: str
    data: bytes
    level: int  # for new members: zlib level; for source members: 0 stored, else deflated
    mode: int
    date_time: tuple[int, int, int, int, int, int]
    copied: bool  # written into the source archive and raw-copied from it


def contents(seed: int, size: int, text: bool) -> bytes:
    """Random bytes, or text that deflate shrinks (never near the reader's 1000:1 bomb limit)."""
    rng = random.Random(seed)
    if text:
        return (rng.randbytes(size // 2 + 1).hex().encode() + b"\n")[:size]
    return rng.randbytes(size)


def names(paths: list[tuple[str, ...]], suffix: str) -> list[str]:
    """Member names under ``pkg/``, unique, none of them the folder of another (a zip member
    cannot be both a file and a directory)."""
    found = list(dict.fromkeys(f"pkg/{'/'.join(p)}{suffix}" for p in paths))
    return [name for name in found if not any(other.startswith(f"{name}/") for other in found)]


@st.composite
def files(draw: st.DrawFn) -> list[File]:
    out = []
    for name in names(draw(PATHS), ".f"):
        size = draw(SIZES)
        data = contents(draw(st.integers(0, 2**32)), size, draw(st.booleans()))
        out.append(
            File(
                name=name,
                data=data,
                level=draw(LEVELS),
                mode=draw(st.sampled_from([0o644, 0o755, 0o600])),
                date_time=draw(DATE_TIMES),
                copied=draw(st.booleans()),
            )
        )
    return out


def sha(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_source(path: Path, members: list[File]) -> None:
    """A wheel written by ``zipfile``: the members, a directory entry, METADATA, WHEEL, RECORD."""
    rows = []
    with zipfile.ZipFile(path, "w") as archive:
        folder = zipfile.ZipInfo("pkg/", STAMP)
        folder.external_attr = (stat.S_IFDIR | 0o755) << 16
        archive.writestr(folder, b"")
        dist = [
            File(f"{DIST}/{n}", d, 6, 0o644, STAMP, True)
            for n, d in [("METADATA", METADATA), ("WHEEL", WHEEL)]
        ]
        for member in [*members, *dist]:
            info = zipfile.ZipInfo(member.name, member.date_time)
            info.external_attr = (stat.S_IFREG | member.mode) << 16
            method = zipfile.ZIP_STORED if member.level == 0 else zipfile.ZIP_DEFLATED
            level = None if member.level <= 0 else member.level
            archive.writestr(info, member.data, compress_type=method, compresslevel=level)
            rows.append(f"{member.name},{sha(member.data)},{len(member.data)}\n")
        rows.append(f"{DIST}/RECORD,,\n")
        archive.writestr(f"{DIST}/RECORD", "".join(rows))


def raw_stream(path: Path, name: str) -> bytes:
    """A member's compressed bytes as stored, found through its local header."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    with open(path, "rb") as file:
        file.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<2H", file.read(4))
        file.seek(name_length + extra_length, os.SEEK_CUR)
        return file.read(info.compress_size)


@contextmanager
def zip64_from(limit: int | None) -> Iterator[None]:
    """Sizes and offsets from ``limit`` on are written as zip64, as they are past 4 GiB."""
    if limit is None:
        yield
        return
    with mock.patch.object(zipwrite, "_ZIP64_LIMIT", limit):
        yield


def unzip_ok(path: Path) -> bool:
    """``unzip -t`` passes, or unzip is not installed (it is in CI)."""
    if shutil.which("unzip") is None:
        return True
    run = subprocess.run(["unzip", "-tqq", str(path)], capture_output=True)
    return run.returncode == 0


def installs(path: Path, root: Path, expected: dict[str, bytes]) -> None:
    """installer validates RECORD, installs the wheel, and every file lands with its bytes."""
    with WheelFile.open(path) as source:
        source.validate_record()
        schemes: dict[str, str] = {scheme: str(root / scheme) for scheme in SCHEME_NAMES}
        destination = SchemeDictionaryDestination(schemes, sys.executable, "posix")
        install(source, destination, {})
    for name, data in expected.items():
        assert (root / "purelib" / name).read_bytes() == data
    installed = (root / "purelib" / DIST / "RECORD").read_text(encoding="utf-8")
    for name, digest, size in csv.reader(io.StringIO(installed)):
        if digest:
            data = (root / "purelib" / name).read_bytes()
            assert (digest, int(size)) == (sha(data), len(data))


@contextmanager
def deflating(native: bool) -> Iterator[None]:
    """The writer with the C core's batch deflate (as where it loads), or with Python's."""
    if native:
        assert batch_deflater() is not None  # it loads on every machine the suite runs on
        yield
        return
    with (
        mock.patch.object(writer_module, "batch_deflater", lambda: None),
        mock.patch.object(zipwrite, "batch_deflater", lambda: None),
    ):
        yield


@pytest.mark.parametrize("native", [True, False], ids=["C deflate", "Python deflate"])
@PROPERTY
@given(members=files(), zip64=st.sampled_from([None, None, 1, 3000, 200_000]))
def test_written_wheels_read_back_unzip_and_install(
    native: bool, members: list[File], zip64: int | None
) -> None:
    copied = [m for m in members if m.copied]
    added = [m for m in members if not m.copied]
    event(f"zip64 from {zip64}" if zip64 else "no zip64")
    for kind, group in (("copied", copied), ("added", added)):
        if any(len(m.data) > BLOCK for m in group):
            event(f"{kind} member over one deflate block")
    with tempfile.TemporaryDirectory() as folder, mock.patch.dict(os.environ):
        os.environ.pop("SOURCE_DATE_EPOCH", None)
        src = Path(folder) / "src" / NAME
        out = Path(folder) / "out" / NAME
        src.parent.mkdir()
        out.parent.mkdir()
        write_source(src, copied)
        with zip64_from(zip64), WheelArchive(src, hash_reads=True) as archive:
            with deflating(native), WheelWriter(out, archive.dist_info) as writer:
                for name in [f"{DIST}/METADATA", f"{DIST}/WHEEL", "pkg/"]:
                    writer.copy(archive, name)  # dist-info first: the writer defers it
                for member in members:
                    if member.copied:
                        writer.copy(archive, member.name)
                    else:
                        writer.add(
                            member.name,
                            member.data,
                            mode=member.mode,
                            date_time=member.date_time,
                            level=member.level,
                        )

        order = ["pkg/", *(m.name for m in members), f"{DIST}/METADATA", f"{DIST}/WHEEL"]
        with zipfile.ZipFile(out) as written:
            assert written.testzip() is None
            assert [info.filename for info in written.infolist()] == [*order, f"{DIST}/RECORD"]
            for member in members:
                info = written.getinfo(member.name)
                assert written.read(info) == member.data
                assert info.external_attr >> 16 == stat.S_IFREG | member.mode
                assert info.date_time == member.date_time
            for member in added:
                method = zipfile.ZIP_STORED if member.level == 0 else zipfile.ZIP_DEFLATED
                assert written.getinfo(member.name).compress_type == method
        for member in copied:
            assert raw_stream(out, member.name) == raw_stream(src, member.name)
        if zip64 is not None:
            check_zip64(out, zip64)

        with WheelArchive(out, hash_reads=True) as reread:
            assert reread.verify_record() == []
            assert {m.name: bytes(reread.read(m.name)) for m in members} == {
                m.name: m.data for m in members
            }
        assert unzip_ok(out)
        installs(out, Path(folder) / "root", {m.name: m.data for m in members})


def check_zip64(path: Path, limit: int) -> None:
    """Every size or offset at ``limit`` or past it went to zip64 fields (local and central
    headers, end records), and nothing below it did."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        start = archive.start_dir

    def field(value: int) -> int:
        return 0xFFFFFFFF if value >= limit else value

    position = start
    for info in infos:
        local = struct.unpack_from("<2L", data, info.header_offset + 18)
        big = max(info.file_size, info.compress_size) >= limit
        assert local == ((0xFFFFFFFF,) * 2 if big else (info.compress_size, info.file_size))
        central = CENTRAL.unpack_from(data, position)
        assert central[0] == b"PK\x01\x02"
        assert (central[10], central[11], central[18]) == (
            field(info.compress_size),
            field(info.file_size),
            field(info.header_offset),
        )
        position += CENTRAL.size + central[12] + central[13] + central[14]
    assert data[position : position + 4] in (b"PK\x06\x06", b"PK\x05\x06")
    assert (data[position : position + 4] == b"PK\x06\x06") == (
        max(start, position - start) >= limit
    )


@settings(max_examples=15, deadline=None)
@given(
    size=st.one_of(
        st.integers(0, 100), st.integers(BLOCK - 2, BLOCK + 2), st.integers(0, 3 * BLOCK)
    ),
    level=st.integers(-1, 9),
    seed=st.integers(0, 2**32),
    text=st.booleans(),
)
def test_parallel_deflate_is_one_stream_stdlib_zlib_inflates(
    size: int, level: int, seed: int, text: bool
) -> None:
    data = contents(seed, size, text)
    blocks = deflate(data, level)
    assert len(blocks) == max(1, -(-size // BLOCK))
    assert zlib.decompress(b"".join(blocks), -zlib.MAX_WBITS) == data


@settings(max_examples=30, deadline=None)
@given(members=files())
def test_the_reader_agrees_with_zipfile(members: list[File]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / NAME
        write_source(path, members)
        with zipfile.ZipFile(path) as reference, WheelArchive(path) as archive:
            assert [m.name for m in archive.members] == reference.namelist()
            for info in reference.infolist():
                member = archive.member(info.filename)
                assert (member.crc, member.file_size, member.compress_size) == (
                    info.CRC,
                    info.file_size,
                    info.compress_size,
                )
                assert (member.compress_type, member.date_time) == (
                    info.compress_type,
                    info.date_time,
                )
                assert member.mode == stat.S_IMODE(info.external_attr >> 16)
                assert member.is_dir == info.is_dir()
                data = reference.read(info)
                assert archive.read(info.filename) == data
                assert archive.head(info.filename, 10) == data[:10]
                assert b"".join(archive.raw_entry(info.filename).chunks) == raw_stream(
                    path, info.filename
                )


def unicode_path_extra(stored: bytes, name: str) -> bytes:
    """An Info-ZIP Unicode Path extra field (0x7075) naming the member ``name``."""
    body = struct.pack("<BL", 1, zlib.crc32(stored)) + name.encode("utf-8")
    return struct.pack("<2H", 0x7075, len(body)) + body


@settings(max_examples=20, deadline=None)
@given(paths=PATHS)
def test_unicode_path_names_survive_a_copy_as_utf8_names(paths: list[tuple[str, ...]]) -> None:
    """A member stored under an ASCII name with a 0x7075 field is read under the field's name,
    and a copy stores that name UTF-8-flagged, so every zip reader then sees it."""
    members = names(paths, ".u")
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / "src" / NAME
        out = Path(folder) / "out" / NAME
        src.parent.mkdir()
        out.parent.mkdir()
        rows = []
        with zipfile.ZipFile(src, "w") as archive:
            for number, name in enumerate(members):
                stored = f"pkg/stored{number}"
                info = zipfile.ZipInfo(stored, STAMP)
                info.extra = unicode_path_extra(stored.encode(), name)
                archive.writestr(info, name.encode())
                rows.append(f"{name},{sha(name.encode())},{len(name.encode())}\n")
            archive.writestr(f"{DIST}/METADATA", METADATA)
            archive.writestr(f"{DIST}/WHEEL", WHEEL)
            rows += [
                f"{DIST}/{n},{sha(d)},{len(d)}\n"
                for n, d in [("METADATA", METADATA), ("WHEEL", WHEEL)]
            ]
            archive.writestr(f"{DIST}/RECORD", "".join(rows) + f"{DIST}/RECORD,,\n")
        with WheelArchive(src, hash_reads=True) as archive, WheelWriter(out, DIST) as writer:
            assert [m.name for m in archive.members][: len(members)] == members
            for member in archive.members:
                writer.copy(archive, member.name)
        with zipfile.ZipFile(out) as written:
            assert {name: written.read(name) for name in members} == {
                n: n.encode() for n in members
            }
            assert all(not info.extra for info in written.infolist())
        assert unzip_ok(out)


@settings(max_examples=10, deadline=None)
@given(count=st.integers(100, 400), level=LEVELS)
def test_zip64_end_records_when_only_the_central_directory_crosses_the_limit(
    count: int, level: int
) -> None:
    """Empty members make a central directory larger than all the data before it; with the
    threshold between the two, only the end records need zip64, and they get it."""
    with tempfile.TemporaryDirectory() as folder, mock.patch.dict(os.environ):
        os.environ.pop("SOURCE_DATE_EPOCH", None)
        out = Path(folder) / NAME

        def write() -> None:
            with WheelWriter(out, DIST) as writer:
                for number in range(count):
                    writer.add(f"pkg/m{number}.py", b"", level=level)
                writer.add(f"{DIST}/METADATA", METADATA)
                writer.add(f"{DIST}/WHEEL", WHEEL)

        write()
        with zipfile.ZipFile(out) as archive:
            start = archive.start_dir
        data = out.read_bytes()
        assert b"PK\x06\x06" not in data
        assert len(data) - END_SIZE - start > start  # the central directory is the larger
        with zip64_from(start + 1):
            write()
        check_zip64(out, start + 1)
        assert b"PK\x06\x06" in out.read_bytes()[start:]
        assert unzip_ok(out)
        installs(out, Path(folder) / "root", {f"pkg/m{n}.py": b"" for n in range(count)})


def _copy_all(source: Path, target: Path) -> None:
    with WheelArchive(source) as archive, WheelWriter(target, DIST) as writer:
        for member in archive.members:
            writer.copy(archive, member.name)


def test_in_kernel_copies_write_the_bytes_a_copy_through_python_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw copies from KERNEL_COPY_MIN on go file to file (copy_file_range); with the kernel
    refusing (EXDEV) the writer falls back to reading them, once, and the bytes are the same."""
    sizes = [10, zipwrite.KERNEL_COPY_MIN - 1, zipwrite.KERNEL_COPY_MIN, 3 * BLOCK + 5]
    members = [
        File(f"pkg/m{n}.f", contents(n, size, n % 2 == 0), level, 0o644, STAMP, True)
        for n, size in enumerate(sizes)
        for level in (0, 6)
    ]
    members = [dataclasses.replace(m, name=f"{m.name}.{m.level}") for m in members]
    source = tmp_path / NAME
    write_source(source, members)
    real = os.copy_file_range
    calls: list[int] = []

    def counted(*args: int) -> int:
        calls.append(args[2])
        return real(*args)

    refusals: list[int] = []

    def refused(*args: int) -> int:
        refusals.append(args[2])
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    (tmp_path / "kernel").mkdir()
    (tmp_path / "python").mkdir()
    with mock.patch.object(os, "copy_file_range", counted):
        _copy_all(source, tmp_path / "kernel" / NAME)
    with mock.patch.object(os, "copy_file_range", refused):
        _copy_all(source, tmp_path / "python" / NAME)
    kernel, python = (tmp_path / d / NAME for d in ("kernel", "python"))
    assert kernel.read_bytes() == python.read_bytes()
    assert calls and min(calls) >= zipwrite.KERNEL_COPY_MIN - 1024  # only the big ones
    assert len(refusals) == 1  # not tried again after the refusal
    assert unzip_ok(kernel)
    installs(kernel, tmp_path / "root", {m.name: m.data for m in members})


def test_an_input_cut_short_under_an_in_kernel_copy_is_a_wheel_error(tmp_path: Path) -> None:
    data = contents(1, 2 * BLOCK, False)
    source = tmp_path / NAME
    write_source(source, [File("pkg/big.f", data, 0, 0o644, STAMP, True)])
    with WheelArchive(source) as archive:
        entry = archive.raw_entry("pkg/big.f")
        with open(source, "r+b") as fh:  # cut inside the member's data
            fh.truncate(zipfile.ZipFile(io.BytesIO(source.read_bytes())).start_dir - BLOCK)
        with open(tmp_path / "out.zip", "wb") as out:
            writer = zipwrite.ZipWriter(out)
            with pytest.raises(WheelError, match=r"member 'pkg/big\.f' is truncated"):
                writer.write(entry)


class _Unseekable(io.RawIOBase):
    """A write-only stream without seek: zipfile then writes data descriptors."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += b
        return len(b)


def _run_sources(tmp_path: Path) -> tuple[Path, Path]:
    """Two zips of small members with some that cannot be copied with their local headers:
    an extra field, a data descriptor after every member of the second; a big member, a
    folder and a non-ASCII name among them."""
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        for n in range(40):
            info = zipfile.ZipInfo(f"pkg/m{n}.txt" if n != 7 else "pkg/名字.txt", STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED if n % 3 else zipfile.ZIP_STORED
            if n == 11:
                info.extra = struct.pack("<2HB2L", 0x5455, 9, 3, 1, 2)  # extended timestamp
            size = zipwrite.KERNEL_COPY_MIN + 10 if n == 20 else 100 + 37 * n
            archive.writestr(info, contents(n, size, n % 2 == 0))
        archive.writestr(zipfile.ZipInfo("pkg/folder/", STAMP), b"")
    stream = _Unseekable()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(10):
            archive.writestr(zipfile.ZipInfo(f"pkg/d{n}.txt", STAMP), contents(n, 300, True))
    described = tmp_path / "described.zip"
    described.write_bytes(bytes(stream.data))
    return plain, described


@pytest.mark.parametrize("date_time", [None, (2001, 2, 3, 4, 5, 6)], ids=["own", "given"])
def test_copies_written_together_are_the_bytes_written_one_by_one(
    tmp_path: Path, date_time: tuple[int, int, int, int, int, int] | None
) -> None:
    """write_run() reads runs of small neighbours at once and writes them with their local
    headers where those are the ones it would write; the zip is byte for byte the one write()
    makes member by member, whatever stands between (other headers, a big member, data
    descriptors, members of another file, a time that replaces every header)."""
    from repairwheel.wheel.zipread import ZipReader

    plain, described = _run_sources(tmp_path)
    with ZipReader(plain) as one, ZipReader(described) as other:
        names = [m.name for m in one.members], [m.name for m in other.members]
        order = [(one, n) for n in names[0][:25]] + [(other, n) for n in names[1]]
        order += [(one, n) for n in names[0][25:]]
        reads: list[int] = []
        pread = one._pread

        def counted(size: int, offset: int) -> bytes:
            reads.append(size)
            return pread(size, offset)

        one._pread = counted  # type: ignore[method-assign]
        together, alone = io.BytesIO(), io.BytesIO()
        run = zipwrite.ZipWriter(together, date_time=date_time)
        entries = [reader.raw_entry(name) for reader, name in order]
        reads.clear()  # (the local headers were read to make the entries)
        run.write_run(entries)
        run.finish()
        run_reads = len(reads)
        single = zipwrite.ZipWriter(alone, date_time=date_time)
        entries = [reader.raw_entry(name) for reader, name in order]
        reads.clear()
        for entry in entries:
            single.write(entry)
        single.finish()
    assert together.getvalue() == alone.getvalue()
    assert run_reads <= 3 and len(reads) >= 38  # a span either side of the big member
    with zipfile.ZipFile(together) as written:
        assert written.testzip() is None
        assert [i.filename for i in written.infolist()] == [name for _, name in order]


def test_a_run_cut_short_names_the_member_cut(tmp_path: Path) -> None:
    from repairwheel.wheel.zipread import ZipReader

    plain, _ = _run_sources(tmp_path)
    with ZipReader(plain) as reader:
        entries = [reader.raw_entry(m.name) for m in reader.members[:10]]
        cut = entries[6].stored
        assert cut is not None
        with open(plain, "r+b") as fh:
            fh.truncate(cut.data_offset + 3)
        with pytest.raises(WheelError, match=r"member 'pkg/m6\.txt' is truncated"):
            zipwrite.ZipWriter(io.BytesIO()).write_run(entries)


def test_writeback_is_started_for_each_step_written_and_the_bytes_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every WRITEBACK_STEP bytes the writer asks the kernel to start writing them out: the
    ranges follow one another from the start of the file, through raw copies, in-kernel copies
    and streamed deflates alike, and the wheel is the one written without."""
    sizes = [10, zipwrite.KERNEL_COPY_MIN, 3 * BLOCK + 5, zipwrite.STREAM_MIN + 7]
    members = [
        File(f"pkg/m{n}.f", contents(n, size, n % 2 == 0), 6, 0o644, STAMP, True)
        for n, size in enumerate(sizes)
    ]
    source = tmp_path / NAME
    write_source(source, members)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    for folder in ("quiet", "started", "streamed"):
        (tmp_path / folder).mkdir()
    with mock.patch.object(zipwrite, "start_writeback", lambda *args: None):
        _copy_all(source, tmp_path / "quiet" / NAME)
    copied: list[tuple[int, int]] = []
    streamed: list[tuple[int, int]] = []
    with mock.patch.object(zipwrite, "WRITEBACK_STEP", 1 << 20):
        with mock.patch.object(zipwrite, "start_writeback", lambda _, *r: copied.append(r)):
            _copy_all(source, tmp_path / "started" / NAME)
        with mock.patch.object(zipwrite, "start_writeback", lambda _, *r: streamed.append(r)):
            with WheelArchive(source) as archive:
                data = archive.read(f"pkg/m{len(sizes) - 1}.f")
            with WheelWriter(tmp_path / "streamed" / NAME, DIST) as out:
                out.add("pkg/new.f", data)
    written = (tmp_path / "started" / NAME).read_bytes()
    assert written == (tmp_path / "quiet" / NAME).read_bytes()
    for ranges in (copied, streamed):
        assert ranges and ranges[0][0] == 0 and all(n >= 1 << 20 for _, n in ranges)
        assert all(a + n == b for (a, n), (b, _) in zip(ranges, ranges[1:]))
    assert copied[-1][0] + copied[-1][1] <= len(written)


def test_writeback_is_started_off_the_writers_thread_and_waited_for_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing goes on while a writeback start is held up, and the writer waits for it before
    publishing; a write that fails leaves no writeback thread behind either."""
    monkeypatch.setattr(zipwrite, "WRITEBACK_STEP", 1 << 20)
    members = [
        File(f"pkg/m{n}.f", contents(n, 3 * BLOCK, False), 0, 0o644, STAMP, True) for n in range(4)
    ]
    source = tmp_path / NAME
    write_source(source, members)
    release = threading.Event()
    started: list[tuple[int, int]] = []

    def held_up(fd: int, offset: int, length: int) -> None:
        assert threading.current_thread() is not threading.main_thread()
        release.wait(10)
        started.append((offset, length))

    monkeypatch.setattr(zipwrite, "start_writeback", held_up)
    (tmp_path / "out").mkdir()
    with WheelArchive(source) as archive, WheelWriter(tmp_path / "out" / NAME, DIST) as writer:
        for member in archive.members:
            writer.copy(archive, member.name)  # every member is written with the starts held
        waiting = threading.Timer(0.2, release.set)
        waiting.start()
    waiting.join()
    assert len(started) >= 4 and started[0][0] == 0  # finishing waited for every one
    assert not [t for t in threading.enumerate() if t.name.startswith("writeback")]
    with pytest.raises(KeyboardInterrupt):
        with WheelArchive(source) as archive, WheelWriter(tmp_path / "out" / "b.whl", DIST) as w:
            for member in archive.members:
                w.copy(archive, member.name)
            raise KeyboardInterrupt
    assert not [t for t in threading.enumerate() if t.name.startswith("writeback")]
    assert sorted(os.listdir(tmp_path / "out")) == [NAME]


def test_starting_writeback_where_it_cannot_be_is_harmless(tmp_path: Path) -> None:
    from repairwheel.wheel.native import start_writeback

    path = tmp_path / "f"
    path.write_bytes(b"x" * 4096)
    with open(path, "r+b") as f:
        start_writeback(f.fileno(), 0, 4096)
    read, write = os.pipe()
    try:
        start_writeback(write, 0, 10)  # ESPIPE, ignored
        start_writeback(-1, 0, 10)  # EBADF, ignored
    finally:
        os.close(read)
        os.close(write)
    assert path.read_bytes() == b"x" * 4096
