"""Library resolution, on gcc-built fixtures, checked against the real loader where it can run."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from repairwheel.elf import is_elf, read_elf
from repairwheel.resolve import (
    DependencyTree,
    Filesystem,
    HostFilesystem,
    LoaderConfig,
    Step,
    WheelFilesystem,
    lddtree,
    loader_config,
    resolve,
)

ARCH = read_elf(sys.executable).arch
HOST_GLIBC = bool(os.confstr("CS_GNU_LIBC_VERSION")) if hasattr(os, "confstr") else False
needs_ldd = pytest.mark.skipif(
    not (HOST_GLIBC and shutil.which("ldd")), reason="needs glibc's ldd to compare with"
)
_SOURCE = "int repairwheel_fixture(void) { return 0; }\n"
_E_MACHINE = 18  # offset of e_machine in the ELF header
_EM_AARCH64, _EM_X86_64 = 183, 62


def build_so(
    path: Path,
    *,
    soname: str | None = "",
    needs: Sequence[Path | str] = (),
    rpath: Sequence[str] = (),
    runpath: Sequence[str] = (),
    flags: Sequence[str] = (),
) -> Path:
    """A shared library; ``soname`` "" means its file name, None means no DT_SONAME.

    ``needs`` are linked as given (a path gives DT_NEEDED = that library's SONAME).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-shared", "-fPIC", *flags, "-o", str(path), "-x", "c", "-", "-x", "none"]
    cmd += ["-Wl,--no-as-needed", *map(str, needs)]
    name = path.name if soname == "" else soname
    if name:
        cmd.append(f"-Wl,-soname,{name}")
    if rpath:
        cmd += ["-Wl,--disable-new-dtags", "-Wl,-rpath," + ":".join(rpath)]
    if runpath:
        cmd += ["-Wl,--enable-new-dtags", "-Wl,-rpath," + ":".join(runpath)]
    subprocess.run(cmd, input=_SOURCE, text=True, check=True, capture_output=True)
    return path


def glibc(ldpaths: str | None = None, root: str = "/", **environ: str) -> LoaderConfig:
    return loader_config("glibc", ARCH, ldpaths=ldpaths, root=root, environ=environ)


def tree_of(
    path: Path, config: LoaderConfig | None = None, fs: Filesystem | None = None, **kw: object
) -> DependencyTree:
    return resolve(str(path), read_elf(path), fs or HostFilesystem(), config or glibc(), **kw)  # type: ignore[arg-type]


def ldd(path: Path, **environ: str) -> dict[str, str | None]:
    """What glibc's loader resolves each name to (realpath), run with only ``environ`` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    out = subprocess.run(
        ["ldd", str(path)], env={**env, **environ}, capture_output=True, text=True, check=True
    ).stdout
    found: dict[str, str | None] = {}
    for line in out.splitlines():
        match = re.match(r"\s*(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$", line)
        if match:
            target = match.group(2)
            found[match.group(1)] = None if target == "not found" else os.path.realpath(target)
        elif match := re.match(r"\s*(/\S+) \(0x[0-9a-f]+\)$", line):
            found[os.path.basename(match.group(1))] = os.path.realpath(match.group(1))
    return found


def resolved(tree: DependencyTree) -> dict[str, str | None]:
    return {name: lib.realpath for name, lib in tree.libraries.items()}


def not_found(tree: DependencyTree) -> tuple[str, ...]:
    """The names nothing was found for (excluded names are not missing)."""
    return tuple(n for n, lib in tree.libraries.items() if lib.path is None and not lib.excluded)


def edges(tree: DependencyTree) -> tuple[tuple[str | None, str], ...]:
    """(needer, needed) pairs; the root is None.  Each object's needs appear once."""
    pairs: list[tuple[str | None, str]] = [(None, n) for n in tree.elf.needed]
    for name, lib in tree.libraries.items():
        if lib.same_as is None:
            pairs.extend((name, n) for n in lib.needed)
    return tuple(pairs)


def wheel_fs(root: str, members: dict[str, bytes], fence: str | None = None) -> WheelFilesystem:
    """A WheelFilesystem of the ELF files among ``members`` (wheel path -> contents)."""
    elves = {name: read_elf(data, name=name) for name, data in members.items() if is_elf(data)}
    return WheelFilesystem(root, elves, fence=fence)


# --- DT_RPATH and DT_RUNPATH


def test_rpath_of_the_root_serves_indirect_dependencies(tmp_path: Path) -> None:
    libb = build_so(tmp_path / "b" / "libb.so")
    liba = build_so(tmp_path / "a" / "liba.so", needs=[libb])
    root = build_so(tmp_path / "root.so", needs=[liba], rpath=[str(liba.parent), str(libb.parent)])
    found = tree_of(root).libraries["libb.so"]
    assert found.path == str(libb)
    assert (found.found_by.step, found.found_by.owner) == (Step.RPATH, str(root))


def test_rpath_of_an_intermediate_loader_is_inherited(tmp_path: Path) -> None:
    libc_ = build_so(tmp_path / "c" / "libc_.so")
    libb = build_so(tmp_path / "b" / "libb.so", needs=[libc_])
    liba = build_so(
        tmp_path / "a" / "liba.so", needs=[libb], rpath=[str(libb.parent), str(libc_.parent)]
    )
    root = build_so(tmp_path / "root.so", needs=[liba], rpath=[str(liba.parent)])
    found = tree_of(root).libraries["libc_.so"]
    assert found.path == str(libc_)
    assert found.found_by.owner == str(liba)


def test_runpath_serves_direct_dependencies_only(tmp_path: Path) -> None:
    libb = build_so(tmp_path / "b" / "libb.so")
    liba = build_so(tmp_path / "a" / "liba.so", needs=[libb])
    root = build_so(
        tmp_path / "root.so", needs=[liba], runpath=[str(liba.parent), str(libb.parent)]
    )
    tree = tree_of(root)
    assert tree.libraries["liba.so"].found_by.step == Step.RUNPATH
    assert not_found(tree) == ("libb.so",)


def test_runpath_of_the_loader_turns_off_inherited_rpath(tmp_path: Path) -> None:
    libb = build_so(tmp_path / "b" / "libb.so")
    liba = build_so(tmp_path / "a" / "liba.so", needs=[libb], runpath=[str(tmp_path / "empty")])
    root = build_so(tmp_path / "root.so", needs=[liba], rpath=[str(liba.parent), str(libb.parent)])
    assert not_found(tree_of(root)) == ("libb.so",)


def test_origin_is_the_directory_of_the_object_that_needs_it(tmp_path: Path) -> None:
    libb = build_so(tmp_path / "pkg" / "libs" / "libb.so")
    liba = build_so(tmp_path / "pkg" / "sub" / "liba.so", needs=[libb], runpath=["$ORIGIN/../libs"])
    root = build_so(tmp_path / "pkg" / "root.so", needs=[liba], runpath=["${ORIGIN}/sub"])
    found = tree_of(root).libraries["libb.so"]
    assert found.path == f"{liba.parent}/../libs/libb.so"
    assert found.realpath == str(libb)
    assert found.found_by.entry == "$ORIGIN/../libs"


@needs_ldd
def test_lib_and_platform_tokens_expand_as_the_loader_does(tmp_path: Path) -> None:
    config = glibc()
    if config.platform is None:
        pytest.skip(f"$PLATFORM is not fixed on {ARCH}")
    libx = build_so(tmp_path / config.lib / config.platform / "libx.so")
    root = build_so(tmp_path / "root.so", needs=[libx], runpath=["$ORIGIN/$LIB/${PLATFORM}"])
    ours = resolved(tree_of(root, config))
    assert ours["libx.so"] == str(libx)
    assert ours == {**ours, **ldd(root)}


def test_entry_with_an_unknown_platform_is_dropped(tmp_path: Path) -> None:
    config = dataclasses.replace(glibc(), platform=None)
    libx = build_so(tmp_path / "x86_64" / "libx.so")
    root = build_so(tmp_path / "root.so", needs=[libx], runpath=["$ORIGIN/$PLATFORM", "$ORIGIN"])
    found = tree_of(root, config).libraries["libx.so"]
    assert found.path is None


# --- LD_LIBRARY_PATH and the variables that add to the search


def _two_copies(tmp_path: Path, **dtags: Sequence[str]) -> tuple[Path, Path, Path]:
    """libx.so in ``tagged/`` (named by the root's DT_RPATH or DT_RUNPATH) and in ``env/``."""
    tagged = build_so(tmp_path / "tagged" / "libx.so")
    env = build_so(tmp_path / "env" / "libx.so")
    paths = {kind: [str(tagged.parent)] for kind in dtags}
    root = build_so(tmp_path / "root.so", needs=[tagged], **paths)
    return root, tagged, env


def test_ld_library_path_comes_before_runpath(tmp_path: Path) -> None:
    root, _, env = _two_copies(tmp_path, runpath=[])
    found = tree_of(root, glibc(LD_LIBRARY_PATH=str(env.parent))).libraries["libx.so"]
    assert found.path == str(env)
    assert found.found_by.step == Step.LD_LIBRARY_PATH


def test_rpath_comes_before_ld_library_path(tmp_path: Path) -> None:
    root, tagged, _ = _two_copies(tmp_path, rpath=[])
    found = tree_of(root, glibc(LD_LIBRARY_PATH=str(tmp_path / "env"))).libraries["libx.so"]
    assert found.path == str(tagged)


@needs_ldd
@pytest.mark.parametrize("kind", ["rpath", "runpath"])
def test_ld_library_path_order_is_the_loaders(tmp_path: Path, kind: str) -> None:
    root, _, env = _two_copies(tmp_path, **{kind: []})
    ours = resolved(tree_of(root, glibc(LD_LIBRARY_PATH=str(env.parent))))
    assert ours == ldd(root, LD_LIBRARY_PATH=str(env.parent))


def test_ld_library_path_splits_on_semicolons_too(tmp_path: Path) -> None:
    root, _, env = _two_copies(tmp_path)
    config = glibc(LD_LIBRARY_PATH=f"/nonexistent;{env.parent}")
    assert tree_of(root, config).libraries["libx.so"].path == str(env)


def test_repairwheel_variable_comes_before_ld_library_path(tmp_path: Path) -> None:
    root, tagged, env = _two_copies(tmp_path)
    config = glibc(REPAIRWHEEL_LD_LIBRARY_PATH=str(env.parent), LD_LIBRARY_PATH=str(tagged.parent))
    found = tree_of(root, config).libraries["libx.so"]
    assert found.path == str(env)
    assert (found.found_by.step, found.found_by.owner) == (
        Step.EXTRA,
        "REPAIRWHEEL_LD_LIBRARY_PATH",
    )


def test_auditwheel_variable_is_honoured(tmp_path: Path) -> None:
    root, _, env = _two_copies(tmp_path)
    found = tree_of(root, glibc(AUDITWHEEL_LD_LIBRARY_PATH=str(env.parent))).libraries["libx.so"]
    assert found.found_by.owner == "AUDITWHEEL_LD_LIBRARY_PATH"


def test_ldpaths_replace_the_system_dirs(tmp_path: Path) -> None:
    root, tagged, _ = _two_copies(tmp_path)
    tree = tree_of(root, glibc(ldpaths=str(tagged.parent)))
    assert tree.libraries["libx.so"].found_by.step == Step.LDPATHS
    assert tree.libraries["libc.so.6"].path is None


def test_ldpaths_drop_ld_library_path_but_keep_the_added_dirs(tmp_path: Path) -> None:
    config = glibc(ldpaths="/x", LD_LIBRARY_PATH="/l", REPAIRWHEEL_LD_LIBRARY_PATH="/r")
    assert config.env_paths == (("REPAIRWHEEL_LD_LIBRARY_PATH", "/r"),)
    assert [d.directory for d in config.system_dirs] == ["/x"]


def test_ld_library_path_is_ignored_for_another_root(tmp_path: Path) -> None:
    config = glibc(root=str(tmp_path), LD_LIBRARY_PATH="/l", REPAIRWHEEL_LD_LIBRARY_PATH="/r")
    assert config.env_paths == (("REPAIRWHEEL_LD_LIBRARY_PATH", "/r"),)


# --- system configuration


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _conf_dirs(config: LoaderConfig) -> list[str]:
    return [d.directory for d in config.system_dirs if d.step == Step.LD_SO_CONF]


def test_ld_so_conf_includes_are_globbed_in_order_under_the_root(tmp_path: Path) -> None:
    _write(tmp_path / "etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n/opt/last\n")
    _write(tmp_path / "etc/ld.so.conf.d/b.conf", "/opt/b\n")
    _write(tmp_path / "etc/ld.so.conf.d/a.conf", "/opt/a\n")
    _write(tmp_path / "etc/ld.so.conf.d/c.txt", "/opt/ignored\n")
    config = glibc(root=str(tmp_path))
    assert _conf_dirs(config) == [f"{tmp_path}/opt/{d}" for d in ("a", "b", "last")]
    assert config.system_dirs[0].owner == f"{tmp_path}/etc/ld.so.conf.d/a.conf"


def test_ld_so_conf_relative_include_is_relative_to_the_including_file(tmp_path: Path) -> None:
    _write(tmp_path / "etc/ld.so.conf", "include\tsub/*.conf\n")
    _write(tmp_path / "etc/sub/x.conf", "/opt/x\n")
    assert _conf_dirs(glibc(root=str(tmp_path))) == [f"{tmp_path}/opt/x"]


def test_ld_so_conf_skips_comments_blanks_and_hwcap_lines(tmp_path: Path) -> None:
    text = "# comment\n\n  /opt/a/  # trailing\nhwcap 0 nosegneg\n/opt/old=libc5\n"
    _write(tmp_path / "etc/ld.so.conf", text)
    assert _conf_dirs(glibc(root=str(tmp_path))) == [f"{tmp_path}/opt/a", f"{tmp_path}/opt/old"]


def test_ld_so_conf_including_itself_terminates(tmp_path: Path) -> None:
    _write(tmp_path / "etc/ld.so.conf", "include ld.so.conf\n/opt/a\n")
    assert _conf_dirs(glibc(root=str(tmp_path))) == [f"{tmp_path}/opt/a"]


def test_default_dirs_follow_ld_so_conf(tmp_path: Path) -> None:
    _write(tmp_path / "etc/ld.so.conf", "/opt/a\n")
    dirs = [d.directory for d in glibc(root=str(tmp_path)).system_dirs]
    assert dirs[0] == f"{tmp_path}/opt/a"
    assert dirs[-2:] == [f"{tmp_path}/lib", f"{tmp_path}/usr/lib"]


@pytest.mark.parametrize(
    ("real_dir", "lib"),
    [("usr/lib64", "lib64"), ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")],
)
def test_lib_token_is_where_the_interpreter_lives(tmp_path: Path, real_dir: str, lib: str) -> None:
    _write(tmp_path / real_dir / "ld-linux-x86-64.so.2", "")
    (tmp_path / "lib64").mkdir()
    target = os.path.relpath(tmp_path / real_dir / "ld-linux-x86-64.so.2", tmp_path / "lib64")
    (tmp_path / "lib64" / "ld-linux-x86-64.so.2").symlink_to(target)
    config = loader_config("glibc", "x86_64", root=str(tmp_path), environ={})
    assert config.lib == lib
    defaults = [d.entry for d in config.system_dirs if d.step == Step.DEFAULT]
    assert defaults[:2] == [f"/{lib}", f"/usr/{lib}"]


def test_musl_reads_its_path_file(tmp_path: Path) -> None:
    _write(tmp_path / "etc/ld-musl-x86_64.path", "/opt/a:/opt/b\n/opt/c\n")
    config = loader_config("musl", "x86_64", root=str(tmp_path), environ={})
    assert [d.directory for d in config.system_dirs] == [f"{tmp_path}/opt/{d}" for d in "abc"]


def test_musl_defaults_without_a_path_file(tmp_path: Path) -> None:
    config = loader_config("musl", "x86_64", root=str(tmp_path), environ={})
    assert [d.entry for d in config.system_dirs] == ["/lib", "/usr/local/lib", "/usr/lib"]


def test_musl_inherits_runpath(tmp_path: Path) -> None:
    libb = build_so(tmp_path / "b" / "libb.so")
    liba = build_so(tmp_path / "a" / "liba.so", needs=[libb])
    root = build_so(tmp_path / "root.so", needs=[liba], runpath=["$ORIGIN/a", "$ORIGIN/b"])
    config = loader_config("musl", ARCH, environ={})
    assert tree_of(root, config).libraries["libb.so"].found_by.owner == str(root)


def test_musl_answers_libc_names_with_its_loader(tmp_path: Path) -> None:
    libc = build_so(tmp_path / "build" / "libc.musl.so", soname="libc.musl-x86_64.so.1")
    root = build_so(tmp_path / "root.so", needs=[libc])
    config = loader_config("musl", ARCH, root=str(tmp_path / "sysroot"), environ={})
    assert config.interpreter is not None
    Path(config.interpreter).parent.mkdir(parents=True)
    shutil.copy(libc, config.interpreter)
    found = tree_of(root, config).libraries["libc.musl-x86_64.so.1"]
    assert (found.path, found.found_by.step) == (config.interpreter, Step.INTERPRETER)


# --- candidates that do not fit


def test_candidate_of_another_machine_is_skipped(tmp_path: Path) -> None:
    good = build_so(tmp_path / "good" / "libx.so")
    bad = tmp_path / "bad" / "libx.so"
    bad.parent.mkdir()
    data = bytearray(good.read_bytes())
    other = _EM_AARCH64 if read_elf(good).machine != _EM_AARCH64 else _EM_X86_64
    data[_E_MACHINE : _E_MACHINE + 2] = other.to_bytes(2, "little")
    bad.write_bytes(bytes(data))
    root = build_so(tmp_path / "root.so", needs=[good], rpath=[str(bad.parent), str(good.parent)])
    found = tree_of(root).libraries["libx.so"]
    assert (found.path, found.skipped) == (str(good), (str(bad),))


def test_candidate_of_another_class_is_skipped(tmp_path: Path) -> None:
    good = build_so(tmp_path / "good" / "libx.so")
    try:
        bad = build_so(tmp_path / "bad" / "libx.so", flags=["-m32"])
    except subprocess.CalledProcessError:
        pytest.skip("gcc cannot build 32-bit libraries here (no gcc-multilib)")
    root = build_so(tmp_path / "root.so", needs=[good], rpath=[str(bad.parent), str(good.parent)])
    found = tree_of(root).libraries["libx.so"]
    assert (found.path, found.skipped) == (str(good), (str(bad),))


def test_candidate_that_is_not_elf_is_passed_over(tmp_path: Path) -> None:
    good = build_so(tmp_path / "good" / "libx.so")
    _write(tmp_path / "text" / "libx.so", "INPUT(-lx)\n")
    root = build_so(
        tmp_path / "root.so", needs=[good], rpath=[f"{tmp_path}/text", str(good.parent)]
    )
    assert tree_of(root).libraries["libx.so"].path == str(good)


def test_missing_library_is_reported_not_found(tmp_path: Path) -> None:
    gone = build_so(tmp_path / "libgone.so")
    root = build_so(tmp_path / "root.so", needs=[gone], rpath=[str(tmp_path)])
    gone.unlink()
    tree = tree_of(root)
    assert not_found(tree) == ("libgone.so",)
    assert "libgone.so => not found" in tree.format_tree()


# --- loops and names already loaded


def test_rpath_cycle_terminates(tmp_path: Path) -> None:
    placeholder = build_so(tmp_path / "b" / "libb.so")
    liba = build_so(tmp_path / "a" / "liba.so", needs=[placeholder], rpath=["$ORIGIN/../b"])
    build_so(tmp_path / "b" / "libb.so", needs=[liba], rpath=["$ORIGIN/../a"])
    root = build_so(tmp_path / "root.so", needs=[liba], rpath=["$ORIGIN/a"])
    tree = tree_of(root)
    assert ("liba.so", "libb.so") in edges(tree)
    assert ("libb.so", "liba.so") in edges(tree)
    assert not_found(tree) == ()


def test_library_needing_itself_terminates(tmp_path: Path) -> None:
    first = build_so(tmp_path / "build" / "libself.so")
    root = build_so(tmp_path / "libself.so", needs=[first])
    found = tree_of(root).libraries["libself.so"]
    assert (found.path, found.same_as) == (str(root), "libself.so")


def test_second_name_for_a_loaded_file_is_the_same_object(tmp_path: Path) -> None:
    libfoo = build_so(tmp_path / "lib" / "libfoo.so.1", soname=None)
    (tmp_path / "lib" / "libfoo.so").symlink_to("libfoo.so.1")
    liba = build_so(tmp_path / "liba.so", needs=["-L", str(libfoo.parent), "-lfoo"])
    libb = build_so(tmp_path / "libb.so", needs=["-L", str(libfoo.parent), "-l:libfoo.so.1"])
    root = build_so(
        tmp_path / "root.so", needs=[liba, libb], rpath=[str(tmp_path), str(libfoo.parent)]
    )
    tree = tree_of(root)
    assert tree.libraries["libfoo.so.1"].same_as == "libfoo.so"
    assert tree.libraries["libfoo.so.1"].realpath == tree.libraries["libfoo.so"].realpath


@needs_ldd
def test_breadth_first_the_nearest_loader_decides(tmp_path: Path) -> None:
    near = build_so(tmp_path / "near" / "libx.so")
    far = build_so(tmp_path / "far" / "libx.so")
    liba = build_so(tmp_path / "near" / "liba.so", needs=[far], runpath=[str(far.parent)])
    root = build_so(tmp_path / "root.so", needs=[liba, near], runpath=[str(near.parent)])
    ours = resolved(tree_of(root))
    assert ours["libx.so"] == str(near)
    assert ours == ldd(root)


@needs_ldd
def test_needs_of_an_earlier_sibling_are_looked_up_first(tmp_path: Path) -> None:
    first = build_so(tmp_path / "first" / "libz.so")
    second = build_so(tmp_path / "second" / "libz.so")
    liba = build_so(tmp_path / "liba.so", needs=[first], runpath=[str(first.parent)])
    libb = build_so(tmp_path / "libb.so", needs=[second], runpath=[str(second.parent)])
    root = build_so(tmp_path / "root.so", needs=[liba, libb], runpath=[str(tmp_path)])
    ours = resolved(tree_of(root))
    assert ours["libz.so"] == str(first)
    assert ours == ldd(root)


def test_needed_path_with_a_slash_is_opened_as_written(tmp_path: Path) -> None:
    libx = build_so(tmp_path / "lib" / "libx.so", soname=None)
    root = build_so(tmp_path / "root.so", needs=[libx])
    found = tree_of(root).libraries[str(libx)]
    assert (found.path, found.found_by.step) == (str(libx), Step.NAME)


def test_excluded_library_is_not_followed(tmp_path: Path) -> None:
    libb = build_so(tmp_path / "libb.so")
    liba = build_so(tmp_path / "liba.so", needs=[libb])
    root = build_so(tmp_path / "root.so", needs=[liba], rpath=[str(tmp_path)])
    tree = tree_of(root, exclude=["liba.*"])
    assert tree.libraries["liba.so"].excluded
    assert "libb.so" not in tree.libraries


# --- the real loader on a whole tree


@needs_ldd
def test_whole_tree_agrees_with_the_loader(tmp_path: Path) -> None:
    libc_ = build_so(tmp_path / "c" / "libc_.so")
    libb = build_so(
        tmp_path / "pkg" / "libs" / "libb.so", needs=[libc_], runpath=["$ORIGIN/../../c"]
    )
    liba = build_so(tmp_path / "pkg" / "liba.so", needs=[libb])
    root = build_so(
        tmp_path / "pkg" / "root.so", needs=[liba, libb], rpath=["$ORIGIN", "$ORIGIN/libs"]
    )
    ours = resolved(tree_of(root))
    assert ours == ldd(root)
    assert None not in ours.values()


# --- wheels, analysed in memory


def _wheel(tmp_path: Path) -> WheelFilesystem:
    """pkg/_ext.so -> pkg.libs/libdep.so (-> libc.so.6 of the host), built and then deleted."""
    dep = build_so(tmp_path / "pkg.libs" / "libdep.so")
    ext = build_so(tmp_path / "pkg" / "_ext.so", needs=[dep], runpath=["$ORIGIN/../pkg.libs"])
    members = {"pkg/_ext.so": ext.read_bytes(), "pkg.libs/libdep.so": dep.read_bytes()}
    members["pkg/__init__.py"] = b""
    shutil.rmtree(tmp_path / "pkg")
    shutil.rmtree(tmp_path / "pkg.libs")
    return wheel_fs(str(tmp_path / "wheel"), members)


def test_wheel_members_resolve_through_origin(tmp_path: Path) -> None:
    fs = _wheel(tmp_path)
    path = fs.path_of("pkg/_ext.so")
    ext = fs.elf_at(path)
    assert ext is not None
    tree = resolve(path, ext, fs, glibc())
    dep = tree.libraries["libdep.so"]
    assert fs.member_of(dep.realpath) == "pkg.libs/libdep.so"
    assert dep.found_by.entry == "$ORIGIN/../pkg.libs"
    assert tree.libraries["libc.so.6"].path is not None


def test_wheel_root_never_falls_through_to_the_host(tmp_path: Path) -> None:
    fs = _wheel(tmp_path)
    build_so(tmp_path / "wheel" / "pkg.libs" / "libhost.so")
    assert fs.elf_at(f"{tmp_path}/wheel/pkg.libs/libhost.so") is None
    assert fs.elf_at(f"{tmp_path}/wheel/pkg/__init__.py") is None


# --- output


def test_json_names_how_each_library_was_found(tmp_path: Path) -> None:
    libb = build_so(tmp_path / "libb.so")
    root = build_so(tmp_path / "root.so", needs=[libb], runpath=["$ORIGIN"])
    data = json.loads(json.dumps(tree_of(root).to_json()))
    found_by = data["libraries"]["libb.so"]["found_by"]
    assert found_by == {
        "step": "DT_RUNPATH",
        "directory": str(tmp_path),
        "entry": "$ORIGIN",
        "owner": str(root),
    }
    assert data["needed"][0] == "libb.so"


def test_format_tree_nests_each_library_under_its_loader(tmp_path: Path) -> None:
    libb = build_so(tmp_path / "libb.so")
    liba = build_so(tmp_path / "liba.so", needs=[libb])
    root = build_so(tmp_path / "root.so", needs=[liba, libb], rpath=["$ORIGIN"])
    lines = tree_of(root, glibc(ldpaths="")).format_tree().splitlines()
    assert lines == [
        str(root),
        f"    liba.so => {liba}",
        f"    libb.so => {libb}",
        "    libc.so.6 => not found",
    ]


def test_lddtree_takes_musl_from_the_files_needs(tmp_path: Path) -> None:
    libc = build_so(tmp_path / "libc.musl.so", soname="libc.musl-x86_64.so.1")
    root = build_so(tmp_path / "root.so", needs=[libc])
    assert lddtree(str(root)).libc == "musl"


@needs_ldd
def test_lddtree_of_an_executable_agrees_with_the_loader(tmp_path: Path) -> None:
    libx = build_so(tmp_path / "lib" / "libx.so")
    exe = tmp_path / "prog"
    source = "int main(void) { return 0; }\n"
    cmd = ["gcc", "-o", str(exe), "-x", "c", "-", "-x", "none", "-Wl,--no-as-needed", str(libx)]
    cmd.append("-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib")
    subprocess.run(cmd, input=source, text=True, check=True, capture_output=True)
    tree = lddtree(str(exe))
    assert resolved(tree) == ldd(exe)
    assert tree.format_tree().startswith(f"{exe} (interpreter => ")


# --- candidates rejected, and why (linker scripts, other files, other ABIs)


def test_a_linker_script_is_rejected_with_the_reason(tmp_path: Path) -> None:
    _write(tmp_path / "dev" / "libx.so", "/* GNU ld script */\nGROUP ( /lib/libx.so.1 )\n")
    _write(tmp_path / "text" / "libx.so", "just text\n")
    root = build_so(tmp_path / "root.so", rpath=[f"{tmp_path}/dev", f"{tmp_path}/text"])
    elf = dataclasses.replace(read_elf(root), needed=("libx.so",))
    tree = resolve(str(root), elf, HostFilesystem(), glibc(ldpaths=""))
    lib = tree.libraries["libx.so"]
    assert lib.path is None
    assert lib.rejected == (
        (f"{tmp_path}/dev/libx.so", "is a linker script, not a shared library"),
        (f"{tmp_path}/text/libx.so", "is not an ELF file"),
    )
    assert lib.why_not_found() == (
        f"{tmp_path}/dev/libx.so is a linker script, not a shared library; "
        f"{tmp_path}/text/libx.so is not an ELF file"
    )
    assert f"libx.so => not found ({tmp_path}/dev/libx.so is a linker script" in tree.format_tree()


def test_the_hosts_libc_so_linker_script_is_named(tmp_path: Path) -> None:
    config = glibc()
    script = next(
        (
            f"{d.directory}/libc.so"
            for d in config.system_dirs
            if os.path.isfile(f"{d.directory}/libc.so")
        ),
        None,
    )
    if script is None or b"GNU ld script" not in Path(script).read_bytes()[:200]:
        pytest.skip("no linker script named libc.so on the search path (libc6-dev)")
    root = build_so(tmp_path / "root.so", flags=["-nostdlib"])
    elf = dataclasses.replace(read_elf(root), needed=("libc.so",))
    tree = resolve(str(root), elf, HostFilesystem(), config)
    assert (script, "is a linker script, not a shared library") in tree.libraries[
        "libc.so"
    ].rejected


def test_an_elf_file_of_another_class_says_so(tmp_path: Path) -> None:
    try:
        bad = build_so(tmp_path / "bad" / "libx.so", flags=["-m32"])
    except subprocess.CalledProcessError:
        pytest.skip("gcc cannot build 32-bit libraries here (no gcc-multilib)")
    root = build_so(tmp_path / "root.so", rpath=[str(bad.parent)])
    elf = dataclasses.replace(read_elf(root), needed=("libx.so",))
    lib = resolve(str(root), elf, HostFilesystem(), glibc(ldpaths="")).libraries["libx.so"]
    assert lib.skipped == (str(bad),)
    assert lib.rejected == ((str(bad), "is built for 32-bit, not 64-bit"),)


def _arm(flags: int, *entries: tuple[int, int | str]) -> bytes:
    from elf_craft import ElfBuilder  # noqa: PLC0415 (a test helper beside this file)

    data = bytearray(ElfBuilder(elf_class=32, machine=40, entries=list(entries)).build())
    data[36:40] = flags.to_bytes(4, "little")  # e_flags of an ELF32 header
    return bytes(data)


@pytest.mark.parametrize(
    ("flags", "taken"),
    [
        (0x05000200, False),  # EABI5 soft-float (armel): glibc's armhf ld.so refuses it
        (0x05000400, True),
        (0x05000000, True),  # EABI5, no float flag: VALID_FLOAT_ABI takes it
        (0x04000000, True),  # older EABI: taken
    ],
)
def test_armhf_root_takes_arm_candidates_by_float_abi(
    tmp_path: Path, flags: int, taken: bool
) -> None:
    lib = tmp_path / "cand" / "libx.so"
    lib.parent.mkdir()
    lib.write_bytes(_arm(flags))
    root_path = tmp_path / "root.so"
    root_path.write_bytes(_arm(0x05000400, (1, "libx.so"), (29, "$ORIGIN/cand")))
    root = read_elf(root_path)
    assert root.arch == "armv7l"
    config = loader_config("glibc", "armv7l", ldpaths="", root=str(tmp_path / "sys"), environ={})
    found = resolve(str(root_path), root, HostFilesystem(), config).libraries["libx.so"]
    assert (found.path == str(lib)) is taken
    if not taken:
        assert found.rejected == (
            (str(lib), "is built for ARM EABI5 soft-float, the loader is hard-float"),
        )


# --- DT_NEEDED paths


def test_relative_needed_path_is_not_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = build_so(tmp_path / "x" / "libevil.so", soname=None)
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    root = build_so(tmp_path / "pkg" / "root.so", needs=["../x/libevil.so"])
    assert read_elf(root).needed[0] == "../x/libevil.so"
    assert evil.exists()  # it is there, relative to this working directory
    tree = tree_of(root)
    lib = tree.libraries["../x/libevil.so"]
    assert (lib.path, lib.relative) == (None, True)
    assert tree.relative_needed == ((str(root), "../x/libevil.so"),)
    assert "../x/libevil.so => not looked up (relative to the working directory" in (
        tree.format_tree()
    )


def test_origin_in_a_needed_path_is_not_relative(tmp_path: Path) -> None:
    libx = build_so(tmp_path / "lib" / "libx.so", soname=None)
    root = build_so(tmp_path / "root.so", flags=["-nostdlib"])
    elf = dataclasses.replace(read_elf(root), needed=("$ORIGIN/lib/libx.so",))
    lib = resolve(str(root), elf, HostFilesystem(), glibc()).libraries["$ORIGIN/lib/libx.so"]
    assert (lib.realpath, lib.relative) == (str(libx), False)


# --- the wheel's place: escapes never reach the host


def test_escape_above_the_fence_finds_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    host_lib = build_so(prefix / "lib" / "libhost.so")  # a real file under the fence
    build_so(tmp_path / "libabove.so")
    root_dir = prefix / "lib" / "python3" / "site-packages"
    ext = build_so(tmp_path / "build" / "_ext.so", needs=[host_lib, tmp_path / "libabove.so"],
                   runpath=["$ORIGIN/../../../lib", "$ORIGIN/../../../../.."])  # fmt: skip
    fs = wheel_fs(str(root_dir), {"pkg/_ext.so": ext.read_bytes()}, fence=str(prefix))
    path = fs.path_of("pkg/_ext.so")
    tree = resolve(path, fs.elf_at(path), fs, glibc(ldpaths=""))  # type: ignore[arg-type]
    assert tree.libraries["libhost.so"].path is None
    assert tree.libraries["libabove.so"].path is None


def test_musl_path_file_is_under_its_interpreters_prefix(tmp_path: Path) -> None:
    from repairwheel.resolve.config import _musl_system_dirs

    _write(tmp_path / "opt/musl/etc/ld-musl-x86_64.path", "/opt/musl/lib\n")
    _write(tmp_path / "etc/ld-musl-x86_64.path", "/not/this\n")
    dirs = _musl_system_dirs(str(tmp_path), "x86_64", "/opt/musl/lib/ld-musl-x86_64.so.1")
    assert [d.entry for d in dirs] == ["/opt/musl/lib"]
    dirs = _musl_system_dirs(str(tmp_path), "x86_64", "/lib/ld-musl-x86_64.so.1")
    assert [d.entry for d in dirs] == ["/not/this"]
