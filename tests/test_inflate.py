"""The C core's member inflate (csrc/inflate.c) against Python's zlib and the streaming reader:
the same bytes, CRC and sha256 for good members, the same error for bad ones, with zlib-ng's
and the system zlib's inflate alike."""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payloads import machine_code_like

from repairwheel.errors import WheelError
from repairwheel.wheel import inflate, reuse, zipread
from repairwheel.wheel.zipread import ZipReader

ENGINES = {"zlib-ng": inflate._zlib_ng, "zlib": inflate._system_zlib}


def raw_deflate(data: bytes, level: int = 6) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def file_with(tmp_path: Path, stream: bytes, lead: int = 7) -> tuple[int, int]:
    """A file holding ``stream`` after ``lead`` bytes; its descriptor and the offset."""
    path = tmp_path / "stream"
    path.write_bytes(b"\xaa" * lead + stream)
    fd = os.open(path, os.O_RDONLY)
    return fd, lead


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> inflate.Inflater:
    return ENGINES[request.param]()


def inflate_both(
    engine: inflate.Inflater,
    tmp_path: Path,
    stream: bytes,
    usize: int,
    deflated: bool = True,
    blocks: bool = False,
) -> tuple[inflate.Inflated, bytes, inflate.Inflated, bytes]:
    """The member inflated into a buffer and written to a file, with sha256 on the way."""
    fd, offset = file_with(tmp_path, stream)
    out_path = tmp_path / "out"
    try:
        buf = bytearray(usize)
        in_buffer = engine.member(
            fd, offset, len(stream), deflated, usize, buf, sha256=True, blocks=blocks
        )
        with open(out_path, "w+b") as out:
            to_fd = engine.member(
                fd,
                offset,
                len(stream),
                deflated,
                usize,
                out_fd=out.fileno(),
                sha256=True,
                blocks=blocks,
            )
    finally:
        os.close(fd)
    return in_buffer, bytes(buf[: in_buffer.produced]), to_fd, out_path.read_bytes()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.one_of(
        st.binary(max_size=3000),
        st.builds(
            lambda seed, n: bytes(range(256)) * n + seed,
            st.binary(max_size=64),
            st.integers(0, 40000),
        ),
    ),
    level=st.integers(0, 9),
)
def test_good_streams_match_zlib(
    engine: inflate.Inflater, tmp_path: Path, data: bytes, level: int
) -> None:
    stream = raw_deflate(data, level)
    in_buffer, got_buffer, to_fd, got_fd = inflate_both(engine, tmp_path, stream, len(data))
    for done, got in ((in_buffer, got_buffer), (to_fd, got_fd)):
        assert done.status == inflate.OK, done
        assert got == data
        assert done.crc == zlib.crc32(data)
        assert done.sha256 == hashlib.sha256(data).digest()


def flushed_stream(data: bytes, level: int, cuts: list[int], full: bool) -> bytes:
    """``data`` deflated with a sync (or full) flush at each cut: byte-aligned block ends,
    empty blocks where two cuts meet."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    mode = zlib.Z_FULL_FLUSH if full else zlib.Z_SYNC_FLUSH
    out, start = [], 0
    for cut in sorted(min(c, len(data)) for c in cuts):
        out += [compressor.compress(data[start:cut]), compressor.flush(mode)]
        start = cut
    return b"".join([*out, compressor.compress(data[start:]), compressor.flush()])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.sampled_from([0, 1, 5000, 70_000, 400_000, 3 << 20]),
    seed=st.integers(0, 1000),
    level=st.integers(1, 9),
    cuts=st.lists(st.integers(0, 3 << 20), max_size=6),
    full=st.booleans(),
)
def test_recorded_block_ends_are_those_the_reuse_scan_finds(
    engine: inflate.Inflater,
    tmp_path: Path,
    size: int,
    seed: int,
    level: int,
    cuts: list[int],
    full: bool,
) -> None:
    """Recording block ends changes nothing else, and finds the boundaries reuse's Z_BLOCK
    scan (through ctypes) finds, in both output modes."""
    data = machine_code_like(size, seed)
    stream = flushed_stream(data, level, cuts, full)
    in_buffer, got_buffer, to_fd, got_fd = inflate_both(
        engine, tmp_path, stream, len(data), blocks=True
    )
    scan = reuse._scan(reuse.OldStream(len(stream), lambda a, b: iter((stream[a:b],))), data)
    assert scan is not None
    for done, got in ((in_buffer, got_buffer), (to_fd, got_fd)):
        assert (done.status, got, done.crc) == (inflate.OK, data, zlib.crc32(data))
        assert done.sha256 == hashlib.sha256(data).digest()
        assert done.blocks == tuple(scan[0])


def test_block_ends_past_the_room_are_none_and_stored_members_have_none(
    engine: inflate.Inflater, tmp_path: Path
) -> None:
    data = machine_code_like(6000, 1)
    stream = flushed_stream(data, 6, list(range(0, 6000, 3)), False)  # an end every 3 bytes
    assert len(stream) // inflate.BLOCK_SPAN + 16 < 2000
    done, got, to_fd, got_fd = inflate_both(engine, tmp_path, stream, len(data), blocks=True)
    assert (done.status, got, done.blocks) == (inflate.OK, data, None)
    assert (to_fd.status, got_fd, to_fd.blocks) == (inflate.OK, data, None)
    done, got, _, _ = inflate_both(engine, tmp_path, data, len(data), deflated=False, blocks=True)
    assert (done.status, got, done.blocks) == (inflate.OK, data, None)


def test_a_big_member_crosses_every_buffer(engine: inflate.Inflater, tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + bytes(9 << 20) + os.urandom(1 << 20)  # > every window
    in_buffer, got_buffer, to_fd, got_fd = inflate_both(
        engine, tmp_path, raw_deflate(data, 1), len(data)
    )
    assert (in_buffer.status, to_fd.status) == (inflate.OK, inflate.OK)
    assert got_buffer == data and got_fd == data
    assert in_buffer.sha256 == to_fd.sha256 == hashlib.sha256(data).digest()


@pytest.mark.parametrize("size", [5 << 20, 9 << 20], ids=["alone", "drained"])
def test_stored_members_are_copied(engine: inflate.Inflater, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)  # from 8 MiB on, a second thread hashes and writes
    in_buffer, got_buffer, to_fd, got_fd = inflate_both(
        engine, tmp_path, data, len(data), deflated=False
    )
    assert got_buffer == data and got_fd == data
    assert in_buffer.crc == to_fd.crc == zlib.crc32(data)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (lambda s, n: (s[:-3], n), inflate.TRUNCATED),
        (lambda s, n: (s, n - 1), inflate.TOO_LONG),
        (lambda s, n: (s, 0), inflate.TOO_LONG),
        (lambda s, n: (s, n + 1), inflate.SHORT),
        (lambda s, n: (b"\xff" + s[1:], n), inflate.CORRUPT),
        (lambda s, n: (b"", n), inflate.TRUNCATED),
    ],
    ids=[
        "truncated",
        "one-byte-longer",
        "declared-empty",
        "one-byte-shorter",
        "bad-block",
        "no-stream",
    ],
)
def test_bad_streams_are_named(
    engine: inflate.Inflater, tmp_path: Path, change: object, status: int
) -> None:
    data = os.urandom(1000) * 50
    stream, usize = change(raw_deflate(data), len(data))  # type: ignore[operator]
    in_buffer, _, to_fd, _ = inflate_both(engine, tmp_path, stream, usize)
    assert in_buffer.status == to_fd.status == status
    if status == inflate.CORRUPT:
        assert in_buffer.message.startswith("Error -3 while decompressing data: ")


def test_trailing_bytes_after_the_stream_are_ignored(
    engine: inflate.Inflater, tmp_path: Path
) -> None:
    data = b"hello " * 1000
    in_buffer, got, _, _ = inflate_both(engine, tmp_path, raw_deflate(data) + b"junk", len(data))
    assert in_buffer.status == inflate.OK and got == data  # as Python's zlib stops at the end


def test_an_empty_member_may_hold_no_stream(engine: inflate.Inflater, tmp_path: Path) -> None:
    in_buffer, got, to_fd, _ = inflate_both(engine, tmp_path, b"", 0)
    assert in_buffer.status == to_fd.status == inflate.OK and got == b""


def test_a_file_ending_early_and_a_bad_descriptor(engine: inflate.Inflater, tmp_path: Path) -> None:
    data = os.urandom(4000)
    stream = raw_deflate(data)
    fd, offset = file_with(tmp_path, stream)
    try:
        short = engine.member(fd, offset, len(stream) + 100, True, len(data), bytearray(len(data)))
        assert short.status in (inflate.OK, inflate.READ)  # the stream may end before the gap
        past = engine.member(fd, offset + 10**6, len(stream), True, len(data), bytearray(len(data)))
        assert (past.status, past.err_no) == (inflate.READ, 0)
        read_only = os.open(tmp_path / "stream", os.O_RDONLY)
        try:
            failed = engine.member(fd, offset, len(stream), True, len(data), out_fd=read_only)
        finally:
            os.close(read_only)
        assert (failed.status, failed.err_no) == (inflate.WRITE, 9)  # EBADF
    finally:
        os.close(fd)


DRAINED = 9 << 20  # from 8 MiB on, a member written to a descriptor is hashed and written
# by a second thread, a window behind the inflate


@pytest.mark.parametrize(
    "case", ["truncated", "one-byte-longer", "one-byte-shorter", "bad-block", "bad-descriptor"]
)
def test_a_drained_member_fails_as_one_inflated_alone(
    engine: inflate.Inflater, tmp_path: Path, case: str
) -> None:
    data = machine_code_like(DRAINED, 5)
    stream, usize = raw_deflate(data, 1), len(data)
    if case == "truncated":
        stream = stream[: len(stream) * 2 // 3]
    elif case == "one-byte-longer":
        usize -= 1
    elif case == "one-byte-shorter":
        usize += 1
    elif case == "bad-block":
        stream = stream[: len(stream) // 2] + b"\xff" * 64 + stream[len(stream) // 2 + 64 :]
    fd, offset = file_with(tmp_path, stream)
    target = tmp_path / "out"
    target.write_bytes(b"")
    out = os.open(target, os.O_RDONLY if case == "bad-descriptor" else os.O_RDWR)
    try:
        drained = engine.member(fd, offset, len(stream), True, usize, out_fd=out, sha256=True)
        alone = engine.member(fd, offset, len(stream), True, usize, bytearray(usize))
    finally:
        os.close(out)
        os.close(fd)
    if case == "bad-descriptor":
        assert (drained.status, drained.err_no, alone.status) == (inflate.WRITE, 9, inflate.OK)
    else:
        assert drained.status == alone.status != inflate.OK
    if case != "bad-block":  # what was written is the member's start
        assert target.read_bytes() == data[: len(target.read_bytes())]


def _zip(tmp_path: Path, data: bytes, method: int = zipfile.ZIP_DEFLATED) -> Path:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("m"), data, compress_type=method)
    return path


def _mutate(path: Path, mutation: str) -> None:
    raw = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", raw, 26)
    start = 30 + name_length + extra_length
    central = raw.rindex(b"PK\x01\x02")
    if mutation == "flip":
        raw[start + 40] ^= 0x55
    elif mutation == "crc":
        raw[central + 16] ^= 1
    elif mutation == "shorter":
        raw[central + 24 : central + 28] = struct.pack(
            "<L", struct.unpack_from("<L", raw, central + 24)[0] - 5
        )
    elif mutation == "longer":
        raw[central + 24 : central + 28] = struct.pack(
            "<L", struct.unpack_from("<L", raw, central + 24)[0] + 5
        )
    elif mutation == "truncated":
        raw[central + 20 : central + 24] = struct.pack(
            "<L", struct.unpack_from("<L", raw, central + 20)[0] - 9
        )
    path.write_bytes(bytes(raw))


def _outcome(reader: ZipReader, whole: bool) -> tuple[str, bytes]:
    try:
        if whole:
            out = bytearray(reader.member("m").file_size)
            assert reader.inflate_whole("m", out) is not None
            return "ok", bytes(out)
        return "ok", b"".join(reader.contents("m"))
    except WheelError as exc:
        return str(exc), b""


@pytest.mark.parametrize("mutation", ["none", "flip", "crc", "shorter", "longer", "truncated"])
def test_the_reader_says_what_the_streaming_reader_says(tmp_path: Path, mutation: str) -> None:
    data = b"".join(b"line %d of a member\n" % i for i in range(20000))
    path = _zip(tmp_path, data)
    _mutate(path, mutation)
    with ZipReader(path) as reader:
        whole, streamed = _outcome(reader, True), _outcome(reader, False)
    assert whole == streamed
    assert (whole[0] == "ok") == (mutation == "none")


def _members_zip(path: Path, members: list[tuple[bytes, int, int]]) -> list[str]:
    """A zip of members (data, method, extra-field length); their names, in order."""
    names = []
    with zipfile.ZipFile(path, "w") as archive:
        for i, (data, method, extra) in enumerate(members):
            info = zipfile.ZipInfo(f"m{i:03d}/{'n' * (i % 5)}.bin", (2020, 1, 1, 0, 0, 0))
            info.compress_type = method
            if extra:
                info.extra = struct.pack("<2H", 0xCAFE, extra - 4) + b"e" * (extra - 4)
            archive.writestr(info, data)
            names.append(info.filename)
    return names


def _heads_one_by_one(path: Path, names: list[str], n: int) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for name in names:
        with ZipReader(path) as reader:  # no offsets known from earlier members
            try:
                found[name] = reader.head(name, n)
            except WheelError as exc:
                found[name] = str(exc)
    return found


MEMBER = st.tuples(
    st.one_of(st.binary(max_size=40), st.builds(machine_code_like, st.integers(0, 5000))),
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
    st.sampled_from([0, 4, 9, 60, 64, 200, 3000]),  # the C core reads 64 extra bytes at first
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=st.lists(MEMBER, min_size=1, max_size=6),
    damage=st.lists(st.tuples(st.integers(0, 2**31), st.integers(1, 255)), max_size=3),
    n=st.integers(1, inflate.HEAD_MAX),
    tail_cut=st.integers(0, 40),
)
def test_batched_heads_are_the_heads_read_one_by_one(
    tmp_path_factory: pytest.TempPathFactory,
    members: list[tuple[bytes, int, int]],
    damage: list[tuple[int, int]],
    n: int,
    tail_cut: int,
) -> None:
    """One C call for all members gives each member's head, or the error, that reading it
    alone gives: local headers and streams damaged anywhere before the central directory."""
    path = tmp_path_factory.mktemp("heads") / "a.zip"
    names = _members_zip(path, members)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        start_dir = archive.start_dir
    for where, flip in damage:
        data[where % start_dir] ^= flip
    if tail_cut and start_dir > tail_cut:  # the last member's bytes lost, the directory kept
        del data[start_dir - tail_cut : start_dir]
    path.write_bytes(bytes(data))
    try:
        ZipReader(path).close()
    except WheelError:
        return  # damage the directory check refuses: no member is read
    alone = _heads_one_by_one(path, names, n)
    with ZipReader(path) as reader, ZipReader(path) as fresh:
        first_error = next((v for v in alone.values() if isinstance(v, str)), None)
        if first_error is None:
            assert reader.heads(names, n) == alone
            for name in names:  # the data offsets the batch found serve later reads
                assert _read_outcome(reader, name) == _read_outcome(fresh, name)
        else:
            with pytest.raises(WheelError) as caught:
                reader.heads(names, n)
            assert str(caught.value) == first_error


def test_a_batched_head_of_a_whole_stored_member_is_crc_checked_as_alone(tmp_path: Path) -> None:
    """Hypothesis found it: a 4-byte stored member with a byte flipped, heads of 5 bytes. Read
    alone, the head is the whole member, read to its end and refused for its CRC; the batch,
    which checks no CRC, gave its bytes."""
    path = tmp_path / "a.zip"
    names = _members_zip(path, [(b"\0\0\0\0", zipfile.ZIP_STORED, 9), (b"x" * 100, 0, 9)])
    data = bytearray(path.read_bytes())
    data[30 + len(names[0]) + 9] ^= 1  # the first byte of the first member's data
    path.write_bytes(bytes(data))
    alone = _heads_one_by_one(path, names, 5)
    assert alone[names[0]] == "a.zip: member 'm000/.bin' fails its CRC check"
    with ZipReader(path) as reader, pytest.raises(WheelError) as caught:
        reader.heads(names, 5)
    assert str(caught.value) == alone[names[0]]


def _read_outcome(reader: ZipReader, name: str) -> bytes | str:
    try:
        return b"".join(reader.contents(name))
    except WheelError as exc:
        return str(exc)


def test_sound_members_heads_take_no_python_read(
    engine: inflate.Inflater, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored, deflated, empty and long-extra-field members are all settled by the C call."""
    code = machine_code_like(5000, 1)
    members = [
        (code, zipfile.ZIP_DEFLATED, 3000),  # the data starts past the first read
        (b"abc", zipfile.ZIP_STORED, 0),
        (b"", zipfile.ZIP_DEFLATED, 0),
        (b"", zipfile.ZIP_STORED, 64),
        (code[:9], zipfile.ZIP_DEFLATED, 64),
    ]
    names = _members_zip(tmp_path / "a.zip", members)
    monkeypatch.setattr(inflate, "inflater", lambda: engine)
    monkeypatch.setattr(zipread, "HEAD_BATCH", 2)  # three calls of the C core

    def unexpected(self: ZipReader, name: str, n: int) -> bytes:
        raise AssertionError(f"{name} was read one by one")

    monkeypatch.setattr(ZipReader, "head", unexpected)
    with ZipReader(tmp_path / "a.zip") as reader:
        assert reader.heads(names, 8) == {n: m[0][:8] for n, m in zip(names, members)}
