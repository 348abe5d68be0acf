"""Test wheels built with gcc: C extension modules, the private libraries they link, and a
dist-info whose RECORD is right, zipped.

Every library ``foo`` exports ``int foo_value(void)``: its own number plus the values of the
libraries it links. Every extension module exports ``value()``: the sum over the libraries it
links. A module that imports and returns ``BuiltWheel.expected_value`` has loaded the right
libraries. Each test builds into its own folder, so the libraries outside the wheel (the
"system" copies) can be deleted or hidden afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging import tags

EXT_SUFFIX: str = sysconfig.get_config_var("EXT_SUFFIX")
PLATFORM = sysconfig.get_platform().replace("-", "_").replace(".", "_")
INTERPRETER_TAG = next(iter(tags.sys_tags()))
_DATE_TIME = (2024, 1, 1, 0, 0, 0)

_EXTENSION_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
{declarations}
{prelude}
static PyObject *value(PyObject *self, PyObject *unused)
{{
    (void)self;
    (void)unused;
    return PyLong_FromLong(0{calls} + ({extra}));
}}

static PyMethodDef methods[] = {{
    {{"value", value, METH_NOARGS, "Sum of the linked libraries' values."}},
    {{NULL, NULL, 0, NULL}},
}};

static struct PyModuleDef module = {{PyModuleDef_HEAD_INIT, "{name}", NULL, -1, methods}};

PyMODINIT_FUNC PyInit_{name}(void) {{ return PyModule_Create(&module); }}
"""


@dataclass(frozen=True)
class Library:
    """A shared library ``lib<name>.so.<major>`` exporting ``<name>_value()`` at a version."""

    name: str
    number: int
    needs: tuple[str, ...] = ()  # names of the other libraries it links
    major: int = 1
    in_wheel: str | None = None  # the wheel folder it ships in; None: it stays outside

    @property
    def soname(self) -> str:
        return f"lib{self.name}.so.{self.major}"

    @property
    def version_node(self) -> str:
        """The symbol version its function is defined at, so linkers of it get version needs."""
        return f"{self.name.upper()}_{self.major}.0"


@dataclass(frozen=True)
class Extension:
    """A C extension module ``module`` (dotted) linking ``needs`` by name."""

    module: str
    needs: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()  # written as DT_RPATH, like most extension builds
    prelude: str = ""  # C at file scope, e.g. an #include
    extra: str = "0"  # a C int expression added to value(); must be 0 at run time

    @property
    def member(self) -> str:
        return self.module.replace(".", "/") + EXT_SUFFIX


@dataclass(frozen=True)
class Program:
    """An ELF executable shipped as the wheel script ``name``; it prints the sum of the linked
    libraries' values."""

    name: str
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class WheelSpec:
    """What goes into a test wheel. Without extensions and libraries it is a pure wheel."""

    dist: str = "demo"
    version: str = "1.0"
    libraries: tuple[Library, ...] = ()
    extensions: tuple[Extension, ...] = ()
    programs: tuple[Program, ...] = ()
    extra_files: tuple[tuple[str, bytes], ...] = ()
    compresslevel: int = 6

    @property
    def pure(self) -> bool:
        in_wheel = any(lib.in_wheel for lib in self.libraries)
        return not (self.extensions or self.programs or in_wheel)

    @property
    def tag(self) -> str:
        if self.pure:
            return "py3-none-any"
        return f"{INTERPRETER_TAG.interpreter}-{INTERPRETER_TAG.abi}-{PLATFORM}"

    def script_member(self, program: Program) -> str:
        return f"{self.dist}-{self.version}.data/scripts/{program.name}"

    def library(self, name: str) -> Library:
        return next(lib for lib in self.libraries if lib.name == name)


@dataclass(frozen=True)
class BuiltWheel:
    path: Path
    lib_dir: Path  # where the libraries outside the wheel were built
    spec: WheelSpec

    def host_library(self, name: str) -> Path:
        """The outside copy of library ``name``: what a repair grafts."""
        return self.lib_dir / self.spec.library(name).soname

    def library_value(self, name: str) -> int:
        lib = self.spec.library(name)
        return lib.number + sum(self.library_value(dep) for dep in lib.needs)

    def expected_value(self, module: str) -> int:
        """What ``value()`` of extension ``module``, or the output of program ``module``, is."""
        linker = next(e for e in (*self.spec.extensions, *self.spec.programs) if _named(e, module))
        return sum(self.library_value(name) for name in linker.needs)


Build = Callable[[WheelSpec], BuiltWheel]
"""The ``build`` fixture (conftest.py): a wheel built from a spec, in a folder of its own."""


def _named(item: Extension | Program, name: str) -> bool:
    return (item.module if isinstance(item, Extension) else item.name) == name


def build_wheel(spec: WheelSpec, workdir: Path) -> BuiltWheel:
    """Compile ``spec``'s libraries and extensions in ``workdir`` and zip them into a wheel
    under ``workdir/dist``; the libraries outside the wheel stay in ``workdir/lib``."""
    lib_dir, wheel_lib_dir, obj_dir, dist_dir = (
        workdir / d for d in ("lib", "wheel-libs", "obj", "dist")
    )
    for d in (lib_dir, wheel_lib_dir, obj_dir, dist_dir):
        d.mkdir(parents=True, exist_ok=True)
    search = (lib_dir, wheel_lib_dir)
    built: dict[str, Path] = {}
    for lib in spec.libraries:
        _build_library(spec, lib, built, search, obj_dir)

    files: dict[str, tuple[bytes, int]] = {}
    for lib in spec.libraries:
        if lib.in_wheel is not None:
            files[f"{lib.in_wheel}/{lib.soname}"] = (built[lib.name].read_bytes(), 0o755)
    for ext in spec.extensions:
        for package in _packages(ext.module):
            files.setdefault(f"{package.replace('.', '/')}/__init__.py", (b"", 0o644))
        path = _build_extension(spec, ext, search, obj_dir)
        files[ext.member] = (path.read_bytes(), 0o755)
    for program in spec.programs:
        files[spec.script_member(program)] = (
            _build_program(spec, program, search, obj_dir).read_bytes(),
            0o755,
        )
    for name, data in spec.extra_files:
        files[name] = (data, 0o644)
    return BuiltWheel(_zip_wheel(spec, files, dist_dir), lib_dir, spec)


def _build_library(
    spec: WheelSpec, lib: Library, built: dict[str, Path], search: Sequence[Path], obj_dir: Path
) -> Path:
    if lib.name in built:
        return built[lib.name]
    for dep in lib.needs:
        _build_library(spec, spec.library(dep), built, search, obj_dir)
    source = obj_dir / f"{lib.name}.c"
    declarations = "".join(f"extern int {dep}_value(void);\n" for dep in lib.needs)
    calls = "".join(f" + {dep}_value()" for dep in lib.needs)
    source.write_text(
        f"{declarations}int {lib.name}_value(void) {{ return {lib.number}{calls}; }}\n"
    )
    version_script = obj_dir / f"{lib.name}.map"
    version_script.write_text(f"{lib.version_node} {{ global: {lib.name}_value; local: *; }};\n")
    out = search[0 if lib.in_wheel is None else 1] / lib.soname
    _gcc(
        "-shared",
        "-fPIC",
        "-O1",
        f"-Wl,-soname,{lib.soname}",
        f"-Wl,--version-script={version_script}",
        "-o",
        str(out),
        str(source),
        *_link_args(spec, lib.needs, search),
    )
    built[lib.name] = out
    return out


def _build_extension(
    spec: WheelSpec, ext: Extension, search: Sequence[Path], obj_dir: Path
) -> Path:
    name = ext.module.rsplit(".", 1)[-1]
    source = obj_dir / f"{ext.module}.c"
    source.write_text(
        _EXTENSION_C.format(
            declarations="".join(f"extern int {dep}_value(void);\n" for dep in ext.needs),
            prelude=ext.prelude,
            calls="".join(f" + {dep}_value()" for dep in ext.needs),
            extra=ext.extra,
            name=name,
        )
    )
    out = obj_dir / f"{ext.module}{EXT_SUFFIX}"
    rpath = [f"-Wl,-rpath,{':'.join(ext.rpath)}", "-Wl,--disable-new-dtags"] if ext.rpath else []
    _gcc(
        "-shared",
        "-fPIC",
        "-O1",
        f"-I{sysconfig.get_paths()['include']}",
        "-o",
        str(out),
        str(source),
        *_link_args(spec, ext.needs, search),
        *rpath,
    )
    return out


def _build_program(
    spec: WheelSpec, program: Program, search: Sequence[Path], obj_dir: Path
) -> Path:
    source = obj_dir / f"{program.name}.c"
    declarations = "".join(f"extern int {dep}_value(void);\n" for dep in program.needs)
    calls = "".join(f" + {dep}_value()" for dep in program.needs)
    source.write_text(
        f'#include <stdio.h>\n{declarations}int main(void) {{ printf("%d\\n", 0{calls}); }}\n'
    )
    out = obj_dir / program.name
    _gcc("-O1", "-o", str(out), str(source), *_link_args(spec, program.needs, search))
    return out


def _link_args(spec: WheelSpec, needs: Sequence[str], search: Sequence[Path]) -> list[str]:
    dirs = [arg for d in search for arg in (f"-L{d}", f"-Wl,-rpath-link,{d}")]
    return dirs + [f"-l:{spec.library(dep).soname}" for dep in needs]


def _gcc(*args: str) -> None:
    proc = subprocess.run(["gcc", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"gcc {' '.join(args)} failed:\n{proc.stderr}")


def _packages(module: str) -> list[str]:
    parts = module.split(".")[:-1]
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _zip_wheel(spec: WheelSpec, files: dict[str, tuple[bytes, int]], dist_dir: Path) -> Path:
    dist_info = f"{spec.dist}-{spec.version}.dist-info"
    purelib = "true" if spec.pure else "false"
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {spec.dist}\nVersion: {spec.version}\n".encode(),
        0o644,
    )
    files[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: wheelbuild\nRoot-Is-Purelib: {purelib}\n"
        f"Tag: {spec.tag}\n".encode(),
        0o644,
    )
    record = [f"{name},{record_hash(data)},{len(data)}\n" for name, (data, _) in files.items()]
    files[f"{dist_info}/RECORD"] = ("".join(record) + f"{dist_info}/RECORD,,\n").encode(), 0o644
    wheel = dist_dir / f"{spec.dist}-{spec.version}-{spec.tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=spec.compresslevel) as zf:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=spec.compresslevel)
    return wheel


def record_hash(data: bytes) -> str:
    """``sha256=<urlsafe base64, unpadded>``, as RECORD writes it."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def make_venv(path: Path) -> Path:
    """A fresh venv without pip (a tenth of a second); returns its python.

    Wheels are installed for it with ``install`` into a ``--target`` folder per test, put on
    its path with PYTHONPATH, so one venv serves a whole session.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def install(wheel: Path, target: Path | None = None, *, python: Path | None = None) -> None:
    """``pip install --no-index`` the wheel into the folder ``target`` (for PYTHONPATH), or
    into the environment of ``python`` (scripts included)."""
    pip = [sys.executable, "-m", "pip", *(["--python", str(python)] if python else [])]
    options = ["--target", str(target)] if target is not None else []
    proc = subprocess.run(
        [*pip, "install", "--quiet", "--no-index", "--no-deps", "--disable-pip-version-check"]
        + [*options, str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip could not install {wheel.name}:\n{proc.stderr}")


def run_python(
    python: Path, site: Path, code: str, *, wrapper: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``site`` on the path and no library search variables, from an empty
    folder, optionally under a ``wrapper`` command (such as ``unshare``)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(site)}
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [*wrapper, str(python), "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            check=False,
        )


def repairwheel_cli(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m repairwheel ARGS`` without the caller's target-tag and search-path variables,
    plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if "PLAT" not in k and "LD_LIBRARY" not in k}
    return subprocess.run(
        [sys.executable, "-m", "repairwheel", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=cwd,
        check=False,
    )


def run_without_originals(
    repaired: Path, original: BuiltWheel, code: str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """Delete the libraries' build folder, install the repaired and the original wheel into
    their own folders and run ``code`` against each in a fresh venv: (repaired, control)."""
    shutil.rmtree(original.lib_dir)
    python = make_venv(tmp_path / "venv")
    runs = []
    for name, wheel in (("site", repaired), ("control", original.path)):
        install(wheel, tmp_path / name)
        runs.append(run_python(python, tmp_path / name, code))
    return runs[0], runs[1]
