"""Repair controls (issue 14): ``--no-mangle`` grafts a library under its own file name,
``--keep-rpath`` keeps RPATH entries outside the wheel that the user relies on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from pypi_wheels import unavailable
from wheelbuild import (
    EXT_SUFFIX,
    Extension,
    Library,
    WheelSpec,
    build_wheel,
    install,
    make_venv,
    record_hash,
    repairwheel_cli,
    run_python,
    run_without_originals,
)

from repairwheel import read_elf
from repairwheel.errors import PolicyError
from repairwheel.patchelf import find_patchelf
from repairwheel.repair import repair_wheel

TWO_USERS = WheelSpec(
    libraries=(Library("foo", 7), Library("bar", 5)),
    extensions=(Extension("demo._one", ("foo",)), Extension("demo._two", ("foo", "bar"))),
)
KEPT_DIR = "/some/abs/dir"
WITH_RPATH = WheelSpec(
    libraries=(Library("foo", 3),),
    extensions=(Extension("demo._ext", ("foo",), rpath=(KEPT_DIR, "$ORIGIN/sub")),),
)


@pytest.fixture(autouse=True)
def _needs_gcc() -> None:
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")


cli = repairwheel_cli


def replace_member(wheel: Path, name: str, data: bytes) -> None:
    """Rewrite ``wheel`` with member ``name`` replaced by ``data`` and its RECORD row fixed."""
    with zipfile.ZipFile(wheel) as zf:
        files = [(info, data if info.filename == name else zf.read(info)) for info in zf.infolist()]
    rows = []
    for info, content in files:
        if info.filename.endswith(".dist-info/RECORD"):
            rows.append(f"{info.filename},,\n")
        else:
            rows.append(f"{info.filename},{record_hash(content)},{len(content)}\n")
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, content in files:
            record = info.filename.endswith(".dist-info/RECORD")
            zf.writestr(info, "".join(rows).encode() if record else content)


def test_no_mangle_grafts_one_library_under_its_own_name_and_both_import(
    tmp_path: Path,
) -> None:
    built = build_wheel(TWO_USERS, tmp_path / "build")
    result = repair_wheel(
        built.path, tmp_path / "out", ldpaths=str(built.lib_dir), no_mangle=["libfoo.*"]
    )
    members = sorted(g.member for g in result.grafted)
    assert members[1] == "demo.libs/libfoo.so.1"
    assert members[0].startswith("demo.libs/libbar-") and members[0].endswith(".so.1")
    with zipfile.ZipFile(result.output) as zf:
        libs = sorted(n for n in zf.namelist() if n.startswith("demo.libs/"))
        foo = read_elf(zf.read("demo.libs/libfoo.so.1"))
        needed = {m: read_elf(zf.read(f"demo/{m}{EXT_SUFFIX}")).needed for m in ("_one", "_two")}
    assert libs == members
    assert foo.soname == "libfoo.so.1"
    assert needed == {
        "_one": ("libfoo.so.1",),
        "_two": ("libfoo.so.1", os.path.basename(members[0])),
    }
    # With the build folder gone the repaired wheel loads; the unrepaired one (the control) not.
    code = "import demo._one as a, demo._two as b; print(a.value(), b.value())"
    proc, control = run_without_originals(Path(result.output), built, code, tmp_path)
    assert (proc.returncode, proc.stdout.split()) == (0, ["7", "12"]), proc.stderr
    assert control.returncode != 0


def test_no_mangle_refuses_two_different_files_under_one_name(tmp_path: Path) -> None:
    built = build_wheel(TWO_USERS, tmp_path / "build")
    # _two loads a different libfoo.so.1 by absolute path: both would be demo.libs/libfoo.so.1.
    other = tmp_path / "other" / "libfoo.so.1"
    other.parent.mkdir()
    other.write_bytes(built.host_library("foo").read_bytes() + b"\0")  # another sha256
    member = f"demo/_two{EXT_SUFFIX}"
    with zipfile.ZipFile(built.path) as zf:
        (tmp_path / "two.so").write_bytes(zf.read(member))
    patchelf = str(find_patchelf().path)
    edit = ["--replace-needed", "libfoo.so.1", str(other), str(tmp_path / "two.so")]
    subprocess.run([patchelf, *edit], check=True)
    replace_member(built.path, member, (tmp_path / "two.so").read_bytes())
    out = tmp_path / "out"
    args = ["fix", "-w", str(out), "--ldpaths", str(built.lib_dir), str(built.path)]
    proc = cli(*args, "--no-mangle", "libbar*,libfoo*")
    assert proc.returncode == PolicyError.exit_code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--no-mangle" in lines[0] and "demo.libs/libfoo.so.1" in lines[0]
    assert str(other) in lines[0]
    assert not out.exists() or not any(out.iterdir())
    # Without the option each file gets its own hashed name.
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("keep", [True, False])
def test_keep_rpath_keeps_a_matching_entry_outside_the_wheel(tmp_path: Path, keep: bool) -> None:
    built = build_wheel(WITH_RPATH, tmp_path / "build")
    member = f"demo/_ext{EXT_SUFFIX}"
    with zipfile.ZipFile(built.path) as zf:
        assert read_elf(zf.read(member)).rpath == (KEPT_DIR, "$ORIGIN/sub")
    result = repair_wheel(
        built.path,
        tmp_path / "out",
        ldpaths=str(built.lib_dir),
        keep_rpath=["/some/*"] if keep else [],
    )
    with zipfile.ZipFile(result.output) as zf:
        rpath = read_elf(zf.read(member)).rpath
    expected = ("$ORIGIN/sub", "$ORIGIN/../demo.libs")
    assert rpath == ((*expected, KEPT_DIR) if keep else expected)
    shutil.rmtree(built.lib_dir)
    site = tmp_path / "site"
    install(Path(result.output), site)
    proc = run_python(make_venv(tmp_path / "venv"), site, "import demo._ext as e; print(e.value())")
    assert (proc.returncode, proc.stdout.split()) == (0, ["3"]), proc.stderr
