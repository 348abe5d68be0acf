from __future__ import annotations

import base64
import hashlib
import mmap
import os
import shutil
import stat
import struct
import subprocess
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Callable, Union

import pytest

from repairwheel.errors import UsageError, WheelError
from repairwheel.wheel import (
    WheelArchive,
    WheelFilename,
    WheelWriter,
    record_hash,
    replace_platform_tags,
    wheel_filename,
    zipread,
    zipwrite,
)

NAME = "demo-1.0-cp311-cp311-linux_x86_64.whl"
DIST = "demo-1.0.dist-info"
WHEEL = (
    b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n"
)
METADATA = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
ELF = b"\x7fELF\x02\x01\x01" + bytes(9) + b"elf body " * 200
FILES = {
    "demo/__init__.py": b"from ._ext import f\n" * 50,
    "demo/_ext.so": ELF,
    "demo/data.bin": bytes(range(256)) * 40,
}
STAMP = (2021, 6, 7, 8, 9, 10)

Entry = tuple[Union[str, zipfile.ZipInfo], bytes]


def sha(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def info(
    name: str, compress_type: int = zipfile.ZIP_DEFLATED, mode: int = 0o644
) -> zipfile.ZipInfo:
    result = zipfile.ZipInfo(name, STAMP)
    result.compress_type = compress_type
    result.external_attr = (stat.S_IFDIR if name.endswith("/") else stat.S_IFREG | mode) << 16
    return result


def build(
    directory: Path,
    files: dict[str, bytes] = FILES,
    *,
    extra: Iterable[Entry] = (),
    name: str = NAME,
    record: bytes | None = None,
    compress_type: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """A wheel written by zipfile: ``files``, ``extra``, METADATA, WHEEL, then a correct RECORD."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    contents = {**files, f"{DIST}/METADATA": METADATA, f"{DIST}/WHEEL": WHEEL}
    if record is None:
        rows = [f"{n},{sha(data)},{len(data)}\n" for n, data in contents.items()]
        record = "".join(rows + [f"{DIST}/RECORD,,\n"]).encode()
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate-name case
        for member, data in contents.items():
            archive.writestr(info(member, compress_type), data)
        for entry, data in extra:
            archive.writestr(info(entry) if isinstance(entry, str) else entry, data)
        archive.writestr(info(f"{DIST}/RECORD"), record)
    return path


def rewrite(
    src: Path, out_dir: Path, patch: Callable[[bytearray], bytes | bytearray] | None = None
) -> Path:
    """Copy every member raw, except that ELF members are re-added after ``patch`` if given."""
    out_dir.mkdir(exist_ok=True)
    with WheelArchive(src) as wheel:
        elves = set(wheel.elf_members()) if patch else set()
        out = out_dir / src.name
        with WheelWriter(out, wheel.dist_info) as writer:
            for member in wheel.members:
                if patch and member.name in elves:
                    writer.add(member.name, patch(wheel.read(member.name)), mode=member.mode)
                else:
                    writer.copy(wheel, member.name)
    return out


def raw_streams(path: Path) -> dict[str, bytes]:
    """Each member's compressed bytes, located through its local header."""
    data = path.read_bytes()
    streams = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            name_length, extra_length = struct.unpack_from("<2H", data, member.header_offset + 26)
            start = member.header_offset + 30 + name_length + extra_length
            streams[member.filename] = data[start : start + member.compress_size]
    return streams


def central_offsets(data: bytes) -> dict[bytes, int]:
    end = data.rfind(b"PK\x05\x06")
    count, _, position = struct.unpack_from("<H2L", data, end + 10)
    offsets = {}
    for _ in range(count):
        lengths = struct.unpack_from("<3H", data, position + 28)
        offsets[data[position + 46 : position + 46 + lengths[0]]] = position
        position += 46 + sum(lengths)
    return offsets


def patch_member(path: Path, name: str, **fields: int) -> None:
    """Overwrite header fields (flags, compress_size, file_size, header_offset) of one member."""
    data = bytearray(path.read_bytes())
    central = central_offsets(bytes(data))[name.encode()]
    local = struct.unpack_from("<L", data, central + 42)[0]
    central_at = {"flags": 8, "compress_size": 20, "file_size": 24, "header_offset": 42}
    local_at = {"flags": 6, "compress_size": 18, "file_size": 22}
    for field, value in fields.items():
        width = "<H" if field == "flags" else "<L"
        struct.pack_into(width, data, central + central_at[field], value)
        if field in local_at:
            struct.pack_into(width, data, local + local_at[field], value)
    path.write_bytes(bytes(data))


def replace_bytes(path: Path, old: bytes, new: bytes, count: int = -1) -> None:
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, count))


def unzip_ok(path: Path) -> bool:
    if shutil.which("unzip") is None:
        pytest.skip("unzip is not installed")
    result = subprocess.run(["unzip", "-tq", str(path)], capture_output=True, text=True)
    return result.returncode == 0


@pytest.fixture
def no_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


# --- file names and tags ---------------------------------------------------------------------


def test_filename_components_are_parsed_as_written() -> None:
    parsed = WheelFilename.parse("scikit_learn-1.5.0-1abc-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert (parsed.name, parsed.version, parsed.build) == ("scikit_learn", "1.5.0", "1abc")
    assert parsed.platform_tags == ("manylinux_2_17_x86_64",)
    assert str(parsed) == "scikit_learn-1.5.0-1abc-cp311-cp311-manylinux_2_17_x86_64.whl"


def test_filename_tags_expand_compressed_tag_sets() -> None:
    parsed = WheelFilename.parse("a-1-py2.py3-none-manylinux1_x86_64.linux_x86_64.whl")
    assert {str(tag) for tag in parsed.tags} == {
        "py2-none-manylinux1_x86_64",
        "py2-none-linux_x86_64",
        "py3-none-manylinux1_x86_64",
        "py3-none-linux_x86_64",
    }


@pytest.mark.parametrize("name", ["demo.whl", "demo-1.0-cp311-cp311-linux_x86_64.zip", "a-b-c.whl"])
def test_invalid_wheel_filename_is_a_wheel_error(name: str) -> None:
    with pytest.raises(WheelError, match="not a valid wheel file name"):
        WheelFilename.parse(name)


def test_wheel_filename_joins_tag_sets_and_escapes_dashes() -> None:
    name = wheel_filename("my-pkg", "2.0", "", ["cp39"], ["abi3"], ["manylinux_2_17_x86_64", "b"])
    assert name == "my_pkg-2.0-cp39-abi3-manylinux_2_17_x86_64.b.whl"
    assert wheel_filename("p", "1", "7", ["py3"], ["none"], ["any"]) == "p-1-7-py3-none-any.whl"


def test_record_hash_is_urlsafe_sha256_without_padding() -> None:
    assert record_hash(b"") == "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"


def test_replace_platform_tags_rewrites_file_name_and_tag_lines() -> None:
    filename = WheelFilename.parse("demo-1.0-cp311-cp311-linux_x86_64.whl")
    text = b"Wheel-Version: 1.0\nTag: cp311-cp311-linux_x86_64\nRoot-Is-Purelib: false\n\n"
    new_name, new_text = replace_platform_tags(
        filename, text, ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    )
    assert str(new_name) == "demo-1.0-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
    assert new_text == (
        b"Wheel-Version: 1.0\n"
        b"Tag: cp311-cp311-manylinux2014_x86_64\n"
        b"Tag: cp311-cp311-manylinux_2_17_x86_64\n"
        b"Root-Is-Purelib: false\n\n"
    )


def test_replace_platform_tags_keeps_every_python_abi_pair() -> None:
    filename = WheelFilename.parse("demo-1.0-py2.py3-none-linux_x86_64.whl")
    text = b"Wheel-Version: 1.0\r\nTag: py2-none-linux_x86_64\r\nTag: py3-none-linux_x86_64\r\n"
    _, new_text = replace_platform_tags(filename, text, ["musllinux_1_2_x86_64"])
    assert new_text == (
        b"Wheel-Version: 1.0\r\nTag: py2-none-musllinux_1_2_x86_64\r\n"
        b"Tag: py3-none-musllinux_1_2_x86_64\r\n"
    )


def test_replace_platform_tags_leaves_text_alone_when_tags_are_unchanged() -> None:
    filename = WheelFilename.parse("demo-1.0-cp311-cp311-b_x86_64.a_x86_64.whl")
    text = b"Wheel-Version: 1.0\nTag: cp311-cp311-b_x86_64\nTag: cp311-cp311-a_x86_64\n"
    new_name, new_text = replace_platform_tags(filename, text, ["b_x86_64", "a_x86_64"])
    assert new_text == text
    assert new_name.platform_tags == ("a_x86_64", "b_x86_64")


def test_replace_platform_tags_leaves_pure_wheels_untouched() -> None:
    filename = WheelFilename.parse("demo-1.0-py3-none-any.whl")
    text = b"Wheel-Version: 1.0\nTag: py3-none-any\n"
    assert replace_platform_tags(filename, text, ["manylinux_2_5_x86_64"]) == (filename, text)


# --- reading ---------------------------------------------------------------------------------


def test_members_follow_the_central_directory(tmp_path: Path) -> None:
    path = build(tmp_path, extra=[("demo/", b"")])
    with WheelArchive(path) as wheel, zipfile.ZipFile(path) as reference:
        assert [m.name for m in wheel.members] == reference.namelist()
        for member, ref in zip(wheel.members, reference.infolist()):
            assert (member.file_size, member.compress_size, member.crc) == (
                ref.file_size,
                ref.compress_size,
                ref.CRC,
            )
            assert member.is_dir == ref.is_dir()
        assert wheel.member("demo/_ext.so").mode == 0o644
        assert wheel.member("demo/_ext.so").date_time == STAMP
        assert wheel.filename.platform_tags == ("linux_x86_64",)


@pytest.mark.parametrize("compress_type", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_read_returns_member_contents(tmp_path: Path, compress_type: int) -> None:
    with WheelArchive(build(tmp_path, compress_type=compress_type)) as wheel:
        assert {name: wheel.read(name) for name in FILES} == FILES


def test_read_of_missing_member_is_a_wheel_error(tmp_path: Path) -> None:
    with WheelArchive(build(tmp_path)) as wheel, pytest.raises(WheelError, match="no member"):
        wheel.read("demo/missing.py")


def test_head_inflates_only_the_start_of_a_member(tmp_path: Path) -> None:
    big = os.urandom(1 << 20).hex().encode()
    path = build(tmp_path, {"demo/big.txt": big})
    stream = raw_streams(path)["demo/big.txt"]
    replace_bytes(path, stream[-5000:], bytes(5000))
    with WheelArchive(path) as wheel:
        assert wheel.head("demo/big.txt", 100) == big[:100]
        with pytest.raises(WheelError, match="demo/big.txt"):
            wheel.read("demo/big.txt")


def test_elf_members_are_found_by_magic_not_by_record_or_name(tmp_path: Path) -> None:
    extra = [("demo/unlisted_tool", ELF), ("demo/fake.so", b"not an elf"), ("demo/tiny", b"\x7f")]
    with WheelArchive(build(tmp_path, extra=extra)) as wheel:
        assert wheel.elf_members() == ["demo/_ext.so", "demo/unlisted_tool"]


def test_dist_info_and_wheel_metadata(tmp_path: Path) -> None:
    with WheelArchive(build(tmp_path)) as wheel:
        assert wheel.dist_info == DIST
        metadata = wheel.wheel_metadata
        assert metadata.wheel_version == (1, 0)
        assert metadata.root_is_purelib is False
        assert metadata.tags == ("cp311-cp311-linux_x86_64",)


def test_record_rows_are_parsed(tmp_path: Path) -> None:
    with WheelArchive(build(tmp_path)) as wheel:
        rows = {row.path: row for row in wheel.record}
    assert rows["demo/_ext.so"].hash == sha(ELF)
    assert rows["demo/_ext.so"].size == len(ELF)
    assert (rows[f"{DIST}/RECORD"].hash, rows[f"{DIST}/RECORD"].size) == ("", None)


@pytest.mark.parametrize(
    "line",
    [b"demo/a.py,sha256=abc\n", b"demo/a.py,sha256=abc,12,x\n", b"demo/a.py,md5,1\n", b"x,,1.5\n"],
    ids=["two-fields", "four-fields", "bad-hash", "bad-size"],
)
def test_malformed_record_is_a_wheel_error(tmp_path: Path, line: bytes) -> None:
    with WheelArchive(build(tmp_path, record=line)) as wheel:
        with pytest.raises(WheelError, match="RECORD line 1"):
            wheel.record  # noqa: B018


def test_verify_record_of_a_sound_wheel_is_empty(tmp_path: Path) -> None:
    with WheelArchive(build(tmp_path)) as wheel:
        assert wheel.verify_record() == []


def test_verify_record_reports_each_mismatch(tmp_path: Path) -> None:
    record = (
        f"demo/__init__.py,{sha(b'other')},{len(FILES['demo/__init__.py'])}\n"
        f"demo/_ext.so,{sha(ELF)},1\n"
        f"demo/gone.py,{sha(b'')},0\n"
        f"{DIST}/METADATA,{sha(METADATA)},{len(METADATA)}\n"
        f"{DIST}/WHEEL,,\n"
    ).encode()
    init = FILES["demo/__init__.py"]
    with WheelArchive(build(tmp_path, record=record)) as wheel:
        problems = [(str(problem), problem.fatal) for problem in wheel.verify_record()]
    assert problems == [
        (
            f"demo/__init__.py: hash differs from RECORD (recorded {sha(b'other')}, "
            f"actual {sha(init)})",
            True,
        ),
        (f"demo/_ext.so: size differs from RECORD (recorded 1 bytes, actual {len(ELF)})", True),
        ("demo/data.bin: not listed in RECORD", False),
        (f"{DIST}/WHEEL: has no hash in RECORD", False),
        (f"{DIST}/WHEEL: has no size in RECORD", False),
        ("demo/gone.py: listed in RECORD but not in the wheel", False),
    ]


def nul_name(path: Path) -> None:
    replace_bytes(path, b"demo/evXl.py", b"demo/ev\x00l.py")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-300])


def drop_a_byte_before_the_directory(path: Path) -> None:
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        start = archive.start_dir
    path.write_bytes(data[: start - 1] + data[start:])


def rename(path: Path) -> None:
    path.rename(path.with_name("demo-1.0.whl"))


def flip_elf_byte(path: Path) -> None:
    replace_bytes(path, b"elf body elf body", b"elf bodY elf body", 1)


def shrink_declared_size(path: Path) -> None:
    patch_member(path, "demo/_ext.so", file_size=100)


def shrink_compressed_size(path: Path) -> None:
    size = zipfile.ZipFile(path).getinfo("demo/_ext.so").compress_size
    patch_member(path, "demo/_ext.so", compress_size=size // 2)


def declare_huge_ratio(path: Path) -> None:
    patch_member(path, "demo/data.bin", file_size=0x7FFFFFFF)


def overlap(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        first = archive.getinfo("demo/__init__.py").header_offset
    patch_member(path, "demo/data.bin", header_offset=first)


def rename_local_header(path: Path) -> None:
    replace_bytes(path, b"demo/data.bin", b"demo/dXta.bin", 1)


def symlink_info() -> zipfile.ZipInfo:
    link = info("demo/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return link


BAD: dict[str, tuple[Iterable[Entry], Callable[[Path], object] | None, str]] = {
    "not-a-zip": ((), lambda p: p.write_bytes(b"hello, world\n" * 100), "not a zip file"),
    "truncated": ((), truncate, "truncated or corrupt zip"),
    "offsets-shifted": ((), drop_a_byte_before_the_directory, "would start before the archive"),
    "bad-file-name": ((), rename, "not a valid wheel file name"),
    "dotdot": ([("demo/../../evil.py", b"")], None, "'..' component"),
    "absolute": ([("/etc/evil.py", b"")], None, "absolute path"),
    "backslash": ([("demo\\evil.py", b"")], None, "backslash"),
    "nul-byte": ([("demo/evXl.py", b"")], nul_name, "NUL byte"),
    "drive-letter": ([("C:/evil.py", b"")], None, "drive letter"),
    "duplicate": ([("demo/__init__.py", b"again")], None, "duplicate member"),
    "symlink": ([(symlink_info(), b"/etc/passwd")], None, "symbolic link"),
    "dir-is-file": ([("demo/x", b""), ("demo/x/", b"")], None, "both a file and a directory"),
    "file-under-file": ([("demo/x", b""), ("demo/x/y.py", b"")], None, "both a file and"),
    "file-deep-under-file": (
        [("demo/x/y", b""), ("demo/x/y/z/w.py", b"")],
        None,
        "'demo/x/y' is both a file and a directory",
    ),
    "encrypted": ((), lambda p: patch_member(p, "demo/data.bin", flags=1), "encrypted"),
    "bzip2": ([(info("demo/b.py", zipfile.ZIP_BZIP2), b"x")], None, "compression method 12"),
    "no-dist-info": ((), lambda p: replace_bytes(p, b".dist-info", b".dist-infX"), "no .dist-info"),
    "two-dist-infos": ([("other-1.0.dist-info/METADATA", b"")], None, "several .dist-info"),
    "zip-bomb-ratio": ((), declare_huge_ratio, "compression ratio above 1000:1"),
    "overlapping": ((), overlap, "overlaps"),
    "local-name-differs": ((), rename_local_header, "local header of member 'demo/data.bin'"),
    "bad-crc": ((), flip_elf_byte, "fails its CRC check"),
    "stream-longer-than-declared": ((), shrink_declared_size, "inflates beyond its declared size"),
    "stream-truncated": ((), shrink_compressed_size, "truncated deflate stream"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_wheel_is_a_one_line_wheel_error_and_leaves_no_output(
    tmp_path: Path, case: str
) -> None:
    extra, damage, message = BAD[case]
    compress_type = zipfile.ZIP_STORED if case == "bad-crc" else zipfile.ZIP_DEFLATED
    src = build(tmp_path / "in", extra=extra, compress_type=compress_type)
    if damage is not None:
        damage(src)
    src = next((tmp_path / "in").iterdir())
    with pytest.raises(WheelError, match=message) as error:
        rewrite(src, tmp_path / "out", bytes)
    assert str(error.value).startswith(src.name)
    assert "\n" not in str(error.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_member_above_the_size_limit_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipread, "MAX_MEMBER_SIZE", 1 << 20)
    path = build(tmp_path, {"demo/big.bin": os.urandom(1 << 20) + b"x"})
    with pytest.raises(WheelError, match="demo/big.bin' declares 1048577 bytes, above"):
        WheelArchive(path)


# --- writing ---------------------------------------------------------------------------------


def test_raw_copy_keeps_every_compressed_stream(tmp_path: Path) -> None:
    src = build(tmp_path / "in", extra=[("demo/", b"")])
    out = rewrite(src, tmp_path / "out")
    before, after = raw_streams(src), raw_streams(out)
    for name in before.keys() - {f"{DIST}/RECORD"}:
        assert after[name] == before[name], name
    assert unzip_ok(out)


def test_output_record_matches_every_member(tmp_path: Path) -> None:
    out = rewrite(build(tmp_path / "in", extra=[("demo/", b"")]), tmp_path / "out", bytearray.upper)
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        rows = archive.read(f"{DIST}/RECORD").decode().splitlines()
        expected = [
            f"{name},{sha(archive.read(name))},{len(archive.read(name))}"
            for name in names[:-1]
            if not name.endswith("/")
        ]
    assert names[-1] == f"{DIST}/RECORD"
    assert rows == [*expected, f"{DIST}/RECORD,,"]


def test_rows_missing_from_input_record_are_added(tmp_path: Path) -> None:
    record = f"demo/data.bin,,\n{DIST}/RECORD,,\n".encode()
    out = rewrite(build(tmp_path / "in", record=record), tmp_path / "out")
    with zipfile.ZipFile(out) as archive:
        rows = archive.read(f"{DIST}/RECORD").decode().splitlines()
    data = FILES["demo/data.bin"]
    assert f"demo/data.bin,{sha(data)},{len(data)}" in rows
    assert f"{DIST}/METADATA,{sha(METADATA)},{len(METADATA)}" in rows


def test_record_signatures_are_not_copied(tmp_path: Path) -> None:
    src = build(tmp_path / "in", extra=[(f"{DIST}/RECORD.jws", b"{}")])
    out = rewrite(src, tmp_path / "out")
    with zipfile.ZipFile(out) as archive:
        assert f"{DIST}/RECORD.jws" not in archive.namelist()


def test_new_members_go_before_dist_info_and_record_last(tmp_path: Path) -> None:
    src = build(tmp_path / "in")
    out = tmp_path / NAME
    with WheelArchive(src) as wheel, WheelWriter(out, wheel.dist_info) as writer:
        for member in wheel.members:
            writer.copy(wheel, member.name)
        writer.add("demo.libs/libz-0123abcd.so.1", ELF, mode=0o755)
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == [
            *FILES,
            "demo.libs/libz-0123abcd.so.1",
            f"{DIST}/METADATA",
            f"{DIST}/WHEEL",
            f"{DIST}/RECORD",
        ]
        assert archive.getinfo("demo.libs/libz-0123abcd.so.1").external_attr >> 16 == 0o100755


def test_changed_member_keeps_its_place_and_mode(tmp_path: Path) -> None:
    extra = [(info("demo/tool", mode=0o755), ELF)]
    out = rewrite(build(tmp_path / "in", extra=extra), tmp_path / "out", bytearray.upper)
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist()[:4] == [*FILES, "demo/tool"]
        assert archive.read("demo/tool") == ELF.upper()
        assert archive.getinfo("demo/tool").external_attr >> 16 == 0o100755


@pytest.mark.parametrize(
    ("level", "compress_type"), [(-1, zipfile.ZIP_DEFLATED), (0, zipfile.ZIP_STORED)]
)
def test_added_member_compression_follows_level(
    tmp_path: Path, level: int, compress_type: int
) -> None:
    out = tmp_path / NAME
    with WheelWriter(out, DIST) as writer:
        writer.add("demo/a.py", FILES["demo/__init__.py"], level=level)
    with zipfile.ZipFile(out) as archive:
        assert archive.getinfo("demo/a.py").compress_type == compress_type
        assert archive.read("demo/a.py") == FILES["demo/__init__.py"]


def test_non_ascii_names_round_trip(tmp_path: Path) -> None:
    src = build(tmp_path / "in", {**FILES, "demo/données.txt": b"x"})
    out = rewrite(src, tmp_path / "out")
    with WheelArchive(out) as wheel:
        assert wheel.read("demo/données.txt") == b"x"
    assert unzip_ok(out)


def test_source_date_epoch_makes_runs_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000001")
    src = build(tmp_path / "in")
    first = rewrite(src, tmp_path / "one", bytearray.upper).read_bytes()
    second = rewrite(src, tmp_path / "two", bytearray.upper).read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "one" / NAME) as archive:
        assert {m.date_time for m in archive.infolist()} == {(2023, 11, 14, 22, 13, 20)}


def test_source_date_epoch_before_1980_is_clamped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    out = rewrite(build(tmp_path / "in"), tmp_path / "out")
    with zipfile.ZipFile(out) as archive:
        assert {m.date_time for m in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_invalid_source_date_epoch_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH must be a non-negative integer"):
        WheelWriter(tmp_path / NAME, DIST)
    assert list(tmp_path.iterdir()) == []


def test_without_source_date_epoch_copies_keep_times_and_new_members_get_1980(
    tmp_path: Path, no_epoch: None
) -> None:
    out = rewrite(build(tmp_path / "in"), tmp_path / "out", bytearray.upper)
    with zipfile.ZipFile(out) as archive:
        assert archive.getinfo("demo/data.bin").date_time == STAMP
        assert archive.getinfo("demo/_ext.so").date_time == (1980, 1, 1, 0, 0, 0)


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_exception_inside_the_writer_leaves_nothing(
    tmp_path: Path, exception: type[BaseException]
) -> None:
    src = build(tmp_path / "in")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(exception), WheelArchive(src) as wheel:
        with WheelWriter(out_dir / NAME, wheel.dist_info) as writer:
            for member in wheel.members:
                writer.copy(wheel, member.name)
            raise exception
    assert list(out_dir.iterdir()) == []


def test_output_may_replace_its_input(tmp_path: Path) -> None:
    src = build(tmp_path)
    with WheelArchive(src) as wheel, WheelWriter(src, wheel.dist_info) as writer:
        for member in wheel.members:
            writer.copy(wheel, member.name)
        writer.add("demo/new.py", b"new")
    with WheelArchive(src) as wheel:
        assert wheel.read("demo/data.bin") == FILES["demo/data.bin"]
        assert wheel.verify_record() == []
    assert [p.name for p in tmp_path.iterdir()] == [NAME]


def test_output_file_mode_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        with WheelWriter(tmp_path / NAME, DIST) as writer:
            writer.add("demo/a.py", b"")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / NAME).stat().st_mode) == 0o640


@pytest.mark.parametrize("name", ["demo/a.py", "../evil.py", "demo/"])
def test_writer_rejects_duplicate_unsafe_and_directory_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(WheelError, match="demo-1.0"):
        with WheelWriter(tmp_path / NAME, DIST) as writer:
            writer.add("demo/a.py", b"")
            writer.add(name, b"")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_to_add_record(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="generated"):
        with WheelWriter(tmp_path / NAME, DIST) as writer:
            writer.add(f"{DIST}/RECORD", b"")


def test_big_member_is_copied_read_and_added_without_extra_copies(tmp_path: Path) -> None:
    data = os.urandom(25 << 20).hex().encode()
    src = build(tmp_path / "in", {"demo/big.txt": data}, compress_type=zipfile.ZIP_STORED)
    out = tmp_path / NAME
    with WheelArchive(src) as wheel, WheelWriter(out, wheel.dist_info) as writer:
        tracemalloc.start()
        writer.copy(wheel, "demo/big.txt")
        copy_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        read = wheel.read("demo/big.txt")
        read_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        writer.add("demo/big-copy.txt", read, level=1)
        add_peak = tracemalloc.get_traced_memory()[1] - len(read)
        tracemalloc.stop()
    assert copy_peak < 4 << 20
    assert read_peak < len(data) + (4 << 20)
    assert add_peak < len(data)
    with zipfile.ZipFile(out) as archive:
        assert archive.read("demo/big.txt") == data
        assert archive.read("demo/big-copy.txt") == data


def test_zip64_end_record_for_more_than_65535_members(tmp_path: Path) -> None:
    out = tmp_path / NAME
    with WheelWriter(out, DIST) as writer:
        for index in range(65536):
            writer.add(f"demo/m{index}.py", b"", level=0)
    with zipfile.ZipFile(out) as archive:
        assert len(archive.infolist()) == 65537
    assert b"PK\x06\x06" in out.read_bytes()[-200:]
    with WheelArchive(out) as wheel:
        assert len(wheel.record) == 65537
    assert unzip_ok(out)


def test_zip64_extra_fields_for_large_sizes_and_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipwrite, "_ZIP64_LIMIT", 500)
    out = rewrite(build(tmp_path / "in"), tmp_path / "out", bytearray.upper)
    with zipfile.ZipFile(out) as archive:
        late = max(archive.infolist(), key=lambda member: member.header_offset)
        assert late.header_offset > 500
        assert late.extra[:2] == b"\x01\x00"
        big = archive.getinfo("demo/data.bin").header_offset
        assert archive.read("demo/data.bin") == FILES["demo/data.bin"]
        assert archive.read("demo/_ext.so") == ELF.upper()
    assert struct.unpack_from("<2L", out.read_bytes(), big + 18) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert b"PK\x06\x06" in out.read_bytes()
    assert unzip_ok(out)


def test_parallel_deflate_blocks_form_one_stream(tmp_path: Path) -> None:
    data = (os.urandom(1 << 16).hex().encode() * 40)[: 3 * (1 << 20) + 12345]
    out = tmp_path / NAME
    with WheelWriter(out, DIST) as writer:
        writer.add("demo/blocks.txt", data)
    stream = raw_streams(out)["demo/blocks.txt"]
    assert zlib.decompress(stream, -zlib.MAX_WBITS) == data
    assert len(stream) < len(data) * 3 // 4


@pytest.mark.parametrize("source", ["bytes", "mmap"])
def test_streamed_member_is_byte_identical_to_a_compressed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """Big members are compressed as they are written (memory stays flat) and their header
    filled in afterwards: the wheel must be the one the in-memory path writes."""
    data = (os.urandom(1 << 16).hex().encode() * 50)[: 5 * (1 << 20) + 4321]
    raw = tmp_path / "raw.bin"
    raw.write_bytes(data)
    outputs = []
    for stream_min in (1 << 40, 1):
        monkeypatch.setattr(zipwrite, "STREAM_MIN", stream_min)
        out = tmp_path / str(stream_min) / NAME
        out.parent.mkdir()
        with WheelWriter(out, DIST) as writer, raw.open("rb") as fh:
            if source == "mmap":
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    writer.add("demo/big.bin", mapped, mode=0o755)
            else:
                writer.add("demo/big.bin", data, mode=0o755)
            writer.add("demo/small.py", b"x = 1\n")
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    with WheelArchive(tmp_path / "1" / NAME) as wheel:
        assert wheel.read("demo/big.bin") == data
    assert unzip_ok(tmp_path / "1" / NAME)
