"""``repairwheel check``: every repaired wheel passes, every unrepaired one fails with the
reason, and each kind of false claim (a platform tag, RECORD, the .dist-info, WHEEL, a
dependency) is one line naming it, with its exit code."""

from __future__ import annotations

import json
import platform
import subprocess
import sysconfig
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from wheelbuild import (
    EXT_SUFFIX,
    Build,
    BuiltWheel,
    Extension,
    Library,
    Program,
    WheelSpec,
    build_wheel,
    record_hash,
    repairwheel_cli,
)

from repairwheel.repair import repair_wheel
from repairwheel.wheel import WheelFilename, replace_platform_tags

EXT = f"demo/_ext{EXT_SUFFIX}"

# A representative set of what fix grafts: one library, a chain, one library shared by two
# extensions in subpackages, an executable script, an in-wheel library beside an external one.
REPAIRABLE = {
    "private": WheelSpec(
        libraries=(Library("foo", 7),), extensions=(Extension("demo._ext", ("foo",)),)
    ),
    "transitive": WheelSpec(
        libraries=(Library("outer", 3, needs=("inner",)), Library("inner", 40)),
        extensions=(Extension("demo._ext", ("outer",)),),
    ),
    "shared": WheelSpec(
        libraries=(Library("foo", 7),),
        extensions=(Extension("demo.a._one", ("foo",)), Extension("demo.b.c._two", ("foo",))),
    ),
    "script": WheelSpec(
        libraries=(Library("foo", 7),),
        extensions=(Extension("demo._ext"),),
        programs=(Program("tool", ("foo",)),),
    ),
    "vendored": WheelSpec(
        libraries=(Library("foo", 7), Library("vend", 500, in_wheel="vendored")),
        extensions=(Extension("demo._ext", ("foo", "vend"), rpath=("$ORIGIN/../vendored",)),),
    ),
}
# What each spec's wheel files need from outside the wheel: (needer, soname).
OUTSIDE = {
    "private": [(EXT, "libfoo.so.1")],
    "transitive": [(EXT, "libouter.so.1")],
    "shared": [(f"demo/a/_one{EXT_SUFFIX}", "libfoo.so.1")],
    "script": [("demo-1.0.data/scripts/tool", "libfoo.so.1")],
    "vendored": [(EXT, "libfoo.so.1")],
}
# dlopen moved into libc at glibc 2.34: linked here, it needs GLIBC_2.34.
NEEDS_GLIBC_2_34 = WheelSpec(
    extensions=(
        Extension("demo._ext", prelude="#include <dlfcn.h>", extra="dlopen(NULL, RTLD_LAZY) == 0"),
    ),
)
COMPLIANT = WheelSpec(extensions=(Extension("demo._ext"),))
PURE = WheelSpec(extra_files=(("demo/__init__.py", b"VALUE = 1\n"),))


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LD_LIBRARY_PATH", "REPAIRWHEEL_LD_LIBRARY_PATH", "AUDITWHEEL_LD_LIBRARY_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REPAIRWHEEL_PATCHER", "builtin")


def check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return repairwheel_cli("check", *map(str, args))


def repaired(built: BuiltWheel, out: Path) -> Path:
    return Path(repair_wheel(built.path, out, ldpaths=str(built.lib_dir)).output)


def rewritten(
    wheel: Path,
    out: Path,
    *,
    platforms: tuple[str, ...] = (),
    name: str | None = None,
    members: Mapping[str, bytes] = {},
    record: bool = True,
) -> Path:
    """A copy of ``wheel`` in ``out``: re-tagged (file name and WHEEL), renamed, with members
    replaced or added, and RECORD rewritten to match unless ``record`` is false."""
    with zipfile.ZipFile(wheel) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    dist_info = next(n.split("/")[0] for n in files if n.split("/")[0].endswith(".dist-info"))
    filename = wheel.name
    if platforms:
        retagged, text = replace_platform_tags(
            WheelFilename.parse(filename), files[f"{dist_info}/WHEEL"], platforms
        )
        files[f"{dist_info}/WHEEL"], filename = text, str(retagged)
    files.update(members)
    if record:
        rows = [f"{n},{record_hash(d)},{len(d)}\n" for n, d in files.items() if "RECORD" not in n]
        files[f"{dist_info}/RECORD"] = "".join([*rows, f"{dist_info}/RECORD,,\n"]).encode()
    out.mkdir(parents=True, exist_ok=True)
    target = out / (name or filename)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return target


@pytest.mark.parametrize("case", sorted(REPAIRABLE))
def test_repaired_wheel_passes(case: str, build: Build, tmp_path: Path) -> None:
    wheel = repaired(build(REPAIRABLE[case]), tmp_path / "out")
    proc = check(wheel)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout
    tags = ", ".join(WheelFilename.parse(wheel.name).platform_tags)
    assert tags.startswith("manylinux")
    assert proc.stdout == f"{wheel.name}: OK ({tags}; RECORD, metadata and dependencies)\n"


@pytest.mark.parametrize("case", sorted(REPAIRABLE))
def test_unrepaired_wheel_fails_naming_each_file_and_library_outside(
    case: str, build: Build
) -> None:
    built = build(REPAIRABLE[case])
    proc = check("--ldpaths", built.lib_dir, built.path)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(OUTSIDE[case])
    for line, (needer, soname) in zip(lines, OUTSIDE[case]):
        assert line.startswith(f"{built.path.name}: {needer}"), line
        assert f"needs {soname}, which is neither in the wheel nor a system library any " in line
        assert line.endswith(f"found outside the wheel at {built.lib_dir / soname}"), line


def test_unrepaired_wheel_names_a_library_found_nowhere(build: Build) -> None:
    built = build(REPAIRABLE["private"])
    proc = check(built.path)
    assert proc.returncode == 4
    assert proc.stdout.rstrip().endswith(
        "needs libfoo.so.1, which is neither in the wheel nor a "
        "system library any manylinux tag allows: not found on "
        "this machine either"
    )


def test_library_found_through_a_build_time_rpath_names_the_entry(build: Build) -> None:
    # The external library is found only through the absolute RPATH of the build folder.
    spec = REPAIRABLE["vendored"]
    first = build(spec)
    lib_dir = str(first.lib_dir)
    ext = Extension("demo._ext", ("foo", "vend"), rpath=("$ORIGIN/../vendored", lib_dir))
    built = build_wheel(
        WheelSpec(libraries=spec.libraries, extensions=(ext,)), first.lib_dir.parent / "again"
    )
    proc = check(built.path)
    assert proc.returncode == 4
    assert f"through the build-time RPATH entry {lib_dir}" in proc.stdout
    # once repaired, the wheel has its own copy and the RPATH no longer leaves the wheel
    assert check(repaired(built, first.lib_dir.parent / "out")).returncode == 0


@pytest.mark.parametrize(
    "options",
    [
        {"strip_symbols": True},
        {"no_mangle": ["libouter*"]},
        {"lib_sdir": ".vendor"},
        {"patcher": "patchelf"},
    ],
    ids=["strip", "no-mangle", "lib-sdir", "patchelf"],
)
def test_wheel_repaired_with_options_passes(
    options: dict[str, object], build: Build, tmp_path: Path
) -> None:
    built = build(REPAIRABLE["transitive"])
    result = repair_wheel(built.path, tmp_path / "out", ldpaths=str(built.lib_dir), **options)
    proc = check(result.output)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout


def test_library_excluded_from_the_repair_passes_only_when_check_excludes_it(
    build: Build, tmp_path: Path
) -> None:
    built = build(REPAIRABLE["transitive"])
    wheel = repair_wheel(
        built.path, tmp_path / "out", ldpaths=str(built.lib_dir), exclude=["libouter.so.1"]
    ).output
    proc = check(wheel)
    assert proc.returncode == 4
    assert f"{EXT} needs libouter.so.1, which is neither in the wheel" in proc.stdout
    assert check("--exclude", "libouter.so.*", wheel).returncode == 0


def test_isa_level_above_the_baseline_fails(build: Build, tmp_path: Path) -> None:
    if platform.machine() != "x86_64":
        pytest.skip("x86-64 ISA levels")
    built = build(COMPLIANT)
    wheel = repaired(built, tmp_path / "out")
    # the same extension, linked to require x86-64-v3
    relinked = tmp_path / "relinked.so"
    source = built.lib_dir.parent / "obj" / "demo._ext.c"
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", f"-I{include}", "-Wl,-z,x86-64-v3"]
        + ["-o", str(relinked), str(source)],
        check=True,
        capture_output=True,
    )
    v3 = rewritten(wheel, tmp_path / "v3", members={EXT: relinked.read_bytes()})
    proc = check(v3)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    tags = ", ".join(WheelFilename.parse(wheel.name).platform_tags)
    assert proc.stdout.splitlines() == [
        f"{v3.name}: claims {tags}, but {EXT} requires the x86-64-v3 instruction set"
    ]


def test_repaired_wheel_with_a_false_tag_names_the_symbol(build: Build, tmp_path: Path) -> None:
    wheel = repaired(build(NEEDS_GLIBC_2_34), tmp_path / "out")
    assert check(wheel).returncode == 0
    false = rewritten(wheel, tmp_path / "false", platforms=("manylinux2014_x86_64",))
    proc = check(false)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"{false.name}: claims manylinux2014_x86_64, but {EXT} needs GLIBC_2.34 from libc.so.6 "
        "(dlopen)"
    ]


def test_plat_is_checked_too(build: Build, tmp_path: Path) -> None:
    wheel = repaired(build(NEEDS_GLIBC_2_34), tmp_path / "out")
    assert check("--plat", "manylinux_2_34_x86_64", wheel).returncode == 0
    for plat in ("manylinux_2_17_x86_64", "manylinux2014"):
        proc = check("--plat", plat, wheel)
        assert proc.returncode == 3
        assert proc.stdout.splitlines() == [
            f"{wheel.name}: claims {plat}, but {EXT} needs GLIBC_2.34 from libc.so.6 (dlopen)"
        ]


def test_unknown_plat_is_a_one_line_usage_error(build: Build) -> None:
    proc = check("--plat", "manylinux_9_99_x86_64", build(COMPLIANT).path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    assert "manylinux_9_99_x86_64" in proc.stderr


def test_member_that_differs_from_record_fails(build: Build, tmp_path: Path) -> None:
    wheel = repaired(build(COMPLIANT), tmp_path / "out")
    with zipfile.ZipFile(wheel) as zf:
        data = bytearray(zf.read("demo/__init__.py")) + b"# changed\n"
    tampered = rewritten(
        wheel, tmp_path / "t", members={"demo/__init__.py": bytes(data)}, record=False
    )
    proc = check(tampered)
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [
        f"{tampered.name}: demo/__init__.py: size differs from RECORD (recorded 0 bytes, "
        f"actual {len(data)})"
    ]


def test_member_missing_from_record_fails(build: Build, tmp_path: Path) -> None:
    wheel = repaired(build(COMPLIANT), tmp_path / "out")
    extra = rewritten(wheel, tmp_path / "x", members={"demo/extra.txt": b"x"}, record=False)
    proc = check(extra)
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [f"{extra.name}: demo/extra.txt: not listed in RECORD"]


def test_dist_info_of_another_distribution_fails(build: Build, tmp_path: Path) -> None:
    wheel = repaired(build(COMPLIANT), tmp_path / "out")
    other = rewritten(wheel, tmp_path / "o", name=wheel.name.replace("demo-1.0", "other-1.0"))
    proc = check(other)
    assert proc.returncode == 2
    assert "demo-1.0.dist-info/ does not match the file name" in proc.stdout
    assert len(proc.stdout.splitlines()) == 1


def test_metadata_without_a_version_fails(build: Build, tmp_path: Path) -> None:
    wheel = repaired(build(COMPLIANT), tmp_path / "out")
    metadata = {"demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\n"}
    broken = rewritten(wheel, tmp_path / "m", members=metadata)
    proc = check(broken)
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [
        f"{broken.name}: demo-1.0.dist-info/METADATA has no Version"
    ]


def test_wheel_tag_lines_that_disagree_with_the_file_name_fail(
    build: Build, tmp_path: Path
) -> None:
    wheel = repaired(build(COMPLIANT), tmp_path / "out")
    renamed = rewritten(
        wheel, tmp_path / "r", name=wheel.name.split("manylinux")[0] + "linux_x86_64.whl"
    )
    proc = check(renamed)
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert any("demo-1.0.dist-info/WHEEL has tags the file name lacks: " in line for line in lines)
    assert any("the file name has tags demo-1.0.dist-info/WHEEL lacks: " in line for line in lines)


def test_platform_any_with_elf_files_fails(build: Build, tmp_path: Path) -> None:
    built = build(COMPLIANT)
    wheel_text = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    pure = rewritten(
        built.path,
        tmp_path / "p",
        name="demo-1.0-py3-none-any.whl",
        members={"demo-1.0.dist-info/WHEEL": wheel_text},
    )
    proc = check(pure)
    assert proc.returncode == 3
    assert proc.stdout.splitlines() == [
        f"{pure.name}: claims platform any, but {EXT} is an ELF file"
    ]


@pytest.mark.parametrize(
    ("tag", "why"),
    [
        (
            "manylinux_2_17_aarch64",
            "no manylinux or musllinux policy applies to its ELF files "
            f"({EXT}: built for x86_64, the wheel is aarch64)",
        ),
        (
            "musllinux_1_2_x86_64",
            "claims musllinux_1_2_x86_64, but its ELF files are built for glibc, not musl",
        ),
        (
            "macosx_11_0_x86_64",
            "claims macosx_11_0_x86_64, but no Linux policy knows that tag "
            "(its ELF files are glibc x86_64)",
        ),
    ],
)
def test_tag_of_another_platform_fails(tag: str, why: str, build: Build, tmp_path: Path) -> None:
    wheel = repaired(build(COMPLIANT), tmp_path / "out")
    other = rewritten(wheel, tmp_path / "o", platforms=(tag,))
    proc = check(other)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"{other.name}: {why}"]


def test_pure_wheel_passes(build: Build) -> None:
    assert check(build(PURE).path).returncode == 0


def test_exit_code_is_the_highest_over_all_wheels_and_json_lists_each(
    build: Build, tmp_path: Path
) -> None:
    good = repaired(build(COMPLIANT), tmp_path / "out")
    unrepaired = build(REPAIRABLE["private"])
    proc = check("--json", "--ldpaths", unrepaired.lib_dir, good, unrepaired.path)
    assert proc.returncode == 4
    results = json.loads(proc.stdout)
    assert [(r["wheel"], r["ok"], r["exit_code"]) for r in results] == [
        (good.name, True, 0),
        (unrepaired.path.name, False, 4),
    ]
    (problem,) = results[1]["problems"]
    assert (problem["kind"], problem["file"]) == ("dependency", EXT)
    assert results[1]["platform_tags"] == ["linux_x86_64"]


def test_missing_input_is_a_one_line_usage_error(tmp_path: Path) -> None:
    proc = check(tmp_path / "nothing-1.0-py3-none-any.whl")
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
