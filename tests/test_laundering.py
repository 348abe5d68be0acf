"""Nothing laundered, nothing lost: what repairwheel.wheel refuses, keeps and reports.

- A member whose bytes RECORD does not vouch for (hash or size) is refused wherever its bytes
  pass (a hashed read, a copy), before anything is published, and each member is inflated at
  most once for it; what installers only warn about is reported, not refused.
- A ``.dist-info`` of another distribution or version is refused.
- A re-tagged platform wheel says ``Root-Is-Purelib: false``.
- Member names are the ones an installer's zipfile reports, written UTF-8-flagged.
- SOURCE_DATE_EPOCH is read in one place; bad values are UsageErrors.
- Failing writes are ResourceErrors naming the output and leave nothing behind.

The zips are written field by field (``hostile_wheels.write_zip``), so names, flags and
extra fields are exactly what each case says.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import logging
import os
import stat
import sys
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hostile_wheels import (
    DIST_INFO,
    METADATA_TEXT,
    PLATFORM,
    WHEEL_NAME,
    WHEEL_TEXT,
    Entry,
    dist_info_entries,
    record_hash,
    record_row,
    unicode_path_extra,
    write_zip,
)

from repairwheel.errors import ResourceError, UsageError, WheelError
from repairwheel.wheel import (
    Member,
    WheelArchive,
    WheelFilename,
    WheelWriter,
    platlib_wheel_text,
    replace_platform_tags,
    source_date_epoch,
)
from repairwheel.wheel import writer as wheel_writer

DATA = "demo/data.txt"
CODE = "demo/__init__.py"
MEMBERS = [
    Entry(CODE, b"from ._ext import *\n" * 30),
    Entry(DATA, b"plain text that is not ELF\n" * 40),
    Entry("demo/stored.bin", bytes(range(256)) * 8, method=0),
]


def wheel(
    folder: Path,
    members: list[Entry] = MEMBERS,
    *,
    name: str = WHEEL_NAME,
    dist_info: str = DIST_INFO,
    record: bytes | None = None,
    rows: dict[str, str] | None = None,
) -> Path:
    """A wheel of ``members`` and its dist-info; ``rows`` replaces the RECORD rows of some
    files (name -> the whole row), ``record`` the whole RECORD."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [*members, *dist_info_entries(members, dist_info=dist_info, with_record=False)]
    if record is None:
        lines = [record_row(e.text_name, e.data) for e in files]
        for changed, row in (rows or {}).items():
            lines = [row if line.startswith(f"{changed},") else line for line in lines]
        record = "".join([*lines, f"{dist_info}/RECORD,,\n"]).encode()
    return write_zip(folder / name, [*files, Entry(f"{dist_info}/RECORD", record)])


def copy_all(archive: WheelArchive, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with WheelWriter(out, archive.dist_info) as writer:
        for member in archive.members:
            writer.copy(archive, member.name)
    return out


def digest(data: bytes, algorithm: str) -> str:
    import base64

    value = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=")
    return f"{algorithm}={value.decode()}"


def real(name: str) -> bytes:
    return next(m.data for m in MEMBERS if m.name == name)


@pytest.fixture
def inflations(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each member's deflate stream is inflated, streamed or whole (C core)."""
    counts: Counter[str] = Counter()
    original = WheelArchive._inflate
    original_whole = WheelArchive.inflate_whole

    def counting(self: WheelArchive, member: Member, *args: Any) -> Any:
        counts[member.name] += 1
        return original(self, member, *args)

    def counting_whole(self: WheelArchive, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.member(name).compress_type == zipfile.ZIP_DEFLATED:
            counts[name] += 1
        return original_whole(self, name, *args, **kwargs)

    monkeypatch.setattr(WheelArchive, "_inflate", counting)
    monkeypatch.setattr(WheelArchive, "inflate_whole", counting_whole)
    return counts


# --- 1. RECORD ---------------------------------------------------------------------------------

LIES = {
    "hash": (
        f"{DATA},{record_hash(b'other')},{len(real(DATA))}\n",
        rf"{DATA}: hash differs from RECORD \(recorded {record_hash(b'other')}, "
        rf"actual {record_hash(real(DATA))}\)",
    ),
    "size": (
        f"{DATA},{record_hash(real(DATA))},7\n",
        rf"{DATA}: size differs from RECORD \(recorded 7 bytes, actual {len(real(DATA))}\)",
    ),
    "unsupported-algorithm": (
        f"{DATA},whirlpool=AAAA,{len(real(DATA))}\n",
        rf"{DATA}: RECORD uses unsupported hash 'whirlpool'",
    ),
    "stored-member-hash": (
        f"demo/stored.bin,{record_hash(b'x')},{len(real('demo/stored.bin'))}\n",
        r"demo/stored.bin: hash differs from RECORD",
    ),
}


@pytest.mark.parametrize("lie", LIES)
def test_copy_refuses_a_member_record_does_not_vouch_for(tmp_path: Path, lie: str) -> None:
    row, message = LIES[lie]
    name = row.split(",")[0]
    src = wheel(tmp_path / "in", rows={name: row})
    out = tmp_path / "out"
    with WheelArchive(src) as archive, pytest.raises(WheelError, match=message) as error:
        copy_all(archive, out / src.name)
    assert str(error.value).startswith(f"{src.name}: ")
    assert "\n" not in str(error.value)
    assert list(out.iterdir()) == []  # the temporary file went with the error


@pytest.mark.parametrize("how", ["read", "stream", "extract_to"])
def test_a_hashed_read_refuses_a_member_at_its_end(tmp_path: Path, how: str) -> None:
    row, message = LIES["hash"]
    src = wheel(tmp_path / "in", rows={DATA: row})
    with WheelArchive(src, hash_reads=True) as archive, pytest.raises(WheelError, match=message):
        if how == "read":
            archive.read(DATA)
        elif how == "stream":
            list(archive.stream(DATA))
        else:
            archive.extract_to(DATA, tmp_path / "staged")


def test_reads_without_hashing_do_not_judge_record(tmp_path: Path) -> None:
    """An audit alone (no hash_reads) reads members as they are; RECORD is the writer's
    business, and show's through verify_record."""
    src = wheel(tmp_path / "in", rows={DATA: LIES["hash"][0]})
    with WheelArchive(src) as archive:
        assert archive.read(DATA) == real(DATA)


def test_each_member_is_inflated_once_for_reading_checking_and_copying(
    tmp_path: Path, inflations: Counter[str]
) -> None:
    src = wheel(tmp_path / "in")
    with WheelArchive(src, hash_reads=True) as archive:
        for member in archive.members:
            if member.name != archive.record_path:  # read once, to parse it; never copied
                archive.read(member.name)
        copy_all(archive, tmp_path / "out" / src.name)
        assert archive.verify_record() == []
    deflated = [m.text_name for m in dist_info_entries(MEMBERS) if m.method] + [CODE, DATA]
    assert inflations == Counter(deflated)  # stored.bin is stored: nothing to inflate
    with zipfile.ZipFile(tmp_path / "out" / src.name) as out:
        assert out.testzip() is None


def test_collecting_archive_reports_every_mismatch_and_reads_nothing_again(
    tmp_path: Path, inflations: Counter[str]
) -> None:
    src = wheel(
        tmp_path / "in",
        rows={DATA: LIES["hash"][0], CODE: f"{CODE},{record_hash(real(CODE))},1\n"},
    )
    with WheelArchive(src, hash_reads=True, refuse_record_mismatch=False) as archive:
        assert archive.read(DATA) == real(DATA)  # reported, not refused
        before = Counter(inflations)
        problems = archive.verify_record()
        assert inflations[DATA] == before[DATA] == 1
        with pytest.raises(WheelError, match=f"{CODE}: size differs"):  # copying is never lenient
            copy_all(archive, tmp_path / "out" / src.name)
    assert [(str(p).split(":")[0], p.fatal) for p in problems] == [(CODE, True), (DATA, True)]
    assert list((tmp_path / "out").iterdir()) == []


def test_verify_record_without_contents_inflates_nothing(
    tmp_path: Path, inflations: Counter[str]
) -> None:
    src = wheel(
        tmp_path / "in",
        rows={DATA: LIES["hash"][0], CODE: f"{CODE},{record_hash(real(CODE))},1\n"},
    )
    with WheelArchive(src, hash_reads=True, refuse_record_mismatch=False) as archive:
        archive.record  # noqa: B018 (parsing RECORD inflates RECORD)
        record_reads = Counter(inflations)
        cheap = archive.verify_record(contents=False)
        assert inflations == record_reads
        archive.read(DATA)
        after_read = archive.verify_record(contents=False)
    assert [str(p).split(":")[0] for p in cheap] == [CODE]  # the declared size gives it away
    assert [str(p).split(":")[0] for p in after_read] == [CODE, DATA]


@pytest.mark.parametrize("algorithm", ["sha384", "sha512", "sha3_256"])
def test_record_in_another_algorithm_is_checked_and_rewritten_as_sha256(
    tmp_path: Path, algorithm: str, inflations: Counter[str]
) -> None:
    rows = {m.name: f"{m.name},{digest(m.data, algorithm)},{len(m.data)}\n" for m in MEMBERS}
    good = wheel(tmp_path / "good", rows=rows)
    with WheelArchive(good, hash_reads=True) as archive:
        out = copy_all(archive, tmp_path / "out" / good.name)
    assert inflations[DATA] == 1
    with zipfile.ZipFile(out) as written:
        record = written.read(f"{DIST_INFO}/RECORD").decode()
    assert f"{DATA},{record_hash(real(DATA))},{len(real(DATA))}" in record.splitlines()
    rows[DATA] = f"{DATA},{digest(b'other', algorithm)},{len(real(DATA))}\n"
    bad = wheel(tmp_path / "bad", rows=rows)
    with WheelArchive(bad, hash_reads=True) as archive:
        with pytest.raises(WheelError, match=rf"{DATA}: hash differs .*recorded {algorithm}="):
            archive.read(DATA)


def test_padded_record_hash_is_accepted(tmp_path: Path) -> None:
    src = wheel(tmp_path / "in", rows={DATA: f"{DATA},{record_hash(real(DATA))}=,\n"})
    with WheelArchive(src, hash_reads=True) as archive:
        assert archive.read(DATA) == real(DATA)


def test_what_installers_accept_is_reported_not_refused(tmp_path: Path) -> None:
    record = (
        f"{CODE},,\n"
        f"demo/gone.py,{record_hash(b'')},0\n"
        f"{DIST_INFO}/RECORD,,\n"
        f"{DIST_INFO}/RECORD.jws,,\n"
    ).encode()
    members = [*MEMBERS, Entry(f"{DIST_INFO}/RECORD.jws", b"{}")]
    src = wheel(tmp_path / "in", members, record=record)
    with WheelArchive(src, hash_reads=True) as archive:
        problems = archive.verify_record()
        out = copy_all(archive, tmp_path / "out" / src.name)
    assert [(str(p), p.fatal) for p in problems] == [
        (f"{CODE}: has no hash in RECORD", False),
        (f"{CODE}: has no size in RECORD", False),
        (f"{DATA}: not listed in RECORD", False),
        ("demo/stored.bin: not listed in RECORD", False),
        (f"{DIST_INFO}/METADATA: not listed in RECORD", False),
        (f"{DIST_INFO}/WHEEL: not listed in RECORD", False),
        ("demo/gone.py: listed in RECORD but not in the wheel", False),
    ]
    with zipfile.ZipFile(out) as written:
        rows = written.read(f"{DIST_INFO}/RECORD").decode().splitlines()
    assert [row.split(",")[0] for row in rows] == [
        CODE,
        DATA,
        "demo/stored.bin",
        f"{DIST_INFO}/METADATA",
        f"{DIST_INFO}/WHEEL",
        f"{DIST_INFO}/RECORD",
    ]


def test_record_is_parsed_once_when_threads_race_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [Entry(f"demo/m{i}.txt", f"member {i}\n".encode() * 100) for i in range(32)]
    src = wheel(tmp_path / "in", members)
    calls = []
    original = WheelArchive._parse_record

    def slow_parse(self: WheelArchive) -> Any:
        calls.append(threading.current_thread().name)
        time.sleep(0.05)  # wide open for a second thread, without the lock
        return original(self)

    monkeypatch.setattr(WheelArchive, "_parse_record", slow_parse)
    with WheelArchive(src, hash_reads=True) as archive:
        threads = [threading.Thread(target=archive.read, args=(m.name,)) for m in members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert archive.verify_record() == []
    assert len(calls) == 1


# --- 2. the .dist-info name ----------------------------------------------------------------------

WHEEL_TEXT_ANY = WHEEL_TEXT


@pytest.mark.parametrize(
    ("filename", "dist_info"),
    [
        (WHEEL_NAME, "demo-1.0.dist-info"),
        (WHEEL_NAME, "Demo-1.0.dist-info"),
        (WHEEL_NAME, "demo-1.0.0.dist-info"),
        (f"demo_pkg-1.0-py3-none-{PLATFORM}.whl", "Demo.Pkg-1.0.dist-info"),
        (f"demo-1.0rc1-py3-none-{PLATFORM}.whl", "demo-1.0_rc1.dist-info"),
    ],
)
def test_dist_info_naming_the_same_distribution_is_accepted(
    tmp_path: Path, filename: str, dist_info: str
) -> None:
    src = wheel(tmp_path, name=filename, dist_info=dist_info)
    with WheelArchive(src) as archive:
        archive.check_metadata()


@pytest.mark.parametrize(
    "dist_info",
    [
        "other-1.0.dist-info",
        "demo-1.1.dist-info",
        "demo_extra-1.0.dist-info",
        "demo.dist-info",
        "demo-latest.dist-info",
        "-1.0.dist-info",
    ],
)
def test_dist_info_of_another_distribution_or_version_is_refused(
    tmp_path: Path, dist_info: str
) -> None:
    src = wheel(tmp_path, dist_info=dist_info)
    with WheelArchive(src) as archive, pytest.raises(WheelError) as error:
        archive.check_metadata()
    message = str(error.value)
    assert message.startswith(f"{WHEEL_NAME}: {dist_info}/ does not match")
    assert "(demo 1.0)" in message and "\n" not in message


# --- 3. Root-Is-Purelib ---------------------------------------------------------------------------

PLATFORM_NAME = WheelFilename.parse("demo-1.0-cp311-cp311-linux_x86_64.whl")


def test_retagging_makes_root_is_purelib_false_keeping_everything_else() -> None:
    text = (
        b"Wheel-Version: 1.0\r\nGenerator: x (1.0)\r\nroot-is-purelib: True\r\n"
        b"Tag: cp311-cp311-linux_x86_64\r\nBuild: 1\r\n\r\nRoot-Is-Purelib: true\r\n"
    )
    name, new = replace_platform_tags(PLATFORM_NAME, text, ["manylinux_2_17_x86_64"])
    assert name.platform_tags == ("manylinux_2_17_x86_64",)
    assert new == (
        b"Wheel-Version: 1.0\r\nGenerator: x (1.0)\r\nroot-is-purelib: false\r\n"
        b"Tag: cp311-cp311-manylinux_2_17_x86_64\r\nBuild: 1\r\n\r\nRoot-Is-Purelib: true\r\n"
    )


def test_root_is_purelib_is_made_false_when_the_tags_stay() -> None:
    text = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: cp311-cp311-linux_x86_64"
    _, new = replace_platform_tags(PLATFORM_NAME, text, ["linux_x86_64"])
    assert new == b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64"


@pytest.mark.parametrize(
    "text",
    [
        b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n",
        b"Wheel-Version: 1.0\nTag: cp311-cp311-linux_x86_64\n",  # absent: installers say platlib
    ],
)
def test_platlib_wheel_text_leaves_a_platlib_wheel_alone(text: bytes) -> None:
    assert platlib_wheel_text(PLATFORM_NAME, text) == text


def test_platlib_wheel_text_changes_only_the_header() -> None:
    text = b"Wheel-Version: 1.0\nRoot-Is-Purelib:true\r\nTag: cp311-cp311-linux_x86_64\n"
    assert platlib_wheel_text(PLATFORM_NAME, text) == text.replace(b":true", b": false")


def test_pure_wheels_keep_their_wheel_text() -> None:
    pure = WheelFilename.parse("demo-1.0-py3-none-any.whl")
    text = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    assert replace_platform_tags(pure, text, ["manylinux_2_17_x86_64"]) == (pure, text)


@pytest.mark.parametrize("tags", [[], ["linux x86_64"], ["a-b"]])
def test_invalid_platform_tags_are_a_wheel_error(tags: list[str]) -> None:
    with pytest.raises(WheelError, match="demo-1.0-cp311-cp311-linux_x86_64.whl: invalid platform"):
        replace_platform_tags(PLATFORM_NAME, b"Wheel-Version: 1.0\n", tags)


def test_wheel_text_that_is_not_utf8_is_a_wheel_error() -> None:
    with pytest.raises(WheelError, match="WHEEL is not UTF-8"):
        replace_platform_tags(PLATFORM_NAME, b"Generator: \xff\n", ["linux_x86_64"])


# --- 4. member names -----------------------------------------------------------------------------

CAFE = "demo/café.txt"
NAMES = {
    # stored name, flags, extra, the name installers see
    "cp437-without-utf8-flag": (b"demo/caf\x82.txt", 0, b"", CAFE),
    "utf8-bytes-without-the-flag": (b"demo/caf\xc3\xa9.txt", 0, b"", "demo/caf├⌐.txt"),
    "utf8-flagged": ("demo/café.txt".encode(), 0x800, b"", CAFE),
    "unicode-path": (b"demo/cafe.txt", 0, unicode_path_extra(b"demo/cafe.txt", CAFE), CAFE),
    "unicode-path-on-a-cp437-name": (
        b"demo/caf\x82.txt",
        0,
        unicode_path_extra(b"demo/caf\x82.txt", "demo/café-2.txt"),
        "demo/café-2.txt",
    ),
    "unicode-path-with-a-stale-crc": (
        b"demo/cafe.txt",
        0,
        unicode_path_extra(b"demo/cafe.txt", CAFE, crc=0x12345678),
        "demo/cafe.txt",
    ),
    "unicode-path-version-2": (
        b"demo/cafe.txt",
        0,
        unicode_path_extra(b"demo/cafe.txt", CAFE, version=2),
        "demo/cafe.txt",
    ),
    "unicode-path-empty": (
        b"demo/cafe.txt",
        0,
        unicode_path_extra(b"demo/cafe.txt", ""),
        "demo/cafe.txt",
    ),
    "last-applying-unicode-path-wins": (
        b"demo/cafe.txt",
        0,
        unicode_path_extra(b"demo/cafe.txt", "demo/first.txt")
        + unicode_path_extra(b"demo/cafe.txt", CAFE)
        + unicode_path_extra(b"demo/cafe.txt", "demo/stale.txt", crc=1),
        CAFE,
    ),
}


def named_wheel(folder: Path, raw: bytes, flags: int, extra: bytes, seen: str) -> Path:
    entry = Entry(raw, b"named member\n", flags=flags, extra=extra, listed_as=seen)
    return wheel(folder, [*MEMBERS, entry])


@pytest.mark.parametrize("case", NAMES)
def test_member_keeps_the_name_installers_see_written_utf8_flagged(
    tmp_path: Path, case: str
) -> None:
    raw, flags, extra, seen = NAMES[case]
    src = named_wheel(tmp_path / "in", raw, flags, extra, seen)
    with WheelArchive(src, hash_reads=True) as archive:
        assert seen in archive
        assert archive.read(seen) == b"named member\n"
        assert archive.verify_record() == []  # RECORD lists it by that name
        out = copy_all(archive, tmp_path / "out" / src.name)
    with zipfile.ZipFile(out) as written:
        info = written.getinfo(seen)
        assert info.orig_filename == seen  # the stored name itself, for every Python
        assert bool(info.flag_bits & 0x800) == (not seen.isascii())
        assert info.extra == b""
        assert written.read(info) == b"named member\n"
        assert written.testzip() is None
    with WheelArchive(out) as again:
        assert seen in again


@pytest.mark.skipif(sys.version_info < (3, 12), reason="zipfile honours 0x7075 from 3.12 on")
@pytest.mark.parametrize("case", NAMES)
def test_the_name_kept_is_the_one_this_pythons_zipfile_reports(tmp_path: Path, case: str) -> None:
    raw, flags, extra, seen = NAMES[case]
    src = named_wheel(tmp_path, raw, flags, extra, seen)
    with zipfile.ZipFile(src) as archive:
        assert seen in archive.namelist()


def test_without_0x7075_the_name_kept_is_the_one_every_zipfile_reports(tmp_path: Path) -> None:
    for case in ("cp437-without-utf8-flag", "utf8-bytes-without-the-flag", "utf8-flagged"):
        raw, flags, extra, seen = NAMES[case]
        src = named_wheel(tmp_path / case, raw, flags, extra, seen)
        with zipfile.ZipFile(src) as archive:
            assert seen in archive.namelist(), case


BAD_NAMES = {
    "utf8-flag-on-bytes-that-are-not": (
        Entry(b"demo/\xff\xfe.py", b"x", flags=0x800),
        r"member name is not valid UTF-8: b'demo/\\xff\\xfe.py'",
    ),
    "unicode-path-not-utf8": (
        Entry(b"demo/a.py", b"x", extra=unicode_path_extra(b"demo/a.py", b"demo/\xff.py")),
        r"(?i)unicode path extra field \(0x7075\)",
    ),
    "unicode-path-truncated": (
        Entry(b"demo/a.py", b"x", extra=b"\x75\x70\x03\x00\x01\x00\x00"),
        r"(?i)unicode path extra field \(0x7075\)",
    ),
    "unicode-path-escapes": (
        Entry(b"demo/a.py", b"x", extra=unicode_path_extra(b"demo/a.py", "../evil.py")),
        r"member '\.\./evil\.py' has an unsafe name \('\.\.' component\)",
    ),
    "unicode-path-with-a-nul": (
        Entry(b"demo/a.py", b"x", extra=unicode_path_extra(b"demo/a.py", "demo/a.py\x00.txt")),
        r"unsafe name \(NUL byte\)",
    ),
    "stored-name-escapes-behind-a-safe-unicode-path": (
        Entry(b"/etc/evil", b"x", extra=unicode_path_extra(b"/etc/evil", "demo/evil")),
        r"member '/etc/evil' has an unsafe name \(absolute path\)",
    ),
    "unicode-path-duplicates-another-member": (
        Entry(b"demo/b.txt", b"x", extra=unicode_path_extra(b"demo/b.txt", DATA)),
        rf"duplicate member '{DATA}'",
    ),
    "unicode-path-turns-a-file-into-a-folder": (
        Entry(b"demo/b.txt", b"x", extra=unicode_path_extra(b"demo/b.txt", f"{DATA}/x")),
        rf"'{DATA}' is both a file and a directory",
    ),
}


@pytest.mark.parametrize("case", BAD_NAMES)
def test_bad_member_name_is_a_one_line_wheel_error(tmp_path: Path, case: str) -> None:
    entry, message = BAD_NAMES[case]
    src = write_zip(tmp_path / WHEEL_NAME, [*MEMBERS, entry, *dist_info_entries(MEMBERS)])
    with pytest.raises(WheelError, match=message) as error:
        WheelArchive(src)
    assert str(error.value).startswith(f"{WHEEL_NAME}: ") and "\n" not in str(error.value)


def test_added_member_whose_name_cannot_be_utf8_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WheelError, match="not encodable as UTF-8"):
        with WheelWriter(tmp_path / WHEEL_NAME, DIST_INFO) as writer:
            writer.add("demo/\udcff.py", b"")
    assert list(tmp_path.iterdir()) == []


# --- 5. SOURCE_DATE_EPOCH -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), (" ", None), ("0", 0)])
def test_source_date_epoch_unset_or_valid(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int | None
) -> None:
    if value is None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    assert source_date_epoch() == expected


def test_source_date_epoch_is_read_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", " 1700000000\n")
    assert source_date_epoch() == 1700000000


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("yesterday", "must be a non-negative integer"),
        ("-1", "must be a non-negative integer"),
        ("1.5", "must be a non-negative integer"),
        ("1e9", "must be a non-negative integer"),
        ("+5", "must be a non-negative integer"),
        ("1_000", "must be a non-negative integer"),
        ("１２", "must be a non-negative integer"),  # int() would take fullwidth digits
        ("253402300800", "is after the year 9999"),
    ],
)
def test_bad_source_date_epoch_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, pattern: str
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(UsageError, match=pattern) as error:
        source_date_epoch()
    assert error.value.exit_code == 2
    assert "SOURCE_DATE_EPOCH" in str(error.value) and value in str(error.value)


@pytest.mark.parametrize(
    ("epoch", "stamp"),
    [
        ("0", (1980, 1, 1, 0, 0, 0)),
        ("1700000001", (2023, 11, 14, 22, 13, 20)),
        ("9999999999", (2107, 12, 31, 23, 59, 58)),
    ],
)
def test_zip_times_clamp_source_date_epoch_to_dos_dates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, epoch: str, stamp: tuple[int, ...]
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    src = wheel(tmp_path / "in")
    with WheelArchive(src) as archive:
        out = copy_all(archive, tmp_path / "out" / src.name)
    with zipfile.ZipFile(out) as written:
        assert {info.date_time for info in written.infolist()} == {stamp}


def test_the_sbom_timestamp_reads_the_same_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """(Needs sbom.py to call wheel.source_date_epoch.)"""
    from repairwheel.sbom import build_sbom

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert build_sbom("demo", "1.0", WHEEL_NAME, [])["metadata"]["timestamp"] == (
        "1970-01-01T00:00:00Z"
    )
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "-1")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH must be a non-negative integer"):
        build_sbom("demo", "1.0", WHEEL_NAME, [])


# --- 6. failing writes --------------------------------------------------------------------------


def write_small(path: Path) -> None:
    with WheelWriter(path, DIST_INFO) as writer:
        writer.add("demo/a.py", b"print('hello')\n" * 100)
        writer.add(f"{DIST_INFO}/METADATA", METADATA_TEXT)


def test_a_full_disk_is_a_resource_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file's descriptor is pointed at /dev/full: the kernel's own ENOSPC."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")

    def open_on_full(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, int):
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, file)
            os.close(full)
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(wheel_writer, "open", open_on_full, raising=False)
    out = tmp_path / WHEEL_NAME
    with pytest.raises(ResourceError) as error:
        write_small(out)
    assert str(error.value) == f"{out}: cannot write: No space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "code", [errno.EDQUOT, errno.ENOSPC, errno.EIO], ids=["EDQUOT", "ENOSPC", "EIO"]
)
def test_a_write_error_midway_is_a_resource_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    class Failing:
        def __init__(self, raw: Any) -> None:
            self.raw, self.written = raw, 0

        def write(self, data: bytes) -> int:
            self.written += len(data)
            if self.written > 100:
                raise OSError(code, os.strerror(code))
            return self.raw.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.raw, name)

    monkeypatch.setattr(
        wheel_writer, "open", lambda *a, **k: Failing(builtins.open(*a, **k)), raising=False
    )
    out = tmp_path / WHEEL_NAME
    with pytest.raises(ResourceError, match=f"^{out}: cannot write: {os.strerror(code)}$"):
        write_small(out)
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_that_is_a_file_is_a_resource_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / WHEEL_NAME
    with pytest.raises(ResourceError, match=f"^{out}: cannot write: Not a directory$"):
        write_small(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_output_folder_is_a_resource_error(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ResourceError, match="cannot write: Permission denied"):
            write_small(folder / WHEEL_NAME)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(stat.S_IRWXU)


def test_an_output_name_taken_by_a_folder_is_a_resource_error_and_leaves_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / WHEEL_NAME
    (out / "inside").mkdir(parents=True)
    with pytest.raises(ResourceError, match=f"^{out}: cannot write: "):
        write_small(out)
    assert [p.name for p in tmp_path.iterdir()] == [WHEEL_NAME]
    assert [p.name for p in out.iterdir()] == ["inside"]


def test_a_failing_folder_sync_after_publishing_is_only_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / WHEEL_NAME
    with caplog.at_level(logging.WARNING, logger="repairwheel.wheel.writer"):
        write_small(out)
    with zipfile.ZipFile(out) as written:
        assert written.read("demo/a.py") == b"print('hello')\n" * 100
    assert [p.name for p in tmp_path.iterdir()] == [WHEEL_NAME]
    assert any("syncing its folder failed" in r.getMessage() for r in caplog.records)


def test_extracting_to_a_full_disk_leaves_the_oserror_to_the_caller(tmp_path: Path) -> None:
    """scan and repair name the member and TMPDIR in their ResourceError; they need the errno."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    src = wheel(tmp_path)
    with WheelArchive(src) as archive, pytest.raises(OSError) as error:
        archive.extract_to(DATA, "/dev/full")
    assert error.value.errno == errno.ENOSPC
