"""Platform policies (manylinux, musllinux, Android, and the unconstrained ``linux``) as data.

The facts come from auditwheel 6.8.2's policy files and live in ``manylinux.json`` (glibc),
``musllinux.json`` (musl) and ``android.json`` (Android's bionic) beside this module; this
module only reads them.  Each file is::

    {"schema": 1, "libc": "glibc" | "musl" | "android",
     "source": "<where the facts were taken from>",
     "tag_arches": {"aarch64": "arm64_v8a"},  # optional: the arch as the family's tags spell it
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

Android (PEP 738) names an API level, not a libc version: ``android_21`` … ``android_27`` list
the system libraries (``libc.so``, ``liblog.so``, …) of the levels at which that set changed,
with no symbol-version limits, for x86_64 and aarch64 (tagged ``arm64_v8a``).  A wheel keeps its
own tag ``android_<N>_<arch>``; :func:`android_policy` gives the policy that decides it: the
highest level up to N, under the wheel's own name.  ``LIBCS`` lists the Linux families only, so
:func:`load_policies` without a libc never mixes Android in.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import PolicyError

__all__ = [
    "ANDROID",
    "ANDROID_TAG_ARCHES",
    "ARCHES",
    "LIBCS",
    "MIN_GRAFT_API_LEVEL",
    "Policy",
    "android_policy",
    "android_system_level",
    "get_policy",
    "load_policies",
]

ANDROID = "android"
LIBCS: tuple[str, ...] = ("glibc", "musl")  # the Linux families
FAMILIES: tuple[str, ...] = (*LIBCS, ANDROID)
_FILES = {"glibc": "manylinux.json", "musl": "musllinux.json", ANDROID: "android.json"}
_VERSIONED_NAME = {
    "glibc": re.compile(r"manylinux_(\d+)_(\d+)"),
    "musl": re.compile(r"musllinux_(\d+)_(\d+)"),
}
_API_LEVEL = re.compile(r"android_(\d+)")
# bionic reads DT_RUNPATH from API level 24 on; a graft needs it to be found.
MIN_GRAFT_API_LEVEL = 24


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
    # arch -> how this family's tags spell it (Android: aarch64 is arm64_v8a); others as is
    tag_arches: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def arches(self) -> frozenset[str]:
        return frozenset(self.symbol_versions)

    def tag(self, arch: str) -> str:
        """The platform tag of this policy on ``arch``, e.g. ``manylinux_2_17_x86_64``."""
        return self.tags(arch)[0]

    def tags(self, arch: str) -> tuple[str, ...]:
        """The name's tag, then the aliases' (what a repaired wheel's file name carries)."""
        self._require_arch(arch)
        spelled = self.tag_arches.get(arch, arch)
        return tuple(f"{name}_{spelled}" for name in (self.name, *self.aliases))

    @property
    def api_level(self) -> int | None:
        """The Android API level the name promises (``android_24``: 24), None otherwise."""
        match = _API_LEVEL.fullmatch(self.name) if self.libc == ANDROID else None
        return int(match.group(1)) if match else None

    @property
    def keeps_libpython(self) -> bool:
        """Whether a DT_NEEDED on libpython is allowed as it is (Android: the app's
        interpreter is a shared library every extension links), not dropped by a repair."""
        return self.libc == ANDROID

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


def _policy(libc: str, raw: Mapping[str, Any], tag_arches: Mapping[str, str]) -> Policy:
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
        # ``linux`` keeps the plain arch in every family (auditwheel: linux_aarch64)
        tag_arches=MappingProxyType(dict(tag_arches) if raw["priority"] > 0 else {}),
    )


@functools.cache
def _family(libc: str) -> tuple[Policy, ...]:
    text = Path(__file__).with_name(_FILES[libc]).read_text(encoding="utf-8")
    data = json.loads(text)
    return tuple(_policy(libc, raw, data.get("tag_arches", {})) for raw in data["policies"])


def load_policies(libc: str | None = None, arch: str | None = None) -> tuple[Policy, ...]:
    """The policies of ``libc`` (default both Linux families) that support ``arch`` (default
    any).

    Sorted by priority, most compatible first; glibc's come before musl's at equal priority,
    so without ``libc`` the result holds two ``linux`` policies, glibc's first.  Android's
    come only when asked for by name (``libc="android"``).
    """
    if libc is not None and libc not in _FILES:
        raise PolicyError(f"unknown libc {libc!r}; expected one of {', '.join(FAMILIES)}")
    families = LIBCS if libc is None else (libc,)
    policies = [p for family in families for p in _family(family)]
    if arch is not None:
        if arch not in ARCHES:
            raise PolicyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHES))}")
        policies = [p for p in policies if arch in p.arches]
    return tuple(sorted(policies, key=lambda p: -p.priority))


def get_policy(name: str, arch: str | None = None, *, libc: str | None = None) -> Policy:
    """The policy a name, alias or platform tag denotes (``manylinux2014_x86_64``).

    An arch in the name and ``arch`` must agree, and the policy must support it.  ``linux``
    exists in every family; without ``libc`` glibc's is returned.  Android's names are found
    too (``android_24_arm64_v8a``), after the Linux families'.
    """
    policies = load_policies(libc)
    if libc is None:
        policies += load_policies(ANDROID)
    for policy in policies:
        spelled = {policy.tag_arches.get(a, a): a for a in ARCHES | policy.arches}
        for known in (policy.name, *policy.aliases):
            if name == known:
                named_arch = None
            elif name.startswith(f"{known}_") and name[len(known) + 1 :] in spelled:
                named_arch = spelled[name[len(known) + 1 :]]
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


def android_policy(level: int, arch: str) -> Policy | None:
    """The policy deciding an ``android_<level>`` wheel on ``arch``: the highest level up to
    ``level`` (the data lists only the levels at which the system libraries changed), named
    ``android_<level>`` so its tag is the wheel's own; None below the lowest level (21, the
    first PEP 738 supports) or for an arch no Android policy covers."""
    fitting = [
        p
        for p in load_policies(ANDROID, arch if arch in ARCHES else None)
        if p.api_level is not None and p.api_level <= level and arch in p.arches
    ]
    if not fitting:
        return None
    best = max(fitting, key=lambda p: p.api_level or 0)
    return best if best.api_level == level else replace(best, name=f"android_{level}")


def android_system_level(soname: str) -> int | None:
    """The first Android API level whose system libraries include ``soname``, or None."""
    levels = [p.api_level for p in _family(ANDROID) if soname in p.whitelist and p.api_level]
    return min(levels) if levels else None


ARCHES: frozenset[str] = frozenset().union(*(p.arches for lc in LIBCS for p in _family(lc)))
# How Android tags spell an arch -> the arch (android_24_arm64_v8a is aarch64).
ANDROID_TAG_ARCHES: Mapping[str, str] = MappingProxyType(
    {spelled: arch for p in _family(ANDROID) for arch, spelled in p.tag_arches.items()}
)
