"""The package's public names: each one resolves (most on first use) to its module's object,
and importing the package for a command's sake loads none of the heavy modules."""

from __future__ import annotations

import importlib
import subprocess
import sys
from types import ModuleType

import pytest

import repairwheel
import repairwheel.wheel as repairwheel_wheel

PACKAGES = [repairwheel, repairwheel_wheel]
NAMES = [(package, name) for package in PACKAGES for name in package.__all__]


@pytest.mark.parametrize(("package", "name"), NAMES, ids=[f"{p.__name__}.{n}" for p, n in NAMES])
def test_every_public_name_is_its_modules_object(package: ModuleType, name: str) -> None:
    value = getattr(package, name)
    module = package._LAZY.get(name)
    if module is not None:
        assert value is getattr(importlib.import_module(f"{package.__name__}.{module}"), name)
        assert vars(package)[name] is value  # kept: found directly from then on


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_an_unknown_name_is_an_attribute_error(package: ModuleType) -> None:
    with pytest.raises(AttributeError, match=rf"{package.__name__}' has no attribute 'nothing"):
        package.nothing_here  # noqa: B018


def test_the_package_alone_loads_no_command() -> None:
    code = "import sys, repairwheel; print(sorted(m for m in sys.modules if 'repairwheel.' in m))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for heavy in ("repairwheel.audit", "repairwheel.repair", "repairwheel.check"):
        assert f"'{heavy}'" not in loaded
