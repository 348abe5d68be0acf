"""The stages of show and fix, timed on their own (pytest-benchmark).

Input: /opt/wheels/torch-*.whl when present (the big-wheel case), else the demo wheel built
from demo/. Run: pytest benchmarks/ --benchmark-only -k stages
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from repairwheel.audit import analyze_wheel
from repairwheel.scan import scan_elf_members
from repairwheel.wheel import WheelArchive, WheelWriter
from repairwheel.wheel.zipwrite import deflate

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    found = sorted(glob.glob("/opt/wheels/torch-*.whl"))
    if found:
        return Path(found[0])
    out = tmp_path_factory.mktemp("demo")
    built = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "build.py"), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    os.environ["LD_LIBRARY_PATH"] = str(out / "lib")
    return Path(built.stdout.strip())


def test_stages_scan_elf_members(benchmark: BenchmarkFixture, wheel: Path) -> None:
    def scan() -> int:
        with WheelArchive(wheel) as archive:
            return len(list(scan_elf_members(archive)))

    assert benchmark.pedantic(scan, rounds=3) > 0


def test_stages_analyze(benchmark: BenchmarkFixture, wheel: Path) -> None:
    report = benchmark.pedantic(analyze_wheel, args=(wheel,), rounds=3)
    assert report.members


def test_stages_raw_copy_rewrite(benchmark: BenchmarkFixture, wheel: Path, tmp_path: Path) -> None:
    """Every member copied as compressed bytes (CRC-checked): the floor of a repair."""

    def rewrite() -> int:
        with WheelArchive(wheel, hash_reads=True) as archive:
            with WheelWriter(tmp_path / wheel.name, archive.dist_info) as writer:
                for member in archive.members:
                    writer.copy(archive, member.name)
        return (tmp_path / wheel.name).stat().st_size

    assert benchmark.pedantic(rewrite, rounds=3) > 0


def test_stages_deflate_largest_member(benchmark: BenchmarkFixture, wheel: Path) -> None:
    """Compressing the biggest member at level 6 on every core (what a patched member costs)."""
    with WheelArchive(wheel) as archive:
        largest = max(archive.members, key=lambda m: m.file_size)
        data = archive.read(largest.name)
    pieces = benchmark.pedantic(deflate, args=(data, 6), rounds=2)
    benchmark.extra_info["member"] = largest.name
    benchmark.extra_info["ratio"] = sum(map(len, pieces)) / len(data)
