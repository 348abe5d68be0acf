"""The loader's search paths on one system: this machine or a sysroot.

:func:`loader_config` reads everything a search needs besides the objects themselves into a
:class:`LoaderConfig`: the interpreter and what ``$LIB`` and ``$PLATFORM`` stand for, the
variables searched where LD_LIBRARY_PATH is, and the system directories.

- glibc: the directories of /etc/ld.so.conf (with its includes), in order, then the default
  directories.  /etc/ld.so.cache is not read: it can be stale, and a sysroot's cache is meant
  for another machine.  On this machine (sysroot "/") the interpreter is asked for its default
  directories (``ld.so --help`` lists its "system search path"); otherwise, and for glibc older
  than 2.33, a superset is searched: /$LIB and /usr/$LIB, then /lib64 and /usr/lib64 on 64-bit,
  then /lib and /usr/lib (auditwheel: /lib, /lib64, /usr/lib, /usr/lib64).
- musl: <prefix>/etc/ld-musl-ARCH.path, <prefix> being its interpreter's path less two
  components; without that file, /lib:/usr/local/lib:/usr/lib.
- android: nothing of this machine.  The device's system libraries are the policy's whitelist
  and an NDK's live wherever the build put them, so the system list is ``--ldpaths`` alone
  (none without it); LD_LIBRARY_PATH, ld.so.conf and the host's loader describe the build host
  and are never read.  $LIB is lib64 on 64-bit, lib on 32-bit (bionic's kLibPath).
"""

from __future__ import annotations

import functools
import glob
import os
import posixpath
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .tree import SearchDir, Step

GLIBC = "glibc"
MUSL = "musl"
ANDROID = "android"

_32BIT = frozenset({"i686", "armv7l"})
_GLIBC_INTERPRETERS = {
    "x86_64": "/lib64/ld-linux-x86-64.so.2",
    "i686": "/lib/ld-linux.so.2",
    "aarch64": "/lib/ld-linux-aarch64.so.1",
    "armv7l": "/lib/ld-linux-armhf.so.3",
    "ppc64le": "/lib64/ld64.so.2",
    "ppc64": "/lib64/ld64.so.1",
    "s390x": "/lib/ld64.so.1",
    "riscv64": "/lib/ld-linux-riscv64-lp64d.so.1",
    "loongarch64": "/lib64/ld-linux-loongarch-lp64d.so.1",
}
_MULTIARCH = {
    "x86_64": "x86_64-linux-gnu",
    "i686": "i386-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "armv7l": "arm-linux-gnueabihf",
    "ppc64le": "powerpc64le-linux-gnu",
    "ppc64": "powerpc64-linux-gnu",
    "s390x": "s390x-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
    "loongarch64": "loongarch64-linux-gnu",
}
_MUSL_ARCH = {"i686": "i386", "armv7l": "armhf", "ppc64le": "powerpc64le"}
# AT_PLATFORM where the kernel gives every CPU of the architecture the same value.
_PLATFORMS = {"x86_64": "x86_64", "i686": "i686", "aarch64": "aarch64", "armv7l": "v7l"}
_MUSL_DEFAULT_DIRS = ("/lib", "/usr/local/lib", "/usr/lib")
_EXTRA_VARS = ("REPAIRWHEEL_LD_LIBRARY_PATH", "AUDITWHEEL_LD_LIBRARY_PATH")
# The interpreters we may run to ask for their search path: only these known paths, never a
# PT_INTERP string read from a file being checked.
_KNOWN_INTERPRETERS = frozenset(_GLIBC_INTERPRETERS.values())
_LD_SO_TIMEOUT = 10  # seconds


@dataclass(frozen=True)
class LoaderConfig:
    """The loader's view of one system: everything a search needs besides the objects."""

    libc: str  # GLIBC, MUSL or ANDROID
    arch: str  # manylinux architecture name
    root: str  # sysroot, prefixed to absolute DT_RPATH/DT_RUNPATH entries and system dirs
    lib: str  # what $LIB expands to
    platform: str | None  # what $PLATFORM expands to; None drops entries using it, as ld.so does
    interpreter: str | None  # the loader's own path (under root), always loaded
    env_paths: tuple[tuple[str, str], ...]  # (variable, entry) searched where LD_LIBRARY_PATH is
    system_dirs: tuple[SearchDir, ...]  # ld.so.conf and default dirs, musl's list, or --ldpaths
    cwd: str  # what empty and relative entries are relative to


def loader_config(
    libc: str,
    arch: str,
    ldpaths: str | None = None,
    root: str = "/",
    environ: Mapping[str, str] | None = None,
) -> LoaderConfig:
    """Read the system's search list for ``libc`` on ``arch`` from the files under ``root``.

    ``ldpaths`` (auditwheel's --ldpaths) replaces the system list and LD_LIBRARY_PATH;
    REPAIRWHEEL_LD_LIBRARY_PATH and AUDITWHEEL_LD_LIBRARY_PATH are searched in every case,
    just before LD_LIBRARY_PATH.  LD_LIBRARY_PATH describes this machine, so it is ignored
    for another ``root``, as auditwheel does.
    """
    if libc not in (GLIBC, MUSL, ANDROID):
        raise ValueError(f"unknown libc {libc!r}: expected {GLIBC!r}, {MUSL!r} or {ANDROID!r}")
    env = os.environ if environ is None else environ
    root = os.path.abspath(root)
    if libc == ANDROID:
        return _android_config(arch, ldpaths, root, env)
    if libc == GLIBC:
        interpreter = _GLIBC_INTERPRETERS.get(arch)
        lib = _lib_dir(root, arch, interpreter)
    else:
        interpreter = f"/lib/ld-musl-{_MUSL_ARCH.get(arch, arch)}.so.1"
        lib = "lib"  # musl expands no $LIB
    env_paths = [(var, entry) for var in _EXTRA_VARS for entry in env.get(var, "").split(":")]
    env_paths = [(var, entry) for var, entry in env_paths if entry]
    if ldpaths is not None:
        entries = [e for e in ldpaths.split(":") if e]
        system = [SearchDir(os.path.abspath(e), Step.LDPATHS, e, "--ldpaths") for e in entries]
    else:
        if root == "/" and env.get("LD_LIBRARY_PATH"):
            env_paths += _ld_library_path(libc, env["LD_LIBRARY_PATH"])
        if libc == GLIBC:
            system = _glibc_system_dirs(root, arch, lib, interpreter)
        else:
            system = _musl_system_dirs(root, arch, interpreter)
    return LoaderConfig(
        libc=libc,
        arch=arch,
        root=root,
        lib=lib,
        platform=_platform(libc, arch, root, interpreter),
        interpreter=rooted(root, interpreter) if interpreter else None,
        env_paths=tuple(env_paths),
        system_dirs=tuple(dedupe(system)),
        cwd=os.getcwd(),
    )


def _platform(libc: str, arch: str, root: str, interpreter: str | None) -> str | None:
    """$PLATFORM: as this machine's glibc loader expands it when it is the one searching,
    else the architecture's AT_PLATFORM."""
    if libc == GLIBC and root == "/" and interpreter is not None:
        asked = interpreter_platform(interpreter)
        if asked is not None:
            return asked
    return _PLATFORMS.get(arch)


def _android_config(
    arch: str, ldpaths: str | None, root: str, env: Mapping[str, str]
) -> LoaderConfig:
    """bionic's view: the variables that add directories, then --ldpaths as the system list."""
    env_paths = [(var, entry) for var in _EXTRA_VARS for entry in env.get(var, "").split(":")]
    entries = [e for e in (ldpaths or "").split(":") if e]
    system = [SearchDir(os.path.abspath(e), Step.LDPATHS, e, "--ldpaths") for e in entries]
    return LoaderConfig(
        libc=ANDROID,
        arch=arch,
        root=root,
        lib="lib" if arch in _32BIT else "lib64",
        platform=None,
        interpreter=None,  # /system/bin/linker64 is the device's, never this machine's
        env_paths=tuple((var, entry) for var, entry in env_paths if entry),
        system_dirs=tuple(dedupe(system)),
        cwd=os.getcwd(),
    )


def rooted(root: str, path: str) -> str:
    """An absolute ``path`` as seen under the sysroot ``root``."""
    if root == "/" or not path.startswith("/"):
        return path
    return root.rstrip("/") + path


def dedupe(dirs: Iterable[SearchDir]) -> list[SearchDir]:
    """The first of each directory: a later mention of it can find nothing new."""
    seen: set[str] = set()
    unique = []
    for d in dirs:
        if d.directory not in seen:
            seen.add(d.directory)
            unique.append(d)
    return unique


def _ld_library_path(libc: str, value: str) -> list[tuple[str, str]]:
    """glibc splits on ':' and ';' and an empty entry is the working directory; musl skips it."""
    if libc == GLIBC:
        return [("LD_LIBRARY_PATH", entry) for entry in re.split(r"[:;]", value)]
    return [("LD_LIBRARY_PATH", entry) for entry in re.split(r"[:\n]", value) if entry]


def _lib_dir(root: str, arch: str, interpreter: str | None) -> str:
    """$LIB: the directory glibc was installed to (Debian: lib/<triplet>, Fedora: lib64).

    ld.so lives there, so it is read off the interpreter's real location.
    """
    if interpreter is not None:
        real = os.path.realpath(rooted(root, interpreter))
        relative = posixpath.relpath(posixpath.dirname(real), root)
        relative = relative[len("usr/") :] if relative.startswith("usr/") else relative
        if os.path.isfile(real) and relative.startswith("lib"):
            return relative
    triplet = _MULTIARCH.get(arch)
    if triplet and os.path.isdir(rooted(root, f"/usr/lib/{triplet}")):
        return f"lib/{triplet}"
    return "lib" if arch in _32BIT else "lib64"


def _glibc_system_dirs(
    root: str, arch: str, lib: str, interpreter: str | None = None
) -> list[SearchDir]:
    conf: list[SearchDir] = []
    _read_ld_so_conf(rooted(root, "/etc/ld.so.conf"), root, conf, set())
    return conf + _glibc_default_dirs(root, arch, lib, interpreter)


def _glibc_default_dirs(root: str, arch: str, lib: str, interpreter: str | None) -> list[SearchDir]:
    """The interpreter's own default directories where it can be asked, else a superset."""
    if root == "/" and interpreter is not None:
        asked = interpreter_search_path(interpreter)
        if asked is not None:
            return [SearchDir(d, Step.DEFAULT, d, interpreter) for d in asked]
    defaults = [f"/{lib}", f"/usr/{lib}"]
    if arch not in _32BIT:
        defaults += ["/lib64", "/usr/lib64"]
    defaults += ["/lib", "/usr/lib"]
    return [SearchDir(rooted(root, d), Step.DEFAULT, d, None) for d in defaults]


def interpreter_search_path(interpreter: str) -> tuple[str, ...] | None:
    """The default directories glibc's loader at ``interpreter`` (a path of this machine)
    searches, as it prints them; None where it cannot tell (not a known interpreter path,
    absent, another architecture, glibc older than 2.33).  Asked once per interpreter file."""
    return _asked(interpreter)[0]


def interpreter_platform(interpreter: str) -> str | None:
    """What glibc's loader at ``interpreter`` expands $PLATFORM to on this machine (on x86_64
    glibc 2.26-2.36 it is "haswell" or "xeon_phi" on CPUs with their features, not AT_PLATFORM
    as the kernel gives it), as ``--list-diagnostics`` or ``--help`` print it; None where it
    cannot tell."""
    return _asked(interpreter)[1]


def _asked(interpreter: str) -> tuple[tuple[str, ...] | None, str | None]:
    if interpreter not in _KNOWN_INTERPRETERS:
        return None, None
    try:
        real = os.path.realpath(interpreter)
        st = os.stat(real)
    except OSError:
        return None, None
    return _ask_interpreter(real, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _ask_interpreter(
    real: str, mtime_ns: int, size: int
) -> tuple[tuple[str, ...] | None, str | None]:
    """(search path, $PLATFORM) as the interpreter prints them, each None where it does not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "GLIBC_TUNABLES"))}
    dirs: tuple[str, ...] = ()
    platform = None
    for option, parse in (("--list-diagnostics", _parse_diag), ("--help", _parse_ld_so_help)):
        try:
            out = subprocess.run(
                [real, option],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_LD_SO_TIMEOUT,
                check=False,
            ).stdout.decode("utf-8", "surrogateescape")
        except (OSError, subprocess.SubprocessError):
            return None, None  # cannot run here (another architecture, no permission, hung)
        dirs = dirs or parse(out)
        platform = platform or _parse_platform(out)
        if dirs and platform:
            break
    return dirs or None, platform


def _parse_platform(text: str) -> str | None:
    """$PLATFORM: ``dl_platform="..."`` (--list-diagnostics) or the legacy hwcaps line marked
    "(AT_PLATFORM; ...)" (--help)."""
    match = re.search(r'^dl_platform="([^"/]+)"$', text, re.M) or re.search(
        r"^\s+(\S+) \(AT_PLATFORM;", text, re.M
    )
    return match.group(1) if match else None


def _parse_ld_so_help(text: str) -> tuple[str, ...]:
    """The "(system search path)" lines of ``ld.so --help`` (glibc >= 2.33)."""
    return tuple(
        match.group(1).rstrip("/") or "/"
        for match in re.finditer(r"^\s+(/\S*) \(system search path\)$", text, re.MULTILINE)
    )


def _parse_diag(text: str) -> tuple[str, ...]:
    """The ``path.system_dirs[i]="..."`` lines of ``ld.so --list-diagnostics`` (>= 2.35)."""
    return tuple(
        match.group(1).rstrip("/") or "/"
        for match in re.finditer(r'^path\.system_dirs\[0x[0-9a-f]+\]="(/[^"]*)"$', text, re.M)
    )


def _read_ld_so_conf(path: str, root: str, out: list[SearchDir], seen: set[str]) -> None:
    """ldconfig's format: '#' comments, 'include GLOB...' (relative to the including file),
    'hwcap' lines (ignored), otherwise one directory a line (an '=TYPE' suffix is old syntax)."""
    real = os.path.realpath(path)
    if real in seen:
        return
    seen.add(real)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        words = line.split()
        if not words:
            continue
        if words[0] == "include" and len(words) > 1:
            for pattern in words[1:]:
                if pattern.startswith("/"):
                    pattern = rooted(root, pattern)
                else:
                    pattern = posixpath.join(posixpath.dirname(path), pattern)
                for included in sorted(glob.glob(pattern)):
                    _read_ld_so_conf(included, root, out, seen)
        elif words[0].lower() == "hwcap" and len(words) > 1:
            continue
        else:
            directory = line.split("=", 1)[0].rstrip().rstrip("/") or "/"
            out.append(SearchDir(rooted(root, directory), Step.LD_SO_CONF, directory, path))


def _musl_system_dirs(root: str, arch: str, interpreter: str | None = None) -> list[SearchDir]:
    """musl's path file is <prefix>/etc/ld-musl-ARCH.path, <prefix> being the interpreter's
    path without its last two components ("" for /lib/ld-musl-ARCH.so.1)."""
    prefix = ""
    if interpreter is not None and interpreter.startswith("/"):
        prefix = posixpath.dirname(posixpath.dirname(interpreter)).rstrip("/")
    path = rooted(root, f"{prefix}/etc/ld-musl-{_MUSL_ARCH.get(arch, arch)}.path")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    except FileNotFoundError:
        return [SearchDir(rooted(root, d), Step.DEFAULT, d, None) for d in _MUSL_DEFAULT_DIRS]
    except OSError:
        return []  # musl searches nothing when the file exists but cannot be read
    entries = [e for e in re.split(r"[:\n]", text) if e]
    return [SearchDir(rooted(root, e), Step.MUSL_PATH, e, path) for e in entries]
