"""The audit agrees with auditwheel 6.8.2's ``show`` on the same wheel.

Three populations: the wheels bundled from auditwheel's test suite, against what auditwheel
said of them (``conformance_data``); pinned PyPI wheels of several architectures and both
libcs, against auditwheel run live on the same file; and small wheels built here with gcc
(a private library found through --ldpaths or the environment, a too-new glibc symbol,
libraries inside the wheel, an x86-64-v3 file, a library only newer policies whitelist, a
weak reference to a blacklisted symbol),
against auditwheel run live with the same options and environment.  Where we deliberately
answer otherwise the test asserts our answer and says why it is right: for the bundled
wheels in ``conformance_data.DEVIATIONS``, for built wheels in the test's docstring.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from conformance_data import DEVIATIONS, bundled_path, expected_error, recorded
from pypi_wheels import AUDIT_PINNED, BUNDLED_DIR, PypiWheel, bundled_wheels, fetch, unavailable

from repairwheel import cli
from repairwheel.audit import analyze_wheel

JsonDoc = dict[str, Any]

RECORDED = recorded()
AGREED = sorted(k for k, v in RECORDED.items() if v["exit"] == 0 and k not in DEVIATIONS)
FAILED = sorted(k for k, v in RECORDED.items() if v["exit"] != 0 and k not in DEVIATIONS)
# The fields the recording holds; external_libs there is a list of sonames.
RECORDED_FIELDS = (
    "overall_tag",
    "sym_tag",
    "external_libs",
    "versioned_symbols",
    "unsupported_isa",
)
# The fields compared with a live auditwheel run (show --json, schema version 1).
LIVE_FIELDS = (
    "overall_tag",
    "sym_tag",
    "external_libs",
    "versioned_symbols",
    "policy_upgrades",
    "unsupported_isa",
    "pyfpe",
    "ucs2",
)
FIRST_LINE = '{wheel} is consistent with the following platform tag: "{tag}".'


def _comparable(field: str, value: Any) -> Any:
    """The recording keeps only the sonames of external_libs; compare those."""
    if field == "external_libs":
        return sorted(value)
    return value


def _same_files(field: str, value: Any) -> Any:
    """external_libs paths name the same file when their real paths agree.

    auditwheel resolves only the last symlink (``/lib/x86_64-linux-gnu/libexpat.so.1.8.10``
    where ``/lib`` links to ``usr/lib``); we give the canonical real path. Both name the file
    a repair copies, so the comparison is by file, not by spelling.
    """
    if field == "external_libs":
        return {name: path and os.path.realpath(path) for name, path in value.items()}
    return value


def _show_text(wheel: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["show", str(wheel)])
    return code, capsys.readouterr().out


# ---------------------------------------------------------------- auditwheel, run live


@dataclass(frozen=True)
class AuditwheelAnswer:
    exit: int
    doc: JsonDoc | None  # the --json document, None when it died with a traceback
    stderr: str


class AuditwheelShow:
    """``python -m auditwheel show --json`` at most once per (wheel, options, environment).

    Runs are submitted ahead of the tests that read them and overlap on a thread pool,
    since auditwheel takes seconds per wheel.
    """

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._runs: dict[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]], Future] = {}

    def submit(
        self, wheel: Path, *options: str, env: Mapping[str, str] | None = None
    ) -> Future[AuditwheelAnswer]:
        key = (str(wheel), options, tuple(sorted((env or {}).items())))
        if key not in self._runs:
            self._runs[key] = self._pool.submit(self._run, wheel, options, dict(env or {}))
        return self._runs[key]

    def verdict(self, wheel: Path, *options: str, env: Mapping[str, str] | None = None) -> JsonDoc:
        """The --json document of a successful run; fails the test if auditwheel failed."""
        got = self.submit(wheel, *options, env=env).result()
        if got.exit != 0 or got.doc is None:
            pytest.fail(f"auditwheel show {wheel.name} exited {got.exit}:\n{got.stderr[-2000:]}")
        return got.doc

    @staticmethod
    def _run(wheel: Path, options: tuple[str, ...], env: dict[str, str]) -> AuditwheelAnswer:
        environ = {k: v for k, v in os.environ.items() if k != "AUDITWHEEL_PLAT"}
        environ.update(env)
        cmd = [sys.executable, "-m", "auditwheel", "show", "--json", *options, str(wheel)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=environ, check=False)
        try:
            doc = json.loads(proc.stdout)
        except json.JSONDecodeError:
            doc = None
        return AuditwheelAnswer(proc.returncode, doc, proc.stderr)


@pytest.fixture(scope="module")
def auditwheel() -> Iterator[AuditwheelShow]:
    try:
        import auditwheel as _  # noqa: F401
    except ImportError:
        unavailable("auditwheel is not installed (pip install -e '.[test]')")
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
    yield AuditwheelShow(pool)
    pool.shutdown(wait=True, cancel_futures=True)


class OurReports:
    """Our --json document per wheel (default options), computed once on first use, so one
    wheel's failure stays in that wheel's tests."""

    def __init__(self) -> None:
        self._docs: dict[Path, JsonDoc] = {}

    def report(self, wheel: Path) -> JsonDoc:
        if wheel not in self._docs:
            self._docs[wheel] = analyze_wheel(wheel).to_json()
        return self._docs[wheel]


@pytest.fixture(scope="module")
def our_reports() -> OurReports:
    return OurReports()


# ---------------------------------------------------------------- bundled wheels


def test_every_bundled_wheel_has_a_recorded_answer() -> None:
    wheels = bundled_wheels()
    if not wheels:
        unavailable(f"no bundled wheels under {BUNDLED_DIR}")
    assert {w.relative_to(BUNDLED_DIR).as_posix() for w in wheels} == set(RECORDED)


@pytest.mark.parametrize("field", RECORDED_FIELDS)
@pytest.mark.parametrize("relative", AGREED)
def test_bundled_wheel_matches_recording(
    relative: str, field: str, our_reports: OurReports
) -> None:
    ours = _comparable(field, our_reports.report(bundled_path(relative))[field])
    assert ours == _comparable(field, RECORDED[relative][field])


@pytest.mark.parametrize("relative", FAILED)
def test_bundled_wheel_fails_as_recorded(relative: str) -> None:
    with pytest.raises(expected_error(RECORDED[relative]["error"])):
        analyze_wheel(bundled_path(relative))


@pytest.mark.parametrize("relative", sorted(DEVIATIONS))
def test_bundled_wheel_deviation_gives_our_documented_error(relative: str) -> None:
    deviation = DEVIATIONS[relative]
    with pytest.raises(deviation.error) as caught:
        analyze_wheel(bundled_path(relative))
    message = str(caught.value).lower()
    missing = [words for words in deviation.says if words.lower() not in message]
    assert not missing, f"{caught.value!s} does not say {missing} ({deviation.why})"


@pytest.mark.parametrize("relative", sorted([*FAILED, *DEVIATIONS]))
def test_cli_show_exits_nonzero_for_an_unauditable_bundled_wheel(
    relative: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _show_text(bundled_path(relative), capsys)
    assert code != 0


@pytest.mark.parametrize("relative", AGREED)
def test_cli_show_first_line_names_the_recorded_tag(
    relative: str, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = bundled_path(relative)
    code, out = _show_text(wheel, capsys)
    assert code == 0
    expected = FIRST_LINE.format(wheel=wheel.name, tag=RECORDED[relative]["overall_tag"])
    assert out.splitlines()[0] == expected


# ---------------------------------------------------------------- pinned PyPI wheels


def _selected_pypi_wheels(session: pytest.Session) -> list[PypiWheel]:
    """The pinned wheels that selected tests of this module will ask auditwheel about."""
    chosen = {
        item.callspec.params["wheel"]
        for item in session.items
        if getattr(item, "originalname", None) == "test_pypi_wheel_matches_auditwheel"
    }
    return [wheel for wheel in AUDIT_PINNED if wheel in chosen]


@pytest.fixture(scope="module")
def pypi_started(request: pytest.FixtureRequest, auditwheel: AuditwheelShow) -> None:
    """Fetch the selected pinned wheels and start auditwheel on all of them before the
    first test reads an answer."""
    for wheel in _selected_pypi_wheels(request.session):
        try:
            auditwheel.submit(fetch(wheel))
        except (pytest.skip.Exception, pytest.fail.Exception):
            continue  # that wheel's own tests report it


@pytest.mark.parametrize("field", LIVE_FIELDS)
@pytest.mark.parametrize("wheel", AUDIT_PINNED, ids=lambda w: w.filename)
def test_pypi_wheel_matches_auditwheel(
    wheel: PypiWheel,
    field: str,
    pypi_started: None,
    auditwheel: AuditwheelShow,
    our_reports: OurReports,
) -> None:
    path = fetch(wheel)
    ours = our_reports.report(path)[field]
    theirs = auditwheel.verdict(path)[field]
    assert _same_files(field, ours) == _same_files(field, theirs)


# ---------------------------------------------------------------- wheels built with gcc

EXT_SUFFIX = ".cpython-311-x86_64-linux-gnu.so"
FIXTURE_TAG = "cp311-cp311-linux_x86_64"
SOURCES = {
    # getrandom is GLIBC_2.25: a repair grafting this library inherits that need.
    "priv.c": "#include <sys/random.h>\n"
    "int priv_value(void) { char b; return (int)getrandom(&b, 1, GRND_NONBLOCK); }\n",
    "privext.c": "extern int priv_value(void);\n"
    "void *PyInit_privext(void) { return (void *)(long)priv_value(); }\n",
    # pthread_create moved into libc at GLIBC_2.34.
    "newglibc.c": "#include <pthread.h>\n"
    "static void *run(void *arg) { return arg; }\n"
    "void *PyInit_newglibc(void) {\n"
    "    pthread_t t;\n"
    "    return (void *)(long)pthread_create(&t, 0, run, 0);\n"
    "}\n",
    "inner.c": "int inner_value(void) { return 7; }\n",
    "innerext.c": "extern int inner_value(void);\n"
    "void *PyInit__inner(void) { return (void *)(long)inner_value(); }\n",
    # A chain inside the wheel: the extension finds libmid through its own $ORIGIN path,
    # libmid finds libleaf only through what it inherits from the extension.
    "leaf.c": "int leaf_value(void) { return 2; }\n",
    "mid.c": "extern int leaf_value(void);\nint mid_value(void) { return leaf_value() + 1; }\n",
    "chainext.c": "extern int mid_value(void);\n"
    "void *PyInit_chain(void) { return (void *)(long)mid_value(); }\n",
    "isaext.c": "void *PyInit_isaext(void) { return 0; }\n",
    # zcalloc is on libz.so.1's blacklist; a weak reference to it is optional, so allowed.
    "weakz.c": "extern void *zcalloc(void *, unsigned, unsigned) __attribute__((weak));\n"
    "extern const char *zlibVersion(void);\n"
    "void *PyInit_weakz(void) { return zcalloc ? zcalloc(0, 1, 1) : (void *)zlibVersion(); }\n",
    # libexpat.so.1 is whitelisted from manylinux_2_12 on, not by manylinux_2_5.
    "expatext.c": "extern const char *XML_ExpatVersion(void);\n"
    "void *PyInit_expatext(void) { return (void *)XML_ExpatVersion(); }\n",
}


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def make_wheel(out_dir: Path, dist: str, files: Mapping[str, Path]) -> Path:
    """A wheel of ``files`` (archive name -> built file) with METADATA, WHEEL and a RECORD
    listing every file (auditwheel finds ELF files through RECORD)."""
    dist_info = f"{dist}-0.1.dist-info"
    contents = {name: src.read_bytes() for name, src in files.items()}
    contents[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n".encode()
    )
    contents[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: test_conformance\nRoot-Is-Purelib: false\n"
        f"Tag: {FIXTURE_TAG}\n"
    ).encode()
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in contents.items()]
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = out_dir / f"{dist}-0.1-{FIXTURE_TAG}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o100755 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


@dataclass(frozen=True)
class Built:
    """The gcc-built wheels, and the private library's directory and real file."""

    host_dir: Path  # holds libpriv.so.1 -> libpriv.so.1.2.3 only
    private_lib: Path  # realpath of libpriv.so.1
    private: Path  # extension needing libpriv.so.1, which the wheel does not hold
    new_glibc: Path  # extension needing pthread_create@GLIBC_2.34
    new_glibc_ext: Path  # that extension, for readelf
    in_wheel: Path  # extension finding libinner.so.1 in the wheel via RUNPATH $ORIGIN/...
    chain: Mapping[str, Path]  # "rpath"/"runpath": extension -> libmid -> libleaf, all inside
    isa_v3: Path  # extension marked x86-64-v3 (GNU_PROPERTY_X86_ISA_1_NEEDED)
    expat: Path  # extension needing libexpat.so.1 from the host
    weak_blacklisted: Path  # extension with a weak reference to libz's blacklisted zcalloc


def _gcc(workdir: Path, output: str, *args: str) -> Path:
    proc = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-o", output, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        unavailable(f"gcc {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return workdir / output


def _needs_version(path: Path, version: str) -> bool:
    """Whether readelf lists ``version`` among the file's version needs."""
    out = subprocess.run(["readelf", "-VW", str(path)], capture_output=True, text=True).stdout
    return f"Name: {version} " in out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if platform.machine() != "x86_64" or not sys.platform.startswith("linux"):
        unavailable("the gcc fixtures are x86_64 Linux builds")
    if shutil.which("gcc") is None or shutil.which("readelf") is None:
        unavailable("gcc and readelf (binutils) are needed")
    work = tmp_path_factory.mktemp("conformance-build")
    wheels = tmp_path_factory.mktemp("conformance-wheels")
    for name, text in SOURCES.items():
        (work / name).write_text(text)
    for folder in ("host", "rpath", "runpath"):
        (work / folder).mkdir()
    host = work / "host"
    real = _gcc(work, "host/libpriv.so.1.2.3", "priv.c", "-Wl,-soname,libpriv.so.1")
    (host / "libpriv.so.1").symlink_to(real.name)
    privext = _gcc(work, "privext" + EXT_SUFFIX, "privext.c", "-Lhost", "-l:libpriv.so.1")
    newglibc = _gcc(work, "newglibc" + EXT_SUFFIX, "newglibc.c", "-pthread")
    inner = _gcc(work, "libinner.so.1", "inner.c", "-Wl,-soname,libinner.so.1")
    innerext = _gcc(
        work,
        "_inner" + EXT_SUFFIX,
        "innerext.c",
        "-L.",
        "-l:libinner.so.1",
        "-Wl,-rpath,$ORIGIN/../inwheel.libs",
        "-Wl,--enable-new-dtags",
    )
    leaf = _gcc(work, "libleaf.so.1", "leaf.c", "-Wl,-soname,libleaf.so.1")
    mid = _gcc(work, "libmid.so.1", "mid.c", "-Wl,-soname,libmid.so.1", "-L.", "-l:libleaf.so.1")
    chain = {}
    for dtags, flag in (("rpath", "--disable-new-dtags"), ("runpath", "--enable-new-dtags")):
        ext = _gcc(
            work,
            f"{dtags}/chain{EXT_SUFFIX}",
            "chainext.c",
            "-L.",
            "-l:libmid.so.1",
            "-Wl,-rpath,$ORIGIN/../chain.libs",
            f"-Wl,{flag}",
        )
        chain[dtags] = make_wheel(
            wheels,
            f"chain{dtags}",
            {
                f"chain/{ext.name}": ext,
                "chain.libs/libmid.so.1": mid,
                "chain.libs/libleaf.so.1": leaf,
            },
        )
    isaext = _gcc(work, "isaext" + EXT_SUFFIX, "isaext.c", "-Wl,-z,x86-64-v3")
    expatext = _gcc(work, "expatext" + EXT_SUFFIX, "expatext.c", "-l:libexpat.so.1")
    weakz = _gcc(work, "weakz" + EXT_SUFFIX, "weakz.c", "-l:libz.so.1")
    return Built(
        host_dir=host,
        private_lib=real.resolve(),
        private=make_wheel(wheels, "privext", {privext.name: privext}),
        new_glibc=make_wheel(wheels, "newglibc", {newglibc.name: newglibc}),
        new_glibc_ext=newglibc,
        in_wheel=make_wheel(
            wheels,
            "inwheel",
            {f"inwheel/{innerext.name}": innerext, "inwheel.libs/libinner.so.1": inner},
        ),
        chain=chain,
        isa_v3=make_wheel(wheels, "isaext", {isaext.name: isaext}),
        expat=make_wheel(wheels, "expatext", {expatext.name: expatext}),
        weak_blacklisted=make_wheel(wheels, "weakz", {weakz.name: weakz}),
    )


@dataclass(frozen=True)
class Case:
    """One audit of a built wheel: the wheel and the options and environment of both tools."""

    wheel: Path
    ldpaths: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    disable_isa_ext_check: bool = False

    def auditwheel_options(self) -> tuple[str, ...]:
        options: tuple[str, ...] = ()
        if self.ldpaths is not None:
            options += ("--ldpaths", self.ldpaths)
        if self.disable_isa_ext_check:
            options += ("--disable-isa-ext-check",)
        return options


CASES: dict[str, Callable[[Built], Case]] = {
    "private-lib-via-ldpaths": lambda b: Case(b.private, ldpaths=str(b.host_dir)),
    "private-lib-via-LD_LIBRARY_PATH": lambda b: Case(
        b.private, env=(("LD_LIBRARY_PATH", str(b.host_dir)),)
    ),
    "private-lib-via-AUDITWHEEL_LD_LIBRARY_PATH": lambda b: Case(
        b.private, env=(("AUDITWHEEL_LD_LIBRARY_PATH", str(b.host_dir)),)
    ),
    "private-lib-not-found": lambda b: Case(b.private),
    "glibc-2.34-symbol": lambda b: Case(b.new_glibc),
    "in-wheel-lib-via-origin": lambda b: Case(b.in_wheel),
    "in-wheel-chain-via-inherited-rpath": lambda b: Case(b.chain["rpath"]),
    "x86-64-v3": lambda b: Case(b.isa_v3),
    "x86-64-v3-check-disabled": lambda b: Case(b.isa_v3, disable_isa_ext_check=True),
    "lib-whitelisted-by-newer-policies": lambda b: Case(b.expat),
    "weak-reference-to-blacklisted-symbol": lambda b: Case(b.weak_blacklisted),
}


@pytest.fixture(scope="module")
def cases(built: Built, auditwheel: AuditwheelShow) -> dict[str, Case]:
    """Every case, with auditwheel already started on all of them."""
    result = {name: make(built) for name, make in CASES.items()}
    for case in result.values():
        auditwheel.submit(case.wheel, *case.auditwheel_options(), env=dict(case.env))
    return result


def _ours(case: Case, monkeypatch: pytest.MonkeyPatch) -> JsonDoc:
    with monkeypatch.context() as patched:
        for name, value in case.env:
            patched.setenv(name, value)
        report = analyze_wheel(
            case.wheel, ldpaths=case.ldpaths, disable_isa_ext_check=case.disable_isa_ext_check
        )
    return report.to_json()


@pytest.mark.parametrize("field", LIVE_FIELDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_built_wheel_matches_auditwheel(
    name: str,
    field: str,
    cases: dict[str, Case],
    auditwheel: AuditwheelShow,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = cases[name]
    theirs = auditwheel.verdict(case.wheel, *case.auditwheel_options(), env=dict(case.env))
    ours = _ours(case, monkeypatch)[field]
    assert _same_files(field, ours) == _same_files(field, theirs[field])


def test_private_library_found_via_ldpaths_is_external_with_its_path(
    cases: dict[str, Case], built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = _ours(cases["private-lib-via-ldpaths"], monkeypatch)
    assert ours["external_libs"] == {"libpriv.so.1": str(built.private_lib)}


def test_private_library_found_via_ld_library_path_is_external_with_its_path(
    cases: dict[str, Case], built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = _ours(cases["private-lib-via-LD_LIBRARY_PATH"], monkeypatch)
    assert ours["external_libs"] == {"libpriv.so.1": str(built.private_lib)}


def test_library_inside_the_wheel_is_not_external(
    cases: dict[str, Case], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = _ours(cases["in-wheel-lib-via-origin"], monkeypatch)
    assert ours["external_libs"] == {}
    assert ours["overall_tag"].startswith("manylinux_")


def test_glibc_2_34_symbol_limits_the_tag_to_manylinux_2_34(
    cases: dict[str, Case], built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _needs_version(built.new_glibc_ext, "GLIBC_2.34"):
        unavailable("this toolchain's pthread_create is older than GLIBC_2.34")
    ours = _ours(cases["glibc-2.34-symbol"], monkeypatch)
    assert (ours["overall_tag"], ours["sym_tag"]) == ("manylinux_2_34_x86_64",) * 2


def test_cli_show_names_file_library_version_and_symbol_of_a_blocker(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    if not _needs_version(built.new_glibc_ext, "GLIBC_2.34"):
        unavailable("this toolchain's pthread_create is older than GLIBC_2.34")
    code, out = _show_text(built.new_glibc, capsys)
    assert code == 0
    named = ("newglibc" + EXT_SUFFIX, "libc.so.6", "GLIBC_2.34", "pthread_create")
    assert any(all(word in line for word in named) for line in out.splitlines()), out


def test_cli_show_first_line_names_auditwheels_tag_of_a_built_wheel(
    cases: dict[str, Case], auditwheel: AuditwheelShow, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = cases["in-wheel-lib-via-origin"].wheel
    code, out = _show_text(wheel, capsys)
    assert code == 0
    tag = auditwheel.verdict(wheel)["overall_tag"]
    assert out.splitlines()[0] == FIRST_LINE.format(wheel=wheel.name, tag=tag)


def _loader_opens(wheel: Path, member: str, into: Path) -> bool:
    """Whether the real dynamic loader can load ``member`` of the unpacked wheel."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(into)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    code = "import ctypes, sys; ctypes.CDLL(sys.argv[1])"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(into / member)], capture_output=True, env=env, check=False
    )
    return proc.returncode == 0


@pytest.mark.parametrize("dtags", ["rpath", "runpath"])
def test_in_wheel_chain_verdict_follows_the_real_loader(
    dtags: str, built: Built, tmp_path: Path
) -> None:
    """A deliberate deviation. ld.so lets libmid's lookups inherit the extension's DT_RPATH
    but never its DT_RUNPATH, which serves the extension's own needs only; so only the RPATH
    build loads. auditwheel applies the root's RUNPATH to indirect needs as well and calls
    the RUNPATH build manylinux with no external library: a wheel that fails on import
    ("libleaf.so.1: cannot open shared object file"). We report libleaf.so.1 as not found."""
    wheel = built.chain[dtags]
    loads = _loader_opens(wheel, f"chain/chain{EXT_SUFFIX}", tmp_path)
    ours = analyze_wheel(wheel).to_json()
    assert ours["external_libs"] == ({} if loads else {"libleaf.so.1": None})


def test_extension_missing_from_record_is_still_audited(built: Built, tmp_path: Path) -> None:
    """A deliberate deviation: auditwheel finds ELF files through RECORD and calls a wheel
    whose extension RECORD omits "not a platform wheel"; installers still install the file
    and Python imports it, so we find ELF files by their content."""
    init = tmp_path / "__init__.py"
    init.write_text("")
    wheel = make_wheel(tmp_path, "unlisted", {"unlisted/__init__.py": init})
    member = f"unlisted/newglibc{EXT_SUFFIX}"
    with zipfile.ZipFile(wheel, "a") as archive:
        archive.write(built.new_glibc_ext, member)
    ours = analyze_wheel(wheel).to_json()
    assert ours["elf_files"] == [member]
