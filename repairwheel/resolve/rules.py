"""Each dynamic loader family's rules: one class per family, each beside the text stating them.

The walk (``walk.py``) does only what every loader does: it loads breadth first, never looks a
name up twice, and a search that finds a file already loaded gives that object (that rule ends
loops: RPATH cycles, a library that needs itself).  The interpreter is always loaded, so the
names it answers to need no search; its directory is not searched otherwise.  Every other
decision it asks a :class:`LoaderRules` object:

- names: which names a loaded object answers to (:meth:`~LoaderRules.names_loaded`,
  :meth:`~LoaderRules.names_found_again`), whether a DT_NEEDED name is compared with them at
  all (:meth:`~LoaderRules.compares_loaded`), which names the loader answers itself
  (:meth:`~LoaderRules.builtin`);
- search: the lists searched for a name, in order (:meth:`~LoaderRules.search_order`), the
  directories of an object's DT_RPATH or DT_RUNPATH with its tokens expanded
  (:meth:`~LoaderRules.object_dirs`), of LD_LIBRARY_PATH (:meth:`~LoaderRules.env_dirs`) and of
  the system (:meth:`~LoaderRules.system_dirs`);
- a DT_NEEDED name with a slash: whether it is relative to the working directory at run time
  (:meth:`~LoaderRules.is_relative`), else the path opened (:meth:`~LoaderRules.open_path`);
- which candidates the loader refuses (:meth:`~LoaderRules.incompatibility`);
- whether the interpreter a file names is a file of this machine to preload
  (:meth:`~LoaderRules.interpreter_path`).

A family subclasses :class:`LoaderRules`, implements its abstract methods with the family's
rules in its docstring, and overrides the shared defaults where the loader differs (glibc,
musl, and Android's bionic, which ignores DT_RPATH and reads the DT_RUNPATH of the loader
alone).  :func:`rules_for` maps its libc name to the class, :func:`libc_of` recognises its
files, and ``config.loader_config`` gives its interpreter and system directories.
"""

from __future__ import annotations

import abc
import enum
import posixpath
import re
from collections.abc import Iterator
from typing import Protocol

from ..elf import ElfFile, Machine
from .config import ANDROID, GLIBC, MUSL, LoaderConfig, dedupe, interpreter_search_path, rooted
from .tree import SearchDir, Step

_GLIBC_DST = re.compile(r"\$(?:\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")
_MUSL_ORIGIN = re.compile(r"\$(?:\{ORIGIN\}|ORIGIN)")
# bionic's format_string: $ORIGIN and $LIB, bare (a prefix match) or braced; others stay.
_BIONIC_DST = re.compile(r"\$(?:\{(ORIGIN|LIB)\}|(ORIGIN|LIB))")
# Names musl's loader answers itself: lib<one of these>.<anything>.
_MUSL_BUILTIN = re.compile(r"lib(c|pthread|rt|m|dl|util|xnet)\.")
_LINUX_OSABIS = frozenset({0, 3})  # ELFOSABI_NONE (SYSV) and ELFOSABI_GNU (LINUX) mix freely
_OSABI_NAMES = {0: "SYSV", 3: "GNU/Linux", 6: "Solaris", 9: "FreeBSD", 12: "OpenBSD"}
_EF_ARM_EABIMASK = 0xFF000000
_EF_ARM_EABI_VER5 = 0x05000000
_EF_ARM_ABI_FLOAT_SOFT = 0x00000200
_EF_ARM_ABI_FLOAT_HARD = 0x00000400
_INCOMPATIBLE = "is built for "  # how every incompatibility reason starts


class Loaded(Protocol):
    """A loaded object, as the rules see it: where it was found, its facts, what loaded it."""

    @property
    def path(self) -> str: ...

    @property
    def realpath(self) -> str: ...

    @property
    def elf(self) -> ElfFile: ...

    @property
    def loader(self) -> Loaded | None: ...


class Lists(enum.Enum):
    """The search lists that are the same for every name of one resolution."""

    ENVIRONMENT = "REPAIRWHEEL_/AUDITWHEEL_LD_LIBRARY_PATH, then LD_LIBRARY_PATH"
    SYSTEM = "the system's directories"


class LoaderRules(abc.ABC):
    """What one loader family decides; the defaults are those glibc and musl share.

    Shared: an object with several DT_RPATH (or DT_RUNPATH) entries has the last one (the
    loaders' dynamic-section scans overwrite; checked with glibc 2.36 and musl 1.2.3), none
    joins them.  Absolute entries are read under the sysroot, relative ones from the working
    directory.  The variables that add directories (REPAIRWHEEL_LD_LIBRARY_PATH,
    AUDITWHEEL_LD_LIBRARY_PATH) are searched just before LD_LIBRARY_PATH, unexpanded.
    """

    def __init__(self, config: LoaderConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def names_loaded(self, obj: Loaded, needed: str | None) -> tuple[str, ...]:
        """The names a later DT_NEEDED finds ``obj`` by, loaded for the DT_NEEDED ``needed``
        (None: the root or the interpreter)."""

    @abc.abstractmethod
    def names_found_again(self, obj: Loaded, needed: str) -> tuple[str, ...]:
        """The names ``obj`` answers to once a search for ``needed`` finds its file again."""

    @abc.abstractmethod
    def compares_loaded(self, name: str) -> bool:
        """Whether the DT_NEEDED ``name`` can find a loaded object without a search."""

    def builtin(self, name: str) -> bool:
        """Whether the loader answers ``name`` itself, with the interpreter."""
        return False

    @abc.abstractmethod
    def search_order(self, loader: Loaded) -> Iterator[Lists | tuple[Loaded, Step]]:
        """What is searched for a name without a slash that ``loader`` needs, in order: the
        lists of the resolution, and (object, RPATH or RUNPATH) for an object's own list."""

    @abc.abstractmethod
    def object_dirs(self, obj: Loaded, step: Step) -> tuple[SearchDir, ...]:
        """The directories ``obj``'s DT_RPATH or DT_RUNPATH (``step``) adds, expanded."""

    def expand_environment(self, entry: str, root: Loaded) -> str | None:
        """An LD_LIBRARY_PATH entry as searched; None drops it. By default taken literally
        (musl and bionic expand nothing there)."""
        return entry

    def is_relative(self, name: str, loader: Loaded) -> bool:
        """Whether the DT_NEEDED path ``name`` is opened relative to the working directory
        of the program at run time (which no check can know): by default, any path that is
        not absolute."""
        return not name.startswith("/")

    def open_path(self, name: str, loader: Loaded) -> str | None:
        """The file the DT_NEEDED path ``name`` of ``loader`` opens; None: nothing. By
        default the path as written (under the sysroot)."""
        return self.absolute(name, name)

    def env_dirs(self, root: Loaded) -> tuple[SearchDir, ...]:
        """The directories of :attr:`Lists.ENVIRONMENT`, for a resolution of ``root``."""
        dirs = []
        for var, entry in self.config.env_paths:
            if var == "LD_LIBRARY_PATH":
                step = Step.LD_LIBRARY_PATH
                d = self.expand_environment(entry, root)
            else:
                step, d = Step.EXTRA, entry
            if d is not None:
                dirs.append(SearchDir(self.absolute(d, ""), step, entry, var))
        return tuple(dirs)

    def system_dirs(self, root: ElfFile) -> tuple[SearchDir, ...]:
        """The directories of :attr:`Lists.SYSTEM`, for a resolution of ``root``."""
        return self.config.system_dirs

    def incompatibility(self, elf: ElfFile, root: ElfFile) -> str | None:
        """Why the loader of ``root`` refuses ``elf`` as a library, or None."""
        return incompatibility(elf, root)

    def interpreter_path(self, root: ElfFile) -> str | None:
        """The loader's own file on this machine (or the sysroot), preloaded; None: none."""
        interp = root.interpreter
        return rooted(self.config.root, interp) if interp else self.config.interpreter

    @staticmethod
    def entries(elf: ElfFile, step: Step) -> tuple[str, ...]:
        """The ':'-split directories of the DT_RPATH or DT_RUNPATH entry the loader uses."""
        return elf.rpath if step is Step.RPATH else elf.runpath

    def absolute(self, path: str, written: str) -> str:
        """Sysroot-prefix what was written absolute; anchor relative paths at the cwd."""
        if written.startswith("/"):
            path = rooted(self.config.root, path)
        elif not path.startswith("/"):
            path = posixpath.join(self.config.cwd, path)
        return path.rstrip("/") or "/"


class GlibcRules(LoaderRules):
    """glibc's ld.so (``elf/dl-load.c``).

    Names: a DT_NEEDED name gives a loaded object that was loaded by that name or path, or
    whose DT_SONAME it is; a search that finds a loaded file adds the name to that object.

    Search, for a name without a slash that an object (its *loader*) needs:

    1. DT_RPATH of the loader, of the loader's loader, and so on up to the root, but only if
       the loader has no DT_RUNPATH (and an object that has both contributes no DT_RPATH);
    2. LD_LIBRARY_PATH (split on ':' and ';', an empty entry is the working directory);
    3. DT_RUNPATH of the loader alone;
    4. /etc/ld.so.cache, built from the directories of /etc/ld.so.conf, then the default
       directories (both read by ``config.py``).  glibc-hwcaps and legacy hwcap
       subdirectories are not searched: they depend on the CPU that runs the program.

    Tokens: $ORIGIN, $LIB and $PLATFORM, bare or braced (``is_dst``), in DT_RPATH, DT_RUNPATH,
    a DT_NEEDED path, and LD_LIBRARY_PATH (as for the main program, here the root).  $ORIGIN
    is the directory the object was found in, before symlinks are resolved.  An entry using
    a token without a value is dropped; an empty entry is the working directory.

    A DT_NEEDED name with a slash has its tokens expanded and is opened as that path: an
    absolute one under the sysroot, a relative one from the working directory at run time.
    """

    def names_loaded(self, obj: Loaded, needed: str | None) -> tuple[str, ...]:
        names = [obj.path]
        if obj.elf.soname:
            names.append(obj.elf.soname)
        if needed is not None:
            names.append(needed)
        return tuple(names)

    def names_found_again(self, obj: Loaded, needed: str) -> tuple[str, ...]:
        return (needed,)

    def compares_loaded(self, name: str) -> bool:
        return True

    def search_order(self, loader: Loaded) -> Iterator[Lists | tuple[Loaded, Step]]:
        if not _has_runpath(loader.elf):
            for obj in _chain(loader):
                if not _has_runpath(obj.elf):
                    yield obj, Step.RPATH
        yield Lists.ENVIRONMENT
        yield loader, Step.RUNPATH
        yield Lists.SYSTEM

    def object_dirs(self, obj: Loaded, step: Step) -> tuple[SearchDir, ...]:
        return tuple(
            SearchDir(d, step, e, obj.path)
            for e in self.entries(obj.elf, step)
            if (d := self._expand(e, obj)) is not None
        )

    def expand_environment(self, entry: str, root: Loaded) -> str | None:
        return self._expand(entry, root)

    def system_dirs(self, root: ElfFile) -> tuple[SearchDir, ...]:
        """The configuration's, or, for a root whose PT_INTERP is another known interpreter of
        this machine, with that interpreter's default directories."""
        dirs = self.config.system_dirs
        interp = root.interpreter
        if (
            self.config.root != "/"
            or interp is None
            or interp == self.config.interpreter
            or any(d.step is Step.LDPATHS for d in dirs)
        ):
            return dirs
        asked = interpreter_search_path(interp)
        if asked is None:
            return dirs
        kept = [d for d in dirs if d.step is not Step.DEFAULT]
        return tuple(dedupe([*kept, *(SearchDir(d, Step.DEFAULT, d, interp) for d in asked)]))

    def is_relative(self, name: str, loader: Loaded) -> bool:
        if "$" in name:
            expanded = self._expand_tokens(name, loader)
            return expanded is not None and not expanded.startswith("/")
        return not name.startswith("/")

    def open_path(self, name: str, loader: Loaded) -> str | None:
        return self._expand(name, loader)

    def _expand(self, entry: str, obj: Loaded) -> str | None:
        """``entry`` as searched; None where a token has no value (ld.so drops the entry)."""
        if entry == "":
            return self.config.cwd
        expanded = self._expand_tokens(entry, obj)
        return None if expanded is None else self.absolute(expanded, entry)

    def _expand_tokens(self, entry: str, obj: Loaded) -> str | None:
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


class MuslRules(LoaderRules):
    """musl's loader (``ldso/dynlink.c``, ``load_library``).

    Names: a DT_NEEDED name without a slash gives a loaded object only by its *short name*:
    the name a search found it by, never its DT_SONAME.  An object opened by a path has none
    until a search finds its file again, and then answers to its file name.  A name with a
    slash is opened without looking at what is loaded.  lib{c,pthread,rt,m,dl,util,xnet}.*
    are the loader's own: it answers them itself, whatever files there are.

    Search: LD_LIBRARY_PATH (split on ':' and newlines, empty entries skipped), then the
    DT_RUNPATH (else the DT_RPATH) of every object of the loader chain, up to the root, then
    the directories of musl's path file (else /lib:/usr/local/lib:/usr/lib; ``config.py``).

    Tokens: only $ORIGIN (bare or braced), in DT_RPATH and DT_RUNPATH; any other '$' drops the
    object's whole list.  Entries split on newlines too.  LD_LIBRARY_PATH is not expanded.

    A DT_NEEDED name with a slash is opened as written: an absolute one under the sysroot, a
    relative one from the working directory at run time.

    Candidates of another class, byte order, machine, OS ABI or float ABI than the root are
    passed over as for glibc; musl would fail to load them instead.
    """

    def names_loaded(self, obj: Loaded, needed: str | None) -> tuple[str, ...]:
        return (needed,) if needed is not None and "/" not in needed else ()

    def names_found_again(self, obj: Loaded, needed: str) -> tuple[str, ...]:
        return (posixpath.basename(obj.path),) if "/" not in needed else ()

    def compares_loaded(self, name: str) -> bool:
        return "/" not in name

    def builtin(self, name: str) -> bool:
        return _MUSL_BUILTIN.match(name) is not None

    def search_order(self, loader: Loaded) -> Iterator[Lists | tuple[Loaded, Step]]:
        yield Lists.ENVIRONMENT
        for obj in _chain(loader):
            yield obj, Step.RUNPATH if _has_runpath(obj.elf) else Step.RPATH
        yield Lists.SYSTEM

    def object_dirs(self, obj: Loaded, step: Step) -> tuple[SearchDir, ...]:
        entries = self.entries(obj.elf, step)
        if "$" in _MUSL_ORIGIN.sub("", ":".join(entries)):
            return ()
        origin = posixpath.dirname(obj.path)
        dirs = []
        for entry in (e for part in entries for e in part.split("\n") if e):
            d = self.absolute(_MUSL_ORIGIN.sub(lambda _: origin, entry), entry)
            dirs.append(SearchDir(d, step, entry, obj.path))
        return tuple(dirs)


class AndroidRules(LoaderRules):
    """Android's bionic linker (``linker/linker.cpp``, ``open_library``, ``load_library``).

    Names: a DT_NEEDED name without a slash gives a loaded object whose DT_SONAME it is
    (``find_loaded_library_by_soname``; from API level 23 on, no file-name fallback); a
    search that opens a file already loaded (same inode) gives that object.  A name with a
    slash is opened as written, without looking at what is loaded.

    Search, for a name without a slash that an object (its *loader*) needs:

    1. LD_LIBRARY_PATH: here REPAIRWHEEL_LD_LIBRARY_PATH / AUDITWHEEL_LD_LIBRARY_PATH (the host's
       own LD_LIBRARY_PATH describes the build host and is never read);
    2. DT_RUNPATH of the loader alone: not inherited, not the root's for its dependencies'
       needs.  DT_RPATH is ignored altogether (bionic never read it);
    3. the namespace's default directories: the device's, which the build host cannot see.
       The policy's whitelist stands for its system libraries; ``--ldpaths`` (the NDK
       sysroot, a prefix of cross-built libraries) stands for the rest (``config.py``).

    Tokens: $ORIGIN (the directory of the object's real path: bionic resolves symlinks) and
    $LIB (lib64, lib), bare or braced, in DT_RUNPATH only; any other '$' stays as written.
    Entries split on ':' only and empty ones are skipped.  Of several DT_RUNPATH entries the
    last counts, as for glibc and musl.  No interpreter of this machine is preloaded.

    A DT_NEEDED name with a slash is opened as written: an absolute one under the sysroot, a
    relative one from the working directory at run time.
    """

    def names_loaded(self, obj: Loaded, needed: str | None) -> tuple[str, ...]:
        return (obj.elf.soname,) if obj.elf.soname else ()

    def names_found_again(self, obj: Loaded, needed: str) -> tuple[str, ...]:
        return ()  # found again by inode, at every search

    def compares_loaded(self, name: str) -> bool:
        return "/" not in name

    def search_order(self, loader: Loaded) -> Iterator[Lists | tuple[Loaded, Step]]:
        yield Lists.ENVIRONMENT
        if _has_runpath(loader.elf):
            yield loader, Step.RUNPATH
        yield Lists.SYSTEM

    def object_dirs(self, obj: Loaded, step: Step) -> tuple[SearchDir, ...]:
        if step is not Step.RUNPATH:
            return ()
        values = {"ORIGIN": posixpath.dirname(obj.realpath), "LIB": self.config.lib}
        dirs = []
        for entry in self.entries(obj.elf, step):
            if not entry:
                continue
            expanded = _BIONIC_DST.sub(lambda m: values[m.group(1) or m.group(2)], entry)
            dirs.append(SearchDir(self.absolute(expanded, entry), step, entry, obj.path))
        return tuple(dirs)

    def interpreter_path(self, root: ElfFile) -> str | None:
        return None  # /system/bin/linker64 is on the device


def rules_for(config: LoaderConfig) -> LoaderRules:
    """The rules of the loader ``config`` describes."""
    families: dict[str, type[LoaderRules]] = {
        GLIBC: GlibcRules,
        MUSL: MuslRules,
        ANDROID: AndroidRules,
    }
    family = families.get(config.libc)
    if family is None:
        raise ValueError(f"unknown libc {config.libc!r}: expected one of {sorted(families)}")
    return family(config)


def libc_of(elf: ElfFile) -> str:
    """android if the interpreter is bionic's linker, musl if the interpreter or a DT_NEEDED
    name is musl's loader, else glibc."""
    if (elf.interpreter or "").startswith("/system/bin/linker"):
        return ANDROID
    names = (posixpath.basename(elf.interpreter or ""), *elf.needed)
    return MUSL if any(n.startswith(("ld-musl-", "libc.musl-")) for n in names) else GLIBC


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


def _chain(loader: Loaded) -> Iterator[Loaded]:
    """``loader``, its loader, and so on up to the root."""
    obj: Loaded | None = loader
    while obj is not None:
        yield obj
        obj = obj.loader


def _has_runpath(elf: ElfFile) -> bool:
    return bool(elf.runpaths)
