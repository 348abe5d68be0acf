"""A patched member keeps the deflate blocks of its old stream that the patch left alone.

Every assembled stream is decoded with Python's zlib and compared with the new bytes; the runs
are checked against what a deflate block may depend on (the 32 KiB before it); and a real
repair of an extension of 12 MB is loaded with its library hidden.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from payloads import machine_code_like
from wheelbuild import (
    BuiltWheel,
    Extension,
    Library,
    WheelSpec,
    build_wheel,
    run_without_originals,
)

from repairwheel import repair, repair_wheel
from repairwheel.stage import LATE_SIZE
from repairwheel.wheel import WheelArchive, WheelWriter, inflate, reuse, zipwrite
from repairwheel.wheel.reuse import WINDOW, OldStream, Reuse, Run, find_runs
from repairwheel.wheel.zipwrite import STREAM_MIN

_DIST = "demo-1.0.dist-info"
_NAME = "demo-1.0-py3-none-linux_x86_64.whl"


def _stream(data: bytes, level: int = 6) -> bytes:
    deflater = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


def _old(stream: bytes, chunk: int = 1 << 20) -> OldStream:
    def read(start: int, end: int) -> Iterator[bytes]:
        for position in range(start, end, chunk):
            yield stream[position : min(position + chunk, end)]

    return OldStream(len(stream), read)


def _assemble(new: bytes, stream: bytes, runs: tuple[Run, ...]) -> bytes:
    seen = bytearray()
    out = b"".join(zipwrite._deflate_blocks(new, 6, seen.extend, Reuse(_old(stream), runs)))
    assert seen == new  # every byte hashed once, in order
    return out


def _check_runs(old: bytes, new: bytes, stream: bytes, runs: tuple[Run, ...]) -> None:
    """What makes a run safe: its bytes and the window before it are unchanged, it starts and
    ends at a block boundary of the old stream (decoding it from there gives the same bytes)."""
    for a, b in zip(runs, runs[1:]):
        assert a.end <= b.start
    for run in runs:
        low = max(run.start - WINDOW, 0)
        assert old[low : run.end] == new[low : run.end]
        inflater = zlib.decompressobj(-zlib.MAX_WBITS, zdict=old[low : run.start])
        assert inflater.decompress(stream[run.raw_start : run.raw_end]) == old[run.start : run.end]
        assert not inflater.eof  # the last block, with the end-of-stream bit, is never reused


@pytest.fixture(scope="module")
def original() -> tuple[bytes, bytes]:
    data = machine_code_like(6 << 20, seed=1)
    return data, _stream(data)


def test_a_few_patched_bytes_keep_almost_every_old_block(original: tuple[bytes, bytes]) -> None:
    old, stream = original
    new = bytearray(old)
    new[64:80] = b"\x01" * 16  # a header
    new[3_000_000:3_000_200] = bytes(200)  # a dynamic table
    new += machine_code_like(300_000, seed=2)  # a new segment at the end
    new = bytes(new)
    runs = find_runs(_old(stream), new)
    _check_runs(old, new, stream, runs)
    assert len(runs) == 2
    reused = sum(run.end - run.start for run in runs)
    assert reused > len(old) * 0.7  # (about one block boundary in eight is byte-aligned)
    out = _assemble(new, stream, runs)
    assert zlib.decompress(out, -zlib.MAX_WBITS) == new
    whole = b"".join(zipwrite.deflate(new, 6))
    assert len(out) <= len(whole) * 1.01


@settings(max_examples=25, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, (6 << 20) - 1), st.integers(1, 5000), st.integers(0, 255)),
        max_size=6,
    ),
    tail=st.integers(-200_000, 200_000),
)
def test_any_edit_gives_a_stream_of_the_new_bytes(
    original: tuple[bytes, bytes], edits: list[tuple[int, int, int]], tail: int
) -> None:
    old, stream = original
    new = bytearray(old)
    for at, size, value in edits:
        new[at : at + size] = bytes([value]) * len(new[at : at + size])
    new = new[: len(new) + tail] if tail < 0 else new + machine_code_like(tail, seed=tail)
    new = bytes(new)
    runs = find_runs(_old(stream), new)
    _check_runs(old, new, stream, runs)
    assert zlib.decompress(_assemble(new, stream, runs), -zlib.MAX_WBITS) == new


def test_unchanged_bytes_reuse_all_but_the_last_block(original: tuple[bytes, bytes]) -> None:
    old, stream = original
    runs = find_runs(_old(stream), old)
    assert len(runs) == 1 and runs[0].start == 0 and runs[0].raw_start == 0
    assert zlib.decompress(_assemble(old, stream, runs), -zlib.MAX_WBITS) == old


def test_stored_blocks_are_reused_too() -> None:
    old = machine_code_like(1 << 20, seed=3)
    stream = _stream(old, level=0)
    new = old[:500_000] + b"patched" + old[500_007:]
    runs = find_runs(_old(stream), new)
    _check_runs(old, new, stream, runs)
    assert runs and sum(run.end - run.start for run in runs) > 900_000
    assert zlib.decompress(_assemble(new, stream, runs), -zlib.MAX_WBITS) == new


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda s: s[: len(s) // 2], id="truncated"),
        pytest.param(lambda s: s + b"trailing bytes", id="bytes-after-the-end"),
        pytest.param(lambda s: s[:1000] + b"\xff" * 64 + s[1064:], id="corrupt"),
    ],
)
def test_a_stream_that_does_not_read_to_its_end_is_not_reused(
    original: tuple[bytes, bytes], spoil: object
) -> None:
    old, stream = original
    assert callable(spoil)
    assert find_runs(_old(spoil(stream)), old) == ()


@pytest.mark.parametrize("inflate", ["_zlib_ng", "_system_zlib"])
def test_zlib_ng_and_the_system_zlib_find_the_same_runs(
    original: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch, inflate: str
) -> None:
    old, stream = original
    new = old[:2_000_000] + b"patched" + old[2_000_007:]
    monkeypatch.setattr(reuse, "_inflater", getattr(reuse, inflate))
    runs = find_runs(_old(stream), new)
    _check_runs(old, new, stream, runs)
    monkeypatch.undo()
    assert runs == find_runs(_old(stream), new)


def test_without_a_block_inflate_the_member_is_compressed_whole(
    original: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, stream = original
    monkeypatch.setattr(reuse, "_inflater", lambda: None)
    assert find_runs(_old(stream), old) == ()


def test_the_writer_keeps_old_blocks_and_the_member_reads_back(
    tmp_path: Path, original: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, stream = original
    monkeypatch.setattr(zipwrite, "STREAM_MIN", 1 << 20)
    new = old[:100] + b"X" + old[101:] + b"tail"
    sizes = {}
    old_stream = _old(stream)
    for name, previous in (
        ("reused", Reuse(old_stream, find_runs(old_stream, new))),
        ("whole", None),
    ):
        out = tmp_path / name / _NAME
        out.parent.mkdir()
        with WheelWriter(out, _DIST) as writer:
            writer.add("demo/big.bin", new, mode=0o755, reuse=previous)
        with WheelArchive(out) as wheel:
            assert wheel.read("demo/big.bin") == new  # size and CRC checked
            sizes[name] = wheel.member("demo/big.bin").compress_size
        with zipfile.ZipFile(out) as zf:
            assert zf.testzip() is None
    assert sizes["reused"] < len(stream) + 2000
    assert sizes["reused"] <= sizes["whole"] * 1.01


_BLOB = Library("blob", 5)


@pytest.fixture(scope="module")
def big_extension(tmp_path_factory: pytest.TempPathFactory) -> BuiltWheel:
    """A wheel whose extension holds 12 MB of data (streamed and reused when patched) and
    links a library that must be grafted."""
    work = tmp_path_factory.mktemp("big")
    payload = work / "payload.bin"
    payload.write_bytes(machine_code_like(12 << 20, seed=4))
    prelude = f'__asm__(".section .rodata\\n.incbin \\"{payload}\\"\\n.previous");'
    spec = WheelSpec(
        libraries=(_BLOB,), extensions=(Extension("demo._big", ("blob",), prelude=prelude),)
    )
    return build_wheel(spec, work / "build")


def test_a_repaired_big_extension_keeps_its_blocks_and_loads(
    big_extension: BuiltWheel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = big_extension
    member = built.spec.extensions[0].member
    reused = repair_wheel(built.path, tmp_path / "reused", ldpaths=str(built.lib_dir))
    monkeypatch.setattr(reuse, "_inflater", lambda: None)
    whole = repair_wheel(built.path, tmp_path / "whole", ldpaths=str(built.lib_dir))
    with WheelArchive(reused.output) as a, WheelArchive(whole.output) as b:
        assert a.read(member) == b.read(member)  # the same patched bytes either way
        size = a.member(member).compress_size
    with WheelArchive(built.path) as wheel:
        before = wheel.member(member).compress_size
    assert size < before + 4096  # the old blocks, plus the patched regions
    code = "import demo._big as m; print(m.value())"
    proc, control = run_without_originals(Path(reused.output), built, code, tmp_path)
    assert (proc.returncode, proc.stdout.strip()) == (0, str(built.expected_value("demo._big")))
    assert control.returncode != 0


def _recorded_blocks(stream: bytes, size: int, tmp_path: Path) -> tuple[tuple[int, int], ...]:
    """The block ends the C core's inflate records for ``stream`` (as the audit's spill does)."""
    engine = inflate.inflater()
    if engine is None:
        pytest.skip("no C inflate here")
    path = tmp_path / "stream"
    path.write_bytes(stream)
    fd = os.open(path, os.O_RDONLY)
    try:
        done = engine.member(fd, 0, len(stream), True, size, bytearray(size), blocks=True)
    finally:
        os.close(fd)
    assert done.status == inflate.OK and done.blocks is not None
    return done.blocks


@settings(max_examples=25, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, (6 << 20) - 1), st.integers(0, 5000), st.integers(0, 255)),
        max_size=6,
    ),
    tail=st.integers(0, 200_000),
)
def test_runs_around_the_written_ranges_give_a_stream_of_the_new_bytes(
    original: tuple[bytes, bytes],
    tmp_path_factory: pytest.TempPathFactory,
    edits: list[tuple[int, int, int]],
    tail: int,
) -> None:
    """With the recorded block ends and the ranges a patch wrote (some bytes rewritten with
    what they were), the runs are safe, decode to the new bytes, and keep at least what
    inflating the old stream again finds."""
    old, stream = original
    blocks = _recorded_blocks(stream, len(old), tmp_path_factory.mktemp("blocks"))
    new = bytearray(old)
    written = []
    for at, size, value in edits:
        new[at : at + size] = bytes([value]) * len(new[at : at + size])
        written.append((at, size))
    if tail:
        written.append((len(new), tail))
        new += machine_code_like(tail, seed=tail)
    new = bytes(new)
    runs = reuse.runs_around(blocks, written, len(old), len(new))
    _check_runs(old, new, stream, runs)
    assert zlib.decompress(_assemble(new, stream, runs), -zlib.MAX_WBITS) == new
    kept = sum(run.end - run.start for run in runs)
    assert kept >= sum(run.end - run.start for run in find_runs(_old(stream), new))


@pytest.mark.parametrize(
    "size", [STREAM_MIN + (2 << 20), LATE_SIZE + (8 << 20)], ids=["staged", "staged late"]
)
def test_a_staged_extension_reuses_blocks_without_a_second_inflate(
    size: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big extension to patch, staged with the others or (over LATE_SIZE) late, as the
    output is written: the inflate staging it records its block ends, the built-in patcher
    says what it wrote, and the repair keeps the old blocks from those alone; the member is
    the one a repair that inflates it again writes, and it loads."""
    payload = tmp_path / "payload.bin"
    payload.write_bytes(machine_code_like(size, seed=5))
    prelude = f'__asm__(".section .rodata\\n.incbin \\"{payload}\\"\\n.previous");'
    spec = WheelSpec(
        libraries=(_BLOB,), extensions=(Extension("demo._big", ("blob",), prelude=prelude),)
    )
    built = build_wheel(spec, tmp_path / "build")
    member = spec.extensions[0].member
    scans = []
    scan = reuse._scan

    def counted(old: OldStream, new: object) -> object:
        scans.append(old.size)
        return scan(old, new)  # type: ignore[arg-type]

    late = []
    finish = repair._finish_late

    def finished_late(*args: object) -> object:
        late.append(args[-1])
        return finish(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(reuse, "_scan", counted)
    monkeypatch.setattr(repair, "_finish_late", finished_late)
    known = repair_wheel(built.path, tmp_path / "known", ldpaths=str(built.lib_dir))
    assert scans == [] and late == ([member] if size > LATE_SIZE else [])
    monkeypatch.setattr(inflate, "BLOCK_SPAN", 1 << 40)  # no room: the ends are not known
    scanned = repair_wheel(built.path, tmp_path / "scanned", ldpaths=str(built.lib_dir))
    assert len(scans) == 1
    with WheelArchive(known.output) as a, WheelArchive(scanned.output) as b:
        assert a.read(member) == b.read(member)
        sizes = a.member(member).compress_size, b.member(member).compress_size
    with WheelArchive(built.path) as wheel:
        before = wheel.member(member).compress_size
    assert sizes[0] <= sizes[1] < before + 4096
    code = "import demo._big as m; print(m.value())"
    proc, control = run_without_originals(Path(known.output), built, code, tmp_path)
    assert (proc.returncode, proc.stdout.strip()) == (0, str(built.expected_value("demo._big")))
    assert control.returncode != 0
