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

from repairwheel import provenance
from repairwheel.errors import UsageError
from repairwheel.provenance import Provider, find_providers
from repairwheel.sbom import GraftedLib, build_sbom, sbom_bytes

MULTIARCH = sysconfig.get_config_var("MULTIARCH") or ""
LIBDIR = f"/usr/lib/{MULTIARCH}"
requires_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-query") is None or not MULTIARCH or not os.path.isdir(LIBDIR),
    reason="needs a Debian-style multiarch host with dpkg",
)

WHEEL = "demo_pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def native_arch() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def installed_version(package: str, arch: str) -> str:
    """What dpkg itself says is installed for the ``package:arch`` instance: the version oracle.

    Asking for the bare name would answer once per installed architecture (libc6 for amd64
    and i386 on a multiarch host), so the instance is always named with its architecture.
    """
    lines = subprocess.run(
        ["dpkg-query", "-W", "-f=${Architecture}\t${Version}\n", f"{package}:{arch}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(lines) == 1, lines
    found_arch, version = lines[0].split("\t")
    assert found_arch == arch and version, lines
    return version


def package_arch(path: str) -> str:
    """The Architecture dpkg records for the package owning ``path`` (``all`` or an arch)."""
    owner = subprocess.run(
        ["dpkg-query", "-S", path], capture_output=True, text=True, check=True
    ).stdout.partition(": ")[0]
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Architecture}", owner],
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
    monkeypatch.setattr(provenance, "OS_RELEASE_FILES", (str(release),))
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
    arch = native_arch()
    assert provider is not None
    assert (provider.name, provider.version, provider.purl_type, provider.arch) == (
        package,
        installed_version(package, arch),
        "deb",
        arch,
    )
    assert f"?arch={arch}&" in provider.purl


# Libraries of a second architecture, owned by that architecture's instance of a package that
# is also installed natively (Multi-Arch: same). CI installs them (see .ci/run).
FOREIGN_LIBS = [
    ("aarch64-linux-gnu", "libffi.so.8", "libffi8", "arm64"),
    ("aarch64-linux-gnu", "libz.so.1", "zlib1g", "arm64"),
    ("i386-linux-gnu", "libc.so.6", "libc6", "i386"),
]


@requires_dpkg
@pytest.mark.parametrize(("triplet", "soname", "package", "arch"), FOREIGN_LIBS)
def test_foreign_arch_library_is_attributed_to_its_own_arch_package(
    triplet: str, soname: str, package: str, arch: str
) -> None:
    path = f"/usr/lib/{triplet}/{soname}"
    if not os.path.exists(path):
        pytest.skip(
            f"{path} not installed: needs `dpkg --add-architecture {arch}` and "
            f"`apt-get install {package}:{arch}`"
        )
    if arch == native_arch():
        pytest.skip(f"{arch} is this host's own architecture")
    native = host_lib(soname)
    found = find_providers([path, native])
    foreign = found[path]
    assert foreign is not None
    assert (foreign.name, foreign.version, foreign.arch) == (
        package,
        installed_version(package, arch),
        arch,
    )
    distro = foreign.distro_id
    assert distro, "os-release names the distro: the purl namespace"
    assert foreign.purl.startswith(f"pkg:deb/{distro}/{package}@")
    assert f"?arch={arch}&" in foreign.purl
    # Asked together, the host's own copy still names the native instance.
    own = found[native]
    assert own is not None and (own.name, own.arch) == (package, native_arch())


@requires_dpkg
def test_biarch_library_names_its_packages_architecture_not_its_codes() -> None:
    # amd64's libc6-i386 (pulled in by gcc-multilib) ships i386 code in /lib32: the package,
    # and so the purl, is amd64.
    path = "/lib32/libc.so.6"
    if not os.path.exists(path):
        pytest.skip(f"{path} not installed: needs libc6-i386 (gcc-multilib)")
    provider = find_providers([path])[path]
    arch = package_arch(path)
    assert provider is not None and (provider.name, provider.arch) == ("libc6-i386", arch)
    assert provider.version == installed_version("libc6-i386", arch)


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
    monkeypatch.setattr(provenance, "QUERY_TIMEOUT", 0.2)
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
        '  for pkg in "$@"; do printf "%s\\tamd64\\t1.0\\tii \\n" "${pkg%:*}"; done\n'
        "fi\n",
    )
    provider = find_providers([path])[path]
    assert (provider and provider.name) == owner


def elf_file(directory: Path, name: str, machine: int, is64: bool = True) -> str:
    """A file with just the ELF header fields that say which architecture its code is for."""
    header = b"\x7fELF" + bytes([2 if is64 else 1, 1, 1]) + bytes(9) + (3).to_bytes(2, "little")
    path = directory / name
    path.write_bytes(header + machine.to_bytes(2, "little") + bytes(44))
    return str(path.resolve())


EM_386, EM_X86_64, EM_AARCH64 = 3, 62, 183

# A fake dpkg-query on a multiarch host: `-S` answers as $OWNERS says, and `-W` logs its
# arguments, then answers for every instance of each package asked for, as dpkg would for a bare
# name (so only the exact `package:arch` lookup finds the right one).
DPKG_MULTIARCH_SCRIPT = """if [ "$1" = -S ]; then
  shift
  for p in "$@"; do echo "$OWNERS: $p"; done
else
  printf '%s\\0' "$@" > "$LOG"
  printf "$INSTANCES"
fi
"""


def multiarch_dpkg(
    fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owners: str, instances: str
) -> Path:
    fake_tool(fake_bin, "dpkg-query", DPKG_MULTIARCH_SCRIPT)
    log = tmp_path / "status-args"
    monkeypatch.setenv("OWNERS", owners)
    monkeypatch.setenv("INSTANCES", instances)
    monkeypatch.setenv("LOG", str(log))
    return log


def test_dpkg_asks_for_the_instance_of_the_owners_architecture(
    fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = multiarch_dpkg(
        fake_bin,
        tmp_path,
        monkeypatch,
        "libffi8:arm64",
        r"libffi8\tamd64\t3.4.4-1\tii \nlibffi8\tarm64\t3.4.4-1+b1\tii \n",
    )
    path = elf_file(tmp_path, "libffi.so.8", EM_AARCH64)
    provider = find_providers([path])[path]
    assert provider == Provider("libffi8", "3.4.4-1+b1", "deb", "fedora", "40", "arm64")
    assert provider.purl == "pkg:deb/fedora/libffi8@3.4.4-1%2Bb1?arch=arm64&distro=fedora-40"
    assert log.read_text().split("\0") == [
        "-W",
        "-f=${Package}\t${Architecture}\t${Version}\t${db:Status-Abbrev}\n",
        "libffi8:arm64",
        "",
    ]


def test_dpkg_architecture_all_package_keeps_arch_all(
    fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    multiarch_dpkg(
        fake_bin, tmp_path, monkeypatch, "tzdata", r"tzdata\tall\t2025b-0+deb12u2\tii \n"
    )
    path = lib_file(tmp_path, "Etc-UTC")
    provider = find_providers([path])[path]
    assert provider is not None and (provider.name, provider.arch) == ("tzdata", "all")
    assert provider.purl == "pkg:deb/fedora/tzdata@2025b-0%2Bdeb12u2?arch=all&distro=fedora-40"


def test_dpkg_bare_name_skips_a_removed_instance(
    fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    multiarch_dpkg(
        fake_bin,
        tmp_path,
        monkeypatch,
        "libfoo",
        r"libfoo\ti386\t1.0\trc \nlibfoo\tamd64\t2.0\tii \nlibfoo\tarm64\t\tun \n",
    )
    path = lib_file(tmp_path, "libfoo.so.1")
    provider = find_providers([path])[path]
    assert provider is not None and (provider.version, provider.arch) == ("2.0", "amd64")


@pytest.mark.parametrize(("machine", "arch"), [(EM_X86_64, "amd64"), (EM_AARCH64, "arm64")])
def test_dpkg_file_shared_by_two_instances_goes_to_the_codes_architecture(
    fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: int, arch: str
) -> None:
    multiarch_dpkg(
        fake_bin,
        tmp_path,
        monkeypatch,
        "libx1:arm64, libx1:amd64",
        r"libx1\tamd64\t1.0\tii \nlibx1\tarm64\t1.0\tii \n",
    )
    path = elf_file(tmp_path, "libx.so.1", machine)
    provider = find_providers([path])[path]
    assert provider is not None and provider.arch == arch


@pytest.mark.parametrize(
    "status",
    [
        r"libffi8\tamd64\t3.4.4-1\tii \n",  # no instance of the owner's architecture
        r"libffi83.4.4-1amd64\n",  # fields run together
        r"libffi8\tarm64\n",  # too few fields
        r"",
    ],
)
def test_dpkg_unusable_status_answer_gives_none(
    fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    multiarch_dpkg(fake_bin, tmp_path, monkeypatch, "libffi8:arm64", status)
    path = lib_file(tmp_path, "libffi.so.8")
    assert find_providers([path]) == {path: None}


def test_tool_that_cannot_start_gives_none(fake_bin: Path, tmp_path: Path) -> None:
    tool = fake_bin / "dpkg-query"
    tool.write_text("#!/nonexistent/interpreter\n")
    tool.chmod(0o755)
    path = lib_file(tmp_path, "libx.so.1")
    assert find_providers([path]) == {path: None}


def test_rpm_multilib_shared_file_goes_to_the_codes_architecture(
    fake_bin: Path, tmp_path: Path
) -> None:
    fake_tool(
        fake_bin,
        "rpm",
        "printf 'libgcc\\t(none)\\t14.1\\t1.fc40\\tx86_64\\n'\n"
        "printf 'libgcc\\t(none)\\t14.1\\t1.fc40\\ti686\\n'\n",
    )
    path = elf_file(tmp_path, "libgcc_s.so.1", EM_386, is64=False)
    provider = find_providers([path])[path]
    assert provider == Provider("libgcc", "14.1-1.fc40", "rpm", "fedora", "40", "i686")


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
    assert component["version"] == installed_version("libffi8", native_arch())
    assert f"?arch={native_arch()}&" in component["purl"]


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


@pytest.mark.parametrize("value", ["yesterday", "-1", "1.5"])
def test_malformed_source_date_epoch_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH") as caught:
        build_sbom("demo_pkg", "1.0", WHEEL, [])
    assert caught.value.exit_code == 2


def test_two_grafts_with_one_new_name_are_rejected(tmp_path: Path) -> None:
    graft = grafted(lib_file(tmp_path, "liba.so.1"), None)
    with pytest.raises(ValueError, match="new name"):
        build_sbom("demo_pkg", "1.0", WHEEL, [graft, graft])


def test_sbom_bytes_are_compact_sorted_and_end_in_newline() -> None:
    doc = {"b": [1, {"d": "x y", "c": None}], "a": "ünï"}
    data = sbom_bytes(doc)
    assert data == b'{"a":"\\u00fcn\\u00ef","b":[1,{"c":null,"d":"x y"}]}\n'
