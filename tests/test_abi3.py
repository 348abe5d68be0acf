"""The abi3 check against abi3audit (the tool cibuildwheel runs after a repair), on wheels
built here with gcc and on pinned abi3 wheels from PyPI, as published and re-tagged for an
older CPython: the same symbols, each with the same version; and how ``show`` and ``check``
report them."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pypi_wheels import PypiWheel, fetch, unavailable
from wheelbuild import repairwheel_cli

from repairwheel.audit import analyze_wheel

# Each fixture extension declares the C API functions it calls itself (no Python.h: the point
# is which symbols it leaves undefined), returns them from one function so none is dropped.
_EXTENSION = """
{declarations}
void *PyInit__ext(void) {{ return 0; }}
void *refs[] = {{ {names} }};
"""
FIXTURES = {
    # every symbol in the stable ABI of 3.2 (data included)
    "clean": ("PyLong_FromLong", "PyModule_Create2", "_Py_NoneStruct", "PyExc_ValueError"),
    # PyUnicode_AsUTF8AndSize and Py_NewRef joined it in 3.10, Py_IsFinalizing in 3.13
    "too-new": ("PyLong_FromLong", "PyUnicode_AsUTF8AndSize", "Py_NewRef", "weak:Py_IsFinalizing"),
    # never in the stable ABI
    "non-limited": ("PyModule_Create2", "_PyObject_GetDictPtr", "PyObject_Print"),
}

CRYPTOGRAPHY = PypiWheel(
    project="cryptography",
    version="46.0.3",
    filename="cryptography-46.0.3-cp311-abi3-manylinux_2_28_x86_64.whl",
    sha256="a2c0cd47381a3229c403062f764160d57d4d175e022c1df84e168c6251a22eec",
    platform="manylinux_2_28_x86_64",
    python_version="3.12",
    abi="abi3",
    arch="x86_64",
)
BCRYPT = PypiWheel(
    project="bcrypt",
    version="4.3.0",
    filename="bcrypt-4.3.0-cp39-abi3-manylinux_2_28_x86_64.whl",
    sha256="f1e3ffa1365e8702dc48c8b360fef8d7afeca482809c5e45e653af82ccd088c1",
    platform="manylinux_2_28_x86_64",
    python_version="3.12",
    abi="abi3",
    arch="x86_64",
)
PYNACL = PypiWheel(
    project="PyNaCl",
    version="1.5.0",
    filename="PyNaCl-1.5.0-cp36-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="06b8f6fa7f5de8d5d2f7573fe8c863c051225a27b61e6860fd047b1775807858",
    platform="manylinux2014_x86_64",
    python_version="3.11",
    abi="abi3",
    arch="x86_64",
)
PYPI_ABI3 = (CRYPTOGRAPHY, BCRYPT, PYNACL)

Findings = dict[str, tuple[frozenset[str], dict[str, str]]]  # file -> (non-abi3, future: ver)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def build_abi3_wheel(
    workdir: Path, symbols: tuple[str, ...], tag: str = "cp39-abi3-linux_x86_64"
) -> Path:
    """A wheel ``demo-1.0-<tag>.whl`` holding ``demo/_ext.abi3.so``, which references
    ``symbols`` (``weak:NAME`` as a weak reference) and exports PyInit__ext."""
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    names = [s.removeprefix("weak:") for s in symbols]
    declarations = "".join(
        f"extern char {n}[]{' __attribute__((weak))' if s.startswith('weak:') else ''};\n"
        for s, n in zip(symbols, names)
    )
    source = workdir / "ext.c"
    source.write_text(_EXTENSION.format(declarations=declarations, names=", ".join(names)))
    library = workdir / "_ext.abi3.so"
    subprocess.run(
        # libc linked though unused: it names the wheel's libc, as real extensions do
        ["gcc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source)]
        + ["-Wl,--no-as-needed", "-lc"],
        check=True,
        capture_output=True,
    )
    files = {
        "demo/__init__.py": b"",
        "demo/_ext.abi3.so": library.read_bytes(),
        "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        "demo-1.0.dist-info/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n"
        ).encode(),
    }
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files.items())
    files["demo-1.0.dist-info/RECORD"] = (record + "demo-1.0.dist-info/RECORD,,\n").encode()
    wheel = workdir / f"demo-1.0-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def retagged(wheel: Path, python_tag: str, workdir: Path) -> Path:
    """A copy of ``wheel`` whose file name claims ``python_tag`` (WHEEL left as it is)."""
    name, version, _, abi, platform = wheel.name[: -len(".whl")].split("-")
    target = workdir / f"{name}-{version}-{python_tag}-{abi}-{platform}.whl"
    shutil.copyfile(wheel, target)
    return target


def ours(wheel: Path) -> Findings:
    verdict = analyze_wheel(wheel).abi3
    assert verdict is not None
    found: Findings = {}
    for symbol in verdict.symbols:
        base = symbol.file.rsplit("/", 1)[-1]
        non_abi3, future = found.setdefault(base, (frozenset(), {}))
        if symbol.needs is None:
            found[base] = (non_abi3 | {symbol.symbol}, future)
        else:
            future[symbol.symbol] = symbol.needs
    return found


def abi3audit(wheel: Path) -> Findings:
    """abi3audit's findings per shared object (its JSON report), those without any left out."""
    if shutil.which("abi3audit", path=str(Path(sys.executable).parent)) is None:
        unavailable("abi3audit is not installed (pip install abi3audit; Python >= 3.10)")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "abi3audit"), "--report", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: a symbol outside the stable ABI
    report = json.loads(proc.stdout)
    found: Findings = {}
    for spec in report["specs"].values():
        for entry in spec["wheel"]:
            result = entry["result"]
            if result["non_abi3_symbols"] or result["future_abi3_objects"]:
                found[entry["name"]] = (
                    frozenset(result["non_abi3_symbols"]),
                    dict(result["future_abi3_objects"]),
                )
    return found


@pytest.fixture(scope="session")
def wheel_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The downloads' folder: under pytest's cache when it has one, else a session temp dir."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("abi3-wheels"))
    return tmp_path_factory.mktemp("abi3-wheels")


@pytest.fixture
def pypi(wheel_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPAIRWHEEL_WHEEL_CACHE", str(wheel_cache))


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_fixture_findings_match_abi3audit(fixture: str, tmp_path: Path) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES[fixture])
    assert ours(wheel) == abi3audit(wheel)


def test_too_new_symbols_are_named_with_the_version_they_need(tmp_path: Path) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES["too-new"])
    assert ours(wheel) == {
        "_ext.abi3.so": (
            frozenset(),
            {"PyUnicode_AsUTF8AndSize": "3.10", "Py_NewRef": "3.10", "Py_IsFinalizing": "3.13"},
        )
    }


def test_symbols_outside_the_stable_abi_have_no_version(tmp_path: Path) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES["non-limited"])
    assert ours(wheel) == {
        "_ext.abi3.so": (frozenset({"_PyObject_GetDictPtr", "PyObject_Print"}), {})
    }


def test_a_newer_baseline_accepts_what_an_older_one_refuses(tmp_path: Path) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES["too-new"], tag="cp313-abi3-linux_x86_64")
    assert ours(wheel) == {} == abi3audit(wheel)


def test_wheel_without_abi3_tag_has_no_abi3_verdict(tmp_path: Path) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES["non-limited"], tag="cp311-cp311-linux_x86_64")
    assert analyze_wheel(wheel).abi3 is None


@pytest.mark.parametrize("pinned", PYPI_ABI3, ids=lambda w: w.project)
@pytest.mark.usefixtures("pypi")
def test_published_abi3_wheel_matches_abi3audit(pinned: PypiWheel) -> None:
    wheel = fetch(pinned)
    assert ours(wheel) == abi3audit(wheel)


@pytest.mark.parametrize("pinned", PYPI_ABI3, ids=lambda w: w.project)
@pytest.mark.usefixtures("pypi")
def test_published_abi3_wheel_retagged_for_cpython_3_2_matches_abi3audit(
    pinned: PypiWheel, tmp_path: Path
) -> None:
    """Claiming 3.2 makes everything added since a finding: real symbols, real versions."""
    wheel = retagged(fetch(pinned), "cp32", tmp_path)
    assert ours(wheel) == abi3audit(wheel)


@pytest.mark.parametrize("pinned", PYPI_ABI3, ids=lambda w: w.project)
@pytest.mark.usefixtures("pypi")
def test_published_abi3_wheel_passes_check(pinned: PypiWheel) -> None:
    proc = repairwheel_cli("check", str(fetch(pinned)))
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout


@pytest.mark.usefixtures("pypi")
def test_cryptography_retagged_for_3_2_needs_3_11(tmp_path: Path) -> None:
    """The newest version any finding needs is the tag the wheel really has."""
    needs = {
        version
        for _, future in ours(retagged(fetch(CRYPTOGRAPHY), "cp32", tmp_path)).values()
        for version in future.values()
    }
    assert max(needs, key=lambda v: tuple(map(int, v.split(".")))) == "3.11"


def test_show_names_the_abi3_blockers(tmp_path: Path) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES["too-new"])
    proc = repairwheel_cli("show", str(wheel))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("Why not cp39-abi3 (the stable ABI of CPython 3.9):")
    assert lines[start + 1 :] == [
        "  demo/_ext.abi3.so uses PyUnicode_AsUTF8AndSize, in the stable ABI only from CPython "
        "3.10 on",
        "  demo/_ext.abi3.so uses Py_IsFinalizing, in the stable ABI only from CPython 3.13 on",
        "  demo/_ext.abi3.so uses Py_NewRef, in the stable ABI only from CPython 3.10 on",
    ]


def test_show_json_has_the_abi3_verdict(tmp_path: Path) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES["non-limited"])
    proc = repairwheel_cli("show", "--json", str(wheel))
    assert proc.returncode == 0, proc.stderr
    abi3 = json.loads(proc.stdout)["abi3"]
    assert (abi3["tag"], abi3["baseline"], abi3["satisfied"]) == ("cp39-abi3", "3.9", False)
    assert abi3["symbols"] == [
        {"file": "demo/_ext.abi3.so", "symbol": s, "needs": None}
        for s in ("PyObject_Print", "_PyObject_GetDictPtr")
    ]
    assert [b["kind"] for b in abi3["blockers"]] == ["abi3-symbol", "abi3-symbol"]
    assert "not in the stable ABI" in abi3["blockers"][0]["message"]


def test_show_says_a_clean_abi3_wheel_satisfies_its_tag(tmp_path: Path) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES["clean"])
    proc = repairwheel_cli("show", str(wheel))
    assert "cp39-abi3: every ELF file uses only the stable ABI of that version." in proc.stdout


def test_check_fails_a_false_abi3_tag_with_exit_6_one_line_per_symbol(tmp_path: Path) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES["too-new"])
    proc = repairwheel_cli("check", str(wheel))
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"{wheel.name}: claims cp39-abi3, but demo/_ext.abi3.so uses {symbol}, in the stable "
        f"ABI only from CPython {version} on"
        for symbol, version in (
            ("PyUnicode_AsUTF8AndSize", "3.10"),
            ("Py_IsFinalizing", "3.13"),
            ("Py_NewRef", "3.10"),
        )
    ]


def test_check_passes_a_true_abi3_tag(tmp_path: Path) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES["clean"])
    proc = repairwheel_cli("check", str(wheel))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_refuses_an_extension_named_for_one_interpreter_in_an_abi3_wheel(
    tmp_path: Path,
) -> None:
    wheel = build_abi3_wheel(tmp_path, FIXTURES["clean"])
    renamed = tmp_path / "renamed" / wheel.name
    renamed.parent.mkdir()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(renamed, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            name = info.filename.replace("_ext.abi3.so", "_ext.cpython-311-x86_64-linux-gnu.so")
            if name.endswith("RECORD"):
                data = data.replace(b"_ext.abi3.so", b"_ext.cpython-311-x86_64-linux-gnu.so")
            out.writestr(name, data)
    proc = repairwheel_cli("check", str(renamed))
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "_ext.cpython-311-x86_64-linux-gnu.so is named for one CPython version" in proc.stdout
