"""SBOM of grafted libraries: package lookups on this host, and the CycloneDX document."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sysconfig
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from repairwheel import sbom
from repairwheel.errors import RepairwheelError
from repairwheel.sbom import GraftedLib, Provider, build_sbom, find_providers, sbom_bytes

MULTIARCH = sysconfig.get_config_var("MULTIARCH") or ""
LIBDIR = f"/usr/lib/{MULTIARCH}"
requires_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-query") is None or not MULTIARCH or not os.path.isdir(LIBDIR),
    reason="needs a Debian-style multiarch host with dpkg",
)

WHEEL = "demo_pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def installed_version(package: str) -> str:
    """What dpkg itself says is installed: the oracle for versions."""
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def host_lib(name: str) -> str:
    path = f"{LIBDIR}/{name}"
    if not os.path.exists(path):
        pytest.skip(f"{path} not on this host")
    return path


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    tool = bin_dir / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the tools a test writes, on a host that says it is Fedora 40."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    release = tmp_path / "os-release"
    release.write_text('NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(sbom, "OS_RELEASE_FILES", (str(release),))
    return bin_dir


def lib_file(directory: Path, name: str) -> str:
    path = directory / name
    path.write_bytes(b"\x7fELF")
    return str(path.resolve())


def grafted(path: str, provider: Provider | None) -> GraftedLib:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    name = os.path.basename(path)
    base, _, ext = name.partition(".")
    return GraftedLib(name, path, digest, f"{base}-{digest[:8]}.{ext}", provider)


def all_refs(doc: dict[str, Any]) -> list[str]:
    return [doc["metadata"]["component"]["bom-ref"]] + [c["bom-ref"] for c in doc["components"]]


def assert_cyclonedx_shape(doc: dict[str, Any]) -> None:
    """What a CycloneDX 1.5 consumer relies on (schema rules plus the spec's bom-ref rules)."""
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["specVersion"] == "1.5"
    assert isinstance(doc["version"], int) and doc["version"] >= 1
    refs = all_refs(doc)
    assert len(refs) == len(set(refs))
    for component in [doc["metadata"]["component"], *doc["components"]]:
        assert component["type"] in {"application", "library", "file"}
        assert isinstance(component["name"], str) and component["name"]
        assert re.match(r"^pkg:[a-z0-9.+-]+/", component.get("purl", "pkg:x/"))
        for digest in component.get("hashes", []):
            assert digest["alg"] == "SHA-256"
            assert re.fullmatch(r"[0-9a-f]{64}", digest["content"])
        for prop in component.get("properties", []):
            assert isinstance(prop["name"], str) and isinstance(prop["value"], str)
    dependents = [entry["ref"] for entry in doc["dependencies"]]
    assert len(dependents) == len(set(dependents))
    for entry in doc["dependencies"]:
        assert entry["ref"] in refs
        assert set(entry["dependsOn"]) <= set(refs)
    if "timestamp" in doc["metadata"]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["metadata"]["timestamp"])


@requires_dpkg
@pytest.mark.parametrize(
    ("soname", "package"),
    [("libffi.so.8", "libffi8"), ("libz.so.1", "zlib1g"), ("libc.so.6", "libc6")],
)
def test_finds_installed_package_owning_host_library(soname: str, package: str) -> None:
    path = host_lib(soname)
    provider = find_providers([path])[path]
    assert provider is not None
    assert (provider.name, provider.version, provider.purl_type) == (
        package,
        installed_version(package),
        "deb",
    )


@requires_dpkg
@pytest.mark.parametrize("spelling", ["/lib", "/usr/lib"])
def test_usr_merge_spellings_find_the_same_package(spelling: str) -> None:
    if os.path.realpath("/lib") != "/usr/lib":
        pytest.skip("host without merged /usr")
    host_lib("libffi.so.8")
    path = f"{spelling}/{MULTIARCH}/libffi.so.8"
    provider = find_providers([path])[path]
    assert provider is not None and provider.name == "libffi8"


@requires_dpkg
def test_symlink_is_attributed_to_package_of_its_target(tmp_path: Path) -> None:
    link = tmp_path / "libffi.so.8"
    link.symlink_to(os.path.realpath(host_lib("libffi.so.8")))
    provider = find_providers([str(link)])[str(link)]
    assert provider is not None and provider.name == "libffi8"


@requires_dpkg
def test_unowned_file_has_no_provider(tmp_path: Path) -> None:
    path = lib_file(tmp_path, "libmine.so.1")
    assert find_providers([path]) == {path: None}


@requires_dpkg
def test_path_with_glob_characters_is_looked_up_literally() -> None:
    path = "/lib/systemd/system/system-systemd\\x2dcryptsetup.slice"  # a backslash in the name
    if not os.path.exists(path):
        pytest.skip(f"no {path} on this host")
    provider = find_providers([path])[path]
    assert provider is not None and provider.name == "systemd"


@requires_dpkg
def test_glob_pattern_is_not_expanded_to_other_files() -> None:
    host_lib("libffi.so.8")
    pattern = f"{LIBDIR}/libffi.so.[8]"
    assert find_providers([pattern]) == {pattern: None}


@requires_dpkg
def test_many_paths_take_one_search_and_one_status_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [host_lib("libffi.so.8"), host_lib("libz.so.1"), lib_file(tmp_path, "libx.so")]
    calls: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(argv: list[str], **kwargs: Any) -> Any:
        calls.append(argv)
        return real_run(argv, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)
    found = find_providers(paths)
    assert [call[1] for call in calls] == ["-S", "-W"]
    assert [p for p, provider in found.items() if provider is not None] == paths[:2]


def test_missing_package_tools_give_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    paths = ["/usr/lib/libz.so.1", str(tmp_path / "libx.so")]
    assert find_providers(paths) == dict.fromkeys(paths)


def test_failing_tool_gives_none(fake_bin: Path, tmp_path: Path) -> None:
    fake_tool(fake_bin, "dpkg-query", "echo 'dpkg-query: error: database locked' >&2\nexit 2\n")
    path = lib_file(tmp_path, "libx.so.1")
    assert find_providers([path]) == {path: None}


def test_hung_tool_times_out_to_none(
    fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tool(fake_bin, "dpkg-query", "exec /bin/sleep 30\n")
    monkeypatch.setattr(sbom, "QUERY_TIMEOUT", 0.2)
    path = lib_file(tmp_path, "libx.so.1")
    assert find_providers([path]) == {path: None}


RPM_SCRIPT = """shift 3
for p in "$@"; do
  case "$p" in
    */a_shared.so) printf 'libone\\t(none)\\t1.0\\t1.fc40\\tx86_64\\n'
                   printf 'libtwo\\t(none)\\t2.0\\t1.fc40\\tx86_64\\n' ;;
    */b_owned.so) printf 'libowned\\t3\\t1.2\\t5.fc40\\tx86_64\\n' ;;
    *) echo "file $p is not owned by any package" ;;
  esac
done
"""


def test_rpm_answers_pair_with_their_paths(fake_bin: Path, tmp_path: Path) -> None:
    fake_tool(fake_bin, "rpm", RPM_SCRIPT)
    owned, unowned = lib_file(tmp_path, "b_owned.so"), lib_file(tmp_path, "c_none.so")
    found = find_providers([owned, unowned])
    assert found == {
        owned: Provider("libowned", "1.2-5.fc40", "rpm", "fedora", "40", "x86_64", "3"),
        unowned: None,
    }


def test_rpm_file_with_two_owners_keeps_other_answers_paired(
    fake_bin: Path, tmp_path: Path
) -> None:
    fake_tool(fake_bin, "rpm", RPM_SCRIPT)
    shared, owned = lib_file(tmp_path, "a_shared.so"), lib_file(tmp_path, "b_owned.so")
    found = find_providers([shared, owned])
    assert {path: p and p.name for path, p in found.items()} == {
        shared: "libone",
        owned: "libowned",
    }


def test_apk_who_owns_answer_is_split_into_name_and_version(fake_bin: Path, tmp_path: Path) -> None:
    fake_tool(
        fake_bin,
        "apk",
        'shift 2\nfor p in "$@"; do\n'
        '  case "$p" in */owned.so) echo "$p is owned by libstdc++-13.2.1_git20231014-r0";;\n'
        '  *) echo "ERROR: $p: Could not find owner package" >&2;; esac\ndone\n',
    )
    owned, unowned = lib_file(tmp_path, "owned.so"), lib_file(tmp_path, "other.so")
    found = find_providers([owned, unowned])
    assert found == {
        owned: Provider("libstdc++", "13.2.1_git20231014-r0", "apk", "fedora", "40"),
        unowned: None,
    }


@pytest.mark.parametrize(
    ("diversion", "owner"),
    [
        ("diversion by nvidia-alt from: {p}", "nvidia-alt"),
        ("diversion by unrelated from: {p}", None),
        ("local diversion from: {p}", None),
    ],
)
def test_dpkg_diverted_file_belongs_to_the_diverter(
    fake_bin: Path, tmp_path: Path, diversion: str, owner: str | None
) -> None:
    path = lib_file(tmp_path, "libGL.so.1")
    fake_tool(
        fake_bin,
        "dpkg-query",
        'if [ "$1" = -S ]; then\n'
        f"  echo '{diversion.format(p=path)}'\n"
        f"  echo 'diversion by nvidia-alt to: {path}.distrib'\n"
        f"  echo 'libgl1:amd64, nvidia-alt: {path}'\n"
        "else\n"
        "  shift 2\n"
        '  for pkg in "$@"; do printf "%s\\t%s\\t1.0\\tamd64\\n" "$pkg" "${pkg%:*}"; done\n'
        "fi\n",
    )
    provider = find_providers([path])[path]
    assert (provider and provider.name) == owner


def test_deb_purl_keeps_epoch_colon_and_encodes_plus() -> None:
    provider = Provider("libc6", "1:2.36-9+deb12u4", "deb", "debian", "12", "amd64")
    assert provider.purl == "pkg:deb/debian/libc6@1:2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"


def test_rpm_purl_puts_epoch_in_sorted_qualifiers() -> None:
    provider = Provider("zlib", "1.2.13-5.fc40", "rpm", "fedora", "40", "x86_64", "1")
    assert provider.purl == "pkg:rpm/fedora/zlib@1.2.13-5.fc40?arch=x86_64&distro=fedora-40&epoch=1"


@pytest.fixture
def real_grafts() -> list[GraftedLib]:
    if shutil.which("dpkg-query") is None or not MULTIARCH:
        pytest.skip("needs dpkg")
    paths = [host_lib("libffi.so.8"), host_lib("libz.so.1")]
    providers = find_providers(paths)
    return [grafted(path, providers[path]) for path in paths]


def test_document_has_cyclonedx_structure(real_grafts: list[GraftedLib], tmp_path: Path) -> None:
    grafts = [*real_grafts, grafted(lib_file(tmp_path, "libmine.so.2"), None)]
    assert_cyclonedx_shape(build_sbom("demo_pkg", "1.0", WHEEL, grafts))


def test_component_carries_soname_source_hash_and_package_purl(
    real_grafts: list[GraftedLib],
) -> None:
    doc = build_sbom("demo_pkg", "1.0", WHEEL, real_grafts[:1])
    (component,) = doc["components"]
    path = real_grafts[0].source
    assert component["name"] == "libffi.so.8"
    assert component["hashes"] == [
        {"alg": "SHA-256", "content": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    ]
    assert component["purl"].startswith("pkg:deb/debian/libffi8@")
    assert component["version"] == installed_version("libffi8")


def test_component_of_unknown_origin_has_no_purl(tmp_path: Path) -> None:
    doc = build_sbom("demo_pkg", "1.0", WHEEL, [grafted(lib_file(tmp_path, "libm.so.1"), None)])
    (component,) = doc["components"]
    assert "purl" not in component and "version" not in component


def test_wheel_is_the_metadata_component_with_pypi_purl() -> None:
    doc = build_sbom("Demo_Pkg", "1.0+cpu", WHEEL, [])
    wheel = doc["metadata"]["component"]
    assert (wheel["name"], wheel["version"]) == ("Demo_Pkg", "1.0+cpu")
    assert wheel["purl"] == f"pkg:pypi/demo-pkg@1.0%2Bcpu?file_name={WHEEL}"
    assert wheel["bom-ref"] not in [c["bom-ref"] for c in doc["components"]]


def test_wheel_depends_on_every_grafted_library(tmp_path: Path) -> None:
    grafts = [grafted(lib_file(tmp_path, f"lib{n}.so.1"), None) for n in "abc"]
    doc = build_sbom("demo_pkg", "1.0", WHEEL, grafts)
    (root,) = doc["dependencies"]
    assert root["ref"] == doc["metadata"]["component"]["bom-ref"]
    assert sorted(root["dependsOn"]) == sorted(g.new_name for g in grafts)


def test_same_grafts_in_any_order_give_same_bytes(
    real_grafts: list[GraftedLib], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = sbom_bytes(build_sbom("demo_pkg", "1.0", WHEEL, real_grafts))
    second = sbom_bytes(build_sbom("demo_pkg", "1.0", WHEEL, real_grafts[::-1]))
    assert first == second


def test_no_timestamp_without_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert "timestamp" not in build_sbom("demo_pkg", "1.0", WHEEL, [])["metadata"]


def test_source_date_epoch_is_the_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    expected = datetime.fromtimestamp(1700000000, timezone.utc).isoformat().replace("+00:00", "Z")
    assert build_sbom("demo_pkg", "1.0", WHEEL, [])["metadata"]["timestamp"] == expected


def test_malformed_source_date_epoch_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(RepairwheelError, match="SOURCE_DATE_EPOCH"):
        build_sbom("demo_pkg", "1.0", WHEEL, [])


def test_two_grafts_with_one_new_name_are_rejected(tmp_path: Path) -> None:
    graft = grafted(lib_file(tmp_path, "liba.so.1"), None)
    with pytest.raises(ValueError, match="new name"):
        build_sbom("demo_pkg", "1.0", WHEEL, [graft, graft])


def test_sbom_bytes_are_compact_sorted_and_end_in_newline() -> None:
    doc = {"b": [1, {"d": "x y", "c": None}], "a": "ünï"}
    data = sbom_bytes(doc)
    assert data == b'{"a":"\\u00fcn\\u00ef","b":[1,{"c":null,"d":"x y"}]}\n'
