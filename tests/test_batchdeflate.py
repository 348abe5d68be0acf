"""The C core's batch deflate (csrc/deflate.c through repairwheel.wheel.batchdeflate), with
zlib-ng and with the system zlib: every stream inflates back with the standard library's zlib,
its CRC-32 and SHA-256 are right, and a stream depends only on the bytes and the level (not
on the batch it is in or the thread that ran it)."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from repairwheel._elfcore import ffi, lib
from repairwheel.wheel import batchdeflate
from repairwheel.wheel.batchdeflate import BatchDeflater
from repairwheel.wheel.native import openssl


def _deflaters() -> dict[str, BatchDeflater]:
    crypto = openssl()
    assert crypto is not None  # CPython's _hashlib links OpenSSL here
    found = {}
    for name, load in (("zlib-ng", batchdeflate._zlib_ng), ("zlib", batchdeflate._system_zlib)):
        try:
            struct, keep = load()
        except ImportError:  # no zlib-ng wheel for this platform
            continue
        found[name] = BatchDeflater(struct, crypto, keep)
    return found


DEFLATERS = _deflaters()


def buffers() -> list[bytes]:
    rnd = random.Random(7)
    text = b"".join(b"line %d of a text that repeats itself\n" % i for i in range(3000))
    return [
        b"",
        b"x",
        bytes(rnd.getrandbits(8) for _ in range(5000)),  # incompressible
        bytes(rnd.choice(b"ab") for _ in range(70000)),  # long matches, many blocks
        text,
        Path(sys.executable).read_bytes()[:300_000],  # an ELF file, as the batches see
    ]


@pytest.fixture(params=sorted(DEFLATERS))
def deflater(request: pytest.FixtureRequest) -> BatchDeflater:
    return DEFLATERS[request.param]


@pytest.mark.parametrize("level", [-1, 1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_streams_inflate_back_with_their_crc_and_sha256(
    deflater: BatchDeflater, level: int
) -> None:
    data = buffers()
    done = deflater.deflate(data, level)
    assert len(done) == len(data)
    for raw, result in zip(data, done):
        assert zlib.decompress(result.stream, -zlib.MAX_WBITS) == raw
        assert result.crc == zlib.crc32(raw)
        assert result.sha256 == hashlib.sha256(raw).digest()
    text, stream = data[4], done[4].stream
    assert len(stream) < len(text) // 4  # it really compressed


def test_level_minus_one_is_six(deflater: BatchDeflater) -> None:
    data = buffers()
    assert deflater.deflate(data, -1) == deflater.deflate(data, 6)


def test_a_stream_depends_on_its_bytes_and_level_only(deflater: BatchDeflater) -> None:
    data = buffers()
    alone = [deflater.deflate([raw], 6)[0] for raw in data]
    together = deflater.deflate(data, 6)
    reversed_batch = deflater.deflate(data[::-1], 6)[::-1]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda raw: deflater.deflate([raw], 6)[0], data * 3))
    assert alone == together == reversed_batch == threaded[: len(data)]
    assert threaded == alone * 3


def test_levels_give_different_streams_of_the_same_bytes(deflater: BatchDeflater) -> None:
    text = buffers()[4]
    streams = {deflater.deflate([text], level)[0].stream for level in (1, 9)}
    assert len(streams) == 2


def test_a_buffer_too_big_for_one_call_is_refused_unread() -> None:
    deflater = next(iter(DEFLATERS.values()))
    one = ffi.new("uint8_t[1]")
    jobs = ffi.new("rw_deflate_job[2]")
    small = ffi.from_buffer(b"abc")
    jobs[0].data, jobs[0].len, jobs[0].finish = small, 3, 1
    jobs[1].data, jobs[1].len = one, lib.RW_DEF_MAX  # points at one byte: reading it would fault
    lib.rw_deflate_jobs(deflater.struct, ffi.NULL, 6, jobs, 2)
    try:
        assert jobs[0].status == lib.RW_DEF_OK
        assert zlib.decompress(ffi.buffer(jobs[0].out, jobs[0].out_len)[:], -15) == b"abc"
        assert (jobs[1].status, jobs[1].out) == (lib.RW_DEF_TOO_BIG, ffi.NULL)
    finally:
        lib.rw_deflate_free(jobs, 2)
    assert jobs[0].out == ffi.NULL


def test_a_refused_level_is_a_value_error(deflater: BatchDeflater) -> None:
    with pytest.raises(ValueError, match="refused"):
        deflater.deflate([b"abc"], 12)


@pytest.mark.parametrize("level", [1, 6, 9])
def test_pieces_make_the_stream_a_whole_buffer_call_makes(
    deflater: BatchDeflater, level: int
) -> None:
    """A big member streamed piece by piece (each a block, with the 32 KiB before it as its
    dictionary) gets the bytes the writer's batches give a member deflated whole."""
    block = lib.RW_DEF_BLOCK
    data = (buffers()[4] * 20)[: 2 * block + 12345]
    whole = deflater.deflate([data], level)[0].stream
    starts = [0, block, 2 * block]
    pieces = [
        deflater.piece(data, start, min(start + block, len(data)), start == starts[-1], level)
        for start in starts
    ]
    assert b"".join(pieces) == whole
    assert zlib.decompress(whole, -zlib.MAX_WBITS) == data
    middle = zlib.decompressobj(-zlib.MAX_WBITS, zdict=data[block - lib.RW_DEF_WINDOW : block])
    assert middle.decompress(pieces[1]) == data[block : 2 * block]  # it ends on a sync flush


def test_an_empty_buffer_is_a_stream_ended_or_flushed(deflater: BatchDeflater) -> None:
    """zlib calls a deflate step with no input an error (fuzz_deflate found it): an empty
    member, and an empty last piece, still make valid streams."""
    assert zlib.decompress(deflater.deflate([b""], 6)[0].stream, -zlib.MAX_WBITS) == b""
    flushed = deflater.piece(b"abc", 3, 3, False, 6)  # nothing after a piece, sync-flushed
    tail = zlib.decompressobj(-zlib.MAX_WBITS, zdict=b"abc")
    assert tail.decompress(flushed) == b"" and not tail.eof
    assert zlib.decompress(deflater.piece(b"abc", 3, 3, True, 6), -zlib.MAX_WBITS) == b""


def test_a_batch_dropped_unread_frees_its_streams() -> None:
    """A write that fails with batches in flight drops them unread: their C streams must go
    with them (400 MB of incompressible streams here, were they kept)."""
    script = """
import os, resource
from repairwheel.wheel.batchdeflate import Batch, batch_deflater
data = [os.urandom(1 << 20)] * 8
for _ in range(50):
    batch = Batch(batch_deflater(), data, 1)
    batch.run()
    del batch
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) < 200  # MB: a few batches' worth, not fifty
