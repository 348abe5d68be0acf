"""A CycloneDX SBOM of the host libraries grafted into a wheel, naming their distro packages.

Grafting copies code from the build host into the wheel, where vulnerability scanners no longer
see it. The SBOM written to ``<dist-info>/sboms/repairwheel.cdx.json`` (as auditwheel ≥ 6.5 does
with ``auditwheel.cdx.json``) tells them what was copied and which distro package it came from.

How the document models a grafted library (CycloneDX 1.5):

- one ``library`` component per grafted file: ``name`` is its original SONAME, ``hashes`` the
  SHA-256 of the host file before patching (the digest whose first 8 hex digits name the copy);
- when the owning package is known, the component's ``purl`` and ``version`` are that package's.
  ``purl`` is the identity the spec tells scanners to match on; the copy holds the package's code
  unchanged (only its SONAME, DT_NEEDED and RPATH are rewritten), so it carries the package's
  vulnerabilities. A separate package component would have to be linked back through
  ``pedigree.ancestors``, which scanners do not read;
- the wheel is ``metadata.component`` only (bom-refs must be unique across the whole BOM, so it is
  not repeated in ``components``); the dependency graph says it depends on every grafted library.
  Grafted libraries get no graph entry of their own: their mutual needs are not known here, and
  the spec reads an empty ``dependsOn`` as "depends on nothing";
- a distribution the wheel links libraries from (``--provided-by``) is a dependency, not a
  component: its code is not in the wheel. The wheel's ``dependsOn`` names it by its PyPI purl
  (``pkg:pypi/<name>@<installed version>``), a reference to that distribution's own BOM;
- no ``serialNumber``: the spec wants one that differs on every generation, which would break
  reproducible output. ``metadata.timestamp`` appears only with ``SOURCE_DATE_EPOCH``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from packaging.utils import canonicalize_name

from ._version import __version__
from .provenance import Provider, find_providers, purl_qualifiers, purl_quote
from .providers import ProvidedLibrary
from .wheel import source_date_epoch

SBOM_PATH = "sboms/repairwheel.cdx.json"
"""Where the document goes, relative to the wheel's ``.dist-info`` directory."""

SPEC_VERSION = "1.5"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class GraftedLib:
    """One host library copied into the wheel, as the SBOM describes it."""

    soname: str
    source: str
    """Path of the host file that was copied."""
    sha256: str
    """Hex SHA-256 of the host file before patching."""
    new_name: str
    """File name (and new SONAME) of the copy inside the wheel."""
    provider: Provider | None


class Graft(Protocol):
    """What the SBOM needs of a graft (:class:`repairwheel.plan.Graft` has it)."""

    @property
    def soname(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def new_soname(self) -> str: ...


def graft_sbom(
    wheel_name: str,
    version: str,
    output_filename: str,
    grafts: Sequence[Graft],
    provided: Sequence[ProvidedLibrary] = (),
    owners: Mapping[str, Provider | None] | None = None,
) -> bytes:
    """The SBOM file of a repaired wheel: each graft with the distro package it came from
    (``owners``, what :func:`find_providers` says of the grafts' sources, asked here when not
    given), and the distributions it links libraries from."""
    providers = find_providers([g.source for g in grafts]) if owners is None else owners
    grafted = [
        GraftedLib(g.soname, g.source, g.sha256, g.new_soname, providers.get(g.source))
        for g in grafts
    ]
    return sbom_bytes(build_sbom(wheel_name, version, output_filename, grafted, provided))


def build_sbom(
    wheel_name: str,
    version: str,
    output_filename: str,
    grafted: Sequence[GraftedLib],
    provided: Sequence[ProvidedLibrary] = (),
) -> dict[str, Any]:
    """The CycloneDX document for a repaired wheel; the same input always gives the same dict."""
    wheel_ref = (
        f"pkg:pypi/{purl_quote(canonicalize_name(wheel_name))}@{purl_quote(version)}"
        + purl_qualifiers({"file_name": output_filename})
    )
    components = sorted((_component(lib) for lib in grafted), key=lambda c: c["bom-ref"])
    refs = [component["bom-ref"] for component in components]
    if len(set(refs)) != len(refs):
        raise ValueError(f"grafted libraries share a new name: {sorted(refs)}")
    metadata: dict[str, Any] = {
        "component": {
            "type": "library",
            "bom-ref": wheel_ref,
            "name": wheel_name,
            "version": version,
            "purl": wheel_ref,
        },
        "tools": {
            "components": [{"type": "application", "name": "repairwheel", "version": __version__}]
        },
    }
    timestamp = _source_date_timestamp()
    if timestamp is not None:
        metadata["timestamp"] = timestamp
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": [{"ref": wheel_ref, "dependsOn": refs + _distribution_refs(provided)}],
    }


def sbom_bytes(doc: Mapping[str, Any]) -> bytes:
    """Compact JSON with sorted keys and a final newline: byte-identical for equal documents."""
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


def _distribution_refs(provided: Sequence[ProvidedLibrary]) -> list[str]:
    """The PyPI purl of each distribution the wheel links from, once, sorted."""
    purls = {
        f"pkg:pypi/{purl_quote(canonicalize_name(p.distribution))}@{purl_quote(p.version)}"
        for p in provided
    }
    return sorted(purls)


def _component(lib: GraftedLib) -> dict[str, Any]:
    if not _SHA256.match(lib.sha256):
        raise ValueError(f"not a hex SHA-256 for {lib.soname}: {lib.sha256!r}")
    component: dict[str, Any] = {
        "type": "library",
        "bom-ref": lib.new_name,
        "name": lib.soname,
        "hashes": [{"alg": "SHA-256", "content": lib.sha256.lower()}],
        "properties": [
            {"name": "repairwheel:grafted_as", "value": lib.new_name},
            {"name": "repairwheel:source_path", "value": lib.source},
        ],
    }
    if lib.provider is not None:
        component["version"] = lib.provider.version
        component["purl"] = lib.provider.purl
    return component


def _source_date_timestamp() -> str | None:
    """``metadata.timestamp`` from ``SOURCE_DATE_EPOCH``; a bad value is a UsageError."""
    epoch = source_date_epoch()
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
