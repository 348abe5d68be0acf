"""Big members parsed from only the bytes their parse reads (scan._parse_kept): the C core's
inflate copies chosen ranges out and grows them as an ELF parse's tables come into view
(``rw_keep``, ``rw_elf_wanted``), and the kept parse (``rw_elf_parse_kept``) reads no other
byte. The facts are those of a parse of the whole file, a member the kept bytes cannot settle
is inflated whole instead, and a bad member fails as it did before."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import sysconfig
import zipfile
import zlib
from pathlib import Path

import pytest
from test_scan import write_wheel

from repairwheel import scan
from repairwheel.elf import Missing, read_elf_and_symbols, read_kept_elf_and_symbols
from repairwheel.elfpatch import patch_bytes
from repairwheel.errors import WheelError
from repairwheel.patch import PatchOps
from repairwheel.wheel import WheelArchive, inflate

ENGINES = {"zlib-ng": inflate._zlib_ng, "zlib": inflate._system_zlib}
METADATA = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
WHEEL_NAME = "demo-1.0-py3-none-linux_x86_64.whl"


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> inflate.Inflater:
    return ENGINES[request.param]()


@pytest.fixture(scope="module")
def big_library() -> bytes:
    """A real shared library over the size whose members are parsed from kept bytes."""
    candidates = [Path(sysconfig.get_config_var("LIBDIR") or "/") / "libpython3.11.so.1.0"]
    candidates += [Path(sys.base_prefix) / "lib" / f"libpython{sys.version_info[0]}.so"]
    paths = {Path(line.split()[-1]) for line in Path("/proc/self/maps").read_text().splitlines()}
    candidates += sorted(p for p in paths if ".so" in p.name)
    for path in candidates:
        if path.is_file() and path.stat().st_size > scan.MEMORY_FILE_SIZE:
            return path.read_bytes()
    pytest.skip(f"no shared library over {scan.MEMORY_FILE_SIZE} bytes here")


@pytest.fixture(scope="module")
def moved_tables(big_library: bytes) -> bytes:
    """The library patched so that its dynamic string table and hash table move to a new
    segment at the end of the file, after the dynamic table, as patchers do."""
    ops = PatchOps(rpath="$ORIGIN/" + "x" * 5000)
    return bytes(patch_bytes(big_library, ops))


def whole_facts(name: str, data: bytes) -> scan.ElfMember:
    return scan.facts_from_symbols(name, *read_elf_and_symbols(data, imports_only=True))


def member_file(tmp_path: Path, data: bytes, deflated: bool) -> tuple[int, int]:
    stream = data
    if deflated:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        stream = compressor.compress(data) + compressor.flush()
    path = tmp_path / "member"
    path.write_bytes(b"\x55" * 5 + stream)
    return os.open(path, os.O_RDONLY), len(stream)


@pytest.mark.parametrize("deflated", [True, False], ids=["deflated", "stored"])
def test_kept_ranges_are_copied_and_nothing_else(
    engine: inflate.Inflater, tmp_path: Path, deflated: bool
) -> None:
    rng = random.Random(3)
    data = rng.randbytes(3 << 20) + bytes(8 << 20) + rng.randbytes(2 << 20)  # > every window
    ranges = [(0, 5), (4096, (1 << 20) + 7), (9 << 20, (9 << 20) + 3), (len(data) - 2, len(data))]
    fd, csize = member_file(tmp_path, data, deflated)
    try:
        base = bytearray(b"\xa5" * len(data))
        keep = inflate.Keep(ranges, base)
        done = engine.member(fd, 5, csize, deflated, len(data), sha256=True, keep=keep)
    finally:
        os.close(fd)
    assert (done.status, done.produced, done.crc) == (inflate.OK, len(data), zlib.crc32(data))
    assert done.sha256 == hashlib.sha256(data).digest()
    assert list(done.kept or ()) == ranges
    expected = bytearray(b"\xa5" * len(data))
    for start, end in ranges:
        expected[start:end] = data[start:end]
    assert base == expected


def test_a_prefix_stops_there_with_its_own_crc(engine: inflate.Inflater, tmp_path: Path) -> None:
    data = random.Random(4).randbytes(5 << 20)
    stop = (2 << 20) + 11
    fd, csize = member_file(tmp_path, data, True)
    try:
        base = bytearray(len(data))
        keep = inflate.Keep([(stop - 100, stop + 100)], base, stop=stop)
        done = engine.member(fd, 5, csize, True, len(data), keep=keep)
    finally:
        os.close(fd)
    assert (done.status, done.produced) == (inflate.PREFIX, stop)
    assert done.crc == zlib.crc32(data[:stop])
    assert base[stop - 100 : stop] == data[stop - 100 : stop]
    assert not any(base[stop:])


def test_a_wake_keeps_the_tables_ahead_of_the_inflate(
    engine: inflate.Inflater, tmp_path: Path, moved_tables: bytes
) -> None:
    """With the tables moved past the dynamic table, one inflate keeps all but the symbol
    table (which stayed at the start), and the parse of those bytes asks only for that."""
    fd, csize = member_file(tmp_path, moved_tables, True)
    try:
        base = bytearray(len(moved_tables))
        keep = inflate.Keep([(0, scan.KEPT_HEAD)], base, wake=True)
        done = engine.member(fd, 5, csize, True, len(moved_tables), keep=keep)
    finally:
        os.close(fd)
    assert done.status == inflate.OK and done.kept is not None
    assert len(done.kept) > 2 and done.kept[-1][1] == len(moved_tables)  # the new segment
    assert sum(end - start for start, end in done.kept) < len(moved_tables) // 10
    found = read_kept_elf_and_symbols(base, done.kept, name="lib", imports_only=True)
    assert isinstance(found, Missing)
    assert found.end <= len(moved_tables) // scan.KEPT_REACH


def test_a_kept_parse_reads_no_byte_outside_the_kept_ones(big_library: bytes) -> None:
    """Keep what the parse says is missing until it is settled, with every other byte
    scrambled: the facts are the whole parse's."""
    kept = [(0, scan.KEPT_HEAD)]
    for _ in range(20):
        junk = bytearray(b ^ 0xFF for b in big_library)
        for start, end in kept:
            junk[start:end] = big_library[start:end]
        found = read_kept_elf_and_symbols(junk, kept, name="lib", imports_only=True)
        if not isinstance(found, Missing):
            break
        # a little past what it lacked, as the scan does: a version chain is read link by link
        end = min(len(big_library), max(found.end, found.start + (64 << 10)))
        kept = scan._merged([*kept, (found.start, end)])
    else:
        pytest.fail("the kept parse never settled")
    elf, symbols = read_elf_and_symbols(big_library, imports_only=True)
    assert found[0] == elf and list(found[1]) == list(symbols)
    assert sum(end - start for start, end in kept) < len(big_library)


def test_a_parse_of_the_first_bytes_alone_names_what_it_lacks(big_library: bytes) -> None:
    found = read_kept_elf_and_symbols(
        bytearray(big_library[:64]) + bytes(len(big_library) - 64), [(0, 64)], name="lib"
    )
    assert isinstance(found, Missing) and 64 <= found.start < found.end <= len(big_library)


@pytest.fixture
def spills(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The members inflated whole into a memory file (the fallback), as they happen."""
    calls: list[str] = []
    whole = scan._parse_spill

    def counted(*args: object, **kwargs: object) -> scan.ElfMember:
        calls.append(str(args[1]))
        return whole(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scan, "_parse_spill", counted)
    return calls


def test_big_members_are_parsed_from_kept_bytes_with_the_whole_files_facts(
    tmp_path: Path, big_library: bytes, moved_tables: bytes, spills: list[str]
) -> None:
    files = {"demo/libbig.so": big_library, "demo/libmoved.so": moved_tables}
    wheel = write_wheel(tmp_path / WHEEL_NAME, files, METADATA)
    with WheelArchive(wheel, hash_reads=True) as archive:
        members = scan.scan_elf_members(archive, workers=2)
    assert members == [whole_facts(name, data) for name, data in files.items()]
    assert spills == []


def test_a_member_the_kept_bytes_cannot_settle_is_inflated_whole(
    tmp_path: Path, big_library: bytes, spills: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "KEPT_REACH", 1 << 40)  # every refetch reaches too far
    wheel = write_wheel(tmp_path / WHEEL_NAME, {"demo/libbig.so": big_library}, METADATA)
    with WheelArchive(wheel, hash_reads=True) as archive:
        members = scan.scan_elf_members(archive)
    assert members == [whole_facts("demo/libbig.so", big_library)]
    assert spills == ["demo/libbig.so"]


def corrupt_member(wheel: Path, name: str) -> None:
    """Flip a byte in the middle of the member's compressed bytes."""
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(name)
    with open(wheel, "r+b") as f:
        f.seek(info.header_offset + 26)
        skip = int.from_bytes(f.read(2), "little") + int.from_bytes(f.read(2), "little")
        at = info.header_offset + 30 + skip + info.compress_size // 2
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x55]))


def scan_error(wheel: Path, monkeypatch: pytest.MonkeyPatch, kept: bool) -> str:
    with monkeypatch.context() as m:
        if not kept:
            m.setattr(scan, "_parse_kept", lambda *args: None)
        with WheelArchive(wheel, hash_reads=True) as archive, pytest.raises(WheelError) as exc:
            scan.scan_elf_members(archive)
    return str(exc.value)


def test_a_corrupt_big_member_fails_as_one_inflated_whole(
    tmp_path: Path, big_library: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = write_wheel(tmp_path / WHEEL_NAME, {"demo/libbig.so": big_library}, METADATA)
    corrupt_member(wheel, "demo/libbig.so")
    message = scan_error(wheel, monkeypatch, kept=True)
    assert "demo/libbig.so" in message
    assert message == scan_error(wheel, monkeypatch, kept=False)


def test_a_big_member_unlike_its_record_row_fails_as_one_inflated_whole(
    tmp_path: Path, big_library: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = write_wheel(tmp_path / WHEEL_NAME, {"demo/libbig.so": big_library}, METADATA)
    changed = tmp_path / "changed" / WHEEL_NAME
    changed.parent.mkdir()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(changed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "demo/libbig.so":
                data = data[:-1] + bytes([data[-1] ^ 1])  # RECORD now lies about it
            dst.writestr(info.filename, data)
    message = scan_error(changed, monkeypatch, kept=True)
    assert "demo/libbig.so" in message and "RECORD" in message
    assert message == scan_error(changed, monkeypatch, kept=False)


def test_ranges_that_touch_are_joined_before_a_parse(big_library: bytes) -> None:
    """A wake may add a range touching one complete before it; the parser needs each read
    inside one range, so the scan joins them first: split ranges miss, joined ones do not."""
    assert scan._merged([(5, 9), (0, 5), (9, 9), (12, 20), (15, 30)]) == [(0, 9), (12, 30)]
    whole = [(0, len(big_library))]
    elf, _ = read_elf_and_symbols(big_library)
    dynamic = next(seg for seg in elf.segments if seg.type == 2)  # PT_DYNAMIC, read whole
    split = [(0, dynamic.offset + 16), (dynamic.offset + 16, len(big_library))]
    buf = bytearray(big_library)
    assert isinstance(read_kept_elf_and_symbols(buf, split, name="lib"), Missing)
    found = read_kept_elf_and_symbols(buf, scan._merged(split), name="lib")
    assert not isinstance(found, Missing)
    assert found[0] == read_kept_elf_and_symbols(buf, whole, name="lib")[0]  # type: ignore[index]
