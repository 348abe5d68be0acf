"""cffi build script for the private ``repairwheel._elfcore`` module (API mode).

The declarations are read from the marked region of ``csrc/elfcore.h`` so that
the header is their only copy. It lives beside the C sources, outside the package: it
builds the module from an sdist or a checkout and is never installed.
"""

from __future__ import annotations

import os
import pathlib
import re

from cffi import FFI

CSRC = pathlib.Path(__file__).resolve().parent


def _cdef() -> str:
    header = (CSRC / "elfcore.h").read_text()
    match = re.search(r"/\* BEGIN CDEF \*/(.*)/\* END CDEF \*/", header, re.S)
    if match is None:
        raise RuntimeError("csrc/elfcore.h lacks its BEGIN/END CDEF markers")
    return match.group(1)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "repairwheel._elfcore",
    '#include "elfcore.h"',
    # setuptools refuses absolute source paths; the build runs from the project root.
    sources=[os.path.relpath(CSRC / "elfcore.c")],
    include_dirs=[os.path.relpath(CSRC)],
    extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
