"""How fast the C core reads a wheel's ELF members, against pyelftools reading the same facts.

The members of the torch CPU wheel in /opt/wheels (or $REPAIRWHEEL_BENCH_WHEEL)
are inflated once, outside the timed part.  Without that wheel, a sample of
this system's libraries stands in.  pyelftools takes seconds per large
library, so both readers are also timed on one subset (the largest members)
and the ratio of those two like-for-like runs is reported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from elf_oracle import oracle_facts
from pypi_wheels import ELF_MAGIC, elf_members
from pytest_benchmark.fixture import BenchmarkFixture

from repairwheel.elf import read_elf, read_elf_and_symbols

Members = list[tuple[str, bytes]]

SUBSET_SIZE = 28
SYSTEM_LIB_DIR = Path("/usr/lib/x86_64-linux-gnu")
SYSTEM_FALLBACK_COUNT = 120


def _bench_wheel() -> Path | None:
    configured = os.environ.get("REPAIRWHEEL_BENCH_WHEEL")
    if configured:
        return Path(configured)
    return next(iter(sorted(Path("/opt/wheels").glob("torch-*.whl"))), None)


def _system_members() -> Members:
    found: Members = []
    for path in sorted(SYSTEM_LIB_DIR.glob("*.so*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if data[:4] == ELF_MAGIC:
            found.append((path.name, data))
        if len(found) == SYSTEM_FALLBACK_COUNT:
            break
    return found


@pytest.fixture(scope="module")
def members(bench_note: Callable[[str], None]) -> Members:
    """Every ELF member of the benchmark wheel, inflated into memory."""
    wheel = _bench_wheel()
    found = list(elf_members(wheel)) if wheel is not None else _system_members()
    source = wheel.name if wheel is not None else f"{SYSTEM_LIB_DIR} (no torch wheel)"
    bench_note(
        f"input: {len(found)} ELF files, {sum(len(d) for _, d in found) / 1e6:.0f} MB, {source}"
    )
    if not found:
        pytest.skip("no ELF input to benchmark")
    return found


@pytest.fixture(scope="module")
def subset(members: Members, bench_note: Callable[[str], None]) -> Members:
    """The largest members: where the time goes, and few enough for pyelftools."""
    chosen = sorted(members, key=lambda m: len(m[1]))[-SUBSET_SIZE:]
    bench_note(f"subset: {len(chosen)} largest, {sum(len(d) for _, d in chosen) / 1e6:.0f} MB")
    return chosen


@pytest.fixture(scope="module")
def best_times() -> dict[str, float]:
    """Fastest round of each benchmark run so far in this module, by name."""
    return {}


def _core_with_symbols(members: Members) -> int:
    return sum(len(read_elf_and_symbols(data)[1]) for _, data in members)


def _core_facts_only(members: Members) -> int:
    return sum(len(read_elf(data).needed) for _, data in members)


def _pyelftools_with_symbols(members: Members) -> int:
    return sum(len(oracle_facts(data).symbols or ()) for _, data in members)


def test_core_all_members_with_symbols(benchmark: BenchmarkFixture, members: Members) -> None:
    symbols = benchmark.pedantic(_core_with_symbols, args=(members,), rounds=5, warmup_rounds=1)
    benchmark.extra_info["symbols"] = symbols
    assert symbols > 0


def test_core_all_members_facts_only(benchmark: BenchmarkFixture, members: Members) -> None:
    benchmark.pedantic(_core_facts_only, args=(members,), rounds=5, warmup_rounds=1)


def test_core_subset_with_symbols(
    benchmark: BenchmarkFixture, subset: Members, best_times: dict[str, float]
) -> None:
    benchmark.pedantic(_core_with_symbols, args=(subset,), rounds=5, warmup_rounds=1)
    best_times["core"] = benchmark.stats.stats.min


def test_pyelftools_subset_with_symbols(
    benchmark: BenchmarkFixture,
    subset: Members,
    best_times: dict[str, float],
    bench_note: Callable[[str], None],
) -> None:
    benchmark.pedantic(_pyelftools_with_symbols, args=(subset,), rounds=1)
    pyelftools = benchmark.stats.stats.min
    if "core" in best_times:
        ratio = pyelftools / best_times["core"]
        benchmark.extra_info["ratio_vs_core"] = ratio
        bench_note(
            f"subset with symbols: pyelftools {pyelftools:.2f} s,"
            f" C core {best_times['core']:.3f} s, {ratio:.0f}x faster"
        )
