"""Android wheels (PEP 738), checked against a live auditwheel 6.8.2 on the same inputs.

Fixtures are built with ``aarch64-linux-gnu-gcc`` (for ``arm64_v8a``) and the native gcc (for
``x86_64``) standing in for the NDK: the tag decides that a wheel is Android's, whatever built
it.  Everything is linked with ``-nostdlib`` against stub libraries named as Android's system
libraries (``libc.so``, ``liblog.so``, ``libvulkan.so``, ``libneuralnetworks.so``,
``libpython3.13.so``), which stay out of ``--ldpaths``: the device provides them.  The private
libraries ``libfoo.so`` (which needs ``libbar.so``) are found through ``--ldpaths`` only.

For every case both tools repair the same wheel, and the outputs must agree: the file name,
the grafted files (their names carry the hash of the same source file), and DT_NEEDED,
DT_SONAME, DT_RPATH and DT_RUNPATH of every ELF member; where auditwheel refuses, we refuse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from pypi_wheels import BUNDLED_DIR, unavailable
from wheelbuild import record_hash

from repairwheel import cli, read_elf
from repairwheel.audit import analyze_wheel
from repairwheel.errors import (
    DependencyError,
    NotPlatformWheelError,
    PolicyError,
    RepairwheelError,
    WheelError,
)
from repairwheel.patch import PatchOps
from repairwheel.policy import android_policy, get_policy, load_policies
from repairwheel.resolve import loader_config
from repairwheel.resolve.rules import AndroidRules, rules_for
from repairwheel.verdict import BlockerKind

SPAM = BUNDLED_DIR / "android" / "spam-0.1.0-cp313-cp313-android_24_arm64_v8a.whl"
_COMPILERS = {"aarch64": "aarch64-linux-gnu-gcc", "x86_64": "gcc"}
_TRIPLETS = {"aarch64": "aarch64-linux-android", "x86_64": "x86_64-linux-android"}
_SYSTEM = ("c", "log", "vulkan", "neuralnetworks", "python3.13")
_DATE_TIME = (2024, 1, 1, 0, 0, 0)


# ---------------------------------------------------------------- building


@dataclass(frozen=True)
class Toolchain:
    """Stub system libraries and the private ones of one architecture."""

    arch: str
    cc: str
    system: Path  # the stubs: linked against, never searched
    deps: Path  # libfoo.so (needs libbar.so) and libbar.so: the --ldpaths folder
    empty: Path  # an --ldpaths folder with nothing in it
    work: Path

    def compile(self, output: Path, source: str, *args: str) -> Path:
        src = output.with_suffix(".c")
        src.write_text(source)
        argv = [self.cc, "-shared", "-fPIC", "-nostdlib", "-O1", str(src), "-o", str(output)]
        proc = subprocess.run([*argv, *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stderr}")
        return output


def _toolchain(arch: str, root: Path) -> Toolchain:
    cc = _COMPILERS[arch]
    if shutil.which(cc) is None:
        unavailable(f"{cc} is not installed (apt-get install gcc-aarch64-linux-gnu)")
    system, deps, empty = root / "system", root / "deps", root / "empty"
    for d in (system, deps, empty):
        d.mkdir(parents=True)
    tc = Toolchain(arch, cc, system, deps, empty, root)
    for name in _SYSTEM:
        symbol = name.replace(".", "_")
        tc.compile(
            system / f"lib{name}.so",
            f"int {symbol}_fn(void) {{ return 1; }}\n",
            f"-Wl,-soname,lib{name}.so",
        )
    tc.compile(deps / "libbar.so", "int bar_fn(void) { return 2; }\n", "-Wl,-soname,libbar.so")
    tc.compile(
        deps / "libfoo.so",
        "extern int bar_fn(void);\nint foo_fn(void) { return bar_fn() + 3; }\n",
        "-Wl,-soname,libfoo.so",
        f"-L{deps}",
        "-lbar",
    )
    return tc


class Toolchains:
    """Each architecture's toolchain, built on first use (a missing compiler skips only the
    tests that need it)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._made: dict[str, Toolchain] = {}

    def __getitem__(self, arch: str) -> Toolchain:
        if arch not in self._made:
            self._made[arch] = _toolchain(arch, self._root / arch)
        return self._made[arch]


@pytest.fixture(scope="module")
def toolchains(tmp_path_factory: pytest.TempPathFactory) -> Toolchains:
    return Toolchains(tmp_path_factory.mktemp("android"))


def _write_wheel(path: Path, files: dict[str, bytes]) -> Path:
    """A wheel with a right RECORD; ``path``'s name gives the tag in WHEEL."""
    dist, version, py, abi, plat = path.name[: -len(".whl")].split("-")
    dist_info = f"{dist}-{version}.dist-info"
    files = dict(files)
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    )
    tags = "".join(f"Tag: {py}-{abi}-{p}\n" for p in plat.split("."))
    files[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n{tags}".encode()
    )
    record = "".join(f"{n},{record_hash(d)},{len(d)}\n" for n, d in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
            info.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def _extension_wheel(
    tc: Toolchain, tag: str, needs: tuple[str, ...], folder: Path, *link: str
) -> Path:
    """``andro/_ext`` needing ``lib<n>.so`` for each of ``needs`` (foo: the private one),
    linked with the extra ``link`` arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = [n.replace(".", "_") for n in needs]
    source = "".join(f"extern int {s}_fn(void);\n" for s in symbols)
    source += "void *PyInit__ext(void) { return (void *)(long)(0"
    source += "".join(f" + {s}_fn()" for s in symbols) + "); }\n"
    ext = tc.compile(
        folder / f"_ext.cpython-313-{_TRIPLETS[tc.arch]}.so",
        source,
        f"-L{tc.system}",
        f"-L{tc.deps}",
        "-Wl,--no-as-needed",
        *(f"-l{n}" for n in needs),
        *link,
    )
    files = {"andro/__init__.py": b"", f"andro/{ext.name}": ext.read_bytes()}
    return _write_wheel(folder / f"andro-1.0-cp313-cp313-{tag}.whl", files)


# ---------------------------------------------------------------- running both tools


@dataclass(frozen=True)
class Outcome:
    """One tool's repair: the output (None when refused), the exit code and its message."""

    output: Path | None
    code: int
    message: str


def _auditwheel_repair(wheel: Path, ldpaths: Path, out: Path) -> Outcome:
    try:
        import auditwheel as _  # noqa: F401
    except ImportError:
        unavailable("auditwheel is not installed (pip install -e '.[test]')")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITWHEEL_", "LD_"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    cmd = [sys.executable, "-m", "auditwheel", "repair", "--ldpaths", str(ldpaths)]
    proc = subprocess.run(
        [*cmd, "-w", str(out), str(wheel)], capture_output=True, text=True, env=env, check=False
    )
    written = sorted(out.glob("*.whl")) if out.is_dir() else []
    return Outcome(
        written[0] if proc.returncode == 0 and written else None, proc.returncode, proc.stderr
    )


def _our_repair(
    wheel: Path, ldpaths: Path, out: Path, capsys: pytest.CaptureFixture[str]
) -> Outcome:
    capsys.readouterr()
    code = cli.main(["repair", "--ldpaths", str(ldpaths), "-w", str(out), str(wheel)])
    err = capsys.readouterr().err
    written = sorted(out.glob("*.whl")) if out.is_dir() else []
    return Outcome(written[0] if code == 0 and written else None, code, err)


def _elf_facts(wheel: Path) -> dict[str, dict[str, object]]:
    """Every ELF member: DT_NEEDED, DT_SONAME, every DT_RPATH and DT_RUNPATH entry."""
    facts: dict[str, dict[str, object]] = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            data = zf.read(name)
            if data[:4] != b"\x7fELF":
                continue
            elf = read_elf(data)
            facts[name] = {
                "needed": elf.needed,
                "soname": elf.soname,
                "rpath": tuple(elf.rpaths),
                "runpath": tuple(elf.runpaths),
            }
    return facts


def _both(
    wheel: Path, ldpaths: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Outcome, Outcome]:
    theirs = _auditwheel_repair(wheel, ldpaths, tmp_path / "auditwheel")
    ours = _our_repair(wheel, ldpaths, tmp_path / "ours", capsys)
    return ours, theirs


def _assert_same_repair(ours: Outcome, theirs: Outcome) -> dict[str, dict[str, object]]:
    assert theirs.output is not None, f"auditwheel refused: {theirs.message[-2000:]}"
    assert ours.output is not None, f"we refused: {ours.message}"
    assert ours.output.name == theirs.output.name
    facts = _elf_facts(ours.output)
    assert facts == _elf_facts(theirs.output)
    return facts


# ---------------------------------------------------------------- the cases, against auditwheel


@pytest.mark.parametrize(
    ("arch", "tag", "needs", "grafts"),
    [
        # a graft needing another graft; a libpython DT_NEEDED; libvulkan (a system library from 24)
        ("aarch64", "android_24_arm64_v8a", ("foo", "log", "c", "python3.13", "vulkan"), 2),
        # level 27: libneuralnetworks and libvulkan are system libraries
        ("x86_64", "android_27_x86_64", ("foo", "neuralnetworks", "vulkan", "python3.13", "c"), 2),
        # nothing to graft: passes at 21, libpython kept
        ("x86_64", "android_21_x86_64", ("log", "c", "python3.13"), 0),
        # libvulkan is a system library at 24 (not at 21, see below)
        ("aarch64", "android_24_arm64_v8a", ("vulkan", "log", "c"), 0),
    ],
)
def test_repair_matches_auditwheel(
    arch: str,
    tag: str,
    needs: tuple[str, ...],
    grafts: int,
    toolchains: Toolchains,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tc = toolchains[arch]
    wheel = _extension_wheel(tc, tag, needs, tmp_path / "in")
    ours, theirs = _both(wheel, tc.deps, tmp_path, capsys)
    facts = _assert_same_repair(ours, theirs)
    assert ours.output is not None and ours.output.name == wheel.name  # the tag is kept
    grafted = sorted(n for n in facts if n.startswith("andro.libs/"))
    assert len(grafted) == grafts
    ext = facts[f"andro/_ext.cpython-313-{_TRIPLETS[arch]}.so"]
    assert all(not f["rpath"] for f in facts.values())  # bionic ignores DT_RPATH
    if "python3.13" in needs:
        assert "libpython3.13.so" in ext["needed"]  # # normal on Android: kept
    if grafts:
        assert ext["runpath"] == ("$ORIGIN/../andro.libs",)
        foo = next(n for n in grafted if n.startswith("andro.libs/libfoo-"))
        bar = next(n for n in grafted if n.startswith("andro.libs/libbar-"))
        # RUNPATH is not inherited: the graft needing another has its own $ORIGIN
        assert facts[foo]["runpath"] == ("$ORIGIN",)
        assert facts[foo]["needed"] == (bar.split("/")[1],)
        assert facts[bar]["runpath"] == ()
    else:
        assert ext["runpath"] == ()


@pytest.mark.parametrize(
    ("arch", "tag", "needs", "error", "says"),
    [
        # a graft needs DT_RUNPATH, which bionic reads from API level 24 on
        ("x86_64", "android_21_x86_64", ("foo", "c"), PolicyError, ("libfoo.so", "24")),
        # libvulkan is a system library from 24 on, and not found to graft
        ("x86_64", "android_21_x86_64", ("vulkan", "c"), PolicyError, ("libvulkan.so", "24")),
    ],
)
def test_refusal_matches_auditwheel(
    arch: str,
    tag: str,
    needs: tuple[str, ...],
    error: type[RepairwheelError],
    says: tuple[str, ...],
    toolchains: Toolchains,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tc = toolchains[arch]
    wheel = _extension_wheel(tc, tag, needs, tmp_path / "in")
    ours, theirs = _both(wheel, tc.deps, tmp_path, capsys)
    assert theirs.code != 0 and theirs.output is None
    assert ours.output is None
    assert ours.code == error.exit_code
    line = ours.message.strip()
    assert "\n" not in line and all(word in line for word in says), line
    assert not list((tmp_path / "ours").glob("*.whl"))


def test_missing_library_is_refused_like_auditwheel(
    toolchains: Toolchains, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tc = toolchains["aarch64"]
    wheel = _extension_wheel(tc, "android_24_arm64_v8a", ("foo", "c"), tmp_path / "in")
    ours, theirs = _both(wheel, tc.empty, tmp_path, capsys)
    assert theirs.code != 0 and theirs.output is None
    assert ours.code == DependencyError.exit_code
    line = ours.message.strip()
    assert "\n" not in line and "libfoo.so" in line and "--ldpaths" in line, line


def test_host_library_folders_are_never_searched(
    toolchains: Toolchains, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libfoo.so in LD_LIBRARY_PATH (the build host's) is not found; in
    REPAIRWHEEL_LD_LIBRARY_PATH it is."""
    tc = toolchains["x86_64"]
    wheel = _extension_wheel(tc, "android_27_x86_64", ("foo", "c"), tmp_path / "in")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tc.deps))
    report = analyze_wheel(wheel)
    assert report.external_libs == {"libfoo.so": None}
    monkeypatch.setenv("REPAIRWHEEL_LD_LIBRARY_PATH", str(tc.deps))
    report = analyze_wheel(wheel)
    assert report.external_libs["libfoo.so"] == str(tc.deps / "libfoo.so")
    assert report.repair_tag == "android_27_x86_64"


@pytest.mark.parametrize(
    ("flag", "found"), [("--disable-new-dtags", False), ("--enable-new-dtags", True)]
)
def test_dt_rpath_is_ignored_and_dt_runpath_read(
    flag: str, found: bool, toolchains: Toolchains, tmp_path: Path
) -> None:
    """bionic never reads DT_RPATH (auditwheel's lddtree does: there it would find libfoo.so and
    graft it, a library the device's loader would not have looked for there)."""
    tc = toolchains["x86_64"]
    link = (f"-Wl,{flag}", f"-Wl,-rpath,{tc.deps}")
    wheel = _extension_wheel(tc, "android_24_x86_64", ("foo", "c"), tmp_path, *link)
    report = analyze_wheel(wheel)
    path = report.external_libs["libfoo.so"]
    assert (path == str(tc.deps / "libfoo.so")) if found else path is None
    # libbar.so is libfoo's need: libfoo has no DT_RUNPATH, and the extension's is not inherited
    if found:
        assert report.external_libs.get("libbar.so") is None


def test_show_matches_auditwheel(
    toolchains: Toolchains, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tc = toolchains["x86_64"]
    wheel = _extension_wheel(
        tc, "android_27_x86_64", ("foo", "vulkan", "python3.13", "c"), tmp_path
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITWHEEL_", "LD_"))}
    cmd = [sys.executable, "-m", "auditwheel", "show", "--json", "--ldpaths", str(tc.deps)]
    proc = subprocess.run([*cmd, str(wheel)], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout)
    ours = analyze_wheel(wheel, ldpaths=str(tc.deps)).to_json()
    for field in (
        "overall_tag",
        "sym_tag",
        "external_libs",
        "policy_upgrades",
        "versioned_symbols",
    ):
        assert ours[field] == theirs[field], field
    capsys.readouterr()
    assert cli.main(["show", "--ldpaths", str(tc.deps), str(wheel)]) == 0
    out = capsys.readouterr().out
    assert "Android API level 27" in out
    assert '`repairwheel fix` can make it "android_27_x86_64"' in out
    # what keeps it from lower levels: libvulkan before 24; grafting before 24
    assert "android_21_x86_64" in out and "libvulkan.so" in out
    lower = {c["tag"]: c for c in ours["lower_api_levels"]}
    assert set(lower) == {"android_21_x86_64", "android_24_x86_64", "android_26_x86_64"}
    kinds = {b["kind"] for b in lower["android_21_x86_64"]["blockers"]}
    assert kinds == {BlockerKind.API_LEVEL.value}
    assert lower["android_24_x86_64"]["repairable"]


def test_bundled_spam_wheel_repairs_like_auditwheel(
    toolchains: Toolchains, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """auditwheel's own Android test wheel, with a stub libc++_shared.so to graft."""
    tc = toolchains["aarch64"]
    ndk = tmp_path / "ndk"
    ndk.mkdir()
    tc.compile(
        ndk / "libc++_shared.so", "int cxx_fn(void) { return 4; }\n", "-Wl,-soname,libc++_shared.so"
    )
    ours, theirs = _both(SPAM, ndk, tmp_path, capsys)
    facts = _assert_same_repair(ours, theirs)
    assert ours.output is not None and ours.output.name == SPAM.name
    ext = facts["spam.cpython-313-aarch64-linux-android.so"]
    assert ext["runpath"] == ("$ORIGIN/spam.libs",) and ext["rpath"] == ()
    assert "libpython3.13.so" in ext["needed"]


# ---------------------------------------------------------------- without a compiler


def test_bundled_wheel_without_ldpaths_is_refused_naming_the_library(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["repair", "-w", str(tmp_path), str(SPAM)])
    err = capsys.readouterr().err.strip()
    assert code == DependencyError.exit_code
    assert "libc++_shared.so" in err and "--ldpaths" in err and "\n" not in err
    assert not list(tmp_path.iterdir())


def test_bundled_wheel_verdict_is_auditwheels() -> None:
    doc = analyze_wheel(SPAM).to_json()
    assert doc["overall_tag"] == "linux_aarch64"
    assert doc["sym_tag"] == "android_24_arm64_v8a"
    assert doc["external_libs"] == {"libc++_shared.so": None}
    assert doc["libc"] == "android" and doc["arch"] == "aarch64"


def _respin(tmp_path: Path, name: str) -> Path:
    """The bundled wheel's extension in a wheel named ``name``."""
    with zipfile.ZipFile(SPAM) as zf:
        ext = zf.read("spam.cpython-313-aarch64-linux-android.so")
    folder = tmp_path / "respun"
    folder.mkdir(exist_ok=True)
    return _write_wheel(folder / name, {"spam.cpython-313-aarch64-linux-android.so": ext})


@pytest.mark.parametrize(
    ("name", "error", "says"),
    [
        ("spam-0.1.0-cp313-cp313-android_19_arm64_v8a.whl", NotPlatformWheelError, "21"),
        (
            "spam-0.1.0-cp313-cp313-android_24_arm64_v8a.android_24_x86_64.whl",
            WheelError,
            "exactly one platform tag",
        ),
        ("spam-0.1.0-cp313-cp313-linux_aarch64.whl", NotPlatformWheelError, "android_<API level>"),
        ("spam-0.1.0-cp313-cp313-android_24_armeabi_v7a.whl", NotPlatformWheelError, "armeabi_v7a"),
        ("spam-0.1.0-cp313-cp313-android_24_x86_64.whl", NotPlatformWheelError, "aarch64"),
    ],
)
def test_android_tag_problems_are_one_clear_error(
    name: str, error: type[Exception], says: str, tmp_path: Path
) -> None:
    with pytest.raises(error, match=says.replace("<", ".").replace(">", ".")):
        analyze_wheel(_respin(tmp_path, name))


def test_api_level_between_policies_uses_the_highest_below_and_keeps_the_tag(
    tmp_path: Path,
) -> None:
    report = analyze_wheel(_respin(tmp_path, "spam-0.1.0-cp313-cp313-android_25_arm64_v8a.whl"))
    own = report.verdict.checks[0]
    assert own.tag == "android_25_arm64_v8a"
    assert own.policy.whitelist == get_policy("android_24", libc="android").whitelist
    assert report.to_json()["sym_tag"] == "android_25_arm64_v8a"


def test_plat_other_than_the_wheels_tag_is_refused(tmp_path: Path) -> None:
    from repairwheel.plan import choose_policies

    report = analyze_wheel(SPAM)
    for plat in ("android_21_arm64_v8a", "manylinux_2_17_aarch64"):
        with pytest.raises(PolicyError):
            choose_policies(report, plat, only_plat=False)


def test_policies_match_auditwheels_android_data() -> None:
    from auditwheel.architecture import Architecture
    from auditwheel.libc import Libc
    from auditwheel.policy import WheelPolicies

    for level in (21, 22, 24, 25, 26, 27, 30):
        for arch, spelled in (("aarch64", "arm64_v8a"), ("x86_64", "x86_64")):
            tag = f"android_{level}_{spelled}"
            theirs = WheelPolicies(
                libc=Libc.ANDROID,
                arch=Architecture(arch),
                wheel_fn=Path(f"x-1-cp313-cp313-{tag}.whl"),
            ).highest
            ours = android_policy(level, arch)
            assert ours is not None
            assert ours.tag(arch) == theirs.name == tag
            assert ours.whitelist == theirs.whitelist
            assert ours.priority == theirs.priority
            assert not ours.symbol_versions[arch] and not ours.blacklist
    assert android_policy(20, "x86_64") is None
    assert android_policy(24, "armv7l") is None
    assert [p.name for p in load_policies("android")][:-1] == [
        "android_21",
        "android_24",
        "android_26",
        "android_27",
    ]


def test_android_loader_config_reads_nothing_of_the_host() -> None:
    environ = {"LD_LIBRARY_PATH": "/usr/lib", "REPAIRWHEEL_LD_LIBRARY_PATH": "/opt/extra"}
    config = loader_config("android", "aarch64", "/ndk/lib:/prefix/lib", environ=environ)
    assert config.interpreter is None
    assert [d.directory for d in config.system_dirs] == ["/ndk/lib", "/prefix/lib"]
    assert config.env_paths == (("REPAIRWHEEL_LD_LIBRARY_PATH", "/opt/extra"),)
    assert loader_config("android", "x86_64", environ={}).system_dirs == ()
    assert isinstance(rules_for(config), AndroidRules)


def test_runpath_ops_write_dt_runpath() -> None:
    ops = PatchOps(rpath="$ORIGIN", runpath=True)
    assert "--force-rpath" not in ops.arguments("x.so")
    assert PatchOps(rpath="$ORIGIN").arguments("x.so")[:3] == [
        "--force-rpath",
        "--set-rpath",
        "$ORIGIN",
    ]
    with pytest.raises(ValueError, match="rpath"):
        PatchOps(runpath=True)


def test_get_policy_reads_android_tags() -> None:
    policy = get_policy("android_24_arm64_v8a")
    assert (policy.libc, policy.name, policy.tag("aarch64")) == (
        "android",
        "android_24",
        "android_24_arm64_v8a",
    )
    assert get_policy("linux_aarch64").libc == "glibc"  # Android never shadows the Linux names
    with pytest.raises(PolicyError, match="no i686 variant"):
        get_policy("android_24_i686")
