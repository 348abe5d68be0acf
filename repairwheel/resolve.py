"""Find the shared libraries an ELF file needs, in the order the dynamic loader looks for them.

glibc's ld.so looks a DT_NEEDED name up for the object that needs it (its *loader*) in:

1. DT_RPATH of the loader, of the loader's loader, and so on up to the root, but only if the
   loader has no DT_RUNPATH (and an object that has both contributes no DT_RPATH);
2. LD_LIBRARY_PATH;
3. DT_RUNPATH of the loader alone;
4. /etc/ld.so.cache, built from the directories of /etc/ld.so.conf;
5. the default directories.

musl looks in LD_LIBRARY_PATH, then in the DT_RUNPATH (else DT_RPATH) of every object of the
loader chain, then in the directories of its path file (else /lib:/usr/local/lib:/usr/lib).
Both load breadth first, and never look a name up twice.  glibc answers a DT_NEEDED name with
a loaded object that was loaded by that name or path or whose DT_SONAME it is; musl only with
one loaded by that *short name* (the name a search found it by, never its DT_SONAME).  For
both, a search that finds a file already loaded gives that object.  That rule is what ends
loops (RPATH cycles, a library that needs itself).

An object with several DT_RPATH (or DT_RUNPATH) entries: both loaders use the last one (their
dynamic-section scans overwrite), checked with glibc 2.36 and musl 1.2.3; none joins them.

We follow ld.so where auditwheel's lddtree does not (its verdicts are compared with ours):

- LD_LIBRARY_PATH and AUDITWHEEL_LD_LIBRARY_PATH come before DT_RUNPATH (auditwheel: after, #737).
- DT_RPATH is inherited from every loader in the chain (auditwheel: only the root's), and the
  root's DT_RUNPATH serves its direct dependencies only (auditwheel: every dependency).
- $LIB and $PLATFORM are expanded (auditwheel leaves them, so such entries never match).
- $ORIGIN is the directory the object was found in, before symlinks are resolved
  (auditwheel: the directory of its realpath).
- Dependencies resolve breadth first (auditwheel: depth first), so when two objects need one
  name, the one nearer the root decides where it is looked up.
- A DT_NEEDED name with a slash is opened as a path (auditwheel joins it to every search
  directory).  An absolute one is opened as written (under the sysroot): it is found only where
  that very file exists.  A relative one is opened from the working directory of the program
  at run time, which no check can know: it is recorded as ``relative`` and not looked up.
- The interpreter is always loaded, so its names resolve to it without a search; its directory
  is not searched otherwise (auditwheel searches it).
- Default directories are the loader's own: on this machine (sysroot "/") glibc's interpreter
  is asked (``ld.so --help`` lists its "system search path"); otherwise, and for glibc older
  than 2.33, a superset: /$LIB and /usr/$LIB, then /lib64 and /usr/lib64 on 64-bit, then /lib
  and /usr/lib (auditwheel: /lib, /lib64, /usr/lib, /usr/lib64).  musl reads
  <prefix>/etc/ld-musl-ARCH.path, <prefix> being its interpreter's path less two components.
- A candidate is rejected as the loader rejects it: another class, byte order, machine or OS
  ABI, or (ARM) the other float ABI of EABI version 5 (glibc's VALID_FLOAT_ABI: an armhf
  loader refuses EABI5 soft-float files, and takes EABI5 files marked neither way and older
  EABI versions).

Where we differ from ld.so, as auditwheel does:

- /etc/ld.so.cache is not read; the ld.so.conf directories it is built from are searched in
  order (the cache can be stale, and a sysroot's cache is meant for another machine).
- glibc-hwcaps and legacy hwcap subdirectories are not searched: they depend on the CPU that
  runs the program, which is not known when a wheel is checked.
- A file of the right name that is not ELF (a linker script named libc.so), is not a valid
  ELF file, or cannot be read is passed over (ld.so stops: "invalid ELF header"; it passes
  over only unreadable ones), and recorded with the reason in ``Library.rejected``.
- Candidates of another class, byte order, machine, OS ABI or float ABI than the root are
  skipped for musl too (musl would fail to load them).
- The root is taken as the main program: an extension module is really dlopen()ed by python,
  whose own DT_RPATH would apply as well.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import glob
import os
import posixpath
import re
import subprocess
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .elf import ElfFile, Machine, is_elf, read_elf
from .errors import ElfError

GLIBC = "glibc"
MUSL = "musl"

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
# Names musl's loader answers itself: lib<one of these>.<anything>.
_MUSL_BUILTIN = re.compile(r"lib(c|pthread|rt|m|dl|util|xnet)\.")
_EXTRA_VARS = ("REPAIRWHEEL_LD_LIBRARY_PATH", "AUDITWHEEL_LD_LIBRARY_PATH")
_GLIBC_DST = re.compile(r"\$(?:\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")
_MUSL_ORIGIN = re.compile(r"\$(?:\{ORIGIN\}|ORIGIN)")
_LINUX_OSABIS = frozenset({0, 3})  # ELFOSABI_NONE (SYSV) and ELFOSABI_GNU (LINUX) mix freely
_EF_ARM_EABIMASK = 0xFF000000
_EF_ARM_EABI_VER5 = 0x05000000
_EF_ARM_ABI_FLOAT_SOFT = 0x00000200
_EF_ARM_ABI_FLOAT_HARD = 0x00000400
# The interpreters we may run to ask for their search path: only these known paths, never a
# PT_INTERP string read from a file being checked.
_KNOWN_INTERPRETERS = frozenset(_GLIBC_INTERPRETERS.values())
_LD_SO_TIMEOUT = 10  # seconds
# A GNU ld script (what libc.so and many lib*.so development names are on glibc systems).
_LINKER_SCRIPT = re.compile(rb"\b(?:GROUP|INPUT|OUTPUT_FORMAT|SEARCH_DIR|AS_NEEDED)\s*\(")


class Step(str, enum.Enum):
    """The rule or search list that supplied the directory a library was found in."""

    RPATH = "DT_RPATH"
    LD_LIBRARY_PATH = "LD_LIBRARY_PATH"
    EXTRA = "REPAIRWHEEL_LD_LIBRARY_PATH"
    RUNPATH = "DT_RUNPATH"
    LD_SO_CONF = "ld.so.conf"
    MUSL_PATH = "ld-musl path file"
    DEFAULT = "default directories"
    LDPATHS = "--ldpaths"
    INTERPRETER = "interpreter"
    NAME = "path in DT_NEEDED"


@dataclass(frozen=True)
class SearchDir:
    """A directory to search, and where it came from (for explaining a verdict)."""

    directory: str  # as searched: tokens expanded, sysroot prefixed, absolute
    step: Step
    entry: str  # as written, before expansion
    owner: str | None  # the object whose DT_RPATH/DT_RUNPATH, the file or variable listing it

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step.value,
            "directory": self.directory,
            "entry": self.entry,
            "owner": self.owner,
        }


@dataclass(frozen=True)
class LoaderConfig:
    """The loader's view of one system: everything a search needs besides the objects."""

    libc: str  # GLIBC or MUSL
    arch: str  # manylinux architecture name
    root: str  # sysroot, prefixed to absolute DT_RPATH/DT_RUNPATH entries and system dirs
    lib: str  # what $LIB expands to
    platform: str | None  # what $PLATFORM expands to; None drops entries using it, as ld.so does
    interpreter: str | None  # the loader's own path (under root), always loaded
    env_paths: tuple[tuple[str, str], ...]  # (variable, entry) searched where LD_LIBRARY_PATH is
    system_dirs: tuple[SearchDir, ...]  # ld.so.conf and default dirs, musl's list, or --ldpaths
    cwd: str  # what empty and relative entries are relative to


@dataclass(frozen=True)
class Library:
    """How one DT_NEEDED name was resolved."""

    soname: str  # the DT_NEEDED name
    path: str | None  # where the loader opens it; None if not found or excluded by name
    realpath: str | None
    elf: ElfFile | None
    found_by: SearchDir | None  # None when not found or matched an object already loaded
    loader: str | None  # the name of the object whose DT_NEEDED loaded it; None for the root
    same_as: str | None = None  # the name it was first loaded as, if this is a second name for it
    excluded: bool = False  # matched an exclusion: its own needs are not followed
    skipped: tuple[str, ...] = ()  # candidates passed over as incompatible with the root
    # Every file of the name passed over, with why: "is a linker script, not a shared library"
    rejected: tuple[tuple[str, str], ...] = ()
    # A DT_NEEDED path relative to the working directory at run time: not looked up
    relative: bool = False

    @property
    def needed(self) -> tuple[str, ...]:
        if self.elf is None or self.excluded:
            return ()
        return self.elf.needed

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "realpath": self.realpath,
            "needed": list(self.needed),
            "found_by": self.found_by.to_json() if self.found_by else None,
            "loader": self.loader,
            "same_as": self.same_as,
            "excluded": self.excluded,
            "skipped": list(self.skipped),
            "rejected": [{"path": path, "reason": why} for path, why in self.rejected],
            "relative": self.relative,
        }

    def why_not_found(self) -> str | None:
        """What was found under the name and why it is not used, for a library not found."""
        if self.path is not None or self.excluded:
            return None
        if self.relative:
            return "a path relative to the working directory at run time"
        if not self.rejected:
            return None
        return "; ".join(f"{path} {why}" for path, why in self.rejected)


@dataclass(frozen=True)
class DependencyTree:
    """The transitive closure of one root's DT_NEEDED, in the order the loader resolves it."""

    path: str
    realpath: str
    elf: ElfFile
    libc: str
    libraries: Mapping[str, Library]  # breadth first

    @property
    def name(self) -> str:
        return self.elf.soname or posixpath.basename(self.path)

    @property
    def not_found(self) -> tuple[str, ...]:
        return tuple(
            n for n, lib in self.libraries.items() if lib.path is None and not lib.excluded
        )

    @property
    def relative_needed(self) -> tuple[tuple[str, str], ...]:
        """(needer path, DT_NEEDED) for each DT_NEEDED path relative to the working directory."""
        pairs = []
        for name, lib in self.libraries.items():
            if lib.relative:
                loader = self.libraries.get(lib.loader) if lib.loader is not None else None
                needer = self.path if loader is None else (loader.path or lib.loader)
                pairs.append((str(needer), name))
        return tuple(pairs)

    @property
    def edges(self) -> tuple[tuple[str | None, str], ...]:
        """(needer, needed) pairs; the root is None.  Each object's needs appear once."""
        pairs: list[tuple[str | None, str]] = [(None, n) for n in self.elf.needed]
        for name, lib in self.libraries.items():
            if lib.same_as is None:
                pairs.extend((name, n) for n in lib.needed)
        return tuple(pairs)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "realpath": self.realpath,
            "soname": self.elf.soname,
            "interpreter": self.elf.interpreter,
            "libc": self.libc,
            "needed": list(self.elf.needed),
            "rpath": list(_search_entries(self.elf, Step.RPATH)),
            "runpath": list(_search_entries(self.elf, Step.RUNPATH)),
            "libraries": {name: lib.to_json() for name, lib in self.libraries.items()},
        }

    def format_tree(self) -> str:
        """lddtree-style text: each library under the object that loaded it."""
        head = self.path
        if self.elf.interpreter:
            head += f" (interpreter => {self.elf.interpreter})"
        lines = [head]
        self._format_children(None, self.elf.needed, 1, lines)
        return "\n".join(lines)

    def _format_children(
        self, loader: str | None, needed: Iterable[str], depth: int, lines: list[str]
    ) -> None:
        for name in dict.fromkeys(needed):
            lib = self.libraries[name]
            if lib.loader != loader:
                continue
            lines.append("    " * depth + _describe(lib))
            if lib.same_as is None:
                self._format_children(name, lib.needed, depth + 1, lines)


def _describe(lib: Library) -> str:
    if lib.excluded:
        return f"{lib.soname} => excluded"
    if lib.path is not None:
        return f"{lib.soname} => {lib.path}"
    if lib.relative:
        return f"{lib.soname} => not looked up (relative to the working directory at run time)"
    why = lib.why_not_found()
    return f"{lib.soname} => not found ({why})" if why else f"{lib.soname} => not found"


def _search_entries(elf: ElfFile, step: Step) -> tuple[str, ...]:
    """The ':'-split directories of the DT_RPATH or DT_RUNPATH entry the loader uses.

    glibc and musl both keep the last of several entries (checked against both loaders).
    """
    raw = getattr(elf, "rpaths" if step is Step.RPATH else "runpaths", None)
    if raw is None:  # an ElfFile from before several entries were kept apart
        return elf.rpath if step is Step.RPATH else elf.runpath
    return tuple(raw[-1].split(":")) if raw else ()


def _has_runpath(elf: ElfFile) -> bool:
    raw = getattr(elf, "runpaths", None)
    return bool(raw if raw is not None else elf.runpath)


class Filesystem(Protocol):
    """Where the resolver reads files from: the host, or a wheel's members laid over it.

    A filesystem may also have ``examine(path) -> (ElfFile | None, str | None)``: the ELF file,
    or why the file at ``path`` is none ("is a linker script, not a shared library"); the
    reason is None when there is no file at all.  Without it, rejections are not explained.
    """

    def elf_at(self, path: str) -> ElfFile | None:
        """The ELF file at ``path``; None if there is none or it is not ELF."""

    def realpath(self, path: str) -> str:
        """``path`` with symlinks resolved (it need not exist)."""


class HostFilesystem:
    """Real files, each read once: system libraries are shared by many files and wheels."""

    def __init__(self) -> None:
        self._listings: dict[str, frozenset[str]] = {}
        self._realpaths: dict[str, str] = {}
        self._elves: dict[str, tuple[ElfFile | None, str | None]] = {}

    def realpath(self, path: str) -> str:
        real = self._realpaths.get(path)
        if real is None:
            real = self._realpaths[path] = os.path.realpath(path)
        return real

    def elf_at(self, path: str) -> ElfFile | None:
        return self.examine(path)[0]

    def examine(self, path: str) -> tuple[ElfFile | None, str | None]:
        """The ELF file at ``path``, or why the file there is none (None: no file)."""
        directory, name = os.path.split(path)
        if name not in self._listing(directory or "."):
            return None, None
        real = self.realpath(path)
        if real not in self._elves:
            self._elves[real] = _read_host_elf(real)
        return self._elves[real]

    def _listing(self, directory: str) -> frozenset[str]:
        """Names in a directory: one listdir answers every miss there (most lookups miss)."""
        names = self._listings.get(directory)
        if names is None:
            try:
                names = frozenset(os.listdir(directory))
            except OSError:
                names = frozenset()
            self._listings[directory] = names
        return names


def _read_host_elf(path: str) -> tuple[ElfFile | None, str | None]:
    """The ELF file at a real path, or why the file there is none.

    The head is checked first, as most candidates are ELF and a non-ELF file (a linker script
    named libc.so) need not be mapped.  A file that cannot be read is a rejected candidate,
    as for ld.so, which passes over files it may not open.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except FileNotFoundError:
        return None, None  # a dangling symlink: the loader's open fails with ENOENT
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if not is_elf(head):
        return None, _not_elf(head)
    try:
        return read_elf(path), None
    except ElfError as exc:
        text = str(exc)
        text = text[len(path) + 2 :] if text.startswith(f"{path}: ") else text
        return None, f"is not a valid ELF file ({text})"


def _not_elf(head: bytes) -> str:
    if _LINKER_SCRIPT.search(head) and b"\0" not in head:
        return "is a linker script, not a shared library"
    if not head:
        return "is empty, not a shared library"
    return "is not an ELF file"


class WheelFilesystem:
    """A wheel's ELF members seen under the directory ``root``, over a base filesystem.

    Every path under ``fence`` (by default ``root`` itself; for a wheel, a directory a few
    levels above it, standing for the install prefix) is the wheel's: nothing there falls
    through to the base.  That includes a path that ``..`` takes out of ``fence``
    (``$ORIGIN/../../../../../usr/lib``): at install time it lands somewhere under or above
    the unknown prefix, never reliably in this host's directories, so nothing is found there.
    Members are never symlinks, so paths under ``root`` resolve lexically.
    """

    def __init__(
        self,
        root: str,
        members: Mapping[str, ElfFile],
        base: Filesystem | None = None,
        *,
        fence: str | None = None,
    ) -> None:
        self.root = os.path.abspath(root)
        self.fence = self.root if fence is None else os.path.abspath(fence)
        if not _under(self.root, self.fence):
            raise ValueError(f"the wheel root {self.root} is not under its fence {self.fence}")
        self._members = {self.path_of(name): elf for name, elf in members.items()}
        self._base: Filesystem = base if base is not None else HostFilesystem()

    @classmethod
    def from_bytes(
        cls,
        root: str,
        members: Mapping[str, bytes],
        base: Filesystem | None = None,
        *,
        fence: str | None = None,
    ) -> WheelFilesystem:
        """Parse the ELF members among ``members`` (wheel path -> contents)."""
        elves: dict[str, ElfFile] = {}
        for name, data in members.items():
            if is_elf(data):
                try:
                    elves[name] = read_elf(data, name=name)
                except ElfError:
                    continue
        return cls(root, elves, base, fence=fence)

    def path_of(self, member: str) -> str:
        """The path a wheel member appears at."""
        return posixpath.normpath(posixpath.join(self.root, member.lstrip("/")))

    def member_of(self, path: str) -> str | None:
        """The wheel member name for ``path``, or None if the path is outside the wheel."""
        inside = self._inside(path)
        if inside is None or inside == self.root:
            return None
        return inside[len(self.root.rstrip("/")) + 1 :]

    def elf_at(self, path: str) -> ElfFile | None:
        owned = self._owned(path)
        return self._base.elf_at(path) if owned is None else self._members.get(owned)

    def examine(self, path: str) -> tuple[ElfFile | None, str | None]:
        owned = self._owned(path)
        if owned is not None:
            return self._members.get(owned), None
        examine = getattr(self._base, "examine", None)
        return examine(path) if examine is not None else (self._base.elf_at(path), None)

    def realpath(self, path: str) -> str:
        owned = self._owned(path)
        return self._base.realpath(path) if owned is None else owned

    def _owned(self, path: str) -> str | None:
        """``path`` normalised if the wheel answers for it (it starts under the fence, or
        ends there), else None."""
        normal = posixpath.normpath(path)
        if _under(path, self.fence) or _under(normal, self.fence):
            return normal
        return None

    def _inside(self, path: str) -> str | None:
        """``path`` normalised if it is the root or under it, else None."""
        normal = posixpath.normpath(path)
        return normal if _under(normal, self.root) else None


def _under(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or, as written, below it."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


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
    if libc not in (GLIBC, MUSL):
        raise ValueError(f"unknown libc {libc!r}: expected {GLIBC!r} or {MUSL!r}")
    env = os.environ if environ is None else environ
    root = os.path.abspath(root)
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
        platform=_PLATFORMS.get(arch),
        interpreter=_rooted(root, interpreter) if interpreter else None,
        env_paths=tuple(env_paths),
        system_dirs=tuple(_dedupe(system)),
        cwd=os.getcwd(),
    )


def _ld_library_path(libc: str, value: str) -> list[tuple[str, str]]:
    """glibc splits on ':' and ';' and an empty entry is the working directory; musl skips it."""
    if libc == GLIBC:
        return [("LD_LIBRARY_PATH", entry) for entry in re.split(r"[:;]", value)]
    return [("LD_LIBRARY_PATH", entry) for entry in re.split(r"[:\n]", value) if entry]


def _rooted(root: str, path: str) -> str:
    if root == "/" or not path.startswith("/"):
        return path
    return root.rstrip("/") + path


def _dedupe(dirs: Iterable[SearchDir]) -> list[SearchDir]:
    seen: set[str] = set()
    unique = []
    for d in dirs:
        if d.directory not in seen:
            seen.add(d.directory)
            unique.append(d)
    return unique


def _lib_dir(root: str, arch: str, interpreter: str | None) -> str:
    """$LIB: the directory glibc was installed to (Debian: lib/<triplet>, Fedora: lib64).

    ld.so lives there, so it is read off the interpreter's real location.
    """
    if interpreter is not None:
        real = os.path.realpath(_rooted(root, interpreter))
        relative = posixpath.relpath(posixpath.dirname(real), root)
        relative = relative[len("usr/") :] if relative.startswith("usr/") else relative
        if os.path.isfile(real) and relative.startswith("lib"):
            return relative
    triplet = _MULTIARCH.get(arch)
    if triplet and os.path.isdir(_rooted(root, f"/usr/lib/{triplet}")):
        return f"lib/{triplet}"
    return "lib" if arch in _32BIT else "lib64"


def _glibc_system_dirs(
    root: str, arch: str, lib: str, interpreter: str | None = None
) -> list[SearchDir]:
    conf: list[SearchDir] = []
    _read_ld_so_conf(_rooted(root, "/etc/ld.so.conf"), root, conf, set())
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
    return [SearchDir(_rooted(root, d), Step.DEFAULT, d, None) for d in defaults]


def interpreter_search_path(interpreter: str) -> tuple[str, ...] | None:
    """The default directories glibc's loader at ``interpreter`` (a path of this machine)
    searches, as it prints them; None where it cannot tell (not a known interpreter path,
    absent, another architecture, glibc older than 2.33).  Asked once per interpreter file."""
    if interpreter not in _KNOWN_INTERPRETERS:
        return None
    try:
        real = os.path.realpath(interpreter)
        st = os.stat(real)
    except OSError:
        return None
    return _ask_interpreter(real, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _ask_interpreter(real: str, mtime_ns: int, size: int) -> tuple[str, ...] | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "GLIBC_TUNABLES"))}
    for option, parse in (("--help", _parse_ld_so_help), ("--list-diagnostics", _parse_diag)):
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
            return None  # cannot run here (another architecture, no permission, hung)
        dirs = parse(out)
        if dirs:
            return dirs
    return None


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
                    pattern = _rooted(root, pattern)
                else:
                    pattern = posixpath.join(posixpath.dirname(path), pattern)
                for included in sorted(glob.glob(pattern)):
                    _read_ld_so_conf(included, root, out, seen)
        elif words[0].lower() == "hwcap" and len(words) > 1:
            continue
        else:
            directory = line.split("=", 1)[0].rstrip().rstrip("/") or "/"
            out.append(SearchDir(_rooted(root, directory), Step.LD_SO_CONF, directory, path))


def _musl_system_dirs(root: str, arch: str, interpreter: str | None = None) -> list[SearchDir]:
    """musl's path file is <prefix>/etc/ld-musl-ARCH.path, <prefix> being the interpreter's
    path without its last two components ("" for /lib/ld-musl-ARCH.so.1)."""
    prefix = ""
    if interpreter is not None and interpreter.startswith("/"):
        prefix = posixpath.dirname(posixpath.dirname(interpreter)).rstrip("/")
    path = _rooted(root, f"{prefix}/etc/ld-musl-{_MUSL_ARCH.get(arch, arch)}.path")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    except FileNotFoundError:
        return [SearchDir(_rooted(root, d), Step.DEFAULT, d, None) for d in _MUSL_DEFAULT_DIRS]
    except OSError:
        return []  # musl searches nothing when the file exists but cannot be read
    entries = [e for e in re.split(r"[:\n]", text) if e]
    return [SearchDir(_rooted(root, e), Step.MUSL_PATH, e, path) for e in entries]


def resolve(
    path: str,
    elf: ElfFile,
    fs: Filesystem,
    config: LoaderConfig,
    exclude: Iterable[str] = (),
) -> DependencyTree:
    """Resolve everything ``elf`` (found at ``path`` in ``fs``) needs, transitively.

    ``exclude`` holds fnmatch patterns matched against each DT_NEEDED name and resolved
    realpath (auditwheel's --exclude): a match is recorded but its needs are not followed.
    """
    walk = _Walk(os.path.abspath(path), elf, fs, config, tuple(exclude))
    return DependencyTree(
        path=walk.root.path,
        realpath=walk.root.realpath,
        elf=elf,
        libc=config.libc,
        libraries=walk.run(),
    )


def lddtree(path: str, ldpaths: str | None = None) -> DependencyTree:
    """Resolve a file of this machine (``repairwheel lddtree``): libc and arch come from it."""
    elf = read_elf(path)
    return resolve(
        path, elf, HostFilesystem(), loader_config(libc_of(elf), elf.arch or "", ldpaths)
    )


def libc_of(elf: ElfFile) -> str:
    """musl if the interpreter or a DT_NEEDED name is musl's loader, else glibc."""
    names = (posixpath.basename(elf.interpreter or ""), *elf.needed)
    return MUSL if any(n.startswith(("ld-musl-", "libc.musl-")) for n in names) else GLIBC


@dataclass(eq=False)
class _Object:
    """A loaded object while the walk runs."""

    name: str
    path: str
    realpath: str
    elf: ElfFile
    loader: _Object | None
    listed: bool = True  # False for the interpreter until something needs it
    short: str | None = None  # musl: the name it answers to (set when a search found it)


class _Walk:
    """One breadth-first resolution, with ld.so's memory of what is loaded."""

    def __init__(
        self,
        path: str,
        elf: ElfFile,
        fs: Filesystem,
        config: LoaderConfig,
        exclude: tuple[str, ...],
    ) -> None:
        self.fs = fs
        self.config = config
        self.exclude = exclude
        self.root = _Object(
            elf.soname or posixpath.basename(path), path, fs.realpath(path), elf, None
        )
        self.names: dict[str, _Object] = {}
        self.by_realpath: dict[str, _Object] = {}
        self.libraries: dict[str, Library] = {}
        self.queue: deque[_Object] = deque()
        self.paths: dict[tuple[_Object, Step], tuple[SearchDir, ...]] = {}
        self._register(self.root, None)
        self.interpreter = self._preload_interpreter()
        self.env_dirs = self._env_dirs()
        self.system_dirs = self._system_dirs()

    def run(self) -> dict[str, Library]:
        self.queue.append(self.root)
        while self.queue:
            obj = self.queue.popleft()
            for name in obj.elf.needed:
                if name not in self.libraries:
                    self.libraries[name] = self._load(name, obj)
        return self.libraries

    def _register(self, obj: _Object, name: str | None) -> None:
        """Remember ``obj``, loaded by the DT_NEEDED ``name`` (None: the root, the loader).

        glibc answers a later DT_NEEDED with an object loaded by that name or path, or whose
        DT_SONAME it is.  musl only with one whose short name it is: the name a search found
        it by; an object opened by a path has none (until a search finds its file).
        """
        if self.config.libc == GLIBC:
            self.names.setdefault(obj.path, obj)
            if obj.elf.soname:
                self.names.setdefault(obj.elf.soname, obj)
            if name is not None:
                self.names.setdefault(name, obj)
        elif name is not None and "/" not in name:
            self._set_short(obj, name)
        self.by_realpath.setdefault(obj.realpath, obj)

    def _set_short(self, obj: _Object, short: str) -> None:
        if obj.short is None:
            obj.short = short
            self.names.setdefault(short, obj)

    def _known(self, name: str) -> _Object | None:
        """The loaded object that answers to ``name`` without a search."""
        if self.config.libc == GLIBC:
            return self.names.get(name)
        if _MUSL_BUILTIN.match(name):
            return self.interpreter
        # musl opens a name with a slash without looking at what is loaded.
        return None if "/" in name else self.names.get(name)

    def _system_dirs(self) -> tuple[SearchDir, ...]:
        """The configuration's system directories, or, for a root whose PT_INTERP is another
        known glibc interpreter of this machine, with that interpreter's default directories."""
        dirs = self.config.system_dirs
        interp = self.root.elf.interpreter
        if (
            self.config.libc != GLIBC
            or self.config.root != "/"
            or interp is None
            or interp == self.config.interpreter
            or any(d.step is Step.LDPATHS for d in dirs)
        ):
            return dirs
        asked = interpreter_search_path(interp)
        if asked is None:
            return dirs
        kept = [d for d in dirs if d.step is not Step.DEFAULT]
        return tuple(_dedupe([*kept, *(SearchDir(d, Step.DEFAULT, d, interp) for d in asked)]))

    def _preload_interpreter(self) -> _Object | None:
        """The loader itself is always mapped: names it answers to need no search."""
        interp = self.root.elf.interpreter
        path = _rooted(self.config.root, interp) if interp else self.config.interpreter
        if path is None:
            return None
        elf = self.fs.elf_at(path)
        if elf is None or not self._compatible(elf):
            return None
        obj = _Object(
            posixpath.basename(path), path, self.fs.realpath(path), elf, None, listed=False
        )
        self.names.setdefault(obj.name, obj)
        self._register(obj, None)
        return obj

    def _load(self, name: str, loader: _Object) -> Library:
        loader_name = None if loader is self.root else loader.name
        if self._excluded(name):
            return Library(name, None, None, None, None, loader_name, excluded=True)
        known = self._known(name)
        if known is not None and not known.listed:
            return self._list_interpreter(name, known, loader)
        if known is not None:
            return Library(
                name, known.path, known.realpath, known.elf, None, loader_name, known.name
            )
        if "/" in name and self._relative(name, loader):
            return Library(name, None, None, None, None, loader_name, relative=True)
        found, rejected = self._find(name, loader)
        skipped = tuple(path for path, why in rejected if why.startswith(_INCOMPATIBLE))
        if found is None:
            return Library(
                name, None, None, None, None, loader_name, skipped=skipped, rejected=rejected
            )
        path, elf, found_by = found
        real = self.fs.realpath(path)
        more = functools.partial(Library, skipped=skipped, rejected=rejected)
        if self._excluded(real):
            return more(name, path, real, elf, found_by, loader_name, excluded=True)
        same = self.by_realpath.get(real)
        if same is not None and not same.listed:
            return self._list_interpreter(name, same, loader)
        if same is not None:
            if self.config.libc == GLIBC:
                self.names.setdefault(name, same)
            elif "/" not in name:  # musl names a file a search finds again by its basename
                self._set_short(same, posixpath.basename(same.path))
            return more(name, path, real, elf, found_by, loader_name, same.name)
        obj = _Object(name, path, real, elf, loader)
        self._register(obj, name)
        self.queue.append(obj)
        return more(name, path, real, elf, found_by, loader_name)

    def _relative(self, name: str, loader: _Object) -> bool:
        """A DT_NEEDED path the loader opens relative to the working directory at run time
        (glibc expands $ORIGIN, $LIB and $PLATFORM first; musl expands nothing)."""
        if self.config.libc == GLIBC and "$" in name:
            expanded = self._expand_tokens(name, loader)
            return expanded is not None and not expanded.startswith("/")
        return not name.startswith("/")

    def _list_interpreter(self, name: str, interp: _Object, loader: _Object) -> Library:
        interp.listed, interp.name, interp.loader = True, name, loader
        self.names.setdefault(name, interp)
        self.queue.append(interp)
        found_by = SearchDir(posixpath.dirname(interp.path), Step.INTERPRETER, interp.path, None)
        loader_name = None if loader is self.root else loader.name
        return Library(name, interp.path, interp.realpath, interp.elf, found_by, loader_name)

    def _excluded(self, text: str) -> bool:
        return any(fnmatch.fnmatch(text, pattern) for pattern in self.exclude)

    def _compatible(self, elf: ElfFile) -> bool:
        return incompatibility(elf, self.root.elf) is None

    def _find(
        self, name: str, loader: _Object
    ) -> tuple[tuple[str, ElfFile, SearchDir] | None, tuple[tuple[str, str], ...]]:
        """The first compatible candidate, and the files of the name passed over, with why."""
        tried: set[str] = set()
        rejected: list[tuple[str, str]] = []
        examine = getattr(self.fs, "examine", None)
        for candidate, d in self._candidates(name, loader):
            if candidate in tried:
                continue
            tried.add(candidate)
            if examine is not None:
                elf, why = examine(candidate)
            else:
                elf, why = self.fs.elf_at(candidate), None
            if elf is None:
                if why is not None:
                    rejected.append((candidate, why))
                continue
            why = incompatibility(elf, self.root.elf)
            if why is not None:
                rejected.append((candidate, why))
                continue
            return (candidate, elf, d), tuple(rejected)
        return None, tuple(rejected)

    def _candidates(self, name: str, loader: _Object) -> Iterator[tuple[str, SearchDir]]:
        if "/" not in name:
            for d in self._search_dirs(loader):
                yield _join(d.directory, name), d
            return
        # A name with a slash is opened as it stands (glibc expands its tokens first).
        path = (
            self._expand(name, loader) if self.config.libc == GLIBC else self._absolute(name, name)
        )
        if path is not None:
            yield path, SearchDir(posixpath.dirname(path), Step.NAME, name, loader.path)

    def _search_dirs(self, loader: _Object) -> Iterator[SearchDir]:
        if self.config.libc == MUSL:
            yield from self.env_dirs
            obj: _Object | None = loader
            while obj is not None:
                step = Step.RUNPATH if _has_runpath(obj.elf) else Step.RPATH
                yield from self._object_paths(obj, step)
                obj = obj.loader
        else:
            if not _has_runpath(loader.elf):
                obj = loader
                while obj is not None:
                    if not _has_runpath(obj.elf):
                        yield from self._object_paths(obj, Step.RPATH)
                    obj = obj.loader
            yield from self.env_dirs
            yield from self._object_paths(loader, Step.RUNPATH)
        yield from self.system_dirs

    def _object_paths(self, obj: _Object, step: Step) -> tuple[SearchDir, ...]:
        key = (obj, step)
        if key not in self.paths:
            entries = _search_entries(obj.elf, step)
            if self.config.libc == MUSL:
                self.paths[key] = self._musl_paths(entries, obj, step)
            else:
                self.paths[key] = tuple(
                    SearchDir(d, step, e, obj.path)
                    for e in entries
                    if (d := self._expand(e, obj)) is not None
                )
        return self.paths[key]

    def _musl_paths(
        self, entries: tuple[str, ...], obj: _Object, step: Step
    ) -> tuple[SearchDir, ...]:
        """musl knows only $ORIGIN: any other '$' drops the object's whole list."""
        if "$" in _MUSL_ORIGIN.sub("", ":".join(entries)):
            return ()
        origin = posixpath.dirname(obj.path)
        dirs = []
        for entry in (e for part in entries for e in part.split("\n") if e):
            d = self._absolute(_MUSL_ORIGIN.sub(lambda _: origin, entry), entry)
            dirs.append(SearchDir(d, step, entry, obj.path))
        return tuple(dirs)

    def _env_dirs(self) -> tuple[SearchDir, ...]:
        """glibc expands tokens in LD_LIBRARY_PATH as for the main program (here the root);
        musl expands none, nor do we in the variables that add directories."""
        dirs = []
        for var, entry in self.config.env_paths:
            if var == "LD_LIBRARY_PATH":
                step = Step.LD_LIBRARY_PATH
                d = self._expand(entry, self.root) if self.config.libc == GLIBC else entry
            else:
                step, d = Step.EXTRA, entry
            if d is not None:
                dirs.append(SearchDir(self._absolute(d, ""), step, entry, var))
        return tuple(dirs)

    def _expand(self, entry: str, obj: _Object) -> str | None:
        """glibc's token expansion; None where a token has no value (ld.so drops the entry)."""
        if entry == "":
            return self.config.cwd
        expanded = self._expand_tokens(entry, obj)
        return None if expanded is None else self._absolute(expanded, entry)

    def _expand_tokens(self, entry: str, obj: _Object) -> str | None:
        """``entry`` with $ORIGIN, $LIB and $PLATFORM replaced; None if one has no value."""
        values = {
            "ORIGIN": posixpath.dirname(obj.path),
            "LIB": self.config.lib,
            "PLATFORM": self.config.platform,
        }
        unknown = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal unknown
            value = values[match.group(1) or match.group(2)]
            if value is None:
                unknown = True
                return ""
            return value

        expanded = _GLIBC_DST.sub(substitute, entry)
        return None if unknown or not expanded else expanded

    def _absolute(self, path: str, written: str) -> str:
        """Sysroot-prefix what was written absolute; anchor relative paths at the cwd."""
        if written.startswith("/"):
            path = _rooted(self.config.root, path)
        elif not path.startswith("/"):
            path = posixpath.join(self.config.cwd, path)
        return path.rstrip("/") or "/"


def _join(directory: str, name: str) -> str:
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


_INCOMPATIBLE = "is built for "  # how every incompatibility reason starts
_OSABI_NAMES = {0: "SYSV", 3: "GNU/Linux", 6: "Solaris", 9: "FreeBSD", 12: "OpenBSD"}


def incompatibility(elf: ElfFile, root: ElfFile) -> str | None:
    """Why the loader of ``root`` rejects ``elf`` as a library ("is built for ..."), or None.

    Class, byte order, machine and OS ABI must match (SYSV and GNU/Linux mix); on ARM the
    float ABI of EABI version 5 files must too, as glibc's VALID_FLOAT_ABI has it: a
    hard-float loader refuses EABI5 files marked soft-float, a soft-float one EABI5 files
    marked hard-float; unmarked files and other EABI versions load.
    """
    if elf.elf_class != root.elf_class:
        return f"{_INCOMPATIBLE}{elf.elf_class}-bit, not {root.elf_class}-bit"
    if elf.byte_order != root.byte_order:
        return f"{_INCOMPATIBLE}{elf.byte_order}-endian, not {root.byte_order}-endian"
    if elf.machine != root.machine:
        return f"{_INCOMPATIBLE}{_machine_name(elf)}, not {_machine_name(root)}"
    if elf.osabi != root.osabi and not {elf.osabi, root.osabi} <= _LINUX_OSABIS:
        return f"{_INCOMPATIBLE}OS ABI {_OSABI_NAMES.get(elf.osabi, elf.osabi)}"
    if elf.machine == Machine.ARM:
        wanted = _arm_float(root)
        if wanted is not None and _arm_float(elf) not in (None, wanted):
            return f"{_INCOMPATIBLE}ARM EABI5 {_arm_float(elf)}-float, the loader is {wanted}-float"
    return None


def _arm_float(elf: ElfFile) -> str | None:
    """ "hard" or "soft" for an EABI5 file marked so, else None."""
    if elf.flags & _EF_ARM_EABIMASK != _EF_ARM_EABI_VER5:
        return None
    if elf.flags & _EF_ARM_ABI_FLOAT_HARD:
        return "hard"
    if elf.flags & _EF_ARM_ABI_FLOAT_SOFT:
        return "soft"
    return None


def _machine_name(elf: ElfFile) -> str:
    if elf.arch:
        return elf.arch
    try:
        return Machine(elf.machine).name.lower()
    except ValueError:
        return f"e_machine {elf.machine}"
