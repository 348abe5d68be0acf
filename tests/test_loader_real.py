"""Loader semantics checked against the loaders themselves: glibc's ld.so (``ldd``, running
programs), musl's (``musl-gcc``, ``ld-musl-*.so.1 --list``) and glibc's armhf ld.so under
``qemu-arm``, each where this machine has it (the test is skipped otherwise)."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from repairwheel import graph, resolve
from repairwheel.elf import read_elf, read_elf_and_symbols
from repairwheel.resolve import HostFilesystem, Step, loader_config
from repairwheel.resolve import fs as resolve_fs
from repairwheel.resolve.config import _GLIBC_INTERPRETERS, _MUSL_ARCH
from repairwheel.scan import facts_from_symbols

ARCH = read_elf(sys.executable).arch
HOST_GLIBC = bool(os.confstr("CS_GNU_LIBC_VERSION")) if hasattr(os, "confstr") else False
LD_SO = _GLIBC_INTERPRETERS.get(ARCH or "")
MUSL_LDSO = f"/lib/ld-musl-{_MUSL_ARCH.get(ARCH or '', ARCH)}.so.1"
ARMHF_ROOT = "/usr/arm-linux-gnueabihf"
ARMHF_LDSO = f"{ARMHF_ROOT}/lib/ld-linux-armhf.so.3"

needs_ldd = pytest.mark.skipif(
    not (HOST_GLIBC and shutil.which("ldd")), reason="needs glibc's ldd to compare with"
)
needs_musl = pytest.mark.skipif(
    not (shutil.which("musl-gcc") and os.path.exists(MUSL_LDSO)),
    reason="needs musl-gcc and musl's loader (apt install musl-tools)",
)
needs_armhf = pytest.mark.skipif(
    not (
        shutil.which("arm-linux-gnueabihf-gcc")
        and shutil.which("arm-linux-gnueabi-gcc")
        and shutil.which("qemu-arm")
        and os.path.exists(ARMHF_LDSO)
    ),
    reason="needs gcc-arm-linux-gnueabihf, gcc-arm-linux-gnueabi and qemu-user",
)

DT_SONAME, DT_RPATH, DT_RUNPATH = 14, 15, 29
_LIB_C = "int fx(void) { return 7; }\n"


def cc(compiler: str, out: Path, source: str, *args: str, shared: bool = True) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [compiler, *(["-shared", "-fPIC"] if shared else []), "-o", str(out)]
    cmd += ["-x", "c", "-", "-x", "none", "-Wl,--no-as-needed", *args]
    subprocess.run(cmd, input=source, text=True, check=True, capture_output=True)
    return out


def retag(path: Path, old: int, new: int) -> None:
    """Turn the first ``old`` dynamic entry of a little-endian ELF64 file into ``new``.

    Linkers write one DT_RUNPATH; the DT_SONAME string of ``-Wl,-soname,DIR`` retagged makes a
    second one, before it in the table.
    """
    data = bytearray(path.read_bytes())
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type != 2:
            continue
        for at in range(p_offset, p_offset + p_filesz, 16):
            (tag,) = struct.unpack_from("<q", data, at)
            if tag == old:
                struct.pack_into("<q", data, at, new)
                path.write_bytes(bytes(data))
                return
    raise AssertionError(f"{path} has no dynamic entry {old}")


def ldd(path: Path, **environ: str) -> dict[str, str | None]:
    """glibc's answer: name -> realpath (None: not found)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    out = subprocess.run(
        ["ldd", str(path)], env={**env, **environ}, capture_output=True, text=True
    ).stdout
    return _listing(out)


def musl_list(path: Path) -> tuple[dict[str, str | None], str]:
    """musl's answer (its loader's ldd mode) and its error output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    run = subprocess.run([MUSL_LDSO, "--list", str(path)], env=env, capture_output=True, text=True)
    found = _listing(run.stdout)
    for match in re.finditer(r"Error loading shared library (\S+): ", run.stderr):
        found[match.group(1)] = None
    return found, run.stderr


def _listing(text: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        match = re.match(r"\s*(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$", line)
        if match:
            target = match.group(2)
            found[match.group(1)] = None if target == "not found" else os.path.realpath(target)
    return found


def ours(path: Path, libc: str = "glibc", **kw: object) -> dict[str, str | None]:
    config = loader_config(libc, ARCH or "", environ={}, **kw)  # type: ignore[arg-type]
    tree = resolve.resolve(str(path), read_elf(path), HostFilesystem(), config)
    return {name: lib.realpath for name, lib in tree.libraries.items()}


def two_entries(compiler: str, tmp_path: Path, kind: str, *, lib_in: str) -> Path:
    """A program needing libx.so, with two DT_RPATH or DT_RUNPATH entries: first A/, then B/
    (``kind`` "rpath" or "runpath"); libx.so is in ``lib_in``."""
    lib = cc(compiler, tmp_path / lib_in / "libx.so", _LIB_C, "-Wl,-soname,libx.so")
    dtags = "--enable-new-dtags" if kind == "runpath" else "--disable-new-dtags"
    prog = cc(
        compiler,
        tmp_path / "prog",
        "int fx(void); int main(void) { return fx() == 7 ? 0 : 1; }\n",
        f"-L{lib.parent}",
        "-lx",
        f"-Wl,{dtags},-rpath,{tmp_path / 'B'}",
        f"-Wl,-soname,{tmp_path / 'A'}",
        shared=False,
    )
    retag(prog, DT_SONAME, DT_RUNPATH if kind == "runpath" else DT_RPATH)
    (tmp_path / "A").mkdir(exist_ok=True)
    (tmp_path / "B").mkdir(exist_ok=True)
    elf = read_elf(prog)
    entries = elf.runpaths if kind == "runpath" else elf.rpaths
    assert entries == (str(tmp_path / "A"), str(tmp_path / "B"))
    return prog


# --- 1. several DT_RPATH / DT_RUNPATH entries: the last one counts


@needs_ldd
@pytest.mark.parametrize("kind", ["rpath", "runpath"])
@pytest.mark.parametrize("lib_in", ["A", "B"])
def test_glibc_searches_the_last_of_several_entries(tmp_path: Path, kind: str, lib_in: str) -> None:
    prog = two_entries("gcc", tmp_path, kind, lib_in=lib_in)
    real = ldd(prog)
    assert (real["libx.so"] is not None) == (lib_in == "B")
    assert ours(prog)["libx.so"] == real["libx.so"]
    run = subprocess.run([str(prog)], capture_output=True)
    assert (run.returncode == 0) == (lib_in == "B")


@needs_musl
@pytest.mark.parametrize("kind", ["rpath", "runpath"])
@pytest.mark.parametrize("lib_in", ["A", "B"])
def test_musl_searches_the_last_of_several_entries_too(
    tmp_path: Path, kind: str, lib_in: str
) -> None:
    prog = two_entries("musl-gcc", tmp_path, kind, lib_in=lib_in)
    real, _ = musl_list(prog)
    assert (real["libx.so"] is not None) == (lib_in == "B")
    assert ours(prog, "musl")["libx.so"] == real["libx.so"]


# --- 2. musl answers a name with a loaded object's short name only, never its DT_SONAME


def _soname_only(compiler: str, tmp_path: Path) -> Path:
    """prog needs libq.so (whose DT_SONAME is libqq.so.1) and libr.so, which needs libqq.so.1;
    no file is called libqq.so.1."""
    lib = tmp_path / "lib"
    cc(compiler, lib / "libq.so", _LIB_C, "-Wl,-soname,libqq.so.1")
    shutil.copy(lib / "libq.so", lib / "libqq.so.1")
    cc(compiler, lib / "libr.so", "int fx(void); int fr(void) { return fx(); }\n",
       f"-L{lib}", "-l:libqq.so.1", "-Wl,-soname,libr.so")  # fmt: skip
    (lib / "libqq.so.1").unlink()
    stub = cc(compiler, tmp_path / "stub" / "libq.so", _LIB_C)  # no SONAME: DT_NEEDED libq.so
    return cc(
        compiler,
        tmp_path / "prog",
        "int fr(void); int main(void) { return fr() == 7 ? 0 : 1; }\n",
        f"-L{stub.parent}",
        "-lq",
        f"-L{lib}",
        "-lr",
        f"-Wl,--enable-new-dtags,-rpath,{lib}",
        shared=False,
    )


@needs_ldd
def test_glibc_answers_a_name_with_a_loaded_soname(tmp_path: Path) -> None:
    prog = _soname_only("gcc", tmp_path)
    assert subprocess.run([str(prog)]).returncode == 0
    found = ours(prog)
    assert found["libqq.so.1"] == found["libq.so"] == str(tmp_path / "lib" / "libq.so")
    assert ldd(prog)["libq.so"] == found["libq.so"]


@needs_musl
def test_musl_does_not_answer_a_name_with_a_loaded_soname(tmp_path: Path) -> None:
    prog = _soname_only("musl-gcc", tmp_path)
    real, errors = musl_list(prog)
    assert "Error loading shared library libqq.so.1" in errors
    assert subprocess.run([str(prog)], capture_output=True).returncode != 0
    found = ours(prog, "musl")
    assert found["libqq.so.1"] is None
    assert found["libq.so"] == real["libq.so"] == str(tmp_path / "lib" / "libq.so")


@needs_musl
def test_musl_names_a_file_loaded_by_path_by_its_basename_once_a_search_finds_it(
    tmp_path: Path,
) -> None:
    lib = cc("musl-gcc", tmp_path / "lib" / "libp.so", _LIB_C)  # no SONAME
    needs_by_name = cc("musl-gcc", tmp_path / "lib" / "libn.so", "", f"-L{lib.parent}", "-lp")
    prog = cc(
        "musl-gcc",
        tmp_path / "prog",
        "int main(void) { return 0; }\n",
        str(lib),  # DT_NEEDED is the path
        f"-L{lib.parent}",
        "-ln",
        f"-Wl,--enable-new-dtags,-rpath,{lib.parent}",
        shared=False,
    )
    assert read_elf(prog).needed[0] == str(lib)
    assert subprocess.run([str(prog)]).returncode == 0
    config = loader_config("musl", ARCH or "", environ={})
    tree = resolve.resolve(str(prog), read_elf(prog), HostFilesystem(), config)
    assert tree.libraries["libp.so"].same_as == str(lib)
    assert tree.libraries["libn.so"].realpath == str(needs_by_name)


# --- 3. the default directories are the target loader's own


def _help_dirs(interpreter: str) -> list[str]:
    out = subprocess.run([interpreter, "--help"], capture_output=True, text=True).stdout
    return [m.group(1).rstrip("/") for m in re.finditer(r"^\s+(\S+) \(system search path\)$",
                                                        out, re.M)]  # fmt: skip


@needs_ldd
def test_default_dirs_are_what_the_interpreter_prints(tmp_path: Path) -> None:
    assert LD_SO is not None
    printed = _help_dirs(LD_SO)
    if not printed:
        pytest.skip("this glibc's ld.so --help lists no system search path (glibc < 2.33)")
    config = loader_config("glibc", ARCH or "", environ={})
    conf = [d.directory for d in config.system_dirs if d.step is Step.LD_SO_CONF]
    # ld.so.conf first, then the interpreter's directories it has not named already.
    assert [d.directory for d in config.system_dirs] == list(dict.fromkeys([*conf, *printed]))
    assert {d.owner for d in config.system_dirs if d.step is Step.DEFAULT} == {LD_SO}
    assert resolve.interpreter_search_path(LD_SO) == tuple(printed)


def test_default_dirs_of_a_sysroot_are_the_superset(tmp_path: Path) -> None:
    config = loader_config("glibc", "x86_64", root=str(tmp_path), environ={})
    defaults = [d.entry for d in config.system_dirs if d.step is Step.DEFAULT]
    assert defaults[-4:] == ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]


def test_an_unknown_interpreter_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "ld.so"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    assert resolve.interpreter_search_path(str(script)) is None
    assert not marker.exists()


@needs_ldd
def test_a_dir_only_the_old_union_searched_agrees_with_ldd(tmp_path: Path) -> None:
    """A library in /usr/lib64 (searched by the old union, not by Debian's ld.so): in a private
    mount namespace /usr/lib64 holds it and /etc/ld.so.conf is empty; ldd and we run there."""
    assert LD_SO is not None
    if "/usr/lib64" in _help_dirs(LD_SO) or "/lib64" in _help_dirs(LD_SO):
        pytest.skip("this loader searches /usr/lib64 itself")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private mount namespace")
    lib = cc("gcc", tmp_path / "build" / "libonly64.so", _LIB_C)
    prog = cc(
        "gcc",
        tmp_path / "prog",
        "int main(void) { return 0; }\n",
        f"-L{lib.parent}",
        "-lonly64",
        shared=False,
    )
    lib64 = tmp_path / "lib64"  # what /usr/lib64 holds in the namespace
    lib64.mkdir()
    for entry in os.scandir("/usr/lib64") if os.path.isdir("/usr/lib64") else ():
        (lib64 / entry.name).symlink_to(os.path.realpath(entry.path))
    shutil.copy(lib, lib64)
    check = (
        "import json, sys; from repairwheel.resolve import lddtree; "
        f"print(json.dumps(lddtree({str(prog)!r}).libraries['libonly64.so'].realpath))"
    )
    empty = tmp_path / "ld.so.conf"  # so that only the default directories are searched
    empty.write_text("")
    script = (
        f"set -e; mount --bind {lib64} $(readlink -f /usr/lib64); "
        f"mount --bind {empty} /etc/ld.so.conf; "
        f"ldd {prog} | grep libonly64 || true; echo ---; {sys.executable} -c {_sh(check)}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    run = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    if run.returncode != 0:
        pytest.skip(f"cannot set up the mount namespace: {run.stderr.strip()}")
    ldd_part, ours_part = run.stdout.split("---\n")
    assert "libonly64.so => not found" in ldd_part
    assert ours_part.strip() == "null"


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# --- 4. ARM: the armhf loader refuses EABI5 soft-float libraries, and only those


_ARM_FLAGS = {
    "soft": 0x05000200,  # what arm-linux-gnueabi-gcc (Debian armel) writes
    "unmarked": 0x05000000,
    "eabi4": 0x04000000,
    "old-abi-soft": 0x00000200,
}


@needs_armhf
@pytest.mark.parametrize("variant", sorted(_ARM_FLAGS))
def test_armhf_loader_takes_or_refuses_a_candidate_as_we_do(tmp_path: Path, variant: str) -> None:
    first = cc("arm-linux-gnueabi-gcc", tmp_path / variant / "libx.so", _LIB_C,
               "-Wl,-soname,libx.so")  # fmt: skip
    data = bytearray(first.read_bytes())
    struct.pack_into("<I", data, 0x24, _ARM_FLAGS[variant])
    first.write_bytes(bytes(data))
    good = cc("arm-linux-gnueabihf-gcc", tmp_path / "hf" / "libx.so", _LIB_C,
              "-Wl,-soname,libx.so")  # fmt: skip
    prog = cc(
        "arm-linux-gnueabihf-gcc",
        tmp_path / "prog",
        "int fx(void); int main(void) { return fx() == 7 ? 0 : 1; }\n",
        f"-L{good.parent}",
        "-lx",
        f"-Wl,--enable-new-dtags,-rpath,$ORIGIN/{variant}:$ORIGIN/hf",
        shared=False,
    )
    listed = subprocess.run(
        ["qemu-arm", "-L", ARMHF_ROOT, ARMHF_LDSO, "--list", str(prog)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    real = _listing(listed)["libx.so"]
    config = loader_config("glibc", "armv7l", root=ARMHF_ROOT, environ={})
    tree = resolve.resolve(str(prog), read_elf(prog), HostFilesystem(), config)
    lib = tree.libraries["libx.so"]
    assert lib.realpath == real
    if real == str(good):
        assert lib.rejected == ((f"{tmp_path}/{variant}/libx.so", lib.rejected[0][1]),)
        assert "soft-float, the loader is hard-float" in lib.rejected[0][1]


# --- 7. borrowing a dependency from a loader's tree, as ld.so loads it


def _members(tmp_path: Path, paths: Sequence[Path]) -> list[object]:
    return [
        dataclasses.replace(
            facts_from_symbols(str(p), *read_elf_and_symbols(str(p))),
            path=str(p.relative_to(tmp_path)),
        )
        for p in paths
    ]


def _resolve_wheel(tmp_path: Path, files: Sequence[Path]) -> dict[str, dict[str, object]]:
    members = _members(tmp_path, files)
    deps = graph.resolve_members(members, "glibc", ARCH or "", None, ())  # type: ignore[arg-type]
    return {path: dict(d.libraries) for path, d in deps.items()}


@needs_ldd
def test_borrowing_through_an_inherited_rpath_matches_the_loader(tmp_path: Path) -> None:
    """pkg/prog (DT_RPATH $ORIGIN/libs) -> libs/libl.so (no RPATH) -> libs/libn.so: libl.so
    finds libn.so only through prog's inherited RPATH, so it borrows prog's answer."""
    pkg = tmp_path / "pkg"
    libn = cc("gcc", pkg / "libs" / "libn.so", _LIB_C, "-Wl,-soname,libn.so")
    libl = cc("gcc", pkg / "libs" / "libl.so", "", f"-L{libn.parent}", "-ln",
              "-Wl,-soname,libl.so")  # fmt: skip
    prog = cc("gcc", pkg / "prog", "int main(void) { return 0; }\n", f"-L{libl.parent}", "-ll",
              "-Wl,--disable-new-dtags,-rpath,$ORIGIN/libs", shared=False)  # fmt: skip
    assert subprocess.run([str(prog)]).returncode == 0
    assert ldd(prog)["libn.so"] == str(libn)
    deps = _resolve_wheel(tmp_path, [prog, libl, libn])
    borrowed = deps["pkg/libs/libl.so"]["libn.so"]
    assert (borrowed.path, borrowed.in_wheel) == ("pkg/libs/libn.so", True)


@needs_ldd
@pytest.mark.parametrize("order", ["borrower-first", "provider-first"])
def test_borrowing_needs_the_library_loaded_before_the_borrowers_needs(
    tmp_path: Path, order: str
) -> None:
    """prog -> libl.so, libz.so; libl.so -> libn.so (found by nothing of its own); libz.so
    (DT_RUNPATH $ORIGIN/zdir) -> libn.so.  ld.so processes the needs breadth first: with libl.so
    first, libn.so is not loaded yet when libl.so asks, and the program fails to start."""
    pkg = tmp_path / "pkg"
    libn = cc("gcc", pkg / "zdir" / "libn.so", _LIB_C, "-Wl,-soname,libn.so")
    libl = cc("gcc", pkg / "libs" / "libl.so", "", f"-L{libn.parent}", "-ln",
              "-Wl,-soname,libl.so")  # fmt: skip
    libz = cc("gcc", pkg / "libs" / "libz_.so", "", f"-L{libn.parent}", "-ln",
              "-Wl,-soname,libz_.so", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../zdir")  # fmt: skip
    needs = ["-ll", "-lz_"] if order == "borrower-first" else ["-lz_", "-ll"]
    prog = cc("gcc", pkg / "prog", "int main(void) { return 0; }\n", f"-L{libl.parent}", *needs,
              "-Wl,--enable-new-dtags,-rpath,$ORIGIN/libs", shared=False)  # fmt: skip
    starts = subprocess.run([str(prog)], capture_output=True).returncode == 0
    assert starts == (order == "provider-first")
    deps = _resolve_wheel(tmp_path, [prog, libl, libz, libn])
    assert deps["pkg/prog"]["libn.so"].missing == (not starts)
    assert deps["pkg/libs/libl.so"]["libn.so"].missing == (not starts)


@needs_ldd
def test_a_name_the_loaders_tree_loads_for_another_library_is_not_borrowed(
    tmp_path: Path,
) -> None:
    """prog (DT_RPATH $ORIGIN/a:$ORIGIN/z) -> libm_.so (a/, needs nothing), libl.so, libq.so;
    libl.so (DT_RPATH $ORIGIN/../b) -> libm_.so: on its own it finds b/libm_.so, which needs
    libn.so that it cannot find; under prog, ld.so answers libl.so's libm_.so with a/libm_.so
    (already loaded), and libn.so is loaded for libq.so only."""
    pkg = tmp_path / "pkg"
    libn = cc("gcc", pkg / "z" / "libn.so", _LIB_C, "-Wl,-soname,libn.so")
    libq = cc("gcc", pkg / "z" / "libq.so", "", f"-L{libn.parent}", "-ln", "-Wl,-soname,libq.so")
    libm_a = cc("gcc", pkg / "a" / "libm_.so", "", "-Wl,-soname,libm_.so")
    libm_b = cc("gcc", pkg / "b" / "libm_.so", "", f"-L{libn.parent}", "-ln",
                "-Wl,-soname,libm_.so")  # fmt: skip
    libl = cc("gcc", pkg / "l" / "libl.so", "", f"-L{libm_a.parent}", "-lm_",
              "-Wl,-soname,libl.so", "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../b")  # fmt: skip
    prog = cc("gcc", pkg / "prog", "int main(void) { return 0; }\n", f"-L{libm_a.parent}",
              "-lm_", f"-L{libl.parent}", "-ll", f"-L{libq.parent}", "-lq",
              "-Wl,--disable-new-dtags,-rpath,$ORIGIN/a:$ORIGIN/z:$ORIGIN/l",
              shared=False)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    debug = subprocess.run(
        [str(prog)], env={**env, "LD_DEBUG": "files"}, capture_output=True, text=True
    )
    assert debug.returncode == 0
    needers = re.findall(r"file=libn\.so \[0\];\s+needed by (\S+)", debug.stderr)
    assert [os.path.realpath(n) for n in needers] == [str(libq)]
    deps = _resolve_wheel(tmp_path, [prog, libl, libq, libn, libm_a, libm_b])
    assert deps["pkg/prog"]["libn.so"].path == "pkg/z/libn.so"
    assert deps["pkg/l/libl.so"]["libm_.so"].path == "pkg/b/libm_.so"
    assert deps["pkg/l/libl.so"]["libn.so"].missing


# --- 10. a library the loader may not open


@needs_ldd
def test_an_unreadable_candidate_is_passed_over_as_by_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"rw-eacces-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    try:
        denied = cc("gcc", base / "denied" / "libx.so", _LIB_C, "-Wl,-soname,libx.so")
        good = cc("gcc", base / "good" / "libx.so", _LIB_C, "-Wl,-soname,libx.so")
        prog = cc("gcc", base / "prog", "int main(void) { return 0; }\n", f"-L{good.parent}",
                  "-lx", f"-Wl,--enable-new-dtags,-rpath,{denied.parent}:{good.parent}",
                  shared=False)  # fmt: skip
        denied.chmod(0)
        base.chmod(0o755)
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("needs setpriv to run ldd as an unprivileged user")
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "ldd", str(prog)]
        else:
            cmd = ["ldd", str(prog)]
        real = _listing(subprocess.run(cmd, capture_output=True, text=True).stdout)
        assert real["libx.so"] == str(good)

        real_open = open

        def fake_open(path: object, *args: object, **kw: object) -> object:
            if str(path) == str(denied):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_open(path, *args, **kw)  # type: ignore[call-overload]

        monkeypatch.setattr(resolve_fs, "open", fake_open, raising=False)
        tree = resolve.resolve(str(prog), read_elf(prog), HostFilesystem(), loader_config(
            "glibc", ARCH or "", environ={}))  # fmt: skip
        lib = tree.libraries["libx.so"]
        assert lib.realpath == real["libx.so"]
        assert lib.rejected == ((str(denied), "cannot be read (Permission denied)"),)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_io_error_is_a_rejected_candidate_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = cc("gcc", tmp_path / "bad" / "libx.so", _LIB_C)
    root = cc("gcc", tmp_path / "root.so", "", str(bad), f"-Wl,-rpath,{bad.parent}")
    lib_name = read_elf(root).needed[0]
    root = cc("gcc", tmp_path / "root.so", "", f"-L{bad.parent}", "-lx",
              f"-Wl,-rpath,{bad.parent}")  # fmt: skip
    assert lib_name == str(bad)

    def failing(path: object, *args: object, **kw: object) -> object:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))

    monkeypatch.setattr(resolve_fs, "open", failing, raising=False)
    tree = resolve.resolve(str(root), read_elf(root), HostFilesystem(), loader_config(
        "glibc", ARCH or "", ldpaths="", environ={}))  # fmt: skip
    lib = tree.libraries["libx.so"]
    assert lib.path is None
    assert lib.rejected == ((str(bad), "cannot be read (Input/output error)"),)
    assert "cannot be read (Input/output error)" in tree.format_tree()
