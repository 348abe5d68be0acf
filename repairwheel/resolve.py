"""Find the shared libraries an ELF file needs, in the order the dynamic loader looks for them.

glibc's ld.so looks a DT_NEEDED name up for the object that needs it (its *loader*) in:

1. DT_RPATH of the loader, of the loader's loader, and so on up to the root, but only if the
   loader has no DT_RUNPATH (and an object that has both contributes no DT_RPATH);
2. LD_LIBRARY_PATH;
3. DT_RUNPATH of the loader alone;
4. /etc/ld.so.cache, built from the directories of /etc/ld.so.conf;
5. the default directories.

musl looks in LD_LIBRARY_PATH, then in the DT_RUNPATH (else DT_RPATH) of every object of the
loader chain, then in the directories of /etc/ld-musl-ARCH.path (else /lib:/usr/local/lib:/usr/lib).
Both load breadth first, and never look a name up twice: a DT_NEEDED name that matches the name
or SONAME of a loaded object, or a search that finds a file already loaded, gives that object.
That rule is what ends loops (RPATH cycles, a library that needs itself).

We follow ld.so where auditwheel's lddtree does not (its verdicts are compared with ours):

- LD_LIBRARY_PATH and AUDITWHEEL_LD_LIBRARY_PATH come before DT_RUNPATH (auditwheel: after, #737).
- DT_RPATH is inherited from every loader in the chain (auditwheel: only the root's), and the
  root's DT_RUNPATH serves its direct dependencies only (auditwheel: every dependency).
- $LIB and $PLATFORM are expanded (auditwheel leaves them, so such entries never match).
- $ORIGIN is the directory the object was found in, before symlinks are resolved
  (auditwheel: the directory of its realpath).
- Dependencies resolve breadth first (auditwheel: depth first), so when two objects need one
  name, the one nearer the root decides where it is looked up.
- A DT_NEEDED name with a slash is opened as a path, relative to the working directory
  (auditwheel joins it to every search directory).
- The interpreter is always loaded, so its names resolve to it without a search; its directory
  is not searched otherwise (auditwheel searches it).
- Default directories are the loader's: /$LIB and /usr/$LIB, then /lib64 and /usr/lib64 on
  64-bit, then /lib and /usr/lib (auditwheel: /lib, /lib64, /usr/lib, /usr/lib64).

Where we differ from ld.so, as auditwheel does:

- /etc/ld.so.cache is not read; the ld.so.conf directories it is built from are searched in
  order (the cache can be stale, and a sysroot's cache is meant for another machine).
- glibc-hwcaps and legacy hwcap subdirectories are not searched: they depend on the CPU that
  runs the program, which is not known when a wheel is checked.
- A file of the right name that is not ELF is passed over (ld.so stops: "invalid ELF header").
- Candidates of another class, byte order, machine or OS ABI than the root are skipped for musl
  too (musl would fail to load them).
- The root is taken as the main program: an extension module is really dlopen()ed by python,
  whose own DT_RPATH would apply as well.
"""

from __future__ import annotations

import enum
import fnmatch
import glob
import os
import posixpath
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .elf import ElfFile, is_elf, read_elf
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
        }


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
            "rpath": list(self.elf.rpath),
            "runpath": list(self.elf.runpath),
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
    if lib.skipped:
        return f"{lib.soname} => not found (incompatible: {', '.join(lib.skipped)})"
    return f"{lib.soname} => not found"


class Filesystem(Protocol):
    """Where the resolver reads files from: the host, or a wheel's members laid over it."""

    def elf_at(self, path: str) -> ElfFile | None:
        """The ELF file at ``path``; None if there is none or it is not ELF."""

    def realpath(self, path: str) -> str:
        """``path`` with symlinks resolved (it need not exist)."""


class HostFilesystem:
    """Real files, each read once: system libraries are shared by many files and wheels."""

    def __init__(self) -> None:
        self._listings: dict[str, frozenset[str]] = {}
        self._realpaths: dict[str, str] = {}
        self._elves: dict[str, ElfFile | None] = {}

    def realpath(self, path: str) -> str:
        real = self._realpaths.get(path)
        if real is None:
            real = self._realpaths[path] = os.path.realpath(path)
        return real

    def elf_at(self, path: str) -> ElfFile | None:
        directory, name = os.path.split(path)
        if name not in self._listing(directory or "."):
            return None
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


def _read_host_elf(path: str) -> ElfFile | None:
    """The ELF file at a real path; the magic is checked first, as most candidates are ELF
    and a non-ELF file (a linker script named libc.so) need not be mapped."""
    try:
        with open(path, "rb") as fh:
            if not is_elf(fh.read(4)):
                return None
    except OSError:
        return None
    try:
        return read_elf(path)
    except ElfError:
        return None


class WheelFilesystem:
    """A wheel's ELF members seen under the directory ``root``, over a base filesystem.

    Every path under ``root`` is the wheel's (nothing there falls through to the base), so
    pick a root that is not a real directory.  Members are never symlinks, so paths under
    ``root`` resolve lexically.
    """

    def __init__(
        self, root: str, members: Mapping[str, ElfFile], base: Filesystem | None = None
    ) -> None:
        self.root = os.path.abspath(root)
        self._members = {self.path_of(name): elf for name, elf in members.items()}
        self._base: Filesystem = base if base is not None else HostFilesystem()

    @classmethod
    def from_bytes(
        cls, root: str, members: Mapping[str, bytes], base: Filesystem | None = None
    ) -> WheelFilesystem:
        """Parse the ELF members among ``members`` (wheel path -> contents)."""
        elves: dict[str, ElfFile] = {}
        for name, data in members.items():
            if is_elf(data):
                try:
                    elves[name] = read_elf(data, name=name)
                except ElfError:
                    continue
        return cls(root, elves, base)

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
        inside = self._inside(path)
        return self._base.elf_at(path) if inside is None else self._members.get(inside)

    def realpath(self, path: str) -> str:
        inside = self._inside(path)
        return self._base.realpath(path) if inside is None else inside

    def _inside(self, path: str) -> str | None:
        """``path`` normalised if it is the root or under it, else None."""
        normal = posixpath.normpath(path)
        if normal == self.root or normal.startswith(self.root.rstrip("/") + "/"):
            return normal
        return None


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
            system = _glibc_system_dirs(root, arch, lib)
        else:
            system = _musl_system_dirs(root, arch)
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


def _glibc_system_dirs(root: str, arch: str, lib: str) -> list[SearchDir]:
    defaults = [f"/{lib}", f"/usr/{lib}"]
    if arch not in _32BIT:
        defaults += ["/lib64", "/usr/lib64"]
    defaults += ["/lib", "/usr/lib"]
    conf: list[SearchDir] = []
    _read_ld_so_conf(_rooted(root, "/etc/ld.so.conf"), root, conf, set())
    return conf + [SearchDir(_rooted(root, d), Step.DEFAULT, d, None) for d in defaults]


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


def _musl_system_dirs(root: str, arch: str) -> list[SearchDir]:
    path = _rooted(root, f"/etc/ld-musl-{_MUSL_ARCH.get(arch, arch)}.path")
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
        self._register(self.root)
        self.interpreter = self._preload_interpreter()
        self.env_dirs = self._env_dirs()

    def run(self) -> dict[str, Library]:
        self.queue.append(self.root)
        while self.queue:
            obj = self.queue.popleft()
            for name in obj.elf.needed:
                if name not in self.libraries:
                    self.libraries[name] = self._load(name, obj)
        return self.libraries

    def _register(self, obj: _Object) -> None:
        self.names.setdefault(obj.path, obj)
        if obj.elf.soname:
            self.names.setdefault(obj.elf.soname, obj)
        self.by_realpath.setdefault(obj.realpath, obj)

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
        self._register(obj)
        return obj

    def _load(self, name: str, loader: _Object) -> Library:
        loader_name = None if loader is self.root else loader.name
        if self._excluded(name):
            return Library(name, None, None, None, None, loader_name, excluded=True)
        known = self.names.get(name)
        if known is None and self.config.libc == MUSL and _MUSL_BUILTIN.match(name):
            known = self.interpreter
        if known is not None and not known.listed:
            return self._list_interpreter(name, known, loader)
        if known is not None:
            return Library(
                name, known.path, known.realpath, known.elf, None, loader_name, known.name
            )
        found, skipped = self._find(name, loader)
        if found is None:
            return Library(name, None, None, None, None, loader_name, skipped=skipped)
        path, elf, found_by = found
        real = self.fs.realpath(path)
        if self._excluded(real):
            return Library(name, path, real, elf, found_by, loader_name, excluded=True)
        same = self.by_realpath.get(real)
        if same is not None and not same.listed:
            return self._list_interpreter(name, same, loader)
        if same is not None:
            self.names.setdefault(name, same)
            return Library(name, path, real, elf, found_by, loader_name, same.name, skipped=skipped)
        obj = _Object(name, path, real, elf, loader)
        self.names.setdefault(name, obj)
        self._register(obj)
        self.queue.append(obj)
        return Library(name, path, real, elf, found_by, loader_name, skipped=skipped)

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
        root = self.root.elf
        return (
            elf.elf_class == root.elf_class
            and elf.byte_order == root.byte_order
            and elf.machine == root.machine
            and (elf.osabi == root.osabi or {elf.osabi, root.osabi} <= _LINUX_OSABIS)
        )

    def _find(
        self, name: str, loader: _Object
    ) -> tuple[tuple[str, ElfFile, SearchDir] | None, tuple[str, ...]]:
        """The first compatible candidate, and the incompatible ones passed over."""
        tried: set[str] = set()
        skipped: list[str] = []
        for candidate, d in self._candidates(name, loader):
            if candidate in tried:
                continue
            tried.add(candidate)
            elf = self.fs.elf_at(candidate)
            if elf is None:
                continue
            if not self._compatible(elf):
                skipped.append(candidate)
                continue
            return (candidate, elf, d), tuple(skipped)
        return None, tuple(skipped)

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
                yield from self._object_paths(obj, Step.RUNPATH if obj.elf.runpath else Step.RPATH)
                obj = obj.loader
        else:
            if not loader.elf.runpath:
                obj = loader
                while obj is not None:
                    if not obj.elf.runpath:
                        yield from self._object_paths(obj, Step.RPATH)
                    obj = obj.loader
            yield from self.env_dirs
            yield from self._object_paths(loader, Step.RUNPATH)
        yield from self.config.system_dirs

    def _object_paths(self, obj: _Object, step: Step) -> tuple[SearchDir, ...]:
        key = (obj, step)
        if key not in self.paths:
            entries = obj.elf.rpath if step is Step.RPATH else obj.elf.runpath
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
        if unknown or not expanded:
            return None
        return self._absolute(expanded, entry)

    def _absolute(self, path: str, written: str) -> str:
        """Sysroot-prefix what was written absolute; anchor relative paths at the cwd."""
        if written.startswith("/"):
            path = _rooted(self.config.root, path)
        elif not path.startswith("/"):
            path = posixpath.join(self.config.cwd, path)
        return path.rstrip("/") or "/"


def _join(directory: str, name: str) -> str:
    return directory + name if directory.endswith("/") else f"{directory}/{name}"
