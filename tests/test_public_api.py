"""The package's public names: each one resolves (most on first use) to its module's object,
and importing the package for a command's sake loads none of the heavy modules."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import repairwheel


@pytest.mark.parametrize("name", repairwheel.__all__)
def test_every_public_name_is_its_modules_object(name: str) -> None:
    value = getattr(repairwheel, name)
    module = repairwheel._LAZY.get(name)
    if module is not None:
        assert value is getattr(importlib.import_module(f"repairwheel.{module}"), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        repairwheel.nothing_here  # noqa: B018


def test_the_package_alone_loads_no_command() -> None:
    code = "import sys, repairwheel; print(sorted(m for m in sys.modules if 'repairwheel.' in m))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for heavy in ("repairwheel.audit", "repairwheel.repair", "repairwheel.check"):
        assert f"'{heavy}'" not in loaded
