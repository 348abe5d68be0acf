"""``fix`` on real projects built from their sdists against the distro's libraries: the repaired
wheels must work with every grafted library's original file hidden.

Hiding happens in a private mount namespace (``unshare -m``) where ``/dev/null`` is bind-mounted
over each original, so the loader finds an empty file there; nothing outside the namespace
changes. That needs root, and the build needs the projects' -dev packages (libpq-dev,
libffi-dev). Without them these tests are skipped, except under CI, where they must run.

Building takes about half a minute; the wheels are kept in ``<cache>/built`` (the cache is
``$REPAIRWHEEL_WHEEL_CACHE``, default ``~/.cache/repairwheel/wheels``) and reused.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename
from pypi_wheels import cache_dir, unavailable
from wheelbuild import INTERPRETER_TAG, PLATFORM, install, make_venv, repairwheel_cli, run_python

from repairwheel.repair import RepairResult, repair_wheel


@dataclass(frozen=True)
class RealProject:
    """A pinned sdist, the -dev package its build needs, and code that uses the built wheel."""

    project: str
    version: str
    dev_package: str
    library: str  # the soname the extension links, which a repair must graft
    use: str  # Python code that imports and exercises the project; prints "ok" at the end
    dependencies: tuple[tuple[str, str], ...] = ()  # (requirement, wheel file name), pure Python

    @property
    def wheel_name(self) -> str:
        tag = f"{INTERPRETER_TAG.interpreter}-{INTERPRETER_TAG.abi}-{PLATFORM}"
        return f"{self.project}-{self.version}-{tag}.whl"


PSYCOPG2 = RealProject(
    project="psycopg2",
    version="2.9.13",
    dev_package="libpq-dev",
    library="libpq.so.5",
    use="""
import psycopg2, psycopg2.extensions as ext
# The grafted libpq answers; its minor release may be newer than the headers of a cached build.
assert ext.libpq_version() // 10000 == psycopg2.__libpq_version__ // 10000 > 0
assert ext.parse_dsn("dbname=x sslmode=require") == {"dbname": "x", "sslmode": "require"}
try:
    psycopg2.connect("host=/nonexistent dbname=x connect_timeout=1")
except psycopg2.OperationalError as exc:
    assert "/nonexistent" in str(exc), exc
print("ok")
""",
)
CFFI = RealProject(
    project="cffi",
    version="2.1.1",
    dev_package="libffi-dev",
    library="libffi.so.8",
    use="""
import cffi
ffi = cffi.FFI()
ffi.cdef("int abs(int);"
         "void qsort(void *, size_t, size_t, int (*)(const void *, const void *));")
libc = ffi.dlopen(None)
assert libc.abs(-42) == 42

@ffi.callback("int(const void *, const void *)")
def compare(a, b):
    x, y = ffi.cast("int *", a)[0], ffi.cast("int *", b)[0]
    return (x > y) - (x < y)

numbers = ffi.new("int[]", [3, 1, 2])
libc.qsort(numbers, 3, ffi.sizeof("int"), compare)
assert list(numbers) == [1, 2, 3]
print("ok")
""",
    dependencies=(("pycparser==2.23", "pycparser-2.23-py3-none-any.whl"),),
)
PROJECTS = {p.project: p for p in (PSYCOPG2, CFFI)}
_SEARCH_VARIABLES = ("LD_LIBRARY_PATH", "REPAIRWHEEL_LD_LIBRARY_PATH", "AUDITWHEEL_LD_LIBRARY_PATH")


def _dev_package_missing(project: RealProject) -> bool:
    if project is PSYCOPG2:
        return shutil.which("pg_config") is None
    probe = subprocess.run(
        ["gcc", "-E", "-x", "c", "-", "-o", os.devnull],
        input="#include <ffi.h>\n",
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode != 0


def _cached_wheel(requirement: str, filename: str, *, from_source: bool) -> Path:
    """The wheel ``filename`` of ``requirement`` (built from its sdist if ``from_source``),
    from the cache when there."""
    target = cache_dir() / "built" / filename
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    source = ["--no-binary", ":all:"] if from_source else []
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                *source,
                "--disable-pip-version-check",
                "-w",
                tmp,
                requirement,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        built = Path(tmp) / filename
        if proc.returncode != 0 or not built.is_file():
            unavailable(f"pip could not make {filename}: {proc.stderr[-800:]}")
        shutil.move(str(built), target)
    return target


def _can_hide_libraries() -> str | None:
    """Why libraries cannot be hidden here, or None."""
    if os.geteuid() != 0:
        return "hiding libraries needs root (unshare -m, mount --bind)"
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"unshare -m does not work here: {probe.stderr.strip()}"
    return None


@dataclass(frozen=True)
class Prepared:
    project: RealProject
    wheel: Path  # built from the sdist, unrepaired
    result: RepairResult
    venv_python: Path
    site: Path  # the repaired wheel installed
    unrepaired_site: Path


@pytest.fixture(scope="module", params=sorted(PROJECTS))
def prepared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    project = PROJECTS[request.param]
    reason = _can_hide_libraries()
    if reason is not None:
        unavailable(reason)
    if shutil.which("gcc") is None or _dev_package_missing(project):
        unavailable(f"building {project.project} needs gcc and {project.dev_package}")
    requirement = f"{project.project}=={project.version}"
    wheel = _cached_wheel(requirement, project.wheel_name, from_source=True)
    tmp = tmp_path_factory.mktemp(project.project)
    with pytest.MonkeyPatch.context() as env:
        for name in _SEARCH_VARIABLES:
            env.delenv(name, raising=False)
        result = repair_wheel(wheel, tmp / "out")
    for requirement, filename in project.dependencies:
        dependency = _cached_wheel(requirement, filename, from_source=False)
        install(dependency, tmp / "site")
        install(dependency, tmp / "unrepaired-site")
    install(Path(result.output), tmp / "site")
    install(wheel, tmp / "unrepaired-site")
    venv_python = make_venv(tmp / "venv")
    return Prepared(project, wheel, result, venv_python, tmp / "site", tmp / "unrepaired-site")


def _run_hidden(prepared: Prepared, site: Path) -> subprocess.CompletedProcess[str]:
    """Run the project's use code with /dev/null mounted over every grafted library's source."""
    mounts = " && ".join(
        f"mount --bind /dev/null {shlex.quote(g.source)}" for g in prepared.result.grafted
    )
    wrapper = ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh"]
    return run_python(prepared.venv_python, site, prepared.project.use, wrapper=wrapper)


def test_repair_grafts_the_linked_library(prepared: Prepared) -> None:
    assert prepared.project.library in {g.soname for g in prepared.result.grafted}


def test_unrepaired_wheel_fails_with_the_libraries_hidden(prepared: Prepared) -> None:
    """The control: hiding really takes the system copies away."""
    proc = _run_hidden(prepared, prepared.unrepaired_site)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr


def test_repaired_wheel_works_with_the_libraries_hidden(prepared: Prepared) -> None:
    proc = _run_hidden(prepared, prepared.site)
    assert (proc.returncode, proc.stdout) == (0, "ok\n"), proc.stderr


def test_check_passes_the_repaired_wheel(prepared: Prepared) -> None:
    proc = repairwheel_cli("check", prepared.result.output)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout


def test_check_fails_the_unrepaired_wheel_naming_the_library(prepared: Prepared) -> None:
    proc = repairwheel_cli("check", str(prepared.wheel))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"needs {prepared.project.library}, which is neither in the wheel" in proc.stdout


@pytest.fixture(scope="module")
def auditwheel_output(prepared: Prepared, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """auditwheel's repair of the same wheel, with the same search paths."""
    out = tmp_path_factory.mktemp(f"auditwheel-{prepared.project.project}")
    env = {k: v for k, v in os.environ.items() if k not in _SEARCH_VARIABLES}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    proc = subprocess.run(
        [sys.executable, "-m", "auditwheel", "repair", "-w", str(out), str(prepared.wheel)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.iterdir()
    return wheel


def test_same_platform_tags_as_auditwheel(prepared: Prepared, auditwheel_output: Path) -> None:
    ours = Path(prepared.result.output)
    assert _platform_tags(ours) == _platform_tags(auditwheel_output)


def test_same_grafted_libraries_as_auditwheel(prepared: Prepared, auditwheel_output: Path) -> None:
    ours = Path(prepared.result.output)
    assert _grafted_files(ours) == _grafted_files(auditwheel_output)


def _platform_tags(wheel: Path) -> set[str]:
    return {tag.platform for tag in parse_wheel_filename(wheel.name)[3]}


def _grafted_files(wheel: Path) -> set[str]:
    """File names in ``<dist>.libs/``: the original name and the hash of the source."""
    libs = f"{parse_wheel_filename(wheel.name)[0]}.libs/"
    with zipfile.ZipFile(wheel) as zf:
        return {n[len(libs) :] for n in zf.namelist() if n.startswith(libs) and n != libs}
