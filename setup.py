"""Build hook: compiles the C ELF core through cffi (out-of-line API mode)."""

from setuptools import setup

setup(cffi_modules=["repairwheel/_build_elfcore.py:ffibuilder"])
