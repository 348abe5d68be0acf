"""`repairwheel check-system` and `repairwheel lddtree` through the command line."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging import tags

from repairwheel import cli
from repairwheel.errors import UsageError


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repairwheel", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_check_system_lists_packaging_platform_tags_in_order() -> None:
    proc = _run("check-system", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["platform_tags"] == list(tags.platform_tags())
    assert report["best_tag"] in report["platform_tags"]
    assert report["best_tag"].startswith(("manylinux_", "musllinux_"))


def test_check_system_reports_the_running_glibc() -> None:
    report = json.loads(_run("check-system", "--json").stdout)
    assert report["libc"] == "glibc"
    assert report["libc_version"] == os.confstr("CS_GNU_LIBC_VERSION").split()[1]
    major, minor = report["libc_version"].split(".")[:2]
    assert report["best_tag"] == f"manylinux_{major}_{minor}_{report['arch']}"


def test_check_system_honours_a_manylinux_module(tmp_path: Path) -> None:
    """PEP 600: a ``_manylinux`` module may veto tags; packaging applies it and so do we."""
    (tmp_path / "_manylinux.py").write_text(
        "def manylinux_compatible(major, minor, arch):\n    return (major, minor) <= (2, 17)\n"
    )
    proc = _run("check-system", "--json", env={"PYTHONPATH": str(tmp_path)})
    report = json.loads(proc.stdout)
    assert report["best_tag"] == f"manylinux_2_17_{report['arch']}"
    assert not any(t.startswith("manylinux_2_18") for t in report["platform_tags"])
    assert report["libc_version"] == os.confstr("CS_GNU_LIBC_VERSION").split()[1]


def test_check_system_text_names_libc_and_best_tag() -> None:
    proc = _run("check-system")
    assert proc.returncode == 0
    assert proc.stdout.startswith("libc: glibc ")
    assert "this interpreter accepts wheels up to manylinux_" in proc.stdout


def test_lddtree_json_resolves_the_interpreter_dependencies() -> None:
    proc = _run("lddtree", "--json", sys.executable)
    assert proc.returncode == 0, proc.stderr
    tree = json.loads(proc.stdout)
    libc = tree["libraries"]["libc.so.6"]
    assert libc["realpath"] == os.path.realpath(libc["path"])
    assert Path(libc["realpath"]).is_file()


def test_lddtree_text_shows_not_found_libraries(tmp_path: Path) -> None:
    lib = tmp_path / "libneeds.so"
    # Link against a stub so the DT_NEEDED exists, then remove the stub.
    stub = tmp_path / "libmissing_dep.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(stub), "-xc", "-"],
        input="int g(void) { return 1; }",
        text=True,
        check=True,
    )
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(lib), "-xc", "-", f"-L{tmp_path}", "-lmissing_dep"],
        input="int g(void); int f(void) { return g(); }",
        text=True,
        check=True,
    )
    stub.unlink()
    proc = _run("lddtree", str(lib), "--ldpaths", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "libmissing_dep.so => not found" in proc.stdout


def test_lddtree_of_a_non_elf_file_is_a_one_line_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.so"
    bogus.write_text("not an ELF file")
    proc = _run("lddtree", str(bogus))
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "bogus.so" in proc.stderr


def test_a_command_runs_with_fewer_collections_and_gives_the_thresholds_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """main() raises the cycle collector's thresholds for the command it runs and restores
    the caller's afterwards, whether the command succeeds or fails."""
    seen: list[tuple[int, int, int]] = []

    def command(args: object) -> int:
        seen.append(gc.get_threshold())
        if len(seen) > 1:
            raise UsageError("refused")
        return 0

    monkeypatch.setattr(cli, "_cmd_lddtree", command)
    before = gc.get_threshold()
    assert cli.main(["lddtree", sys.executable]) == 0
    assert gc.get_threshold() == before
    assert cli.main(["lddtree", sys.executable]) == 2
    assert gc.get_threshold() == before
    assert seen == [cli._GC_THRESHOLDS] * 2 and seen[0][0] > 100 * before[0]


def test_the_command_freezes_what_it_leaves_for_the_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """run(), the console script and ``python -m repairwheel``, returns main()'s exit code with
    the objects left frozen out of the collector (the interpreter's exit does not walk them)."""
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["repairwheel"] == "repairwheel.cli:run"
    monkeypatch.setattr(sys, "argv", ["repairwheel", "lddtree", "--json", sys.executable])
    gc.unfreeze()
    try:
        assert cli.run() == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
