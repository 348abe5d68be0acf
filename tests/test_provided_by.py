"""``--provided-by`` (issue 13): a library an installed distribution ships (an ``nvidia-*-cu12``
runtime, torch's ``libc10.so``) is linked where that distribution installs it, not grafted.

The repaired extension keeps its DT_NEEDED and gets an RPATH entry to the provider's folder in
the same site-packages, so it loads in a fresh process without the provider imported first;
the control, repaired with ``--exclude`` instead, does not. The wheels are real: the pinned
CUDA runtime from PyPI and the CPU build of torch, each installed once per module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from elf_craft import DT_SONAME, ElfBuilder
from pypi_wheels import cache_dir, unavailable
from wheelbuild import (
    EXT_SUFFIX,
    INTERPRETER_TAG,
    PLATFORM,
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

from repairwheel import read_elf, repair_wheel
from repairwheel.errors import DependencyError, PolicyError, UsageError
from repairwheel.sbom import SBOM_PATH

CUDA_RUNTIME = "nvidia-cuda-runtime-cu12==12.4.127"
CUDA_RUNTIME_WHEEL = "nvidia_cuda_runtime_cu12-12.4.127-py3-none-manylinux2014_x86_64.whl"
CUDA_RUNTIME_SHA256 = "64403288fa2136ee8e467cdc9c9427e0434110899d07c779f25b5c068934faa5"
CUDA_LIB_DIR = "nvidia/cuda_runtime/lib"
CUDA_VERSION = 12040  # what cudaRuntimeGetVersion reports for 12.4, with or without a GPU
TORCH = "torch==2.13.0"
EM_AARCH64 = 183

_MODULE_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
{declarations}
static PyObject *probe(PyObject *self, PyObject *unused)
{{
    (void)self;
    (void)unused;
    {body}
}}

static PyMethodDef methods[] = {{{{"probe", probe, METH_NOARGS, NULL}}, {{NULL, NULL, 0, NULL}}}};
static struct PyModuleDef module = {{PyModuleDef_HEAD_INIT, "{name}", NULL, -1, methods}};
PyMODINIT_FUNC PyInit_{name}(void) {{ return PyModule_Create(&module); }}
"""
CUDA_DECLARATIONS = "extern int cudaRuntimeGetVersion(int *);"
CUDA_BODY = """int version = 0;
    if (cudaRuntimeGetVersion(&version) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "cudaRuntimeGetVersion failed");
        return NULL;
    }
    return PyLong_FromLong(version);"""

cli = repairwheel_cli


@pytest.fixture(autouse=True)
def _needs_gcc() -> None:
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    if PLATFORM != "linux_x86_64":
        unavailable("the provider wheels are x86_64 builds")


# ------------------------------------------------------------------ building and installing


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def cuda_runtime_wheel() -> Path:
    """The pinned CUDA runtime wheel, downloaded into the wheel cache once."""
    target = cache_dir() / CUDA_RUNTIME_WHEEL
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        proc = pip(
            "download", "--no-deps", "--only-binary=:all:", "-d", str(target.parent), CUDA_RUNTIME
        )
        if proc.returncode != 0 or not target.is_file():
            unavailable(f"pip could not download {CUDA_RUNTIME}: {proc.stderr.strip()[-300:]}")
    assert hashlib.sha256(target.read_bytes()).hexdigest() == CUDA_RUNTIME_SHA256
    return target


def build_module(workdir: Path, module: str, declarations: str, body: str, *link: str) -> Path:
    """A one-function extension module ``module`` (dotted) linked with ``link``."""
    name = module.rsplit(".", 1)[-1]
    source = workdir / f"{module}.c"
    source.write_text(_MODULE_C.format(declarations=declarations, body=body, name=name))
    out = workdir / f"{module}{EXT_SUFFIX}"
    include = sysconfig.get_paths()["include"]
    command = ["gcc", "-shared", "-fPIC", "-O1", f"-I{include}", "-o", str(out), str(source), *link]
    subprocess.run(command, check=True, capture_output=True)
    return out


def zip_wheel(dist: str, extension: Path, module: str, requires: Sequence[str], dest: Path) -> Path:
    """A wheel of ``extension`` as ``module`` whose METADATA has ``requires`` as Requires-Dist."""
    dist_info = f"{dist}-1.0.dist-info"
    package = module.rsplit(".", 1)[0].replace(".", "/")
    metadata = "".join(f"Requires-Dist: {line}\n" for line in requires)
    tag = f"{INTERPRETER_TAG.interpreter}-{INTERPRETER_TAG.abi}-{PLATFORM}"
    files = {
        f"{package}/__init__.py": b"",
        module.replace(".", "/") + EXT_SUFFIX: extension.read_bytes(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n{metadata}".encode()
        ),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
        ),
    }
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{dist}-1.0-{tag}.whl"
    write_zip(wheel, with_record(dist_info, files))
    return wheel


def with_record(dist_info: str, files: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` and a RECORD that lists them."""
    rows = [f"{name},{record_hash(data)},{len(data)}\n" for name, data in files.items()]
    record = f"{dist_info}/RECORD"
    return {**files, record: ("".join(rows) + f"{record},,\n").encode()}


def write_zip(wheel: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def repaired(out: Path) -> Path:
    (wheel,) = out.glob("*.whl")
    return wheel


def member_elf(wheel: Path, member: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DT_NEEDED, RPATH) of ``member``."""
    with zipfile.ZipFile(wheel) as zf:
        elf = read_elf(zf.read(member))
    return elf.needed, elf.rpath


def libs_members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return [n for n in zf.namelist() if ".libs/" in n]


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fresh venv (no packages) for the module; wheels go on its path with PYTHONPATH."""
    return make_venv(tmp_path_factory.mktemp("venv") / "venv")


# ------------------------------------------------------------------ the CUDA runtime


@dataclass(frozen=True)
class CudaBuild:
    provider: Path  # the nvidia wheel
    site: Path  # where it is installed at build time (--site-packages)
    wheel: Path  # cudemo, linking libcudart.so.12 with an RPATH into ``site``


CUDA_MODULE = "cudemo._rt"
CUDA_MEMBER = "cudemo/_rt" + EXT_SUFFIX


@pytest.fixture(scope="module")
def cuda(tmp_path_factory: pytest.TempPathFactory) -> CudaBuild:
    provider = cuda_runtime_wheel()
    work = tmp_path_factory.mktemp("cuda")
    site = work / "build-site"
    install(provider, site)
    lib = site / CUDA_LIB_DIR
    ext = build_module(
        work,
        CUDA_MODULE,
        CUDA_DECLARATIONS,
        CUDA_BODY,
        f"-L{lib}",
        "-l:libcudart.so.12",
        f"-Wl,-rpath,{lib}",
    )
    wheel = zip_wheel("cudemo", ext, CUDA_MODULE, ["nvidia-cuda-runtime-cu12>=12.4"], work / "dist")
    return CudaBuild(provider, site, wheel)


@contextlib.contextmanager
def hidden(path: Path) -> Iterator[None]:
    """``path`` moved out of the way for the block: the build-time copy is gone."""
    away = path.with_name(path.name + ".hidden")
    path.rename(away)
    try:
        yield
    finally:
        away.rename(path)


def cuda_fix(cuda: CudaBuild, out: Path, *options: str) -> Path:
    proc = cli("fix", "-w", str(out), *options, str(cuda.wheel))
    assert proc.returncode == 0, proc.stderr
    return repaired(out)


CALL_CUDA = f"import {CUDA_MODULE} as m; print(m.probe())"


def test_cuda_runtime_is_linked_from_the_nvidia_wheel_and_loads_without_it_preloaded(
    cuda: CudaBuild, python: Path, tmp_path: Path
) -> None:
    linked = cuda_fix(
        cuda, tmp_path / "linked", "--provided-by", "nvidia-*", "--site-packages", str(cuda.site)
    )
    control = cuda_fix(cuda, tmp_path / "control", "--exclude", "libcudart.so.12")
    assert libs_members(linked) == []
    # The DT_NEEDED stays the provider's own SONAME; the build-time RPATH gives way to one
    # from the extension's install folder to the provider's.
    needed, rpath = member_elf(linked, CUDA_MEMBER)
    assert "libcudart.so.12" in needed
    assert rpath == ("$ORIGIN/../nvidia/cuda_runtime/lib",)
    sites = {"linked": tmp_path / "site-linked", "control": tmp_path / "site-control"}
    for wheel, site in ((linked, sites["linked"]), (control, sites["control"])):
        install(wheel, site)
        install(cuda.provider, site)
    with hidden(cuda.site):
        ok = run_python(python, sites["linked"], CALL_CUDA)
        failed = run_python(python, sites["control"], CALL_CUDA)
        cudart = sites["control"] / CUDA_LIB_DIR / "libcudart.so.12"
        preload = f"import ctypes; ctypes.CDLL({str(cudart)!r})"
        preloaded = run_python(python, sites["control"], f"{preload}; {CALL_CUDA}")
    assert (ok.returncode, ok.stdout.split()) == (0, [str(CUDA_VERSION)]), ok.stderr
    assert failed.returncode != 0 and "libcudart.so.12" in failed.stderr, failed.stderr
    # The control works only when the provider happens to be loaded first.
    assert (preloaded.returncode, preloaded.stdout.split()) == (0, [str(CUDA_VERSION)])


def test_show_lists_the_provider_and_the_requires_dist_covering_it(cuda: CudaBuild) -> None:
    args = ["show", "--provided-by", "nvidia-*", "--site-packages", str(cuda.site)]
    doc = json.loads(cli(*args, "--json", str(cuda.wheel)).stdout)
    assert doc["external_libs"] == {}
    assert "libcudart.so.12" not in doc["versioned_symbols"]  # the provider's own versions
    assert doc["provided_libs"] == {
        "libcudart.so.12": {
            "distribution": "nvidia-cuda-runtime-cu12",
            "version": "12.4.127",
            "path": str(cuda.site / CUDA_LIB_DIR / "libcudart.so.12"),
            "install_dir": CUDA_LIB_DIR,
            "requirement": "nvidia-cuda-runtime-cu12>=12.4",
        }
    }
    text = cli(*args, str(cuda.wheel)).stdout
    assert (
        f"  libcudart.so.12 => nvidia-cuda-runtime-cu12 12.4.127 ({CUDA_LIB_DIR}); "
        "Requires-Dist: nvidia-cuda-runtime-cu12>=12.4"
    ) in text.splitlines()
    # Without the option the same library is an external one a repair would graft.
    plain = json.loads(
        cli("show", "--json", "--ldpaths", str(cuda.site / CUDA_LIB_DIR), str(cuda.wheel)).stdout
    )
    assert list(plain["external_libs"]) == ["libcudart.so.12"]


def test_sbom_names_the_provider_as_a_dependency_not_a_component(
    cuda: CudaBuild, tmp_path: Path
) -> None:
    result = repair_wheel(
        cuda.wheel, tmp_path / "out", provided_by=["nvidia-*"], site_packages=[str(cuda.site)]
    )
    assert [(p.soname, p.distribution) for p in result.provided] == [
        ("libcudart.so.12", "nvidia-cuda-runtime-cu12")
    ]
    with zipfile.ZipFile(result.output) as zf:
        doc = json.loads(zf.read(f"cudemo-1.0.dist-info/{SBOM_PATH}"))
    assert doc["components"] == []
    (root,) = doc["dependencies"]
    assert root["dependsOn"] == ["pkg:pypi/nvidia-cuda-runtime-cu12@12.4.127"]


# ------------------------------------------------------------------ torch


@pytest.fixture(scope="module")
def torch_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch (the CPU build, without its dependencies) installed once for the module."""
    site = tmp_path_factory.mktemp("torch") / "site"
    proc = pip(
        "install", "--quiet", "--no-deps", "--only-binary=:all:", "--target", str(site), TORCH
    )
    if proc.returncode != 0:
        unavailable(f"pip could not install {TORCH}: {proc.stderr.strip()[-300:]}")
    return site


TORCH_MODULE = "torchdemo._c10"
TORCH_CHECK = f"""
import sys
import {TORCH_MODULE}
assert "torch" not in sys.modules
maps = open("/proc/self/maps").read()
print([line.split()[-1] for line in maps.splitlines() if line.endswith("/libc10.so")][0])
"""


def test_torch_extension_loads_libc10_without_importing_torch(
    torch_site: Path, python: Path, tmp_path: Path
) -> None:
    lib = torch_site / "torch" / "lib"
    # As torch's own extension builds: linked with no RPATH, relying on torch imported first.
    ext = build_module(
        tmp_path, TORCH_MODULE, "", "Py_RETURN_NONE;", f"-L{lib}", "-Wl,--no-as-needed", "-lc10"
    )
    wheel = zip_wheel("torchdemo", ext, TORCH_MODULE, ["torch>=2"], tmp_path / "dist")
    site_option = ["--site-packages", str(torch_site)]
    proc = cli(
        "fix", "-w", str(tmp_path / "linked"), "--provided-by", "torch", *site_option, str(wheel)
    )
    assert proc.returncode == 0, proc.stderr
    linked = repaired(tmp_path / "linked")
    proc = cli("fix", "-w", str(tmp_path / "control"), "--exclude", "libc10.so", str(wheel))
    assert proc.returncode == 0, proc.stderr
    control = repaired(tmp_path / "control")
    member = TORCH_MODULE.replace(".", "/") + EXT_SUFFIX
    assert member_elf(linked, member)[1] == ("$ORIGIN/../torch/lib",)
    assert libs_members(linked) == []
    runs = {}
    for name, built in (("linked", linked), ("control", control)):
        site = tmp_path / f"site-{name}"
        install(built, site)
        for folder in ("torch", "torch.libs"):  # the installed torch, shared by both sites
            if (torch_site / folder).exists():
                (site / folder).symlink_to(torch_site / folder)
        runs[name] = run_python(python, site, TORCH_CHECK)
    ok, failed = runs["linked"], runs["control"]
    assert ok.returncode == 0, ok.stderr
    assert Path(ok.stdout.strip()).resolve() == (lib / "libc10.so").resolve()
    assert failed.returncode != 0 and "libc10.so" in failed.stderr, failed.stderr


# ------------------------------------------------------------------ refusals


FOO = WheelSpec(libraries=(Library("foo", 7),), extensions=(Extension("demo._ext", ("foo",)),))
DEMO_MEMBER = "demo/_ext" + EXT_SUFFIX


def fake_distribution(site: Path, library: bytes, version: str = "2.0") -> None:
    """An installed distribution ``fakeprov`` shipping ``fakeprov/lib/libfoo.so.1``."""
    files = {"fakeprov/__init__.py": b"", "fakeprov/lib/libfoo.so.1": library}
    dist_info = f"fakeprov-{version}.dist-info"
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: fakeprov\nVersion: {version}\n".encode()
    )
    for name, data in with_record(dist_info, files).items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)


def with_requires(wheel: Path, requires: Sequence[str]) -> None:
    """Add Requires-Dist lines to ``wheel``'s METADATA (and fix its RECORD row)."""
    with zipfile.ZipFile(wheel) as zf:
        files = {info.filename: zf.read(info) for info in zf.infolist()}
    record = next(n for n in files if n.endswith(".dist-info/RECORD"))
    del files[record]
    dist_info = record.split("/")[0]
    files[f"{dist_info}/METADATA"] += "".join(f"Requires-Dist: {r}\n" for r in requires).encode()
    write_zip(wheel, with_record(dist_info, files))


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, Path]:
    """(the demo wheel linking libfoo.so.1, a site-packages where fakeprov ships it)."""
    built = build_wheel(FOO, tmp_path / "build")
    site = tmp_path / "fake-site"
    fake_distribution(site, built.host_library("foo").read_bytes())
    return built.path, site


def fix_demo(wheel: Path, site: Path, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return cli(
        "fix",
        "-w",
        str(out),
        "--provided-by",
        "fakeprov",
        "--site-packages",
        str(site),
        *options,
        str(wheel),
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("requires", "problem"),
    [
        ((), "has no Requires-Dist for fakeprov"),
        (("fakeprov<2",), "excludes the installed fakeprov 2.0"),
        (("fakeprov>=1; python_version < '3'",), "has no Requires-Dist for fakeprov"),
    ],
)
def test_an_undeclared_provider_is_refused(
    demo: tuple[Path, Path], tmp_path: Path, requires: tuple[str, ...], problem: str
) -> None:
    wheel, site = demo
    with_requires(wheel, requires)
    out = tmp_path / "out"
    proc = fix_demo(wheel, site, out)
    assert proc.returncode == PolicyError.exit_code, proc.stderr
    line = one_line(proc)
    assert problem in line and "libfoo.so.1" in line and DEMO_MEMBER in line, line
    assert not out.exists() or not any(out.iterdir())
    # --no-requires-check links it all the same.
    proc = fix_demo(wheel, site, out, "--no-requires-check")
    assert proc.returncode == 0, proc.stderr
    assert member_elf(repaired(out), DEMO_MEMBER)[1] == ("$ORIGIN/../fakeprov/lib",)


@pytest.mark.parametrize(
    ("module", "entry"),
    [("demo._ext", "$ORIGIN/../fakeprov/lib"), ("demo.sub._ext", "$ORIGIN/../../fakeprov/lib")],
)
def test_a_declared_provider_is_linked_from_where_it_installs(
    tmp_path: Path, python: Path, module: str, entry: str
) -> None:
    spec = WheelSpec(libraries=(Library("foo", 7),), extensions=(Extension(module, ("foo",)),))
    built = build_wheel(spec, tmp_path / "build")
    site = tmp_path / "fake-site"
    fake_distribution(site, built.host_library("foo").read_bytes())
    with_requires(built.path, ["fakeprov>=2"])
    proc = fix_demo(built.path, site, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "linked libfoo.so.1 from fakeprov 2.0 (fakeprov/lib)" in proc.stdout
    out = repaired(tmp_path / "out")
    assert libs_members(out) == []
    member = module.replace(".", "/") + EXT_SUFFIX
    assert member_elf(out, member) == (("libfoo.so.1",), (entry,))
    # Installed beside the provider, with the build's copy gone, it loads the provider's.
    shutil.rmtree(built.lib_dir)
    install(out, tmp_path / "site")
    shutil.copytree(site, tmp_path / "site", dirs_exist_ok=True)
    run = run_python(python, tmp_path / "site", f"import {module} as m; print(m.value())")
    assert (run.returncode, run.stdout.split()) == (0, ["7"]), run.stderr


def test_providers_are_found_in_the_running_interpreters_environment(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    wheel, site = demo
    with_requires(wheel, ["fakeprov"])
    out = tmp_path / "out"
    args = ["fix", "-w", str(out), "--provided-by", "FakeProv", str(wheel)]
    proc = cli(*args, env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    assert member_elf(repaired(out), DEMO_MEMBER)[1] == ("$ORIGIN/../fakeprov/lib",)
    proc = cli(*args)  # not on this interpreter's path: nothing matches
    assert proc.returncode == UsageError.exit_code, proc.stderr
    assert "in this interpreter's environment" in one_line(proc)


def test_a_provider_built_for_another_architecture_is_refused(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    wheel, site = demo
    aarch64 = ElfBuilder(machine=EM_AARCH64, entries=[(DT_SONAME, "libfoo.so.1")]).build()
    (site / "fakeprov/lib/libfoo.so.1").write_bytes(aarch64)
    with_requires(wheel, ["fakeprov"])
    proc = fix_demo(wheel, site, tmp_path / "out")
    assert proc.returncode == DependencyError.exit_code, proc.stderr
    line = one_line(proc)
    assert DEMO_MEMBER in line and "fakeprov 2.0" in line and "built for aarch64" in line, line
    assert str(site / "fakeprov/lib/libfoo.so.1") in line


@pytest.mark.parametrize("command", ["fix", "show"])
def test_a_glob_matching_no_installed_distribution_is_refused(
    demo: tuple[Path, Path], tmp_path: Path, command: str
) -> None:
    wheel, site = demo
    options = ["-w", str(tmp_path / "out")] if command == "fix" else []
    proc = cli(
        command, *options, "--provided-by", "nomatch-*", "--site-packages", str(site), str(wheel)
    )
    assert proc.returncode == UsageError.exit_code, proc.stderr
    line = one_line(proc)
    assert "--provided-by 'nomatch-*'" in line and str(site) in line, line


def test_check_accepts_a_declared_provider_reached_by_rpath(
    demo: tuple[Path, Path], tmp_path: Path
) -> None:
    """`check --provided-by` passes a wheel repaired that way; without the option the library
    is outside the wheel, and a wheel whose RPATH does not lead to the provider fails it."""
    wheel, site = demo
    with_requires(wheel, ["fakeprov>=2"])
    assert fix_demo(wheel, site, tmp_path / "linked").returncode == 0
    linked = repaired(tmp_path / "linked")
    provider = ("--provided-by", "fakeprov", "--site-packages", str(site))
    proc = cli("check", *provider, str(linked))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plain = cli("check", str(linked))
    assert plain.returncode == DependencyError.exit_code, plain.stdout
    assert "libfoo.so.1" in plain.stdout
    # Left outside with --exclude instead, it keeps no RPATH entry to the provider's folder.
    excluded = tmp_path / "excluded"
    proc = cli("fix", "-w", str(excluded), "--exclude", "libfoo.so.1", str(wheel))
    assert proc.returncode == 0, proc.stderr
    proc = cli("check", *provider, str(repaired(excluded)))
    assert proc.returncode == DependencyError.exit_code, proc.stdout
    assert "no RPATH entry leads to fakeprov/lib" in proc.stdout, proc.stdout
