"""Test data that compresses like real members do."""

from __future__ import annotations

import random


def machine_code_like(size: int, seed: int) -> bytes:
    """Random words from a small vocabulary, so that zlib makes many blocks of a few dozen KB,
    as it does for a shared library."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randrange(2, 12)) for _ in range(3000)]
    out = bytearray()
    while len(out) < size:
        out += b"".join(rng.choices(words, k=4096))
    return bytes(out[:size])
