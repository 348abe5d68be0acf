"""cffi build script for the private ``repairwheel._elfcore`` module (API mode).

The declarations are read from the marked regions of ``csrc/elfcore.h`` (the reader),
``csrc/elfpatch.h`` (the patcher), ``csrc/inflate.h`` (member inflate), ``csrc/deflate.h``
(batch deflate) and ``csrc/verify.h`` (batch inflate and hash), so that the
headers are their only copy. It lives beside the C sources, outside the package: it builds
the module from an sdist or a checkout and is never installed.
"""

from __future__ import annotations

import os
import pathlib
import re

from cffi import FFI

CSRC = pathlib.Path(__file__).resolve().parent


HEADERS = ("elfcore.h", "elfpatch.h", "inflate.h", "deflate.h", "verify.h")


def _cdef() -> str:
    parts = []
    for name in HEADERS:
        text = (CSRC / name).read_text()
        match = re.search(r"/\* BEGIN CDEF \*/(.*)/\* END CDEF \*/", text, re.S)
        if match is None:
            raise RuntimeError(f"csrc/{name} lacks its BEGIN/END CDEF markers")
        parts.append(match.group(1))
    return "\n".join(parts)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "repairwheel._elfcore",
    "".join(f'#include "{name}"\n' for name in HEADERS),
    # setuptools refuses absolute source paths; the build runs from the project root.
    sources=[
        os.path.relpath(CSRC / name)
        for name in ("elfcore.c", "elfpatch.c", "inflate.c", "deflate.c", "verify.c")
    ],
    include_dirs=[os.path.relpath(CSRC)],
    extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-pthread"],
    extra_link_args=["-pthread"],  # inflate.c hashes and writes big members on a second thread
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
