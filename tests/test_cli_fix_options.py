"""`fix` option values from the command line and the environment, checked up front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pypi_wheels import BUNDLED_DIR
from wheelbuild import Build, Extension, Library, WheelSpec, repairwheel_cli

WHEEL = BUNDLED_DIR / "glibc" / "testsimple-0.0.1-cp313-cp313-linux_x86_64.whl"


def _fix(
    out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repairwheel", "fix", "-w", str(out), *args, str(WHEEL)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_a_bad_plat_from_the_environment_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _fix(out, env={"AUDITWHEEL_PLAT": "manylinux_2_99"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("repairwheel: error: AUDITWHEEL_PLAT='manylinux_2_99': ")
    assert proc.stderr.count("\n") == 1
    assert not out.exists()


def test_the_command_line_plat_wins_over_the_environment(tmp_path: Path) -> None:
    proc = _fix(tmp_path, "--plat", "manylinux2014_x86_64", env={"AUDITWHEEL_PLAT": "bogus"})
    assert proc.returncode == 0, proc.stderr
    names = [p.name for p in tmp_path.glob("*.whl")]
    assert names == [
        "testsimple-0.0.1-cp313-cp313-manylinux1_x86_64.manylinux2014_x86_64"
        ".manylinux_2_17_x86_64.manylinux_2_5_x86_64.whl"
    ]


def test_auto_means_the_best_reachable_tag(tmp_path: Path) -> None:
    proc = _fix(tmp_path, "--plat", "auto")
    assert proc.returncode == 0, proc.stderr
    names = [p.name for p in tmp_path.glob("*.whl")]
    assert names == ["testsimple-0.0.1-cp313-cp313-manylinux1_x86_64.manylinux_2_5_x86_64.whl"]


def test_fix_reports_the_time_of_each_stage(build: Build, tmp_path: Path) -> None:
    """`fix -v` logs each stage's wall-clock time as it ends; `--json` lists them in order."""
    built = build(
        WheelSpec(libraries=(Library("a", 1),), extensions=(Extension("demo._ext", ("a",)),))
    )
    started = time.perf_counter()
    proc = repairwheel_cli(
        "fix",
        "-v",
        "--json",
        "-w",
        str(tmp_path / "out"),
        "--ldpaths",
        str(built.lib_dir),
        str(built.path),
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    timings = json.loads(proc.stdout)[0]["timings"]
    stages = [*AUDIT_STAGES, "plan", "stage", "patch", "record check", "write"]
    _check_timings(timings, stages, elapsed, proc.stderr)


AUDIT_STAGES = ["open", "read ELF", "resolve", "decide"]


def _check_timings(timings: dict[str, float], stages: list[str], elapsed: float, log: str) -> None:
    assert list(timings) == stages
    assert all(0 <= seconds for seconds in timings.values())
    assert sum(timings.values()) <= elapsed
    logged = [line for line in log.splitlines() if " took " in line]
    assert [line.split(" took ")[0].removeprefix("DEBUG: ") for line in logged] == stages


def test_show_reports_the_time_of_each_stage(build: Build) -> None:
    """`show -v` logs the audit's stages as they end; `--json` lists them in order."""
    built = build(
        WheelSpec(libraries=(Library("a", 1),), extensions=(Extension("demo._ext", ("a",)),))
    )
    started = time.perf_counter()
    proc = repairwheel_cli("show", "-v", "--json", "--ldpaths", str(built.lib_dir), str(built.path))
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    timings = json.loads(proc.stdout)["timings"]
    _check_timings(timings, [*AUDIT_STAGES, "record check"], elapsed, proc.stderr)
