"""Which installed distro package owns a host file: dpkg, rpm or apk, asked once per repair.

The answer names a grafted library's package in the SBOM (:mod:`.sbom`). A missing tool, a
failing or timed-out query, or an unowned file gives no owner; nothing here raises.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")
QUERY_TIMEOUT = 60.0
"""Seconds one package-manager query may take; a locked or huge database must not hang a repair."""

# Top-level directories that a merged-/usr system turns into symlinks to /usr/<dir>; the package
# database may record a file under either spelling.
_MERGED_DIRS = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32"})
_DPKG_GLOB = re.compile(r"([*?\[\\])")
_RPM_FORMAT = "%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n"
# One tab-separated line per package instance. ``${db:Status-Abbrev}`` (e.g. ``ii``) tells an
# installed instance from a removed one whose record (and version) dpkg still keeps.
_DPKG_FORMAT = "${Package}\t${Architecture}\t${Version}\t${db:Status-Abbrev}\n"
_DPKG_GONE = frozenset("nc")
"""Second letter of ``db:Status-Abbrev`` for an instance whose files are not installed."""

# Package-manager architecture names (dpkg's and rpm's) of the code an ELF header describes,
# keyed by (e_machine, 64-bit, little-endian); None stands for either value. Only used to choose
# among several owners of one file; a package's own Architecture is what the purl names (a
# biarch package such as amd64's libc6-i386 ships i386 code).
_ELF_ARCHES: dict[tuple[int, bool | None, bool | None], frozenset[str]] = {
    (3, False, True): frozenset({"i386", "i486", "i586", "i686", "athlon"}),
    (62, True, True): frozenset({"amd64", "x86_64"}),
    (62, False, True): frozenset({"x32"}),
    (183, True, True): frozenset({"arm64", "aarch64"}),
    (40, False, True): frozenset({"armhf", "armel", "armv7hl", "armv7l", "armv6hl"}),
    (20, False, False): frozenset({"powerpc", "ppc"}),
    (21, True, True): frozenset({"ppc64el", "ppc64le"}),
    (21, True, False): frozenset({"ppc64"}),
    (22, True, False): frozenset({"s390x"}),
    (243, True, True): frozenset({"riscv64"}),
    (258, True, True): frozenset({"loong64", "loongarch64"}),
    (8, True, True): frozenset({"mips64el"}),
    (8, False, True): frozenset({"mipsel"}),
    (8, False, False): frozenset({"mips"}),
    (43, True, False): frozenset({"sparc64"}),
    (0x9026, None, None): frozenset({"alpha"}),
    (4, None, None): frozenset({"m68k"}),
    (15, None, None): frozenset({"hppa"}),
    (42, None, None): frozenset({"sh4"}),
    (50, None, None): frozenset({"ia64"}),
}


@dataclass(frozen=True)
class Provider:
    """The installed distro package that owns a host file."""

    name: str
    version: str
    purl_type: str
    """purl type of the package manager: ``deb``, ``rpm`` or ``apk``."""
    distro_id: str | None = None
    """os-release ``ID`` (``debian``, ``fedora``, ``alpine``): the purl namespace."""
    distro_version: str | None = None
    """os-release ``VERSION_ID``; with the ID it makes the purl ``distro`` qualifier."""
    arch: str | None = None
    """Architecture of the package instance that owns the file, as the package manager records
    it (``arm64``, ``all``, ``x86_64``, ``noarch``): the purl ``arch`` qualifier. On a multiarch
    host it is the instance ``dpkg -S`` names, never another architecture's copy."""
    epoch: str | None = None
    """rpm epoch (a purl qualifier for rpm); deb versions carry theirs inside ``version``."""

    @property
    def purl(self) -> str:
        qualifiers = {"arch": self.arch, "epoch": self.epoch}
        if self.distro_id and self.distro_version:
            qualifiers["distro"] = f"{self.distro_id}-{self.distro_version}"
        namespace = f"{purl_quote(self.distro_id.lower())}/" if self.distro_id else ""
        return (
            f"pkg:{self.purl_type}/{namespace}{purl_quote(self.name)}@{purl_quote(self.version)}"
            + purl_qualifiers(qualifiers)
        )


def find_providers(paths: Sequence[str]) -> dict[str, Provider | None]:
    """Map each host library path to the installed package that owns it, or None.

    Each available package manager (dpkg, then rpm, then apk) is asked once for all paths still
    unresolved, so a host with a stray second tool still answers. A missing tool, a failing or
    timed-out query, or an unowned file gives None; nothing here raises.
    """
    result: dict[str, Provider | None] = dict.fromkeys(paths)
    spellings = {path: _spellings(path) for path in result}
    release = _os_release()
    for tool, query in _QUERIES:
        pending = [path for path, found in result.items() if found is None]
        executable = shutil.which(tool)
        if not pending or executable is None:
            continue
        candidates = sorted({spelling for path in pending for spelling in spellings[path]})
        owners = query(executable, candidates, release)
        for path in pending:
            result[path] = next((owners[s] for s in spellings[path] if s in owners), None)
    return result


def purl_quote(value: str) -> str:
    """Percent-encode a purl segment; the purl spec forbids encoding ':'."""
    return quote(value, safe=":")


def purl_qualifiers(qualifiers: Mapping[str, str | None]) -> str:
    pairs = [f"{key}={purl_quote(value)}" for key, value in sorted(qualifiers.items()) if value]
    return "?" + "&".join(pairs) if pairs else ""


def _spellings(path: str) -> list[str]:
    """Names the package database may know this file by: the copied file first, then the path.

    The resolved file is what was grafted, so its owner wins over a symlink's (a ``-dev``
    package may own the symlink). On a merged-/usr system each also has its other spelling.
    """
    given = os.path.abspath(path)
    names = []
    for name in (os.path.realpath(given), given):
        names.append(name)
        names.append(_usr_merge_alias(name))
    return [name for i, name in enumerate(names) if name and name not in names[:i]]


def _usr_merge_alias(path: str) -> str:
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "usr" and _is_merged(parts[2]):
        return "/" + "/".join(parts[2:])
    if len(parts) > 2 and _is_merged(parts[1]):
        return "/usr" + path
    return ""


def _is_merged(top: str) -> bool:
    return top in _MERGED_DIRS and os.path.realpath("/" + top) == "/usr/" + top


def _os_release() -> dict[str, str]:
    for name in OS_RELEASE_FILES:
        try:
            with open(name, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError:
            continue
        return dict(_os_release_entry(line) for line in text.splitlines() if "=" in line)
    return {}


def _os_release_entry(line: str) -> tuple[str, str]:
    key, _, raw = line.partition("=")
    try:
        words = shlex.split(raw)
    except ValueError:
        words = [raw]
    return key.strip(), " ".join(words)


def _run(argv: list[str]) -> str:
    """stdout of a package-manager query; empty when it cannot run.

    The exit status is not checked: dpkg and rpm fail when *some* paths are unowned yet still
    print the owners of the others. ``LC_ALL=C`` keeps the lines we parse untranslated.
    """
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            encoding="utf-8",
            errors="surrogateescape",
            env={**os.environ, "LC_ALL": "C"},
            timeout=QUERY_TIMEOUT,
            check=False,
        )
    except (OSError, ValueError, subprocess.SubprocessError):
        # ValueError: an argument the OS cannot take (a NUL byte); the query cannot run.
        return ""
    return proc.stdout or ""


def _distro(release: Mapping[str, str]) -> dict[str, str | None]:
    return {
        "distro_id": release.get("ID") or None,
        "distro_version": release.get("VERSION_ID") or None,
    }


def _dpkg_query(tool: str, paths: list[str], release: Mapping[str, str]) -> dict[str, Provider]:
    # ``dpkg -S`` names each owner as dpkg's package instance: ``libffi8:arm64`` for a
    # Multi-Arch: same or foreign-architecture package, a bare name for a native or
    # Architecture: all one. That exact instance is then asked for its version: a bare package
    # name would answer for every installed architecture of it, one line each.
    # Without escaping, dpkg would read *?[\ in a path as a glob and match other files.
    listing = _run([tool, "-S", *(_DPKG_GLOB.sub(r"\\\1", path) for path in paths)])
    owners: dict[str, list[str]] = {}
    diverted: dict[str, str] = {}
    for line in listing.splitlines():
        if line.startswith(("diversion by ", "local diversion ")):
            head, from_, path = line.partition(" from: ")
            if from_:
                by = "diversion by "
                diverted[path] = head[len(by) :] if head.startswith(by) else ""
            continue
        names, sep, path = line.partition(": ")
        if sep and path:
            owners[path] = [name.strip() for name in names.split(",") if name.strip()]
    # A diverted path holds the diverting package's file, or a local one: never the others'.
    candidates = {
        path: ([diverted[path]] if path in diverted else names)
        for path, names in owners.items()
        if names and (path not in diverted or diverted[path] in names)
    }
    instances = sorted({name for names in candidates.values() for name in names})
    if not instances:
        return {}
    status = _run([tool, "-W", f"-f={_DPKG_FORMAT}", *instances])
    # Package name to its installed (architecture, version) instances, as dpkg lists them.
    installed: dict[str, list[tuple[str, str]]] = {}
    for line in status.splitlines():
        fields = line.split("\t")
        if len(fields) != 4:
            continue
        package, arch, version, state = fields
        if package and arch and version and not (len(state) > 1 and state[1] in _DPKG_GONE):
            installed.setdefault(package, []).append((arch, version))
    found: dict[str, Provider] = {}
    for path, owned_by in candidates.items():
        matches = [match for name in owned_by for match in _dpkg_instances(name, installed)]
        if len(matches) > 1:
            # Several packages ship this very file (Multi-Arch: same instances of one package
            # may share identical files): prefer one whose architecture is that of the code.
            elf = _elf_arches(path)
            matches = [m for m in matches if m[2] in elf] or matches
        if matches:
            package, version, arch = matches[0]
            found[path] = Provider(package, version, "deb", arch=arch, **_distro(release))
    return found


def _dpkg_instances(
    name: str, installed: Mapping[str, list[tuple[str, str]]]
) -> list[tuple[str, str, str]]:
    """(package, version, architecture) of the installed instance ``dpkg -S`` named ``name``."""
    package, colon, arch = name.partition(":")
    instances = installed.get(package, [])
    if colon:
        return [(package, v, a) for a, v in instances if a == arch]
    # A bare name is the package's only installed instance; several would be ambiguous.
    return [(package, v, a) for a, v in instances] if len(instances) == 1 else []


def _elf_arches(path: str) -> frozenset[str]:
    """Architecture names of the code in an ELF file; empty when unknown or unreadable."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except (OSError, ValueError):
        return frozenset()
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[4] not in (1, 2):
        return frozenset()
    is64, little = header[4] == 2, header[5] == 1
    machine = int.from_bytes(header[18:20], "little" if little else "big")
    return _ELF_ARCHES.get((machine, is64, little)) or _ELF_ARCHES.get(
        (machine, None, None), frozenset()
    )


def _rpm_query(tool: str, paths: list[str], release: Mapping[str, str]) -> dict[str, Provider]:
    # rpm names no path in its answers, so answers pair with paths by position: only existing
    # paths (a missing one prints nothing on stdout), one line each. A file owned by several
    # packages (a multilib pair shares identical files) prints several lines and breaks the
    # pairing; then ask path by path, and prefer the owner whose architecture is the code's.
    existing = [path for path in paths if os.path.lexists(path)]
    if not existing:
        return {}
    lines = _run([tool, "-qf", "--queryformat", _RPM_FORMAT, *existing]).splitlines()
    if len(lines) == len(existing):
        answers = [[_rpm_provider(line, release)] for line in lines]
    else:
        answers = [
            [
                _rpm_provider(line, release)
                for line in _run([tool, "-qf", "--queryformat", _RPM_FORMAT, path]).splitlines()
            ]
            for path in existing
        ]
    found: dict[str, Provider] = {}
    for path, providers in zip(existing, answers):
        owners = [provider for provider in providers if provider is not None]
        if len(owners) > 1:
            elf = _elf_arches(path)
            owners = [owner for owner in owners if owner.arch in elf] or owners
        if owners:
            found[path] = owners[0]
    return found


def _rpm_provider(line: str, release: Mapping[str, str]) -> Provider | None:
    fields = line.split("\t")
    if len(fields) != 5 or not fields[0] or not fields[2]:
        return None  # e.g. "file ... is not owned by any package"
    name, epoch, version, release_, arch = fields
    return Provider(
        name,
        f"{version}-{release_}",
        "rpm",
        arch=arch if arch not in ("", "(none)") else None,
        epoch=epoch if epoch not in ("", "(none)") else None,
        **_distro(release),
    )


def _apk_query(tool: str, paths: list[str], release: Mapping[str, str]) -> dict[str, Provider]:
    found: dict[str, Provider] = {}
    for line in _run([tool, "info", "--who-owns", *paths]).splitlines():
        path, sep, package = line.rpartition(" is owned by ")
        parts = package.strip().rsplit("-", 2)
        if sep and len(parts) == 3:
            name, version, revision = parts
            found[path] = Provider(name, f"{version}-{revision}", "apk", **_distro(release))
    return found


_Query = Callable[[str, list[str], Mapping[str, str]], dict[str, Provider]]
_QUERIES: tuple[tuple[str, _Query], ...] = (
    ("dpkg-query", _dpkg_query),
    ("rpm", _rpm_query),
    ("apk", _apk_query),
)
