"""Build hook: compiles the C ELF core through cffi (out-of-line API mode).

cffi compiles the module for the limited API (``Py_LIMITED_API``: ``_elfcore.abi3.so``), so
one ``cp39-abi3`` wheel serves every CPython from 3.9, the oldest the project supports, on.
A free-threaded interpreter has no stable ABI yet: there the wheel is version-specific.
"""

import sysconfig

from setuptools import setup

abi3 = not sysconfig.get_config_var("Py_GIL_DISABLED")

setup(
    cffi_modules=["csrc/build_elfcore.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp39"}} if abi3 else {},
)
