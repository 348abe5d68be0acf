"""Package attributes imported on first use (PEP 562), so that importing a package costs only
what its caller touches."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Callable


def lazy_attributes(
    package: str, modules: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: the attribute ``name`` is imported from its
    submodule ``modules[name]`` when first asked for, then kept in ``namespace`` (the
    package's globals) so it is found directly from then on."""

    def attribute(name: str) -> object:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    return attribute
