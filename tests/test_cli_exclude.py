"""``--exclude`` takes comma-separated lists, and ``show`` takes it too: it previews the verdict
``fix`` reaches with the same exclusions."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from pypi_wheels import unavailable
from wheelbuild import BuiltWheel, Extension, Library, WheelSpec, build_wheel, repairwheel_cli

TWO_LIBS = WheelSpec(
    libraries=(Library("foo", 7), Library("bar", 5)),
    extensions=(Extension("demo._ext", ("foo", "bar")),),
)


run = repairwheel_cli


@pytest.fixture
def built(tmp_path: Path) -> BuiltWheel:
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    return build_wheel(TWO_LIBS, tmp_path / "build")


def grafted(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return sorted(n.split("/")[1].split("-")[0] for n in zf.namelist() if ".libs/" in n)


@pytest.mark.parametrize(
    ("excludes", "left"),
    [
        ([], ["libbar", "libfoo"]),
        (["libfoo.so.1"], ["libbar"]),
        (["libfoo.so.1,libbar.so.1"], []),
        (["libfoo*, ,"], ["libbar"]),
        (["libfoo*", "libbar*"], []),
    ],
)
def test_exclude_lists_leave_every_named_library_out(
    built: BuiltWheel, tmp_path: Path, excludes: list[str], left: list[str]
) -> None:
    options = [arg for value in excludes for arg in ("--exclude", value)]
    out = tmp_path / "out"
    proc = run("fix", "-w", str(out), "--ldpaths", str(built.lib_dir), *options, str(built.path))
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.iterdir()
    assert grafted(wheel) == left


def test_show_previews_the_exclusions_fix_applies(built: BuiltWheel) -> None:
    base = ["show", "--json", "--ldpaths", str(built.lib_dir), str(built.path)]
    before = json.loads(run(*base).stdout)
    after = json.loads(run(*base, "--exclude", "libfoo.so.1").stdout)
    assert sorted(before["external_libs"]) == ["libbar.so.1", "libfoo.so.1"]
    assert sorted(after["external_libs"]) == ["libbar.so.1"]


NEEDS_GLIBC_2_34 = WheelSpec(
    extensions=(
        Extension("demo._ext", prelude="#include <dlfcn.h>", extra="dlopen(NULL, RTLD_LAZY) == 0"),
    ),
)


def test_show_warns_of_a_tag_no_repair_can_make_true(tmp_path: Path) -> None:
    """A wheel named manylinux2014 that needs GLIBC_2.34 keeps that false claim through any
    repair: show says so (text and JSON); the same wheel named linux_x86_64 gets no warning."""
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    built = build_wheel(NEEDS_GLIBC_2_34, tmp_path / "build")
    claimed = built.path.with_name(built.path.name.replace("linux_x86_64", "manylinux2014_x86_64"))
    if claimed == built.path:
        unavailable("the test wheel is not linux_x86_64 here")
    shutil.copy(built.path, claimed)
    text = run("show", str(claimed))
    assert text.returncode == 0, text.stderr
    warnings = [line for line in text.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "manylinux2014_x86_64" in warnings[0], text.stdout
    assert "manylinux_2_34_x86_64" in warnings[0]
    assert json.loads(run("show", "--json", str(claimed)).stdout)["false_tags"] == [
        "manylinux2014_x86_64"
    ]
    control = run("show", "--json", str(built.path))
    assert json.loads(control.stdout)["false_tags"] == []
