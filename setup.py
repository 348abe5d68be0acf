"""Build hook: compiles the C ELF core through cffi (out-of-line API mode)."""

from setuptools import setup

setup(cffi_modules=["csrc/build_elfcore.py:ffibuilder"])
