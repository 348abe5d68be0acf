"""Session fixtures: small ELF files built with gcc, each showing one thing the core reads.

Building them here (rather than committing binaries) keeps their truth visible:
the sources and link flags below are what the tests' expected values come from.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pypi_wheels import unavailable
from wheelbuild import Build, BuiltWheel, WheelSpec, build_wheel

VERS_C = """
int vers_one(void) { return 1; }
int vers_two(void) { return 2; }
int vers_compat_old(void) { return 10; }
int vers_compat_new(void) { return 20; }
__asm__(".symver vers_compat_old, vers_compat@VERS_1.0");
__asm__(".symver vers_compat_new, vers_compat@@VERS_2.0");
"""
# VERS_2.0 inherits from VERS_1.0: its definition carries a second (parent) name.
VERS_MAP = """
VERS_1.0 { global: vers_one; vers_compat; local: *; };
VERS_2.0 { global: vers_two; } VERS_1.0;
"""
EXT_C = """
extern int vers_one(void);
extern int vers_two(void);
extern int vers_compat(void);
extern void maybe_there(void) __attribute__((weak));
int ext_entry(void) {
    if (maybe_there) maybe_there();
    return vers_one() + vers_two() + vers_compat();
}
"""
MAIN_C = "extern int vers_one(void);\nint main(void) { return vers_one(); }\n"
FILLER_C = "int filler;\n"
SOURCES = {
    "vers.c": VERS_C,
    "vers.map": VERS_MAP,
    "ext.c": EXT_C,
    "main.c": MAIN_C,
    "filler.c": FILLER_C,
}

EXT_RPATH = "$ORIGIN/../lib:/opt/rw"
HASH_STYLES = ("sysv", "gnu", "both")
ISA_LEVELS = ("x86-64-v2", "x86-64-v3", "x86-64-v4")

Compile = Callable[..., Path]


@pytest.fixture(scope="session")
def cc(tmp_path_factory: pytest.TempPathFactory) -> Compile:
    """``cc(output_name, *gcc_args)`` builds in one session directory holding SOURCES."""
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    workdir = tmp_path_factory.mktemp("elf-fixtures")
    for name, text in SOURCES.items():
        (workdir / name).write_text(text)

    def compile_(output: str, *args: str) -> Path:
        proc = subprocess.run(
            ["gcc", *args, "-o", output], cwd=workdir, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"gcc {' '.join(args)} failed:\n{proc.stderr}")
        return workdir / output

    return compile_


@pytest.fixture(scope="session")
def cc32(cc: Compile) -> Compile:
    """Like ``cc`` but for i386; needs gcc-multilib."""
    try:
        cc("probe32.so", "-m32", "-shared", "-fPIC", "filler.c")
    except RuntimeError as exc:
        unavailable(f"gcc -m32 does not work (install gcc-multilib): {exc}")

    def compile32(output: str, *args: str) -> Path:
        return cc(output, "-m32", *args)

    return compile32


def _shared(compile_: Compile, output: str, *args: str) -> Path:
    return compile_(output, "-shared", "-fPIC", "-O1", *args)


def _libvers(compile_: Compile, output: str, *args: str) -> Path:
    return _shared(
        compile_,
        output,
        "vers.c",
        "-Wl,-soname,libvers.so.1",
        "-Wl,--version-script=vers.map",
        *args,
    )


def _ext(compile_: Compile, output: str, *args: str) -> Path:
    return _shared(compile_, output, "ext.c", "-L.", "-lvers", *args)


@pytest.fixture(scope="session")
def libvers(cc: Compile) -> Path:
    """SONAME libvers.so.1, versions VERS_1.0 and VERS_2.0 (child of 1.0), one symbol each,
    plus vers_compat at both: VERS_1.0 hidden, VERS_2.0 default."""
    return _libvers(cc, "libvers.so")


@pytest.fixture(scope="session")
def ext_rpath(cc: Compile, libvers: Path) -> Path:
    """Needs libvers.so.1 at VERS_1.0 and VERS_2.0; DT_RPATH with $ORIGIN; weak maybe_there."""
    return _ext(cc, "ext_rpath.so", f"-Wl,-rpath,{EXT_RPATH}", "-Wl,--disable-new-dtags")


@pytest.fixture(scope="session")
def ext_runpath(cc: Compile, libvers: Path) -> Path:
    """The same extension linked with DT_RUNPATH instead."""
    return _ext(cc, "ext_runpath.so", f"-Wl,-rpath,{EXT_RPATH}", "-Wl,--enable-new-dtags")


@pytest.fixture(scope="session")
def needs_in_order(cc: Compile) -> Path:
    """DT_NEEDED libzeta.so, libalpha.so, libmid.so (link order, not sorted), then libc."""
    for name in ("zeta", "alpha", "mid"):
        _shared(cc, f"lib{name}.so", "filler.c", f"-Wl,-soname,lib{name}.so")
    return _shared(
        cc, "libordered.so", "filler.c", "-L.", "-Wl,--no-as-needed", "-lzeta", "-lalpha", "-lmid"
    )


@pytest.fixture(scope="session")
def hash_styles(cc: Compile) -> dict[str, Path]:
    """libvers built with each --hash-style: the symbol count comes from DT_HASH or DT_GNU_HASH."""
    return {
        style: _libvers(cc, f"libvers-{style}.so", f"-Wl,--hash-style={style}")
        for style in HASH_STYLES
    }


@pytest.fixture(scope="session")
def exe_pie(cc: Compile, libvers: Path) -> Path:
    return cc("main_pie", "-pie", "main.c", "-L.", "-lvers")


@pytest.fixture(scope="session")
def exe_nopie(cc: Compile, libvers: Path) -> Path:
    return cc("main_nopie", "-no-pie", "main.c", "-L.", "-lvers")


@pytest.fixture(scope="session")
def object_file(cc: Compile) -> Path:
    """A relocatable object: no program headers, nothing dynamic."""
    return cc("ext.o", "-c", "-fPIC", "ext.c")


@pytest.fixture(scope="session")
def isa_marked(cc: Compile) -> dict[str, Path]:
    """A library per ld ``-z x86-64-vN`` level (x86 ISA_1_NEEDED property), plus one unmarked."""
    built = {
        level: _shared(cc, f"libisa-{level}.so", "filler.c", f"-Wl,-z,{level}")
        for level in ISA_LEVELS
    }
    built["unmarked"] = _shared(cc, "libisa-unmarked.so", "filler.c")
    return built


@pytest.fixture(scope="session")
def libvers32(cc32: Compile) -> Path:
    return _libvers(cc32, "libvers32.so")


@pytest.fixture(scope="session")
def ext32(cc32: Compile, libvers32: Path) -> Path:
    """The i386 extension: needs libvers.so.1 (the SONAME of libvers32.so) with DT_RUNPATH."""
    return _shared(
        cc32,
        "ext32.so",
        "ext.c",
        "-L.",
        "-l:libvers32.so",
        f"-Wl,-rpath,{EXT_RPATH}",
        "-Wl,--enable-new-dtags",
    )


@pytest.fixture(scope="session")
def exe32(cc32: Compile, libvers32: Path) -> Path:
    return cc32("main32", "main.c", "-L.", "-l:libvers32.so")


@pytest.fixture
def build(tmp_path: Path) -> Build:
    """Build test wheels from specs (gcc), each in a folder of its own under ``tmp_path``."""
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    counter = itertools.count()

    def build_(spec: WheelSpec) -> BuiltWheel:
        return build_wheel(spec, tmp_path / f"build{next(counter)}")

    return build_
