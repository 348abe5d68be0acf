"""The biggest member inflated before the archive is opened (``wheel/early.py``): the
checked archive takes its result for the read it stands for, so the member is inflated once
and the audit's facts, digests and errors are those of a read made after the open; in every
other case (another file, a read asking for more, a failing open, an archive closed unused)
the inflate is cancelled and dropped, and no thread is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_kept import METADATA, WHEEL_NAME, corrupt_member, member_file, whole_facts
from test_kept import big_library as big_library  # a fixture
from test_scan import write_wheel

from repairwheel import scan
from repairwheel.cli import main
from repairwheel.errors import UsageError, WheelError
from repairwheel.repair import repair_wheel
from repairwheel.wheel import WheelArchive, early, inflate

BIG = "demo/libbig.so"


@pytest.fixture(autouse=True)
def small_enough(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Members of a few MiB start early too, on a machine of any number of cores; no early
    thread outlives a test."""
    if inflate.inflater() is None:
        pytest.skip("no C inflate here: nothing starts early")
    monkeypatch.setattr(early, "EARLY_MIN", 1 << 20)
    monkeypatch.setattr(early, "_cores", lambda: 2)
    yield
    assert not [t for t in threading.enumerate() if t.name == "repairwheel-early"]


@pytest.fixture
def whole_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The declared sizes of the whole (not prefix) inflates made, from any thread."""
    sizes: list[int] = []
    member = inflate.Inflater.member

    def counted(self: inflate.Inflater, *args: Any, **kwargs: Any) -> inflate.Inflated:
        keep = kwargs.get("keep", args[9] if len(args) > 9 else None)
        if keep is None or not keep.stop:
            sizes.append(args[4])
        return member(self, *args, **kwargs)

    monkeypatch.setattr(inflate.Inflater, "member", counted)
    return sizes


@pytest.fixture
def wheel(tmp_path: Path, big_library: bytes) -> Path:
    files = {BIG: big_library, "demo/a.py": b"x = 1\n"}
    return write_wheel(tmp_path / WHEEL_NAME, files, METADATA)


def test_the_audit_takes_the_early_inflate_and_inflates_the_member_once(
    wheel: Path,
    big_library: bytes,
    whole_reads: list[int],
) -> None:
    started = scan.start_early(wheel, hashed=True)
    assert started is not None and started.spot.file_size == len(big_library)
    with WheelArchive(wheel, hash_reads=True, early=started) as archive:
        assert scan.scan_elf_members(archive, workers=2) == [whole_facts(BIG, big_library)]
        assert archive.verify_record() == []
    assert whole_reads.count(len(big_library)) == 1


def test_show_says_the_same_with_and_without_the_early_inflate(
    wheel: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", "--json", str(wheel)]) == 0
    taken = capsys.readouterr().out
    monkeypatch.setattr(early, "EARLY_MIN", 1 << 62)
    assert main(["show", "--json", str(wheel)]) == 0
    alone = capsys.readouterr().out
    drop = ("timings",)
    assert _without(taken, drop) == _without(alone, drop)


def _without(text: str, keys: tuple[str, ...]) -> object:
    found = json.loads(text)
    return {k: v for k, v in found.items() if k not in keys}


def test_an_early_inflate_of_another_file_is_dropped(
    tmp_path: Path,
    wheel: Path,
    big_library: bytes,
    whole_reads: list[int],
) -> None:
    """Started on one file that is then replaced by another at the same path (same layout,
    other bytes): the archive opened on the new file reads the member itself."""
    started = scan.start_early(wheel, hashed=True)
    changed = bytearray(big_library)
    changed[len(changed) // 2] ^= 1  # past the tables a parse reads: the facts stay
    other = write_wheel(
        tmp_path / "other.whl", {BIG: bytes(changed), "demo/a.py": b"x = 1\n"}, METADATA
    )
    os.replace(other, wheel)
    with WheelArchive(wheel, hash_reads=True, early=started) as archive:
        scan.scan_elf_members(archive, workers=2)
        assert archive.verify_record() == []  # the new bytes' digest, not the old ones'
    assert whole_reads.count(len(big_library)) == 2


def test_a_read_it_cannot_stand_for_reads_for_itself(
    wheel: Path,
    big_library: bytes,
    whole_reads: list[int],
) -> None:
    """A read into a buffer, or keeping other ranges, inflates the member itself (the early
    inflate is dropped); an archive closed with the early inflate unused cancels it."""
    started = scan.start_early(wheel, hashed=True)
    with WheelArchive(wheel, hash_reads=True, early=started) as archive:
        assert bytes(archive.read(BIG)) == big_library
        head = bytearray(len(big_library))
        archive.keep_ranges(BIG, head, [(0, 100)])
        assert head[:100] == big_library[:100] and not any(head[100:])
    with WheelArchive(wheel, hash_reads=True, early=scan.start_early(wheel, hashed=True)):
        pass


def test_a_failing_open_cancels_the_early_inflate(
    tmp_path: Path,
    big_library: bytes,
) -> None:
    bad = write_wheel(tmp_path / WHEEL_NAME, {BIG: big_library, "demo/../x.py": b""}, METADATA)
    started = scan.start_early(bad, hashed=True)
    assert started is not None
    with pytest.raises(WheelError, match="unsafe name"):
        WheelArchive(bad, hash_reads=True, early=started)
    badly_named = tmp_path / "not-a-wheel.zip"
    os.replace(bad, badly_named)
    with pytest.raises(WheelError):
        WheelArchive(badly_named, early=scan.start_early(badly_named, hashed=False))


def test_a_corrupt_member_fails_as_it_does_without_it(
    wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt_member(wheel, BIG)

    def error(started: early.EarlyInflate | None) -> str:
        with WheelArchive(wheel, hash_reads=True, early=started) as archive:
            with pytest.raises(WheelError) as caught:
                scan.scan_elf_members(archive, workers=2)
        return str(caught.value)

    started = scan.start_early(wheel, hashed=True)
    assert started is not None
    message = error(started)
    assert BIG in message and message == error(None)


@pytest.mark.parametrize("deflated", [True, False], ids=["deflated", "stored"])
def test_a_cancelled_inflate_ends_at_once_having_kept_nothing(
    tmp_path: Path, deflated: bool
) -> None:
    engine = inflate.inflater()
    assert engine is not None
    data = os.urandom(1 << 20) * 4
    fd, csize = member_file(tmp_path, data, deflated)
    try:
        for cancelled in (True, False):
            cancel = inflate.Cancel()
            if cancelled:
                cancel.set()
            base = bytearray(len(data))
            keep = inflate.Keep([(0, 100)], base, cancel=cancel)
            done = engine.member(fd, 5, csize, deflated, len(data), keep=keep)
            if cancelled:
                assert (done.status, done.produced) == (inflate.CANCELLED, 0)
                assert not any(base)
            else:
                assert (done.status, base[:100]) == (inflate.OK, data[:100])
    finally:
        os.close(fd)


def _prepended(wheel: Path, tmp_path: Path) -> Path:
    """The zip with bytes before it, as a self-extracting archive has (zipfile still opens
    it)."""
    out = tmp_path / "prefixed.whl"
    out.write_bytes(b"#!/bin/sh\n" * 10 + wheel.read_bytes())
    zipfile.ZipFile(out).testzip()
    return out


def test_the_quick_pass_starts_nothing_where_the_zip_is_not_plain(
    tmp_path: Path, wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        early.EarlyInflate.start(_prepended(wheel, tmp_path), head=64, wake=False, sha256=False)
        is None
    )
    small = write_wheel(tmp_path / "small.whl", {"demo/a.py": b"x" * 1000}, METADATA)
    assert early.EarlyInflate.start(small, head=64, wake=False, sha256=False) is None
    assert (
        early.EarlyInflate.start(tmp_path / "missing.whl", head=64, wake=False, sha256=False)
        is None
    )
    monkeypatch.setattr(early, "_cores", lambda: 1)
    assert early.EarlyInflate.start(wheel, head=64, wake=False, sha256=False) is None


def test_a_big_member_that_is_not_elf_is_checked_from_it(
    tmp_path: Path, whole_reads: list[int]
) -> None:
    data = os.urandom(6 << 20)
    files = {"demo/data.bin": data, "demo/a.py": b"x = 1\n"}
    wheel = write_wheel(tmp_path / WHEEL_NAME, files, METADATA)
    with WheelArchive(wheel, hash_reads=True, early=scan.start_early(wheel, hashed=True)) as a:
        with a.checking_others() as checked:
            checked()
        assert a.verify_record() == []
    assert whole_reads.count(len(data)) == 1


def test_fix_takes_the_inflate_the_command_line_starts_before_its_imports(
    tmp_path: Path,
    wheel: Path,
    big_library: bytes,
    whole_reads: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``repair`` starts the first wheel's inflate before it imports the repair, which takes
    it: the member is inflated once, and the wheel written is the one written without."""
    assert main(["repair", "-w", str(tmp_path / "taken"), str(wheel)]) == 0
    assert whole_reads.count(len(big_library)) == 1
    monkeypatch.setattr(early, "EARLY_MIN", 1 << 62)
    assert main(["repair", "-w", str(tmp_path / "alone"), str(wheel)]) == 0
    taken, alone = (sorted((tmp_path / d).iterdir()) for d in ("taken", "alone"))
    assert [p.name for p in taken] == [p.name for p in alone] and len(taken) == 1
    assert taken[0].read_bytes() == alone[0].read_bytes()


@pytest.mark.parametrize(
    "options",
    [
        ["--plat", "manylinux_9_99_x86_64"],
        ["--lib-sdir", "a/b"],
        ["--strip-level", "debug", "--strip"],
    ],
)
def test_a_fix_refused_before_it_reads_cancels_the_early_inflate(
    tmp_path: Path, wheel: Path, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Options refused after the inflate started (by the command line, or by the repair
    given the started inflate) leave no inflate running (the autouse fixture checks)."""
    assert main(["repair", "-w", str(tmp_path / "out"), *options, str(wheel)]) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    started = scan.start_early(wheel, hashed=True)
    assert started is not None
    with pytest.raises(UsageError):
        repair_wheel(wheel, tmp_path / "out", lib_sdir="a/b", early=started)


_SPY = """
import sys
from repairwheel.wheel import early

start = early.EarlyInflate.start.__func__
loaded = []


def spy(cls, path, **options):
    loaded.append(sorted(m for m in sys.modules if m in {heavy!r}))
    return start(cls, path, **options)


early.EarlyInflate.start = classmethod(spy)
early.EARLY_MIN, early._cores = 1 << 20, lambda: 2
from repairwheel.cli import main

code = main({argv!r})
print(code, loaded)
"""


@pytest.mark.parametrize("command", ["show", "repair", "check"])
def test_the_command_line_starts_the_inflate_before_the_heavy_imports(
    tmp_path: Path, wheel: Path, command: str
) -> None:
    """``show``, ``repair`` and ``check`` start the inflate before they import the archive,
    the audit, the repair or the check (about 0.08 s on one core, now beside it)."""
    heavy = {"repairwheel.wheel.archive", "repairwheel.audit", "repairwheel.repair"}
    heavy.add("repairwheel.check")
    argv = [command, str(wheel)] + (["-w", str(tmp_path / "out")] if command == "repair" else [])
    script = _SPY.format(heavy=heavy, argv=argv)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    code, loaded = done.stdout.splitlines()[-1].split(" ", 1)
    assert loaded == "[[]]" and (code == "0" or command == "check")


def test_check_takes_the_inflate_the_command_line_starts(
    wheel: Path, big_library: bytes, whole_reads: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    """``check`` takes the inflate started before its imports (the member is inflated once),
    and one started for a wheel it then refuses to read is cancelled (the autouse fixture
    checks that no inflate runs on)."""
    code = main(["check", "--json", str(wheel)])
    assert whole_reads.count(len(big_library)) == 1
    assert json.loads(capsys.readouterr().out)[0]["exit_code"] == code
    assert main(["check", str(wheel), str(wheel.with_name("missing.whl"))]) == 2
