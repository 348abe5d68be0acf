"""The C core agrees with pyelftools on every field, for real files built by others.

Three populations: a deterministic sample of this system's libraries, every
ELF member of the wheels bundled from auditwheel's test suite (many
architectures, both libcs), and the pinned PyPI wheels (big-endian s390x,
i686, musllinux).  Symbols are compared in full everywhere, and the first two
populations' imports-only tables (what an audit reads) too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from elf_oracle import core_facts, diff_facts, imports_of, oracle_facts
from pypi_wheels import (
    BUNDLED_DIR,
    ELF_MAGIC,
    PINNED,
    PypiWheel,
    bundled_wheels,
    elf_members,
    fetch,
    unavailable,
)

from repairwheel.elf import read_elf_and_symbols
from repairwheel.scan import facts_from_symbols

SYSTEM_LIB_DIR = Path("/usr/lib/x86_64-linux-gnu")
SYSTEM_SAMPLE_SIZE = 300


def _system_sample() -> list[Path]:
    """At least SYSTEM_SAMPLE_SIZE ELF files: every k-th real file, links followed, deduplicated."""
    seen: set[tuple[int, int]] = set()
    elves: list[Path] = []
    for path in sorted(SYSTEM_LIB_DIR.rglob("*")):
        real = path.resolve()
        try:
            stat = real.stat()
            if not real.is_file() or (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            with real.open("rb") as fh:
                if fh.read(4) == ELF_MAGIC:
                    elves.append(real)
        except OSError:
            continue
    step = max(1, len(elves) // SYSTEM_SAMPLE_SIZE)
    return elves[::step]


def _bundled_members() -> list[tuple[Path, str]]:
    return [(wheel, name) for wheel in bundled_wheels() for name, _ in elf_members(wheel)]


def _report(label: str, problems: list[str]) -> str:
    return f"{label} disagrees with pyelftools:\n  " + "\n  ".join(problems)


SYSTEM_SAMPLE = _system_sample()
BUNDLED_MEMBERS = _bundled_members()


def test_system_sample_is_large_enough() -> None:
    if not SYSTEM_SAMPLE:
        unavailable(f"no ELF files under {SYSTEM_LIB_DIR}")
    assert len(SYSTEM_SAMPLE) >= SYSTEM_SAMPLE_SIZE


@pytest.mark.parametrize("path", SYSTEM_SAMPLE, ids=str)
def test_system_library_matches_oracle(path: Path) -> None:
    oracle = oracle_facts(path)
    problems = diff_facts(core_facts(path), oracle)
    problems += diff_facts(core_facts(path, imports_only=True), imports_of(oracle))
    assert not problems, _report(str(path), problems)


def test_every_bundled_platform_wheel_has_elf_members() -> None:
    wheels = bundled_wheels()
    if not wheels:
        unavailable(f"no bundled wheels under {BUNDLED_DIR}")
    platform_wheels = {w for w in wheels if not w.name.endswith("-any.whl")}
    assert platform_wheels == {wheel for wheel, _ in BUNDLED_MEMBERS}


@pytest.mark.parametrize(
    ("wheel", "member"),
    BUNDLED_MEMBERS,
    ids=[f"{os.path.relpath(w, BUNDLED_DIR)}::{m}" for w, m in BUNDLED_MEMBERS],
)
def test_bundled_wheel_member_matches_oracle(wheel: Path, member: str) -> None:
    data = dict(elf_members(wheel))[member]
    oracle = oracle_facts(data)
    problems = diff_facts(core_facts(data), oracle)
    problems += diff_facts(core_facts(data, imports_only=True), imports_of(oracle))
    assert not problems, _report(f"{wheel.name}::{member}", problems)
    # what the audit takes from a member is the same from either table
    whole = facts_from_symbols(member, *read_elf_and_symbols(data))
    assert facts_from_symbols(member, *read_elf_and_symbols(data, imports_only=True)) == whole


@pytest.mark.parametrize("wheel", PINNED, ids=lambda w: w.filename)
def test_pypi_wheel_members_match_oracle(wheel: PypiWheel) -> None:
    members = list(elf_members(fetch(wheel)))
    assert members, f"{wheel.filename} has no ELF member"
    problems = [
        f"{name}: {line}"
        for name, data in members
        for line in diff_facts(core_facts(data), oracle_facts(data))
    ]
    assert not problems, _report(wheel.filename, problems)
