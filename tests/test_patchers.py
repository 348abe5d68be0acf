"""Choosing the patcher, and the built-in one against patchelf on whole repairs: the same
dynamic entries in every ELF file, loadable results, smaller files.

The rest of the repair suite (test_repair.py) runs every test with each patcher too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from elf_oracle import oracle_facts
from pypi_wheels import unavailable
from wheelbuild import (
    BuiltWheel,
    Extension,
    Library,
    Program,
    WheelSpec,
    build_wheel,
    install,
    make_venv,
    repairwheel_cli,
    run_without_originals,
)

from repairwheel.errors import PatchError, UsageError
from repairwheel.patch import get_patcher
from repairwheel.repair import repair_wheel

SPECS = {
    "private": WheelSpec(
        libraries=(Library("foo", 7),),
        extensions=(Extension("demo._ext", ("foo",)),),
    ),
    "transitive": WheelSpec(
        libraries=(Library("bar", 5), Library("foo", 7, needs=("bar",))),
        extensions=(Extension("demo._ext", ("foo",)), Extension("demo.sub._two", ("foo",))),
    ),
    "outside-rpath": WheelSpec(
        libraries=(Library("foo", 7),),
        extensions=(Extension("demo._ext", ("foo",), rpath=("/opt/build/tree/lib",)),),
    ),
    "script": WheelSpec(
        libraries=(Library("foo", 7),),
        programs=(Program("tool", ("foo",)),),
        extra_files=(("demo/__init__.py", b""),),
    ),
}
IMPORT = "import demo._ext as m; print(m.value())"


@pytest.fixture(autouse=True)
def _no_patcher_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REPAIRWHEEL_PATCHER", "AUDITWHEEL_PATCHER", "LD_LIBRARY_PATH"):
        monkeypatch.delenv(name, raising=False)


def _build(spec: WheelSpec, workdir: Path) -> BuiltWheel:
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    return build_wheel(spec, workdir)


def _elf_members(wheel: str | Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {
            info.filename: data
            for info in zf.infolist()
            if (data := zf.read(info))[:4] == b"\x7fELF"
        }


@pytest.mark.parametrize("name", sorted(SPECS))
def test_both_patchers_write_the_same_entries(name: str, tmp_path: Path) -> None:
    built = _build(SPECS[name], tmp_path / "build")
    outputs = {
        patcher: repair_wheel(
            built.path, tmp_path / patcher, ldpaths=str(built.lib_dir), patcher=patcher
        )
        for patcher in ("builtin", "patchelf")
    }
    assert {r.patcher for r in outputs.values()} == {"builtin", "patchelf"}
    builtin, patchelf = (_elf_members(outputs[p].output) for p in ("builtin", "patchelf"))
    assert sorted(builtin) == sorted(patchelf)
    for member in builtin:
        ours, theirs = oracle_facts(builtin[member]), oracle_facts(patchelf[member])
        assert (ours.needed, ours.soname, ours.rpaths, ours.runpaths) == (
            theirs.needed,
            theirs.soname,
            theirs.rpaths,
            theirs.runpaths,
        ), member
        assert ours.version_need_entries == theirs.version_need_entries, member
    assert sum(map(len, builtin.values())) < sum(map(len, patchelf.values()))


@pytest.mark.parametrize("name", ["private", "outside-rpath"])
def test_builtin_repair_imports_without_the_originals(name: str, tmp_path: Path) -> None:
    built = _build(SPECS[name], tmp_path / "build")
    result = repair_wheel(built.path, tmp_path / "out", ldpaths=str(built.lib_dir))
    assert result.patcher == "builtin"
    repaired, control = run_without_originals(Path(result.output), built, IMPORT, tmp_path)
    assert (repaired.returncode, repaired.stdout) == (0, "7\n"), repaired.stderr
    assert control.returncode != 0 and "libfoo.so.1" in control.stderr


def test_builtin_patched_script_runs_after_install(tmp_path: Path) -> None:
    built = _build(SPECS["script"], tmp_path / "build")
    result = repair_wheel(built.path, tmp_path / "out", ldpaths=str(built.lib_dir))
    python = make_venv(tmp_path / "venv")
    install(Path(result.output), python=python)
    shutil.rmtree(built.lib_dir)
    proc = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "tool")], capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout) == (0, "7\n"), proc.stderr


def test_builtin_stripped_repair_imports(tmp_path: Path) -> None:
    built = _build(SPECS["transitive"], tmp_path / "build")
    result = repair_wheel(
        built.path, tmp_path / "out", ldpaths=str(built.lib_dir), strip_symbols=True
    )
    code = "import demo._ext as a, demo.sub._two as b; print(a.value(), b.value())"
    repaired, control = run_without_originals(Path(result.output), built, code, tmp_path)
    assert (repaired.returncode, repaired.stdout) == (0, "12 12\n"), repaired.stderr
    assert control.returncode != 0


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "builtin"),
        ({"AUDITWHEEL_PATCHER": "patchelf"}, "patchelf"),
        ({"REPAIRWHEEL_PATCHER": "patchelf", "AUDITWHEEL_PATCHER": "none"}, "patchelf"),
    ],
)
def test_patcher_comes_from_the_environment(
    variables: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    assert get_patcher().name == expected


def test_patcher_option_wins_over_the_environment(tmp_path: Path) -> None:
    built = _build(SPECS["private"], tmp_path / "build")
    args = ["fix", "--json", "--patcher", "patchelf", "-w", str(tmp_path / "out")]
    args += ["--ldpaths", str(built.lib_dir), str(built.path)]
    proc = repairwheel_cli(*args, env={"REPAIRWHEEL_PATCHER": "none"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["patcher"] == "patchelf"


def test_unknown_patcher_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown patcher 'lief'"):
        get_patcher("lief")


def test_none_patcher_refuses_a_wheel_that_needs_edits(tmp_path: Path) -> None:
    built = _build(SPECS["private"], tmp_path / "build")
    out = tmp_path / "out"
    proc = repairwheel_cli(
        "fix", "--patcher", "none", "-w", str(out), "--ldpaths", str(built.lib_dir), str(built.path)
    )
    assert proc.returncode == PatchError.exit_code, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "needs patching" in line and "'none'" in line and "demo/_ext" in line
    assert not out.exists() or not any(out.iterdir())


def test_none_patcher_repairs_a_wheel_that_needs_no_edits(tmp_path: Path) -> None:
    spec = WheelSpec(extensions=(Extension("demo._ext"),))
    built = _build(spec, tmp_path / "build")
    result = repair_wheel(built.path, tmp_path / "out", patcher="none")
    assert result.patched == ()
    assert Path(result.output).exists()


def test_missing_lief_patchelf_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PatchError, match="^lief-patchelf not found; install it with") as info:
        get_patcher("lief-patchelf")
    assert "\n" not in str(info.value)
