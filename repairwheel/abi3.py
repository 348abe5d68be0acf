"""The abi3 claim: a ``cpXY-abi3`` wheel promises that every CPython from X.Y on loads it, so
its ELF files may take from the interpreter only what the stable ABI of CPython X.Y exports.

Which symbol the stable ABI has, and since which version, comes from the ``abi3info``
package (the tables abi3audit uses, generated from CPython's ``Misc/stable_abi.toml``).
A file's demands are the ``Py*`` / ``_Py*`` names it leaves undefined (weak ones too: they
bind when present); ``PyInit_*`` is what the file exports, never a demand.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .scan import ElfMember
from .verdict import Blocker, BlockerKind

_CPYTHON = re.compile(r"cp3(\d+)")
# An extension suffix naming one interpreter: only that CPython version imports the file.
_VERSIONED_SUFFIX = re.compile(r"\.cpython-3(\d+)[a-z]*-[^/]*\.so$")

Version = tuple[int, int]


@dataclass(frozen=True)
class Abi3Symbol:
    """A symbol a file takes from the interpreter that the abi3 tag does not allow."""

    file: str
    symbol: str
    added: Version | None  # the CPython version whose stable ABI first has it; None: none has

    @property
    def needs(self) -> str | None:
        """The version it needs as text (``"3.10"``), None for a symbol outside the stable ABI."""
        return None if self.added is None else f"{self.added[0]}.{self.added[1]}"

    def blocker(self) -> Blocker:
        return Blocker(
            BlockerKind.ABI3_SYMBOL, self.file, detail=self.needs, symbols=(self.symbol,)
        )


@dataclass(frozen=True)
class Abi3Verdict:
    """How a wheel's abi3 tag fares: the version it promises and what breaks the promise."""

    tag: str  # the promise checked, e.g. cp39-abi3 (the oldest CPython of the wheel's abi3 tags)
    baseline: Version
    symbols: tuple[Abi3Symbol, ...]  # in file order, then by name
    versioned_files: tuple[str, ...] = ()  # extensions named for one interpreter (.cpython-311-)

    @property
    def version(self) -> str:
        return f"{self.baseline[0]}.{self.baseline[1]}"

    @property
    def ok(self) -> bool:
        return not self.symbols and not self.versioned_files

    @property
    def blockers(self) -> tuple[Blocker, ...]:
        return tuple(s.blocker() for s in self.symbols)

    def to_json(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "baseline": self.version,
            "satisfied": self.ok,
            "symbols": [
                {"file": s.file, "symbol": s.symbol, "needs": s.needs} for s in self.symbols
            ],
            "versioned_files": list(self.versioned_files),
            "blockers": [
                {
                    "kind": b.kind.value,
                    "file": b.file,
                    "detail": b.detail,
                    "symbols": list(b.symbols),
                    "message": str(b),
                }
                for b in self.blockers
            ],
        }


def abi3_baseline(tags: Iterable[tuple[str, str]]) -> Version | None:
    """The oldest CPython an installer accepts the wheel on by its abi3 tags, from
    (interpreter, abi) pairs such as ("cp39", "abi3"); None when no tag is a CPython abi3 tag.

    With ``cp37.cp39-abi3`` CPython 3.7 installs it too, so the oldest version is the promise.
    """
    versions = [
        (3, int(match.group(1)))
        for interpreter, abi in tags
        if abi == "abi3" and (match := _CPYTHON.fullmatch(interpreter))
    ]
    return min(versions, default=None)


@functools.cache
def stable_abi() -> Mapping[str, Version]:
    """Every function and data symbol of the stable ABI -> the version that added it."""
    # Imported only for abi3 wheels (a large table); the package ships no type information.
    from abi3info import DATAS, FUNCTIONS  # type: ignore[import-untyped]

    table: dict[str, Version] = {}
    for entries in (FUNCTIONS, DATAS):
        for symbol, entry in entries.items():
            table[symbol.name] = (entry.added.major, entry.added.minor)
    return table


def check_abi3(members: Sequence[ElfMember], baseline: Version) -> Abi3Verdict:
    """Weigh the members' demands on the interpreter against the stable ABI of ``baseline``."""
    table = stable_abi()
    found: list[Abi3Symbol] = []
    for member in members:
        for name in sorted(member.python_imports):
            if name.startswith("PyInit_"):
                continue
            added = table.get(name)
            if added is None or added > baseline:
                found.append(Abi3Symbol(member.path, name, added))
    versioned = tuple(
        m.path
        for m in members
        if m.is_extension and _VERSIONED_SUFFIX.search(posixpath.basename(m.path))
    )
    tag = f"cp{baseline[0]}{baseline[1]}-abi3"
    return Abi3Verdict(tag, baseline, tuple(found), versioned)
