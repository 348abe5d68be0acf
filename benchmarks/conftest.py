"""Collects ``bench_*.py`` and prints the speed ratios the benchmarks record.

Run with ``pytest benchmarks/ --benchmark-only``.  The benchmarks compare the
C core against the pyelftools reference reader kept with the tests, so the
tests folder is put on the import path here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

NOTES = pytest.StashKey[list[str]]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[NOTES] = []


@pytest.fixture(scope="session")
def bench_note(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Adds a line to the summary printed after the benchmark tables."""
    return pytestconfig.stash[NOTES].append


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    notes = config.stash.get(NOTES, [])
    if notes:
        terminalreporter.section("repairwheel benchmark notes")
        for line in notes:
            terminalreporter.write_line(line)
