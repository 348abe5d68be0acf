"""Platform policies (manylinux, musllinux, and the unconstrained ``linux``) as data.

The facts come from auditwheel 6.8.2's policy files and live in ``manylinux.json`` (glibc) and
``musllinux.json`` (musl) beside this module; this module only reads them.  Each file is::

    {"schema": 1, "libc": "glibc" | "musl", "source": "<where the facts were taken from>",
     "policies": [
       {"name": "manylinux_2_17",             # PEP 600 / PEP 656 name, without the arch
        "aliases": ["manylinux2014"],         # legacy names of the same policy
        "priority": 80,                       # higher = older libc = more compatible
        "whitelist": ["libc.so.6", ...],      # sonames a wheel may need without grafting
        "blacklist": {"libz.so.1": ["zcalloc", ...]},  # symbols of those the policy forbids
        "symbol_versions": {                  # one entry per supported arch, even if empty
          "x86_64": {"GLIBC": ["2.2.5", ..., "2.17"], "GCC": [...], "LIBATOMIC": [], ...}}},
       ...]}

A policy supports exactly the arches its ``symbol_versions`` lists.  Under an arch, a prefix
that is listed with an empty list allows no version of that prefix, while an absent prefix is
not checked at all (see :meth:`Policy.disallowed_versions`).  Each file ends with the ``linux``
pseudo-policy (priority 0, every arch, no constraints), as auditwheel's do.  musl's libc soname
differs per arch (``libc.musl-x86_64.so.1``, ``libc.musl-x86.so.1``, ...), so a musllinux
whitelist names the one of every arch the policy supports; an ELF of one machine never needs
another machine's libc, so the union decides like auditwheel's per-arch list.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import PolicyError

__all__ = ["ARCHES", "LIBCS", "Policy", "get_policy", "load_policies"]

LIBCS: tuple[str, ...] = ("glibc", "musl")
_FILES = {"glibc": "manylinux.json", "musl": "musllinux.json"}
_VERSIONED_NAME = {
    "glibc": re.compile(r"manylinux_(\d+)_(\d+)"),
    "musl": re.compile(r"musllinux_(\d+)_(\d+)"),
}


@dataclass(frozen=True)
class Policy:
    """One platform policy, for every architecture it supports."""

    name: str
    aliases: tuple[str, ...]
    priority: int
    libc: str
    whitelist: frozenset[str]
    blacklist: Mapping[str, frozenset[str]] = field(hash=False)
    symbol_versions: Mapping[str, Mapping[str, frozenset[str]]] = field(hash=False)

    @property
    def arches(self) -> frozenset[str]:
        return frozenset(self.symbol_versions)

    def tag(self, arch: str) -> str:
        """The platform tag of this policy on ``arch``, e.g. ``manylinux_2_17_x86_64``."""
        return self.tags(arch)[0]

    def tags(self, arch: str) -> tuple[str, ...]:
        """The name's tag, then the aliases' (what a repaired wheel's file name carries)."""
        self._require_arch(arch)
        return tuple(f"{name}_{arch}" for name in (self.name, *self.aliases))

    @property
    def glibc_version(self) -> tuple[int, int] | None:
        """The glibc version the name promises (``manylinux_2_17``: (2, 17)), None for musl and
        ``linux``: the oldest glibc a wheel of this policy runs on (public API)."""
        return self._libc_version("glibc")

    @property
    def musl_version(self) -> tuple[int, int] | None:
        """The musl version the name promises (``musllinux_1_2``: (1, 2)), None otherwise."""
        return self._libc_version("musl")

    def disallowed_versions(self, arch: str, versions: Iterable[str]) -> tuple[str, ...]:
        """The version names (``GLIBC_2.17``, ``GCC_7.0.0``) this policy forbids on ``arch``.

        Mirrors auditwheel's verdict: a name splits at its first ``_`` into a prefix and a
        version (``GLIBCXX_LDBL_3.4`` is prefix ``GLIBCXX``, version ``LDBL_3.4``).  When the
        policy lists the prefix for ``arch``, the version must be in that list, so
        ``GLIBC_PRIVATE`` is always forbidden and a listed-but-empty prefix forbids everything
        (``LIBATOMIC_1.0`` before manylinux_2_24 on x86_64).  Prefixes it does not list are not
        checked (``LIBFFI_BASE_7.0``, ``GFORTRAN_8``, ``OPENSSL_3.0.0``); musllinux and linux
        list none.  Only the name counts, not the library that defines it, so callers pass the
        version needs of every ELF file and every grafted library, leaving out those on the
        dynamic loader (``ld-linux*``, ``ld64.so.1``, ``ld64.so.2``) as auditwheel does.
        Returns the forbidden names, sorted and without duplicates.
        """
        self._require_arch(arch)
        allowed = self.symbol_versions[arch]
        bad: set[str] = set()
        for version in versions:
            prefix, _, rest = version.partition("_")
            if prefix in allowed and rest not in allowed[prefix]:
                bad.add(version)
        return tuple(sorted(bad))

    def _require_arch(self, arch: str) -> None:
        if arch not in self.symbol_versions:
            known = ", ".join(sorted(self.symbol_versions))
            raise PolicyError(f"{self.name} has no {arch} variant (it covers {known})")

    def _libc_version(self, libc: str) -> tuple[int, int] | None:
        match = _VERSIONED_NAME[libc].fullmatch(self.name)
        if match is None:
            return None
        return int(match.group(1)), int(match.group(2))


def _frozen_mapping(values: Mapping[str, Iterable[str]]) -> Mapping[str, frozenset[str]]:
    return MappingProxyType({key: frozenset(items) for key, items in values.items()})


def _policy(libc: str, raw: Mapping[str, Any]) -> Policy:
    return Policy(
        name=raw["name"],
        aliases=tuple(raw["aliases"]),
        priority=raw["priority"],
        libc=libc,
        whitelist=frozenset(raw["whitelist"]),
        blacklist=_frozen_mapping(raw["blacklist"]),
        symbol_versions=MappingProxyType(
            {arch: _frozen_mapping(prefixes) for arch, prefixes in raw["symbol_versions"].items()}
        ),
    )


@functools.cache
def _family(libc: str) -> tuple[Policy, ...]:
    text = Path(__file__).with_name(_FILES[libc]).read_text(encoding="utf-8")
    return tuple(_policy(libc, raw) for raw in json.loads(text)["policies"])


def load_policies(libc: str | None = None, arch: str | None = None) -> tuple[Policy, ...]:
    """The policies of ``libc`` (default both) that support ``arch`` (default any).

    Sorted by priority, most compatible first; glibc's come before musl's at equal priority,
    so without ``libc`` the result holds two ``linux`` policies, glibc's first.
    """
    if libc is not None and libc not in _FILES:
        raise PolicyError(f"unknown libc {libc!r}; expected one of {', '.join(LIBCS)}")
    policies = [p for family in LIBCS if libc in (None, family) for p in _family(family)]
    if arch is not None:
        if arch not in ARCHES:
            raise PolicyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHES))}")
        policies = [p for p in policies if arch in p.arches]
    return tuple(sorted(policies, key=lambda p: -p.priority))


def get_policy(name: str, arch: str | None = None, *, libc: str | None = None) -> Policy:
    """The policy a name, alias or platform tag denotes (``manylinux2014_x86_64``).

    An arch in the name and ``arch`` must agree, and the policy must support it.  ``linux``
    exists in both libc families; without ``libc`` glibc's is returned.
    """
    policies = load_policies(libc)
    for policy in policies:
        for known in (policy.name, *policy.aliases):
            if name == known:
                named_arch = None
            elif name.startswith(f"{known}_") and name[len(known) + 1 :] in ARCHES:
                named_arch = name[len(known) + 1 :]
            else:
                continue
            if named_arch is not None and arch is not None and named_arch != arch:
                raise PolicyError(f"policy {name!r} is for {named_arch}, not {arch}")
            wanted = named_arch or arch
            if wanted is not None:
                policy._require_arch(wanted)
            return policy
    raise PolicyError(_unknown_name_message(name, arch, policies))


def _unknown_name_message(name: str, arch: str | None, policies: Iterable[Policy]) -> str:
    names = [n for p in policies for n in (p.name, *p.aliases)]
    tagged = [t for p in policies for a in sorted(p.arches) if arch in (None, a) for t in p.tags(a)]
    close = difflib.get_close_matches(name, dict.fromkeys(names + tagged), n=5)
    if close:
        return f"unknown platform policy {name!r}; did you mean {', '.join(close)}?"
    return f"unknown platform policy {name!r}; known: {', '.join(dict.fromkeys(names))}"


ARCHES: frozenset[str] = frozenset().union(*(p.arches for lc in LIBCS for p in _family(lc)))
