"""Small members inflated, CRC'd and SHA-256'd many at a time by one call of the C core
(``csrc/verify.c``), the GIL released throughout.

Checking torch's 12k small files against RECORD one inflate and one hash call each cost 0.5 s
of CPU, most of it Python's; one call per batch leaves the audit's threads the GIL. Where the
C inflate or OpenSSL cannot be reached, :func:`verify_members` is None and each member takes
the one-call path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._elfcore import ffi, lib
from . import inflate
from .native import openssl


@dataclass(frozen=True)
class VerifyJob:
    """Where a member's compressed bytes are and what they declare."""

    offset: int  # where its compressed bytes start
    compress_size: int
    file_size: int
    deflated: bool


@dataclass(frozen=True)
class Verified:
    """What inflating one member made: an RW_INF_* status (``inflate.OK`` when it made
    exactly its declared size), the CRC-32 and SHA-256 of the bytes."""

    status: int
    crc: int
    sha256: bytes


def verify_members(fd: int, jobs: Sequence[VerifyJob]) -> list[Verified] | None:
    """Each member of the archive open on ``fd`` inflated into one scratch buffer, in one
    call; None, with nothing done, where the C inflate or OpenSSL cannot be called here. The
    caller compares each CRC with the one the member's zip entry declares."""
    engine, crypto = inflate.inflater(), openssl()
    if engine is None or crypto is None:
        return None
    if not jobs:
        return []
    room = max(job.file_size for job in jobs)
    scratch = ffi.new("uint8_t[]", max(room, 1))
    structs = ffi.new("rw_verify_job[]", len(jobs))
    for struct, job in zip(structs, jobs):
        struct.offset, struct.csize, struct.usize = job.offset, job.compress_size, job.file_size
        struct.deflated = int(job.deflated)
    hasher = ffi.new("rw_hasher *")
    hasher.init, hasher.update = crypto.init_pointer, crypto.update_pointer
    hasher.final, hasher.md = crypto.final_pointer, ffi.cast("void *", crypto.sha256)
    ctx = crypto.lib.EVP_MD_CTX_new()
    if not ctx:
        return None
    hasher.ctx = ffi.cast("void *", ctx)
    try:
        lib.rw_verify_members(engine.struct, hasher, fd, scratch, room, structs, len(jobs))
    finally:
        crypto.lib.EVP_MD_CTX_free(ctx)
    return [Verified(s.status, s.crc, ffi.buffer(s.sha256)[:]) for s in structs]
