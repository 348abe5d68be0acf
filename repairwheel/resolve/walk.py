"""The breadth-first walk over DT_NEEDED, with the loader's memory of what is loaded.

The walk is the part every loader shares (see ``rules.py`` for what it is): a queue of
loaded objects, each name looked up once, the names and real paths of what is loaded.  Every
decision that depends on the loader family is the rules object's.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import posixpath
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from ..elf import ElfFile, read_elf
from .config import LoaderConfig, loader_config
from .fs import Filesystem, HostFilesystem, examine
from .rules import Lists, Loaded, libc_of, rules_for
from .tree import DependencyTree, Library, SearchDir, Step


def resolve(
    path: str,
    elf: ElfFile,
    fs: Filesystem,
    config: LoaderConfig,
    exclude: Iterable[str] = (),
    provided: Collection[str] = (),
    included: Mapping[str, str] | None = None,
    dlopen: bool = False,
) -> DependencyTree:
    """Resolve everything ``elf`` (found at ``path`` in ``fs``) needs, transitively.

    ``exclude`` holds fnmatch patterns matched against each DT_NEEDED name and resolved
    realpath (auditwheel's --exclude): a match is recorded but its needs are not followed.
    ``provided`` names are another distribution's (--provided-by): recorded as such, neither
    looked up nor followed. ``included`` maps names the wheel ships (--include) to the file
    each opens, wherever it is needed; with ``dlopen`` the root loads them too, as dlopen()
    does once its DT_NEEDED tree is loaded.
    """
    walk = _Walk(
        os.path.abspath(path),
        elf,
        fs,
        config,
        tuple(exclude),
        frozenset(provided),
        dict(included or {}),
        dlopen,
    )
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


@dataclass(eq=False)
class _Object:
    """A loaded object while the walk runs."""

    name: str
    path: str
    realpath: str
    elf: ElfFile
    loader: _Object | None
    listed: bool = True  # False for the interpreter until something needs it


_Found = tuple[str, ElfFile, SearchDir]


class _Walk:
    """One breadth-first resolution, with ld.so's memory of what is loaded."""

    def __init__(
        self,
        path: str,
        elf: ElfFile,
        fs: Filesystem,
        config: LoaderConfig,
        exclude: tuple[str, ...],
        provided: frozenset[str],
        included: dict[str, str],
        dlopen: bool,
    ) -> None:
        self.fs = fs
        self.config = config
        self.rules = rules_for(config)
        self.exclude = exclude
        self.provided = provided
        self.included = included  # name -> the file --include gave for it
        self.dlopen = dlopen  # whether the root loads the included names after its tree
        self.root = _Object(
            elf.soname or posixpath.basename(path), path, fs.realpath(path), elf, None
        )
        self.names: dict[str, _Object] = {}  # what a DT_NEEDED name finds without a search
        self.by_realpath: dict[str, _Object] = {}
        self.libraries: dict[str, Library] = {}
        self.queue: deque[_Object] = deque()
        self.paths: dict[tuple[Loaded, Step], tuple[SearchDir, ...]] = {}
        self._register(self.root, None)
        self.interpreter = self._preload_interpreter()
        self.env_dirs = self.rules.env_dirs(self.root)
        self.system_dirs = self.rules.system_dirs(self.root.elf)

    def run(self) -> dict[str, Library]:
        self.queue.append(self.root)
        self._drain()
        for name in self.included if self.dlopen else ():
            if name not in self.libraries:
                self.libraries[name] = self._load(name, self.root)
                self._drain()
        return self.libraries

    def _drain(self) -> None:
        while self.queue:
            obj = self.queue.popleft()
            for name in obj.elf.needed:
                if name not in self.libraries:
                    self.libraries[name] = self._load(name, obj)

    def _register(self, obj: _Object, name: str | None) -> None:
        """Remember ``obj``, loaded by the DT_NEEDED ``name`` (None: the root, the loader)."""
        self._answer(obj, self.rules.names_loaded(obj, name))
        self.by_realpath.setdefault(obj.realpath, obj)

    def _answer(self, obj: _Object, names: Iterable[str]) -> None:
        """Let ``names`` find ``obj``, where no object answers to them yet."""
        for name in names:
            self.names.setdefault(name, obj)

    def _known(self, name: str) -> _Object | None:
        """The loaded object that answers to ``name`` without a search."""
        if self.rules.builtin(name):
            return self.interpreter
        return self.names.get(name) if self.rules.compares_loaded(name) else None

    def _preload_interpreter(self) -> _Object | None:
        """The loader itself is always mapped: names it answers to need no search."""
        path = self.rules.interpreter_path(self.root.elf)
        if path is None:
            return None
        elf = self.fs.elf_at(path)
        if elf is None or self.rules.incompatibility(elf, self.root.elf) is not None:
            return None
        obj = _Object(
            posixpath.basename(path), path, self.fs.realpath(path), elf, None, listed=False
        )
        self._answer(obj, (obj.name,))
        self._register(obj, None)
        return obj

    def _load(self, name: str, loader: _Object) -> Library:
        loader_name = None if loader is self.root else loader.name
        if self._excluded(name):
            return Library(name, None, None, None, None, loader_name, excluded=True)
        if name in self.provided:
            return Library(name, None, None, None, None, loader_name, provided=True)
        known = self._known(name)
        if known is not None and not known.listed:
            return self._list_interpreter(name, known, loader)
        if known is not None:
            return Library(
                name, known.path, known.realpath, known.elf, None, loader_name, known.name
            )
        if "/" in name and self.rules.is_relative(name, loader):
            return Library(name, None, None, None, None, loader_name, relative=True)
        if name in self.included:
            found, rejected, skipped = self._open_included(name, loader)
        else:
            found, rejected, skipped = self._find(name, loader)
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
            self._answer(same, self.rules.names_found_again(same, name))
            return more(name, path, real, elf, found_by, loader_name, same.name)
        obj = _Object(name, path, real, elf, loader)
        self._register(obj, name)
        self.queue.append(obj)
        return more(name, path, real, elf, found_by, loader_name)

    def _list_interpreter(self, name: str, interp: _Object, loader: _Object) -> Library:
        interp.listed, interp.name, interp.loader = True, name, loader
        self._answer(interp, (name,))
        self.queue.append(interp)
        found_by = SearchDir(posixpath.dirname(interp.path), Step.INTERPRETER, interp.path, None)
        loader_name = None if loader is self.root else loader.name
        return Library(name, interp.path, interp.realpath, interp.elf, found_by, loader_name)

    def _excluded(self, text: str) -> bool:
        return any(fnmatch.fnmatch(text, pattern) for pattern in self.exclude)

    def _find(
        self, name: str, loader: _Object
    ) -> tuple[_Found | None, tuple[tuple[str, str], ...], tuple[str, ...]]:
        """The first candidate the loader takes; every file of the name passed over, with
        why; and those of them passed over as incompatible with the root."""
        tried: set[str] = set()
        rejected: list[tuple[str, str]] = []
        skipped: list[str] = []
        for candidate, d in self._candidates(name, loader):
            if candidate in tried:
                continue
            tried.add(candidate)
            elf, why = examine(self.fs, candidate)
            if elf is None:
                if why is not None:
                    rejected.append((candidate, why))
                continue
            why = self.rules.incompatibility(elf, self.root.elf)
            if why is not None:
                rejected.append((candidate, why))
                skipped.append(candidate)
                continue
            return (candidate, elf, d), tuple(rejected), tuple(skipped)
        return None, tuple(rejected), tuple(skipped)

    def _open_included(
        self, name: str, loader: _Object
    ) -> tuple[_Found | None, tuple[tuple[str, str], ...], tuple[str, ...]]:
        """The file --include gave for ``name`` (the graft the repaired wheel loads)."""
        path = self.included[name]
        elf, why = examine(self.fs, path)
        if elf is None:
            return None, ((path, why or "does not exist"),), ()
        found_by = SearchDir(posixpath.dirname(path), Step.INCLUDE, name, "--include")
        return (path, elf, found_by), (), ()

    def _candidates(self, name: str, loader: _Object) -> Iterator[tuple[str, SearchDir]]:
        if "/" in name:  # opened as it stands
            path = self.rules.open_path(name, loader)
            if path is not None:
                yield path, SearchDir(posixpath.dirname(path), Step.NAME, name, loader.path)
            return
        for d in self._search_dirs(loader):
            yield _join(d.directory, name), d

    def _search_dirs(self, loader: _Object) -> Iterator[SearchDir]:
        for part in self.rules.search_order(loader):
            if part is Lists.ENVIRONMENT:
                yield from self.env_dirs
            elif part is Lists.SYSTEM:
                yield from self.system_dirs
            else:
                yield from self._object_dirs(*part)

    def _object_dirs(self, obj: Loaded, step: Step) -> tuple[SearchDir, ...]:
        key = (obj, step)
        if key not in self.paths:
            self.paths[key] = self.rules.object_dirs(obj, step)
        return self.paths[key]


def _join(directory: str, name: str) -> str:
    return directory + name if directory.endswith("/") else f"{directory}/{name}"
