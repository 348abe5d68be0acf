"""``fix`` end to end on wheels built with gcc: what is grafted where, how every ELF file is
patched, that the result installs and imports with the original libraries gone, what the
output zip holds byte for byte, the CLI's contract, and agreement with auditwheel.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elf_oracle import oracle_facts
from elftools.elf.elffile import ELFFile
from packaging.utils import parse_wheel_filename
from pypi_wheels import unavailable
from wheelbuild import (
    EXT_SUFFIX,
    Build,
    BuiltWheel,
    Extension,
    Library,
    Program,
    WheelSpec,
    build_wheel,
    install,
    make_venv,
    record_hash,
    run_python,
)

from repairwheel import repair
from repairwheel.elf import read_elf
from repairwheel.errors import PatchError, WheelError
from repairwheel.patch import PatchOps
from repairwheel.repair import RepairResult, repair_wheel

MANYLINUX1 = {"manylinux1_x86_64", "manylinux_2_5_x86_64"}
_HASHED_NAME = re.compile(r"^(?P<base>[^.]+)-[0-9a-f]{8}(?P<rest>\..*)$")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_ENV_VARS = (
    "LD_LIBRARY_PATH",
    "REPAIRWHEEL_LD_LIBRARY_PATH",
    "AUDITWHEEL_LD_LIBRARY_PATH",
    "REPAIRWHEEL_PLAT",
    "AUDITWHEEL_PLAT",
    "REPAIRWHEEL_ZIP_COMPRESSION_LEVEL",
    "AUDITWHEEL_ZIP_COMPRESSION_LEVEL",
    "SOURCE_DATE_EPOCH",
)


def private_lib(module: str = "demo._ext") -> WheelSpec:
    """One extension linking one private library."""
    return WheelSpec(libraries=(Library("foo", 7),), extensions=(Extension(module, ("foo",)),))


SHARED = WheelSpec(
    libraries=(Library("foo", 7),),
    extensions=(Extension("demo.a._one", ("foo",)), Extension("demo.b.c._two", ("foo",))),
)
TRANSITIVE = WheelSpec(
    libraries=(Library("outer", 3, needs=("inner",)), Library("inner", 40)),
    extensions=(Extension("demo._ext", ("outer",)),),
)
TWO_TOP_LEVEL = WheelSpec(
    dist="twotops",
    libraries=(Library("foo", 7),),
    extensions=(Extension("alpha._ext", ("foo",)), Extension("beta._ext", ("foo",))),
)
# dlopen moved into libc at glibc 2.34: linked here, it needs GLIBC_2.34.
NEEDS_GLIBC_2_34 = WheelSpec(
    extensions=(
        Extension("demo._ext", prelude="#include <dlfcn.h>", extra="dlopen(NULL, RTLD_LAZY) == 0"),
    ),
)
COMPLIANT = WheelSpec(extensions=(Extension("demo._ext"),))
PURE = WheelSpec(extra_files=(("demo/__init__.py", b"VALUE = 1\n"),))


def vendored(lib_dir: Path | None = None) -> WheelSpec:
    """An extension with an in-wheel library found through ``$ORIGIN/../vendored`` and an
    external one found through an absolute RPATH entry (``lib_dir``, where it is built)."""
    rpath = ("$ORIGIN/../vendored", str(lib_dir)) if lib_dir else ("$ORIGIN/../vendored",)
    return WheelSpec(
        libraries=(Library("foo", 7), Library("vend", 500, in_wheel="vendored")),
        extensions=(Extension("demo._ext", ("foo", "vend"), rpath=rpath),),
    )


@pytest.fixture(autouse=True, params=["builtin", "patchelf"])
def _clean_environment(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """The caller's search paths, target tags and zip settings must not leak into a repair;
    every test runs with each patcher (chosen through REPAIRWHEEL_PATCHER, which ``fix`` and
    ``cli`` both see)."""
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AUDITWHEEL_PATCHER", raising=False)
    monkeypatch.setenv("REPAIRWHEEL_PATCHER", request.param)


@pytest.fixture(scope="session")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("venv") / "venv")


def fix(built: BuiltWheel, out: Path, **options: Any) -> RepairResult:
    """Repair with the built libraries' folder as the only search path."""
    return repair_wheel(built.path, out, ldpaths=str(built.lib_dir), **options)


def members(wheel: str | Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}


def libs_members(wheel: str | Path) -> list[str]:
    return sorted(name for name in members(wheel) if name.startswith("demo.libs/"))


def platform_tags(wheel: str | Path) -> set[str]:
    return {tag.platform for tag in parse_wheel_filename(Path(wheel).name)[3]}


def imported_value(python: Path, site: Path, module: str) -> int:
    proc = run_python(python, site, f"import {module} as m; print(m.value())")
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def install_and_import(
    venv_python: Path, result: RepairResult, built: BuiltWheel, tmp_path: Path
) -> dict[str, int]:
    """Delete the libraries' build folder, install the repaired wheel, import every module."""
    shutil.rmtree(built.lib_dir)
    site = tmp_path / "site"
    install(Path(result.output), site)
    return {e.module: imported_value(venv_python, site, e.module) for e in built.spec.extensions}


def expected_values(built: BuiltWheel) -> dict[str, int]:
    return {e.module: built.expected_value(e.module) for e in built.spec.extensions}


def has_symtab(data: bytes) -> bool:
    return ELFFile(io.BytesIO(data)).get_section_by_name(".symtab") is not None


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m repairwheel ARGS`` with none of the caller's repair variables, plus ``env``."""
    full_env = {k: v for k, v in os.environ.items() if k not in _ENV_VARS}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "repairwheel", *args],
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("repairwheel: error: "), proc.stderr
    return lines[0]


def raw_streams(wheel: str | Path) -> dict[str, bytes]:
    """Each member's compressed bytes, located through its local header."""
    found = {}
    with zipfile.ZipFile(wheel) as zf, open(wheel, "rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset)
            header = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
            assert header[0] == b"PK\x03\x04"
            name_length, extra_length = header[-2:]
            fh.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
            found[info.filename] = fh.read(info.compress_size)
    return found


def record_problems(wheel: str | Path) -> Iterator[str]:
    """Every way RECORD disagrees with the members (hash, size, listing, its own row)."""
    files = members(wheel)
    record_path = next(n for n in files if n.endswith(".dist-info/RECORD"))
    rows = list(csv.reader(io.StringIO(files[record_path].decode("utf-8"))))
    listed = [row[0] for row in rows]
    if len(listed) != len(set(listed)):
        yield "a path is listed twice"
    if set(listed) != set(files):
        yield f"RECORD lists {sorted(set(listed) ^ set(files))} wrongly"
    for row in rows:
        path, digest, size = row
        if path == record_path:
            if (digest, size) != ("", ""):
                yield f"RECORD's own row is {row}"
        elif path in files and (digest, size) != (record_hash(files[path]), str(len(files[path]))):
            yield f"{path}: RECORD says {digest},{size}"


# 1. One private library.

LAYOUT_RPATH = {
    "_ext": "$ORIGIN/demo.libs",
    "demo._ext": "$ORIGIN/../demo.libs",
    "demo.sub._ext": "$ORIGIN/../../demo.libs",
}


@pytest.mark.parametrize("module", sorted(LAYOUT_RPATH))
def test_repaired_wheel_imports_after_the_library_is_deleted(
    build: Build, venv_python: Path, tmp_path: Path, module: str
) -> None:
    built = build(private_lib(module))
    result = fix(built, tmp_path / "out")
    assert install_and_import(venv_python, result, built, tmp_path) == expected_values(built)


@pytest.mark.parametrize("module", sorted(LAYOUT_RPATH))
def test_extension_rpath_is_relative_to_its_folder(
    build: Build, tmp_path: Path, module: str
) -> None:
    built = build(private_lib(module))
    result = fix(built, tmp_path / "out")
    ext = members(result.output)[module.replace(".", "/") + EXT_SUFFIX]
    assert oracle_facts(ext, symbols=False).rpath == (LAYOUT_RPATH[module],)


def test_private_library_repair_is_tagged_manylinux_2_5_and_its_alias(
    build: Build, tmp_path: Path
) -> None:
    result = fix(build(private_lib()), tmp_path / "out")
    assert platform_tags(result.output) == MANYLINUX1


def test_wheel_tag_lines_match_the_file_name(build: Build, tmp_path: Path) -> None:
    result = fix(build(private_lib()), tmp_path / "out")
    wheel_text = members(result.output)["demo-1.0.dist-info/WHEEL"].decode()
    tag_lines = {
        line[len("Tag: ") :] for line in wheel_text.splitlines() if line.startswith("Tag:")
    }
    assert tag_lines == {str(tag) for tag in parse_wheel_filename(Path(result.output).name)[3]}


def test_grafted_library_is_named_by_the_hash_of_its_source(build: Build, tmp_path: Path) -> None:
    built = build(private_lib())
    digest = hashlib.sha256(built.host_library("foo").read_bytes()).hexdigest()
    result = fix(built, tmp_path / "out")
    assert libs_members(result.output) == [f"demo.libs/libfoo-{digest[:8]}.so.1"]


def test_grafted_library_soname_is_its_file_name(build: Build, tmp_path: Path) -> None:
    result = fix(build(private_lib()), tmp_path / "out")
    (member,) = libs_members(result.output)
    facts = oracle_facts(members(result.output)[member], symbols=False)
    assert facts.soname == member.rsplit("/", 1)[1]


def test_extension_needs_the_grafted_name(build: Build, tmp_path: Path) -> None:
    result = fix(build(private_lib()), tmp_path / "out")
    (member,) = libs_members(result.output)
    ext = oracle_facts(members(result.output)["demo/_ext" + EXT_SUFFIX], symbols=False)
    assert [n for n in ext.needed if "foo" in n] == [member.rsplit("/", 1)[1]]


# 2. Two extensions in different subpackages sharing one library.


def test_shared_library_is_grafted_once(build: Build, tmp_path: Path) -> None:
    result = fix(build(SHARED), tmp_path / "out")
    assert len(libs_members(result.output)) == 1


def test_extensions_in_subpackages_point_rpath_at_the_one_copy(
    build: Build, tmp_path: Path
) -> None:
    result = fix(build(SHARED), tmp_path / "out")
    files = members(result.output)
    rpaths = {
        name: oracle_facts(files[name + EXT_SUFFIX], symbols=False).rpath
        for name in ("demo/a/_one", "demo/b/c/_two")
    }
    assert rpaths == {
        "demo/a/_one": ("$ORIGIN/../../demo.libs",),
        "demo/b/c/_two": ("$ORIGIN/../../../demo.libs",),
    }


def test_extensions_sharing_a_library_both_import(
    build: Build, venv_python: Path, tmp_path: Path
) -> None:
    built = build(SHARED)
    result = fix(built, tmp_path / "out")
    assert install_and_import(venv_python, result, built, tmp_path) == expected_values(built)


# 3. A library that needs another external library.


def test_transitive_dependency_is_grafted_too(build: Build, tmp_path: Path) -> None:
    result = fix(build(TRANSITIVE), tmp_path / "out")
    originals = {_original_name(m) for m in libs_members(result.output)}
    assert originals == {"libouter.so.1", "libinner.so.1"}


def test_grafted_library_needs_its_grafted_dependency_through_origin(
    build: Build, tmp_path: Path
) -> None:
    result = fix(build(TRANSITIVE), tmp_path / "out")
    files = members(result.output)
    by_original = {_original_name(m): m for m in libs_members(result.output)}
    outer = oracle_facts(files[by_original["libouter.so.1"]], symbols=False)
    new_inner = by_original["libinner.so.1"].rsplit("/", 1)[1]
    assert (outer.needed, outer.rpath) == ((new_inner,), ("$ORIGIN",))


def test_transitive_dependencies_import(build: Build, venv_python: Path, tmp_path: Path) -> None:
    built = build(TRANSITIVE)
    result = fix(built, tmp_path / "out")
    assert install_and_import(venv_python, result, built, tmp_path) == expected_values(built)


# 4. RPATH entries already there.


def test_in_wheel_rpath_entry_is_kept_before_the_libs_dir(build: Build, tmp_path: Path) -> None:
    built = build(vendored())
    result = fix(built, tmp_path / "out")
    ext = oracle_facts(members(result.output)["demo/_ext" + EXT_SUFFIX], symbols=False)
    assert ext.rpath == ("$ORIGIN/../vendored", "$ORIGIN/../demo.libs")


def test_outside_absolute_rpath_entry_is_dropped(build: Build, tmp_path: Path) -> None:
    workdir = tmp_path / "build"
    built = build_wheel(vendored(workdir / "lib"), workdir)
    assert built.lib_dir == workdir / "lib"
    result = repair_wheel(built.path, tmp_path / "out")  # found through that RPATH entry
    ext = oracle_facts(members(result.output)["demo/_ext" + EXT_SUFFIX], symbols=False)
    assert ext.rpath == ("$ORIGIN/../vendored", "$ORIGIN/../demo.libs")


def test_vendored_library_still_loads_through_the_kept_entry(
    build: Build, venv_python: Path, tmp_path: Path
) -> None:
    built = build(vendored())
    result = fix(built, tmp_path / "out")
    assert install_and_import(venv_python, result, built, tmp_path) == expected_values(built)


def test_version_needs_name_the_grafted_libraries(build: Build, tmp_path: Path) -> None:
    result = fix(build(TRANSITIVE), tmp_path / "out")
    files = members(result.output)
    grafted = {_original_name(m): m for m in libs_members(result.output)}
    needs = {
        version: library
        for member in ("demo/_ext" + EXT_SUFFIX, grafted["libouter.so.1"])
        for library, version, _ in oracle_facts(files[member], symbols=False).version_need_entries
    }
    assert (needs["OUTER_1.0"], needs["INNER_1.0"]) == (
        grafted["libouter.so.1"].rsplit("/", 1)[1],
        grafted["libinner.so.1"].rsplit("/", 1)[1],
    )


# 5. --exclude.


@pytest.mark.parametrize("pattern", ["libfoo.so.1", "libfoo.so.*"])
def test_excluded_library_is_not_grafted(build: Build, tmp_path: Path, pattern: str) -> None:
    result = fix(build(private_lib()), tmp_path / "out", exclude=[pattern])
    assert (result.grafted, libs_members(result.output)) == ((), [])


def test_excluded_library_keeps_its_needed_entry(build: Build, tmp_path: Path) -> None:
    result = fix(build(private_lib()), tmp_path / "out", exclude=["libfoo.so.*"])
    ext = oracle_facts(members(result.output)["demo/_ext" + EXT_SUFFIX], symbols=False)
    assert ext.needed == ("libfoo.so.1",)


# 6. --strip.

STRIP_SPEC = WheelSpec(
    libraries=(Library("foo", 7), Library("inside", 60, in_wheel="demo")),
    extensions=(Extension("demo._ext", ("foo",)),),
)


def test_strip_removes_the_symbol_table_of_every_elf_file(build: Build, tmp_path: Path) -> None:
    built = build(STRIP_SPEC)
    inputs = members(built.path)
    before = [inputs["demo/_ext" + EXT_SUFFIX], inputs["demo/libinside.so.1"]]
    assert all(map(has_symtab, [*before, built.host_library("foo").read_bytes()]))
    result = fix(built, tmp_path / "out", strip_symbols=True)
    files = members(result.output)
    elf_files = ["demo/_ext" + EXT_SUFFIX, "demo/libinside.so.1", *libs_members(result.output)]
    assert {name: has_symtab(files[name]) for name in elf_files} == dict.fromkeys(elf_files, False)


def test_stripped_wheel_imports(build: Build, venv_python: Path, tmp_path: Path) -> None:
    built = build(private_lib())
    result = fix(built, tmp_path / "out", strip_symbols=True)
    assert install_and_import(venv_python, result, built, tmp_path) == expected_values(built)


# 7. A target below what the wheel's own symbol versions allow.


def _needs_glibc_2_34(build: Build) -> BuiltWheel:
    built = build(NEEDS_GLIBC_2_34)
    ext = read_elf(members(built.path)["demo/_ext" + EXT_SUFFIX])
    if "GLIBC_2.34" not in ext.version_needs.get("libc.so.6", ()):
        pytest.skip("dlopen does not need GLIBC_2.34 with this glibc (older than 2.34)")
    return built


def test_plat_below_the_glibc_need_names_file_library_version_and_symbol(
    build: Build, tmp_path: Path
) -> None:
    built = _needs_glibc_2_34(build)
    out = tmp_path / "out"
    proc = cli("fix", "--plat", "manylinux2014_x86_64", "-w", str(out), str(built.path))
    assert proc.returncode == 3
    line = assert_one_line_error(proc)
    for part in ("demo/_ext" + EXT_SUFFIX, "libc.so.6", "GLIBC_2.34", "dlopen"):
        assert part in line


def test_plat_below_the_glibc_need_writes_nothing(build: Build, tmp_path: Path) -> None:
    built = _needs_glibc_2_34(build)
    out = tmp_path / "out"
    proc = cli("fix", "--plat", "manylinux2014_x86_64", "-w", str(out), str(built.path))
    assert proc.returncode != 0
    assert not out.exists() or list(out.iterdir()) == []


# 8. --lib-sdir.


def test_lib_sdir_names_the_libs_folder(build: Build, tmp_path: Path) -> None:
    built = build(private_lib())
    out = tmp_path / "out"
    proc = cli(
        "fix", "-L", ".mylibs", "--ldpaths", str(built.lib_dir), "-w", str(out), str(built.path)
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.iterdir()
    grafted = {name.split("/", 1)[0] for name in members(wheel) if "libfoo-" in name}
    assert grafted == {"demo.mylibs"}


def test_lib_sdir_is_where_rpath_points(build: Build, tmp_path: Path) -> None:
    result = fix(build(private_lib()), tmp_path / "out", lib_sdir=".mylibs")
    ext = oracle_facts(members(result.output)["demo/_ext" + EXT_SUFFIX], symbols=False)
    assert ext.rpath == ("$ORIGIN/../demo.mylibs",)


# 9. Several top-level packages.


def test_two_top_level_packages_get_one_libs_dir_named_after_the_distribution(
    build: Build, tmp_path: Path
) -> None:
    result = fix(build(TWO_TOP_LEVEL), tmp_path / "out")
    grafted = [name for name in members(result.output) if "libfoo-" in name]
    assert [name.split("/", 1)[0] for name in grafted] == ["twotops.libs"]


def test_two_top_level_packages_both_import(
    build: Build, venv_python: Path, tmp_path: Path
) -> None:
    built = build(TWO_TOP_LEVEL)
    result = fix(built, tmp_path / "out")
    assert install_and_import(venv_python, result, built, tmp_path) == expected_values(built)


# ELF executables in .data/scripts: moved beside the packages, a shim left in their place.

SCRIPT = WheelSpec(
    libraries=(Library("foo", 7),),
    programs=(Program("tool", ("foo",)),),
    extra_files=(("demo/__init__.py", b""),),
)


def test_script_executable_is_moved_and_replaced_by_a_shim(build: Build, tmp_path: Path) -> None:
    built = build(SCRIPT)
    result = fix(built, tmp_path / "out")
    files = members(result.output)
    moved, shim = files["demo.scripts/tool"], files["demo-1.0.data/scripts/tool"]
    assert (moved[:4], shim.startswith(b"#!python\n")) == (b"\x7fELF", True)


def test_moved_script_rpath_points_to_the_libs_dir(build: Build, tmp_path: Path) -> None:
    result = fix(build(SCRIPT), tmp_path / "out")
    moved = oracle_facts(members(result.output)["demo.scripts/tool"], symbols=False)
    assert moved.rpath == ("$ORIGIN/../demo.libs",)


def test_installed_script_runs_without_the_original_library(build: Build, tmp_path: Path) -> None:
    built = build(SCRIPT)
    result = fix(built, tmp_path / "out")
    python = make_venv(tmp_path / "venv")
    install(Path(result.output), python=python)
    shutil.rmtree(built.lib_dir)
    proc = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "tool")], capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout) == (0, f"{built.expected_value('tool')}\n"), proc.stderr


# 10. The output zip: RECORD, untouched members, reproducibility.

SCENARIOS: dict[str, tuple[WheelSpec, dict[str, Any]]] = {
    "private": (private_lib(), {}),
    "shared": (SHARED, {}),
    "transitive": (TRANSITIVE, {}),
    "vendored": (vendored(), {}),
    "strip": (STRIP_SPEC, {"strip_symbols": True}),
    "lib-sdir": (private_lib(), {"lib_sdir": ".mylibs"}),
    "exclude": (private_lib(), {"exclude": ["libfoo.so.1"]}),
    "compliant": (COMPLIANT, {}),
    "two-top-level": (TWO_TOP_LEVEL, {}),
    "script": (SCRIPT, {}),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_record_matches_every_member(build: Build, tmp_path: Path, scenario: str) -> None:
    spec, options = SCENARIOS[scenario]
    result = fix(build(spec), tmp_path / "out", **options)
    assert list(record_problems(result.output)) == []


def _with_record_hash(wheel: Path, member: str, digest: str) -> None:
    """Rewrite ``wheel`` with ``digest`` as ``member``'s RECORD hash (the size stays right)."""
    files = members(wheel)
    record_path = next(n for n in files if n.endswith(".dist-info/RECORD"))
    rows = list(csv.reader(io.StringIO(files[record_path].decode())))
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(
        [row[0], digest, row[2]] if row[0] == member else row for row in rows
    )
    files[record_path] = text.getvalue().encode()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def test_wrong_record_hash_in_the_input_is_refused(build: Build, tmp_path: Path) -> None:
    """A RECORD that does not vouch for a member is not laundered into one that does."""
    built = build(RAW_COPY_SPEC)
    _with_record_hash(built.path, "demo/words.py", record_hash(WORDS.upper()))
    pattern = rf"demo/words.py: hash differs from RECORD \(recorded {record_hash(WORDS.upper())}"
    with pytest.raises(WheelError, match=pattern):
        fix(built, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# Large enough that deflate levels 1 and 6 compress it differently.
WORDS = "".join(
    f"word_{(i * 7919) % 1000:03d} = {(i * 104729) % 9973}\n" for i in range(3000)
).encode()
RAW_COPY_SPEC = WheelSpec(
    libraries=(Library("foo", 7),),
    extensions=(Extension("demo._ext", ("foo",)),),
    extra_files=(("demo/words.py", WORDS),),
    compresslevel=1,
)


def test_unchanged_members_keep_their_compressed_bytes(build: Build, tmp_path: Path) -> None:
    built = build(RAW_COPY_SPEC)
    output = fix(built, tmp_path / "out").output
    before, after = raw_streams(built.path), raw_streams(output)
    level6 = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert level6.compress(WORDS) + level6.flush() != before["demo/words.py"]
    old, new = members(built.path), members(output)
    unchanged = sorted(name for name in old if name in new and old[name] == new[name])
    assert {"demo/words.py", "demo/__init__.py", "demo-1.0.dist-info/METADATA"} <= set(unchanged)
    assert {name: after[name] for name in unchanged} == {name: before[name] for name in unchanged}


def test_repair_is_reproducible_with_source_date_epoch(
    build: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = build(TRANSITIVE)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = Path(fix(built, tmp_path / "out1").output).read_bytes()
    for name in ("outer", "inner"):
        os.utime(built.host_library(name), (1_000_000_000, 1_000_000_000))
    second = Path(fix(built, tmp_path / "out2").output).read_bytes()
    assert first == second


@pytest.mark.parametrize("spec", [SHARED, SCRIPT, TRANSITIVE], ids=["shared", "script", "deep"])
def test_members_patched_in_memory_are_the_bytes_staged_files_give(
    build: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: WheelSpec
) -> None:
    """The built-in patcher patches small members in memory as they are written; staged in
    files instead (as for patchelf or strip), they give the same wheel, byte for byte."""
    if os.environ["REPAIRWHEEL_PATCHER"] != "builtin":
        pytest.skip("only the built-in patcher patches members in memory")
    built = build(spec)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    in_memory = fix(built, tmp_path / "memory")
    real_stage, staged_files = repair.stage, []

    def on_files(*args: Any, **kwargs: Any) -> Any:
        staged = real_stage(*args, **{**kwargs, "in_memory": False})
        staged_files.extend(staged.files)
        return staged

    monkeypatch.setattr(repair, "stage", on_files)
    files = fix(built, tmp_path / "files")
    patched = {p.display_name for p in in_memory.patched if p.path is None}
    assert patched and patched <= set(staged_files)  # patched in memory, then in files
    assert all(p.path is not None for p in files.patched)
    assert Path(in_memory.output).read_bytes() == Path(files.output).read_bytes()
    sizes = [
        [(p.display_name, p.size_before, p.size_after) for p in r.patched]
        for r in (in_memory, files)
    ]
    assert sizes[0] == sizes[1]


def test_a_member_failing_its_patch_in_memory_leaves_no_output(
    build: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member patched as the wheel is written fails the repair with nothing written."""
    if os.environ["REPAIRWHEEL_PATCHER"] != "builtin":
        pytest.skip("only the built-in patcher patches members in memory")
    real_patch, seen = repair.patch_buffer, []

    def failing(data: bytearray, ops: PatchOps, name: str, before: Any = None) -> Any:
        seen.append(name)
        if len(seen) == 2:
            raise PatchError(f"{name}: builtin produced a wrong file: DT_NEEDED is (none)")
        return real_patch(data, ops, name, before)

    monkeypatch.setattr(repair, "patch_buffer", failing)
    out = tmp_path / "out"
    with pytest.raises(PatchError, match="produced a wrong file") as raised:
        fix(build(SHARED), out)
    assert len(seen) == 2 and seen[1] in str(raised.value)
    assert list(out.iterdir()) == []  # not even the hidden temporary file


def test_source_date_epoch_sets_every_member_time(
    build: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14 22:13:20 UTC
    result = fix(build(private_lib()), tmp_path / "out")
    with zipfile.ZipFile(result.output) as zf:
        times = {info.filename: info.date_time for info in zf.infolist()}
    assert set(times.values()) == {(2023, 11, 14, 22, 13, 20)}


# 11. Nothing to graft; no ELF file at all.


def test_compliant_wheel_grafts_nothing(build: Build, tmp_path: Path) -> None:
    result = fix(build(COMPLIANT), tmp_path / "out")
    assert (result.grafted, result.patched) == ((), ())


def test_compliant_wheel_is_retagged(build: Build, tmp_path: Path) -> None:
    result = fix(build(COMPLIANT), tmp_path / "out")
    assert platform_tags(result.output) == MANYLINUX1


def test_repairing_a_repaired_wheel_grafts_nothing_more(build: Build, tmp_path: Path) -> None:
    first = fix(build(TRANSITIVE), tmp_path / "out1")
    second = repair_wheel(first.output, tmp_path / "out2")
    assert (second.grafted, members(second.output)) == ((), members(first.output))


def test_pure_wheel_is_an_error(build: Build, tmp_path: Path) -> None:
    built = build(PURE)
    out = tmp_path / "out"
    proc = cli("fix", "-w", str(out), str(built.path))
    assert proc.returncode != 0
    assert built.path.name in assert_one_line_error(proc)
    assert not out.exists() or list(out.iterdir()) == []


def test_pure_wheel_is_copied_when_allowed(build: Build, tmp_path: Path) -> None:
    built = build(PURE)
    out = tmp_path / "out"
    proc = cli("fix", "--allow-pure-python-wheel", "-w", str(out), str(built.path))
    assert proc.returncode == 0, proc.stderr
    assert (out / built.path.name).read_bytes() == built.path.read_bytes()


# 12. The command line.


def test_repair_spelling_writes_to_the_wheel_dir(build: Build, tmp_path: Path) -> None:
    built = build(private_lib())
    out = tmp_path / "wheelhouse"
    env = {"LD_LIBRARY_PATH": str(built.lib_dir)}
    proc = cli("repair", "-w", str(out), str(built.path), env=env)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.iterdir()
    assert (platform_tags(wheel), len(libs_members(wheel))) == (MANYLINUX1, 1)


@pytest.mark.parametrize("variable", ["AUDITWHEEL_PLAT", "REPAIRWHEEL_PLAT"])
def test_plat_environment_variable_is_honoured(build: Build, tmp_path: Path, variable: str) -> None:
    built = build(COMPLIANT)
    out = tmp_path / "out"
    env = {variable: "manylinux_2_17_x86_64"}
    proc = cli("fix", "--only-plat", "-w", str(out), str(built.path), env=env)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.iterdir()
    assert platform_tags(wheel) == {"manylinux2014_x86_64", "manylinux_2_17_x86_64"}


def test_repairwheel_plat_wins_over_auditwheel_plat(build: Build, tmp_path: Path) -> None:
    built = build(COMPLIANT)
    out = tmp_path / "out"
    env = {"AUDITWHEEL_PLAT": "manylinux_2_28_x86_64", "REPAIRWHEEL_PLAT": "manylinux_2_17_x86_64"}
    proc = cli("fix", "--only-plat", "-w", str(out), str(built.path), env=env)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.iterdir()
    assert platform_tags(wheel) == {"manylinux2014_x86_64", "manylinux_2_17_x86_64"}


def test_plat_option_wins_over_the_environment(build: Build, tmp_path: Path) -> None:
    built = build(COMPLIANT)
    out = tmp_path / "out"
    env = {"AUDITWHEEL_PLAT": "manylinux_2_28_x86_64"}
    args = ("--only-plat", "--plat", "manylinux_2_17_x86_64", "-w", str(out), str(built.path))
    proc = cli("fix", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.iterdir()
    assert platform_tags(wheel) == {"manylinux2014_x86_64", "manylinux_2_17_x86_64"}


def test_unknown_plat_variable_does_not_affect_show(build: Build) -> None:
    built = build(COMPLIANT)
    proc = cli("show", str(built.path), env={"AUDITWHEEL_PLAT": "bogus"})
    assert (proc.returncode, proc.stderr) == (0, "")


def test_bad_compression_level_variable_is_a_one_line_error_for_fix(
    build: Build, tmp_path: Path
) -> None:
    built = build(COMPLIANT)
    out = tmp_path / "out"
    env = {"AUDITWHEEL_ZIP_COMPRESSION_LEVEL": "fast"}
    proc = cli("fix", "-w", str(out), str(built.path), env=env)
    assert proc.returncode == 2
    assert "AUDITWHEEL_ZIP_COMPRESSION_LEVEL" in assert_one_line_error(proc)
    assert not out.exists() or list(out.iterdir()) == []


def test_bad_compression_level_variable_does_not_affect_show(build: Build) -> None:
    built = build(COMPLIANT)
    proc = cli("show", str(built.path), env={"AUDITWHEEL_ZIP_COMPRESSION_LEVEL": "fast"})
    assert (proc.returncode, proc.stderr) == (0, "")


def test_json_output_lists_grafted_libraries(build: Build, tmp_path: Path) -> None:
    built = build(TRANSITIVE)
    out = tmp_path / "out"
    proc = cli("fix", "--json", "--ldpaths", str(built.lib_dir), "-w", str(out), str(built.path))
    assert proc.returncode == 0, proc.stderr
    (report,) = json.loads(proc.stdout)
    grafted = {g["soname"]: (g["source"], g["member"]) for g in report["grafted"]}
    (wheel,) = out.iterdir()
    assert grafted == {
        lib.soname: (str(built.host_library(lib.name)), member)
        for lib in TRANSITIVE.libraries
        for member in libs_members(wheel)
        if _original_name(member) == lib.soname
    }


def test_missing_library_exits_4_with_a_one_line_error(build: Build, tmp_path: Path) -> None:
    built = build(private_lib())
    proc = cli("fix", "-w", str(tmp_path / "out"), str(built.path))
    assert proc.returncode == 4
    assert "libfoo.so.1" in assert_one_line_error(proc)


def test_missing_library_leaves_the_output_folder_empty(build: Build, tmp_path: Path) -> None:
    built = build(private_lib())
    out = tmp_path / "out"
    proc = cli("fix", "-w", str(out), str(built.path))
    assert proc.returncode != 0
    assert not out.exists() or list(out.iterdir()) == []


# 13. Agreement with auditwheel.


def _original_name(member: str) -> str:
    """``<dir>/libfoo-1234abcd.so.1`` -> ``libfoo.so.1``: the name before grafting."""
    match = _HASHED_NAME.match(member.rsplit("/", 1)[1])
    assert match, member
    return match["base"] + match["rest"]


def _run_both(built: BuiltWheel, tmp_path: Path) -> tuple[Path, Path]:
    env = {"LD_LIBRARY_PATH": str(built.lib_dir)}
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    proc = cli("fix", "-w", str(ours), str(built.path), env=env)
    assert proc.returncode == 0, proc.stderr
    aw_env = {k: v for k, v in os.environ.items() if k not in _ENV_VARS}
    aw_env.update(env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [sys.executable, "-m", "auditwheel", "repair", "-w", str(theirs), str(built.path)],
        capture_output=True,
        text=True,
        env=aw_env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (our_wheel,), (their_wheel,) = ours.iterdir(), theirs.iterdir()
    return our_wheel, their_wheel


COMPARED = {"private": private_lib(), "shared": SHARED, "transitive": TRANSITIVE}


@pytest.fixture(scope="module", params=sorted(COMPARED))
def both_repairs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    tmp = tmp_path_factory.mktemp(f"compare-{request.param}")
    return _run_both(build_wheel(COMPARED[request.param], tmp / "build"), tmp)


def test_same_platform_tags_as_auditwheel(both_repairs: tuple[Path, Path]) -> None:
    ours, theirs = both_repairs
    assert platform_tags(ours) == platform_tags(theirs)


def test_same_grafted_libraries_as_auditwheel(both_repairs: tuple[Path, Path]) -> None:
    ours, theirs = both_repairs
    grafted = [{_original_name(m) for m in libs_members(w)} for w in (ours, theirs)]
    assert grafted[0] == grafted[1]
    assert grafted[0]
