"""Issue 14's rest: ``--include`` grafts a library the wheel dlopen()s (with its dependencies)
under its own name; ``--strip-level`` and ``--debug-symbols`` strip every ELF file written and
keep its debug information where gdb finds it through the .gnu_debuglink.

Every fixture is built with gcc, repaired, installed into a fresh venv and imported with the
libraries' build folder deleted; the control (no option) fails where that makes sense.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sysconfig
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from pypi_wheels import unavailable
from wheelbuild import (
    EXT_SUFFIX,
    BuiltWheel,
    Extension,
    Library,
    WheelSpec,
    build_wheel,
    install,
    make_venv,
    record_hash,
    repairwheel_cli,
    run_python,
)

from repairwheel import read_elf
from repairwheel.errors import DependencyError, UsageError
from repairwheel.repair import repair_wheel

# The extension dlopen()s libplug.so.1 by name (no DT_NEEDED) and returns plug_value(), or
# -1 when the library cannot be loaded.
DLOPEN = r"""
#include <dlfcn.h>
static long plugged(void)
{
    void *handle = dlopen("libplug.so.1", RTLD_NOW);
    int (*fn)(void) = handle ? (int (*)(void))dlsym(handle, "plug_value") : NULL;
    return fn ? fn() : -1;
}
"""
PLUGIN = WheelSpec(
    libraries=(Library("plug", 40, ("dep",)), Library("dep", 2)),
    extensions=(Extension("demo._ext", prelude=DLOPEN, extra="plugged()"),),
)
EXT = f"demo/_ext{EXT_SUFFIX}"
IMPORT = "import demo._ext as e; print(e.value())"


@pytest.fixture(autouse=True)
def _needs_tools() -> None:
    for tool in ("gcc", "objcopy", "strip", "readelf"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")


def run_installed(
    wheels: Mapping[str, Path], tmp_path: Path, code: str = IMPORT
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Install each wheel into its own folder and run ``code`` against it in a fresh venv."""
    python = make_venv(tmp_path / "venv")
    runs = {}
    for name, wheel in wheels.items():
        install(wheel, tmp_path / name)
        runs[name] = run_python(python, tmp_path / name, code)
    return runs


def libs(wheel: str | Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n.startswith("demo.libs/")}


def test_include_grafts_a_library_loaded_by_dlopen_and_the_call_finds_it(tmp_path: Path) -> None:
    built = build_wheel(PLUGIN, tmp_path / "build")
    ldpaths = str(built.lib_dir)
    result = repair_wheel(built.path, tmp_path / "out", ldpaths=ldpaths, include=["libplug.so.1"])
    control = repair_wheel(built.path, tmp_path / "control", ldpaths=ldpaths)
    assert "demo.libs/libplug.so.1" in libs(result.output)
    assert libs(control.output) == {}
    with zipfile.ZipFile(result.output) as zf:
        ext = read_elf(zf.read(EXT))
    assert "libplug.so.1" not in ext.needed  # loaded by dlopen, found through the RPATH
    assert ext.rpath == ("$ORIGIN/../demo.libs",)
    shutil.rmtree(built.lib_dir)
    runs = run_installed({"site": Path(result.output), "control": Path(control.output)}, tmp_path)
    assert (runs["site"].returncode, runs["site"].stdout.split()) == (0, ["42"]), runs["site"]
    assert runs["control"].stdout.split() == ["-1"], runs["control"]


def test_include_grafts_its_dependency_mangled_and_itself_unmangled(tmp_path: Path) -> None:
    built = build_wheel(PLUGIN, tmp_path / "build")
    out = tmp_path / "out"
    # A glob, found on the search path REPAIRWHEEL_LD_LIBRARY_PATH adds.
    env = {"REPAIRWHEEL_LD_LIBRARY_PATH": str(built.lib_dir)}
    proc = repairwheel_cli("fix", "-w", str(out), "--include", "libplug*", str(built.path), env=env)
    assert proc.returncode == 0, proc.stderr
    [wheel] = out.iterdir()
    grafted = {name: read_elf(data) for name, data in libs(wheel).items()}
    dep_member = next(n for n in grafted if n.startswith("demo.libs/libdep-"))
    assert re.fullmatch(r"demo\.libs/libdep-[0-9a-f]{8}\.so\.1", dep_member)
    assert sorted(grafted) == sorted(["demo.libs/libplug.so.1", dep_member])
    plug = grafted["demo.libs/libplug.so.1"]
    assert plug.soname == "libplug.so.1"
    assert plug.needed == (os.path.basename(dep_member),)
    assert plug.rpath == ("$ORIGIN",)
    assert grafted[dep_member].soname == os.path.basename(dep_member)
    shutil.rmtree(built.lib_dir)
    runs = run_installed({"site": wheel}, tmp_path)
    assert (runs["site"].returncode, runs["site"].stdout.split()) == (0, ["42"]), runs["site"]


def test_include_of_a_missing_library_or_a_bad_glob_is_one_line(tmp_path: Path) -> None:
    built = build_wheel(PLUGIN, tmp_path / "build")
    out = tmp_path / "out"
    base = ["fix", "-w", str(out), "--ldpaths", str(built.lib_dir), str(built.path)]
    cases = {
        "libnothere.so.7": DependencyError.exit_code,
        str(tmp_path / "no" / "libplug.so.1"): DependencyError.exit_code,
        "libplug[.so.1": UsageError.exit_code,
        f"{tmp_path}/*/libplug.so.1": UsageError.exit_code,
    }
    for request, code in cases.items():
        proc = repairwheel_cli(*base, "--include", request)
        lines = proc.stderr.strip().splitlines()
        assert (proc.returncode, len(lines)) == (code, 1), proc.stderr
        assert f"--include {request}" in lines[0]
    show = repairwheel_cli("show", str(built.path), "--include", "libnothere.so.7")
    assert show.returncode == DependencyError.exit_code
    assert not out.exists() or not any(out.iterdir())


# A C extension linking libstdc++ for __istream_extract (GLIBCXX_3.4.29, GCC 11), which no
# manylinux policy below 2_34 allows.
CXX_SOURCE = """\
#include <Python.h>
extern void _ZSt17__istream_extractRSiPcl(void);
void *volatile cxx_ref = (void *)&_ZSt17__istream_extractRSiPcl;
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cxx", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__cxx(void) { return PyModule_Create(&module); }
"""


def test_show_include_libstdcxx_says_which_blockers_it_removes(tmp_path: Path) -> None:
    built = build_wheel(WheelSpec(extensions=(Extension("demo._cxx"),)), tmp_path / "build")
    ext = compile_c(tmp_path / "cxx.so", CXX_SOURCE, "-lstdc++")
    if "GLIBCXX_3.4.29" not in read_elf(ext.read_bytes()).version_needs.get("libstdc++.so.6", ()):
        pytest.skip("this libstdc++ is older than GCC 11")
    replace_members(built.path, {f"demo/_cxx{EXT_SUFFIX}": ext.read_bytes()})
    before = json.loads(repairwheel_cli("show", "--json", str(built.path)).stdout)
    proc = repairwheel_cli("show", "--json", "--include", "libstdc++.so.6", str(built.path))
    after = json.loads(proc.stdout)
    assert before["include"] is None and "libstdc++.so.6" not in before["external_libs"]
    assert "libstdc++.so.6" in after["external_libs"]  # whitelisted, and grafted all the same
    effect = after["include"]
    assert [(lib["name"], lib["grafted"]) for lib in effect["libraries"]] == [
        ("libstdc++.so.6", True)
    ]
    removed = {(b["library"], b["detail"]) for b in effect["removed_blockers"]}
    assert ("libstdc++.so.6", "GLIBCXX_3.4.29") in removed
    assert effect["repair_tag_before"] == before["repair_tag"]
    assert effect["repair_tag_after"] == after["repair_tag"]
    # Before, every tag below the first allowing GLIBCXX_3.4.29 is blocked by it.
    blocked = {
        p["tag"]
        for p in before["policies"]
        if any(b["detail"] == "GLIBCXX_3.4.29" for b in p["blockers"])
    }
    assert blocked and all(
        not any(b["detail"] == "GLIBCXX_3.4.29" for b in p["blockers"]) for p in after["policies"]
    )
    text = repairwheel_cli("show", "--include", "libstdc++.so.6", str(built.path)).stdout
    assert "libstdc++.so.6 => " in text and ": grafted" in text
    assert re.search(r"removes .*needs GLIBCXX_3\.4\.29 from libstdc\+\+\.so\.6", text), text


# The debug fixture: a library outside the wheel, one inside it that nothing patches (only
# stripped; linked without a build id) and an extension, all built with -g.
DEBUG_SPEC = WheelSpec(
    libraries=(Library("foo", 7), Library("inside", 60, in_wheel="demo")),
    extensions=(Extension("demo._ext", ("foo",)),),
)
EXT_SOURCE = """\
#include <Python.h>
extern int foo_value(void);
static PyObject *value(PyObject *self, PyObject *unused) { return PyLong_FromLong(foo_value()); }
static PyMethodDef methods[] = {{"value", value, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, methods};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&module); }
"""


def debug_wheel(tmp_path: Path) -> BuiltWheel:
    """DEBUG_SPEC's wheel with every library and the extension rebuilt with -g."""
    built = build_wheel(DEBUG_SPEC, tmp_path / "build")
    src = tmp_path / "src"
    foo = compile_c(built.host_library("foo"), "int foo_value(void) { return 7; }\n", soname=True)
    inside_c = "int inside_value(void) { return 60; }\n"
    inside = compile_c(src / "libinside.so.1", inside_c, "-Wl,--build-id=none", soname=True)
    ext = compile_c(src / "ext.so", EXT_SOURCE, f"-L{foo.parent}", "-l:libfoo.so.1")
    replace_members(built.path, {EXT: ext.read_bytes(), "demo/libinside.so.1": inside.read_bytes()})
    return built


def elf_members(wheel: str | Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {n: zf.read(n) for n in zf.namelist() if zf.read(n)[:4] == b"\x7fELF"}


def test_debug_symbols_are_saved_and_gdb_reads_them_through_the_debuglink(
    tmp_path: Path,
) -> None:
    if shutil.which("gdb") is None:
        unavailable("gdb is not installed")
    built = debug_wheel(tmp_path)
    debug_dir = tmp_path / "debug"
    out = tmp_path / "out"
    args = ["fix", "-w", str(out), "--ldpaths", str(built.lib_dir), "--strip"]
    proc = repairwheel_cli(*args, "--debug-symbols", str(debug_dir), str(built.path))
    assert proc.returncode == 0, proc.stderr
    [wheel] = out.iterdir()
    files = elf_members(wheel)
    assert {EXT, "demo/libinside.so.1"} < set(files) and len(files) == 3
    staged = tmp_path / "files"
    staged.mkdir()
    for name, data in files.items():
        file = staged / os.path.basename(name)
        file.write_bytes(data)
        assert not [s for s in sections(file) if s.startswith(".debug")], name
        link = readelf("--string-dump=.gnu_debuglink", file)
        build_ids = re.findall(r"Build ID: ([0-9a-f]+)", readelf("-n", file))
        assert len(build_ids) == (name != "demo/libinside.so.1"), name
        debug_name = f"{build_ids[0] if build_ids else file.name}.debug"
        assert debug_name in link, (name, link)
        debug_file = debug_dir / debug_name
        assert ".debug_info" in sections(debug_file), name
        shutil.copy(debug_file, staged)  # where gdb looks for a debuglink: beside the file
    assert f"saved debug information to {debug_dir}" in proc.stdout
    foo = next(staged.glob("libfoo-*.so.1"))
    gdb = subprocess.run(
        ["gdb", "-batch", "-nx", "-ex", "info line foo_value", str(foo)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert re.search(r'Line 1 of ".*\.c"', gdb.stdout), gdb.stdout + gdb.stderr
    assert "does not match" not in gdb.stderr  # the CRC in the debuglink is the file's
    shutil.rmtree(built.lib_dir)
    runs = run_installed({"site": wheel}, tmp_path)
    assert (runs["site"].returncode, runs["site"].stdout.split()) == (0, ["7"]), runs["site"]


@pytest.mark.parametrize("level", ["unneeded", "debug"])
def test_strip_level_keeps_the_dynamic_symbols_and_the_wheel_loads(
    tmp_path: Path, level: str
) -> None:
    built = debug_wheel(tmp_path)
    result = repair_wheel(
        built.path, tmp_path / "out", ldpaths=str(built.lib_dir), strip_level=level
    )
    patched = {p.display_name for p in result.patched}
    assert EXT in patched and "demo/libinside.so.1" not in patched  # only stripped
    staged = tmp_path / "files"
    staged.mkdir()
    for name, data in elf_members(result.output).items():
        file = staged / os.path.basename(name)
        file.write_bytes(data)
        names = sections(file)
        assert not [s for s in names if s.startswith(".debug")], name
        assert (".symtab" in names) == (level == "debug"), (name, names)  # debug keeps it
        dynamic = readelf("--dyn-syms", "-W", file)
        wanted = {"_ext": "PyInit__ext", "libinside": "inside_value", "libfoo": "foo_value"}
        assert any(f" {sym}" in dynamic for key, sym in wanted.items() if key in name), name
    shutil.rmtree(built.lib_dir)
    runs = run_installed({"site": Path(result.output)}, tmp_path)
    assert (runs["site"].returncode, runs["site"].stdout.split()) == (0, ["7"]), runs["site"]


def test_strip_options_that_disagree_are_refused(tmp_path: Path) -> None:
    built = build_wheel(PLUGIN, tmp_path / "build")
    out = tmp_path / "out"
    base = ["fix", "-w", str(out), "--ldpaths", str(built.lib_dir), str(built.path)]
    for extra in (["--strip", "--strip-level", "debug"], ["--debug-symbols", str(tmp_path)]):
        proc = repairwheel_cli(*base, *extra)
        assert proc.returncode == UsageError.exit_code, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


def compile_c(out: Path, source: str, *args: str, soname: bool = False) -> Path:
    """``source`` built with -g as the shared library (or extension) ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    c_file = out.with_suffix(out.suffix + ".c")
    c_file.write_text(source)
    flags = [f"-Wl,-soname,{out.name}"] if soname else []
    include = f"-I{sysconfig.get_paths()['include']}"
    cmd = ["gcc", "-g", "-O1", "-shared", "-fPIC", include, *flags, "-o", str(out), str(c_file)]
    subprocess.run([*cmd, *args], check=True, capture_output=True)
    return out


def replace_members(wheel: Path, new: Mapping[str, bytes]) -> None:
    """Rewrite ``wheel`` with the members ``new`` names replaced and RECORD fixed."""
    with zipfile.ZipFile(wheel) as zf:
        files = [(info, new.get(info.filename, zf.read(info))) for info in zf.infolist()]
    rows = [
        f"{info.filename},,\n"
        if info.filename.endswith(".dist-info/RECORD")
        else f"{info.filename},{record_hash(data)},{len(data)}\n"
        for info, data in files
    ]
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in files:
            zf.writestr(info, "".join(rows) if info.filename.endswith("/RECORD") else data)


def readelf(*args: str | Path) -> str:
    proc = subprocess.run(["readelf", *map(str, args)], capture_output=True, check=False)
    return proc.stdout.decode("utf-8", "replace")


def sections(file: Path) -> list[str]:
    return re.findall(r"\]\s+(\S+)", readelf("-SW", file))
