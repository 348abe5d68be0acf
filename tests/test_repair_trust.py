"""``fix`` never fails where auditwheel succeeds, and says what is wrong where it must refuse:
one graft per host file, the other libc's tags named as such, options after the subcommand,
batches that report every wheel, a bad ``-L`` refused before any work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pypi_wheels import BUNDLED_DIR, unavailable
from wheelbuild import (
    EXT_SUFFIX,
    BuiltWheel,
    Extension,
    Library,
    WheelSpec,
    build_wheel,
    record_hash,
    repairwheel_cli,
    run_without_originals,
)

from repairwheel.elf import read_elf
from repairwheel.errors import PolicyError
from repairwheel.patchelf import find_patchelf
from repairwheel.repair import repair_wheel

TWO_NAMES = WheelSpec(
    libraries=(Library("foo", 7),),
    extensions=(Extension("demo._one", ("foo",)), Extension("demo._two", ("foo",))),
)
GLIBC_WHEEL = BUNDLED_DIR / "glibc" / "testsimple-0.0.1-cp313-cp313-linux_x86_64.whl"


cli = repairwheel_cli


def rezip(wheel: Path, replaced: dict[str, bytes]) -> None:
    """Rewrite ``wheel`` in place with some members' bytes replaced and RECORD recomputed."""
    with zipfile.ZipFile(wheel) as zf:
        files = {i.filename: (replaced.get(i.filename) or zf.read(i), i) for i in zf.infolist()}
    record = next(n for n in files if n.endswith(".dist-info/RECORD"))
    rows = [f"{n},{record_hash(d)},{len(d)}\n" for n, (d, _) in files.items() if n != record]
    files[record] = (("".join(rows) + f"{record},,\n").encode(), files[record][1])
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for data, info in files.values():
            zf.writestr(info, data)


@pytest.fixture
def two_names(tmp_path: Path) -> BuiltWheel:
    """Two extensions that reach one host library by two names: ``libfoo.so.1`` and
    ``libfoo.so`` (a symlink to it, as ``-lfoo`` against a SONAME-less build would give)."""
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    built = build_wheel(TWO_NAMES, tmp_path / "build")
    (built.lib_dir / "libfoo.so").symlink_to("libfoo.so.1")
    member = f"demo/_two{EXT_SUFFIX}"
    with zipfile.ZipFile(built.path) as zf:
        (tmp_path / "two.so").write_bytes(zf.read(member))
    subprocess.run(
        [
            str(find_patchelf().path),
            "--replace-needed",
            "libfoo.so.1",
            "libfoo.so",
            str(tmp_path / "two.so"),
        ],
        check=True,
    )
    rezip(built.path, {member: (tmp_path / "two.so").read_bytes()})
    return built


def test_two_names_for_one_host_file_graft_it_once_and_both_import(
    two_names: BuiltWheel, tmp_path: Path
) -> None:
    result = repair_wheel(two_names.path, tmp_path / "out", ldpaths=str(two_names.lib_dir))
    assert len(result.grafted) == 1
    graft = result.grafted[0]
    assert graft.replaces == ("libfoo.so", "libfoo.so.1")
    with zipfile.ZipFile(result.output) as zf:
        libs = [n for n in zf.namelist() if n.startswith("demo.libs/")]
        needed = {m: read_elf(zf.read(f"demo/{m}{EXT_SUFFIX}")).needed for m in ("_one", "_two")}
    assert libs == [graft.member]
    new_name = os.path.basename(graft.member)
    assert needed == {"_one": (new_name,), "_two": (new_name,)}
    # Installed with the build folder gone, both modules load the one grafted copy; the
    # unrepaired wheel (the control) does not load.
    code = "import demo._one as a, demo._two as b; print(a.value(), b.value())"
    proc, control = run_without_originals(Path(result.output), two_names, code, tmp_path)
    assert (proc.returncode, proc.stdout.split()) == (0, ["7", "7"]), proc.stderr
    assert control.returncode != 0


def test_a_tag_of_the_other_libc_is_named_as_such(tmp_path: Path) -> None:
    proc = cli("fix", "-w", str(tmp_path), "--plat", "musllinux_1_2_x86_64", str(GLIBC_WHEEL))
    assert proc.returncode == PolicyError.exit_code, proc.stderr
    assert "musllinux_1_2_x86_64 is a musl tag" in proc.stderr
    assert "glibc" in proc.stderr and "did you mean" not in proc.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_is_accepted_before_and_after_the_subcommand(tmp_path: Path, where: str) -> None:
    args = ["show", str(GLIBC_WHEEL)]
    proc = cli(*(["-v", *args] if where == "before" else [*args, "-v"]))
    assert proc.returncode == 0, proc.stderr
    missing = str(tmp_path / "x-1.0-py3-none-linux_x86_64.whl")
    bad = cli(*(["-v", "fix", missing] if where == "before" else ["fix", missing, "-v"]))
    assert bad.returncode == 2
    assert "Traceback" in bad.stderr and "no such file" in bad.stderr


def test_a_batch_checks_every_input_before_writing_anything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "missing-1.0-py3-none-linux_x86_64.whl"
    proc = cli("fix", "-w", str(out), str(GLIBC_WHEEL), str(missing), "notawheel.txt")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert str(missing) in lines[0] and "notawheel.txt" in lines[1]
    assert not out.exists()


def test_a_failing_wheel_does_not_stop_or_hide_the_others(tmp_path: Path) -> None:
    out = tmp_path / "out"
    aarch64 = BUNDLED_DIR / "glibc" / "testsimple-0.0.1-cp313-cp313-linux_aarch64.whl"
    pure = BUNDLED_DIR / "plumbum-1.6.8-py2.py3-none-any.whl"
    proc = cli("fix", "-w", str(out), "--json", str(pure), str(GLIBC_WHEEL), str(aarch64))
    results = json.loads(proc.stdout)
    assert [r["input"] for r in results] == [str(pure), str(GLIBC_WHEEL), str(aarch64)]
    assert "error" in results[0] and results[0]["exit_code"] == 1
    assert "error" not in results[1] and Path(results[1]["output"]).is_file()
    assert "error" not in results[2] and Path(results[2]["output"]).is_file()
    assert proc.returncode == 1
    text = cli("fix", "-w", str(tmp_path / "out2"), str(pure), str(GLIBC_WHEEL))
    assert text.returncode == 1
    assert "plumbum" in text.stderr and "Fixed-up wheel written to" in text.stdout


@pytest.mark.parametrize("sdir", ["/../../etc", "../x", "a/b", "", "."])
def test_a_bad_lib_sdir_is_refused_before_any_work(tmp_path: Path, sdir: str) -> None:
    proc = cli("fix", "-w", str(tmp_path / "out"), "-L", sdir, str(tmp_path / "none.whl"))
    assert proc.returncode == 2, proc.stderr
    assert "--lib-sdir" in proc.stderr and "none.whl" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_fix_warns_about_elf_files_of_another_architecture(tmp_path: Path) -> None:
    foreign = BUNDLED_DIR / "glibc" / "testsimple-0.0.1-cp313-cp313-linux_aarch64.whl"
    with zipfile.ZipFile(GLIBC_WHEEL) as zf, zipfile.ZipFile(foreign) as other:
        member = next(n for n in other.namelist() if n.endswith(".so"))
        mixed = tmp_path / GLIBC_WHEEL.name
        with zipfile.ZipFile(mixed, "w", zipfile.ZIP_DEFLATED) as out:
            for info in zf.infolist():
                out.writestr(info, zf.read(info))
            out.writestr("testsimple/extra/_arm.so", other.read(member))
    rezip(mixed, {})
    shown = cli("show", str(mixed))
    fixed = cli("fix", "-w", str(tmp_path / "out"), str(mixed))
    assert fixed.returncode == 0, fixed.stderr
    for proc in (shown, fixed):
        assert "testsimple/extra/_arm.so" in proc.stdout + proc.stderr
    assert "aarch64" in fixed.stderr


def test_rezip_keeps_a_valid_record(tmp_path: Path) -> None:
    """The helper above writes wheels whose RECORD verifies (it is used by the tests above)."""
    wheel = tmp_path / GLIBC_WHEEL.name
    shutil.copy(GLIBC_WHEEL, wheel)
    rezip(wheel, {})
    with zipfile.ZipFile(wheel) as zf:
        record = next(n for n in zf.namelist() if n.endswith("RECORD"))
        rows = [r.split(",") for r in zf.read(record).decode().splitlines()]
        for name, digest, size in rows:
            if name != record:
                data = zf.read(name)
                assert (digest, size) == (record_hash(data), str(len(data)))


def test_a_library_gone_before_grafting_is_one_line_naming_it(tmp_path: Path) -> None:
    from repairwheel.audit import analyze_wheel
    from repairwheel.errors import ResourceError
    from repairwheel.plan import choose_policies, make_plan

    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    built = build_wheel(TWO_NAMES, tmp_path / "build")
    report = analyze_wheel(built.path, ldpaths=str(built.lib_dir))
    policies = choose_policies(report, None, only_plat=False)
    (built.lib_dir / "libfoo.so.1").unlink()
    with pytest.raises(ResourceError, match=r"libfoo\.so\.1: cannot read the library to graft"):
        make_plan(report, policies)


def _big_elf_wheel(tmp_path: Path) -> Path:
    """A wheel whose extension, needing nothing to graft, is over LATE_SIZE (a zero-filled
    section)."""
    from repairwheel.stage import LATE_SIZE

    source = tmp_path / "big.c"
    source.write_text(
        f"static const char pad[{LATE_SIZE + (1 << 20)}] __attribute__((used)) = {{1}};\n"
        "int big_value(void) { return pad[0]; }\n"
    )
    lib = tmp_path / f"_big{EXT_SUFFIX}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    wheel = tmp_path / GLIBC_WHEEL.name
    with (
        zipfile.ZipFile(GLIBC_WHEEL) as zf,
        zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for info in zf.infolist():
            out.writestr(info, zf.read(info))
        out.writestr(f"testsimple/_big{EXT_SUFFIX}", lib.read_bytes())
    rezip(wheel, {})
    return wheel


def _shm_leftovers() -> set[str]:
    shm = Path("/dev/shm")
    return (
        {p.name for p in shm.iterdir() if p.name.startswith("repairwheel-")}
        if shm.is_dir()
        else set()
    )


def _big_patched_spec() -> WheelSpec:
    """An extension over LATE_SIZE (a zero-filled section) that needs a library to graft."""
    from repairwheel.stage import LATE_SIZE

    pad = f"static const char pad[{LATE_SIZE + (1 << 20)}] __attribute__((used)) = {{1}};"
    return WheelSpec(
        libraries=(Library("foo", 7),),
        extensions=(Extension("demo._big", ("foo",), prelude=pad, extra="pad[1]"),),
    )


@pytest.mark.parametrize("tmpdir", [False, True], ids=["staged in /dev/shm", "TMPDIR set"])
def test_a_big_member_patched_late_imports_without_the_originals(
    tmpdir: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An extension over LATE_SIZE is parsed from the bytes its audit keeps, staged (in a
    tmpfs folder, or TMPDIR's when set) and patched while the output is written, and loads
    from the output; no staged file is left anywhere."""
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    built = build_wheel(_big_patched_spec(), tmp_path / "build")
    temp = tmp_path / "temp"
    temp.mkdir()
    if tmpdir:
        monkeypatch.setenv("TMPDIR", str(temp))
    before = _shm_leftovers()
    result = repair_wheel(built.path, tmp_path / "out", ldpaths=str(built.lib_dir))
    assert _shm_leftovers() == before and not list(temp.iterdir())
    monkeypatch.delenv("TMPDIR", raising=False)
    code = "import demo._big as m; print(m.value())"
    repaired, control = run_without_originals(Path(result.output), built, code, tmp_path)
    assert (repaired.returncode, repaired.stdout) == (0, "7\n"), repaired.stderr
    assert control.returncode != 0 and "libfoo.so.1" in control.stderr


def test_the_big_file_scratch_is_in_dev_shm_only_with_room_and_without_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from repairwheel import stage
    from repairwheel.audit import analyze_wheel
    from repairwheel.plan import choose_policies, make_plan
    from repairwheel.wheel import WheelArchive

    if not os.access("/dev/shm", os.W_OK):
        unavailable("no writable /dev/shm")
    monkeypatch.delenv("TMPDIR", raising=False)
    report = analyze_wheel(GLIBC_WHEEL)
    plan = make_plan(report, choose_policies(report, None, only_plat=False))
    monkeypatch.setattr(stage, "SMALL_FILE", 0)  # every member counts as a big one
    with WheelArchive(GLIBC_WHEEL) as archive:
        with stage.scratch(tmp_path, archive, report, plan, big=True) as folder:
            assert folder.parent == Path("/dev/shm") and folder.is_dir()
        assert not folder.exists()
        with stage.scratch(tmp_path, archive, report, plan, big=False) as folder:
            assert folder == tmp_path  # nothing small to stage
        monkeypatch.setattr(stage, "_available_memory", lambda: 1 << 20)  # too little memory
        with stage.scratch(tmp_path, archive, report, plan, big=True) as folder:
            assert folder == tmp_path
        monkeypatch.undo()
        monkeypatch.setattr(stage, "SMALL_FILE", 0)
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        with stage.scratch(tmp_path, archive, report, plan, big=True) as folder:
            assert folder == tmp_path


def test_a_full_temp_folder_while_staging_is_one_line_naming_it(tmp_path: Path) -> None:
    """``fix`` stages a big member it patches in TMPDIR when set: with no room there, one
    line names the member and the folder. A big member it does not patch needs no room
    (its audit keeps only the bytes its parse reads), and neither does ``show``."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("gcc") is None:
        unavailable("needs root, unshare and gcc to mount a small tmpfs")
    unpatched = _big_elf_wheel(tmp_path)
    built = build_wheel(_big_patched_spec(), tmp_path / "build")
    small = tmp_path / "small"
    small.mkdir()
    out = tmp_path / "out"

    def in_small_tmpdir(*args: str) -> subprocess.CompletedProcess[str]:
        script = (
            f"mount -t tmpfs -o size=4m tmpfs {small} && "
            f"TMPDIR={small} LD_LIBRARY_PATH={built.lib_dir} "
            f"{sys.executable} -m repairwheel {' '.join(args)}"
        )
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=False
        )

    proc = in_small_tmpdir("fix", "-w", str(out), str(built.path))
    if "mount" in proc.stderr and "permission" in proc.stderr.lower():
        unavailable(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("repairwheel: error: "), proc.stderr
    assert f"demo/_big{EXT_SUFFIX}: cannot stage the member in {small}/" in lines[0]
    assert "No space left on device" in lines[0] and "TMPDIR" in lines[0]
    assert not out.exists() or not any(out.iterdir())
    for args in (("fix", "-w", str(out), str(unpatched)), ("show", str(built.path))):
        done = in_small_tmpdir(*args)
        assert done.returncode == 0, done.stderr
    assert [p.name.split("-")[0] for p in out.iterdir()] == ["testsimple"]  # repaired
    # The control: with room, the patched one is repaired too.
    ok = cli("fix", "-w", str(out), str(built.path), env={"LD_LIBRARY_PATH": str(built.lib_dir)})
    assert ok.returncode == 0, ok.stderr


def test_a_malformed_elf_member_is_a_bad_wheel(tmp_path: Path) -> None:
    """exit 2 (bad wheel), one line naming the wheel and the member; nothing written."""
    wheel = tmp_path / GLIBC_WHEEL.name
    with zipfile.ZipFile(GLIBC_WHEEL) as zf, zipfile.ZipFile(wheel, "w") as out:
        for info in zf.infolist():
            out.writestr(info, zf.read(info))
        member = next(n for n in zf.namelist() if n.endswith(".so"))
        out.writestr("testsimple/_cut.so", zf.read(member)[:200])
    rezip(wheel, {})
    for args in (["show"], ["fix", "-w", str(tmp_path / "out")]):
        proc = cli(*args, str(wheel))
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and wheel.name in lines[0] and "testsimple/_cut.so" in lines[0]
    assert not (tmp_path / "out").exists()
