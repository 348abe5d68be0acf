"""How the audit lays a wheel out for the resolver and uses what it finds: the memo, the
wheel's place (escapes), DT_NEEDED paths relative to the working directory, rejected files."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wheelbuild import Build, Extension, Library, WheelSpec

from repairwheel import audit, graph
from repairwheel.elf import read_elf, read_elf_and_symbols
from repairwheel.errors import PolicyError
from repairwheel.resolve import HostFilesystem, loader_config, resolve
from repairwheel.scan import ElfMember, facts_from_symbols
from repairwheel.verdict import BlockerKind

ARCH = read_elf(sys.executable).arch or ""
_EI_OSABI = 7


def build_so(path: Path, *args: str, cwd: Path | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-shared", "-fPIC", "-o", str(path), "-x", "c", "-", "-x", "none"]
    cmd += ["-Wl,--no-as-needed", *args]
    subprocess.run(cmd, input="int f(void) { return 0; }\n", text=True, check=True,
                   capture_output=True, cwd=cwd)  # fmt: skip
    return path


def member(path: Path, name: str) -> ElfMember:
    facts = facts_from_symbols(str(path), *read_elf_and_symbols(str(path)))
    return dataclasses.replace(facts, path=name)


def resolve_all(*members: ElfMember, ldpaths: str | None = None) -> dict[str, dict[str, object]]:
    deps = graph.resolve_members(list(members), "glibc", ARCH, ldpaths, ())
    return {path: dict(d.libraries) for path, d in deps.items()}


# --- the memo


def test_memo_tells_members_of_another_os_abi_apart(tmp_path: Path) -> None:
    linux = build_so(tmp_path / "a.so")
    data = bytearray(linux.read_bytes())
    data[_EI_OSABI] = 9  # FreeBSD: no Linux library is a candidate for it
    other = tmp_path / "b.so"
    other.write_bytes(bytes(data))
    a, b = member(linux, "pkg/a.so"), member(other, "pkg/b.so")
    assert (a.elf.needed, a.elf.soname) == (b.elf.needed, b.elf.soname)
    deps = resolve_all(a, b)
    assert not deps["pkg/a.so"]["libc.so.6"].missing
    assert deps["pkg/b.so"]["libc.so.6"].missing


def test_memo_key_holds_the_interpreter_os_abi_and_flags(tmp_path: Path) -> None:
    m = member(build_so(tmp_path / "a.so"), "pkg/a.so")
    key = graph._memo_key(m)
    for change in ({"interpreter": "/lib/ld-musl-x86_64.so.1"}, {"osabi": 3}, {"flags": 0x400}):
        other = dataclasses.replace(m, elf=dataclasses.replace(m.elf, **change))
        assert graph._memo_key(other) != key, change


# --- the wheel's place: an $ORIGIN escape never reaches the host's root


def test_the_fake_prefix_does_not_exist_here() -> None:
    assert not os.path.lexists(graph.WHEEL_PREFIX)
    assert graph.WHEEL_ROOT.startswith(graph.WHEEL_PREFIX + "/")


@pytest.mark.parametrize("ups", range(1, 9))
def test_origin_escape_does_not_find_host_libraries(tmp_path: Path, ups: int) -> None:
    host = resolve(
        sys.executable, read_elf(sys.executable), HostFilesystem(), loader_config("glibc", ARCH)
    )
    libc = host.libraries["libc.so.6"].path
    assert libc is not None
    libdir = os.path.dirname(libc).lstrip("/")  # usr/lib/x86_64-linux-gnu or lib64 ...
    escape = "$ORIGIN/" + "../" * ups + libdir
    ext = build_so(tmp_path / "_ext.so", f"-Wl,--enable-new-dtags,-rpath,{escape}")
    deps = resolve_all(member(ext, "pkg/_ext.so"), ldpaths="")
    assert deps["pkg/_ext.so"]["libc.so.6"].missing, escape


# --- DT_NEEDED paths relative to the working directory


def _relative_needer(tmp_path: Path) -> Path:
    build_so(tmp_path / "x" / "libevil.so")  # no SONAME: DT_NEEDED is the path linked
    (tmp_path / "pkg").mkdir()
    return build_so(tmp_path / "pkg" / "_ext.so", "../x/libevil.so", cwd=tmp_path / "pkg")


def test_relative_needed_path_is_refused_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ext = _relative_needer(tmp_path)
    assert "../x/libevil.so" in read_elf(ext).needed
    messages = []
    for cwd in (tmp_path / "pkg", tmp_path):  # found relative to the first, not the second
        monkeypatch.chdir(cwd)
        with pytest.raises(PolicyError) as caught:
            resolve_all(member(ext, "pkg/_ext.so"))
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    text = messages[0]
    assert "\n" not in text
    assert text.startswith("pkg/_ext.so has DT_NEEDED '../x/libevil.so'")
    assert "relative to the current directory at run time" in text
    assert "-L<dir> -l<name>" in text and "RPATH" in text
    assert caught.value.exit_code == 3


def test_relative_needed_of_a_library_names_that_library(tmp_path: Path) -> None:
    lib = _relative_needer(tmp_path)
    lib_member = member(lib, "pkg/libs/libbad.so")
    ext = build_so(tmp_path / "ext" / "_ext.so", str(lib), "-Wl,-rpath,$ORIGIN/libs")
    ext_elf = dataclasses.replace(read_elf(ext), needed=("libbad.so",))
    ext_member = dataclasses.replace(member(ext, "pkg/_ext.so"), elf=ext_elf)
    lib_member = dataclasses.replace(
        lib_member, elf=dataclasses.replace(lib_member.elf, soname="libbad.so")
    )
    with pytest.raises(PolicyError, match=r"^pkg/libs/libbad.so (\(loaded by pkg/_ext.so\) )?has"):
        resolve_all(ext_member, lib_member)


def test_absolute_needed_path_is_opened_as_written(tmp_path: Path) -> None:
    lib = build_so(tmp_path / "abs" / "libabs.so")
    ext = build_so(tmp_path / "_ext.so", str(lib))
    assert str(lib) in read_elf(ext).needed
    dep = resolve_all(member(ext, "pkg/_ext.so"))["pkg/_ext.so"][str(lib)]
    assert (dep.path, dep.in_wheel) == (str(lib), False)


# --- what was found under a missing name, and why it is not used


def test_missing_library_carries_the_rejected_files(tmp_path: Path) -> None:
    script = tmp_path / "dev" / "libx.so"
    script.parent.mkdir()
    script.write_text("/* GNU ld script */\nINPUT ( libx.so.1 )\n")
    ext = build_so(tmp_path / "_ext.so", f"-Wl,-rpath,{script.parent}")
    m = member(ext, "pkg/_ext.so")
    m = dataclasses.replace(m, elf=dataclasses.replace(m.elf, needed=("libx.so",)))
    dep = resolve_all(m, ldpaths="")["pkg/_ext.so"]["libx.so"]
    assert dep.missing
    assert dep.rejected == ((str(script), "is a linker script, not a shared library"),)


def _wheel(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A minimal platform wheel holding ``files``, with a right RECORD."""
    import base64
    import hashlib
    import zipfile

    name = "demo-1.0-cp311-cp311-linux_x86_64.whl"
    info = "demo-1.0.dist-info"
    files = {
        **files,
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
        b"Tag: cp311-cp311-linux_x86_64\n",
    }
    rows = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(data)}")
    rows.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(rows) + "\n").encode()
    wheel = tmp_path / name
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def test_missing_library_blocker_says_what_was_found_where(tmp_path: Path) -> None:
    script = tmp_path / "dev" / "libx.so"
    script.parent.mkdir()
    script.write_text("/* GNU ld script */\nINPUT ( libx.so.1 )\n")
    real = build_so(tmp_path / "build" / "libx.so")
    ext = build_so(tmp_path / "_ext.so", str(real))  # DT_NEEDED is the path: patch it below
    data = ext.read_bytes().replace(
        str(real).encode() + b"\0", b"libx.so\0".ljust(len(str(real)) + 1, b"\0")
    )
    assert read_elf(data).needed[0] == "libx.so"
    wheel = _wheel(tmp_path, {"demo/_ext.so": data})
    report = audit.analyze_wheel(wheel, ldpaths=str(script.parent))
    blockers = [b for c in report.verdict.checks for b in c.blockers if b.kind == "missing-library"]
    assert blockers
    text = str(blockers[0])
    assert text == (
        f"demo/_ext.so needs libx.so, which cannot be found ({script} is a linker script, "
        "not a shared library)"
    )
    policy = report.to_json()["policies"][0]
    assert policy["blockers"][0]["rejected"] == [
        f"{script} is a linker script, not a shared library"
    ]


def test_files_needing_a_graft_are_listed_in_wheel_order_across_resolutions(
    build: Build,
) -> None:
    """Roots that share a resolution are weighed once per policy; a library that roots of
    several resolutions need still lists its files in the wheel's order."""
    exts = (
        Extension("demo.one", ("a",)),
        Extension("demo.two", ("a", "b")),
        Extension("demo.three", ("a",)),
        Extension("demo.four", ("b", "a")),
    )
    built = build(WheelSpec(libraries=(Library("a", 1), Library("b", 2)), extensions=exts))
    report = audit.analyze_wheel(built.path, ldpaths=str(built.lib_dir))
    order = [m.path for m in report.members]
    paths = sorted((e.member for e in exts), key=order.index)
    assert len({id(report.dependencies[p].libraries) for p in paths}) >= 2  # several merge
    needing_b = [p for p in paths if "two" in p or "four" in p]
    for check in report.verdict.checks[:-1]:  # every policy but linux grafts both
        grafts = [b for b in check.as_is_blockers if b.kind == BlockerKind.EXTERNAL_LIBRARY]
        files = {
            lib: [b.file for b in grafts if b.library == lib] for lib in ("liba.so.1", "libb.so.1")
        }
        assert files == {"liba.so.1": paths, "libb.so.1": needing_b}, check.tag
