"""Real wheels from PyPI, pinned, for tests that need binaries built by others.

Each ``PypiWheel`` names one exact file (project, version, file name, sha256)
and the pip options that select it from any machine: ``pip download`` is told
the target platform, Python version and ABI, so an x86_64 host can fetch an
s390x wheel.  ``fetch`` keeps downloads in a cache directory
(``$REPAIRWHEEL_WHEEL_CACHE``, default ``~/.cache/repairwheel/wheels``) and
reuses them.  When a wheel cannot be had, the test is skipped locally but
fails under CI (``CI`` set), where these tests must really run.

The set covers the architectures and libcs a repair tool meets: x86_64,
aarch64 and i686 manylinux, big-endian s390x, and musllinux; about 70 MB.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ELF_MAGIC = b"\x7fELF"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Test wheels from the auditwheel project (MIT; their LICENSE is beside them).
BUNDLED_DIR = Path(__file__).resolve().parent / "data" / "auditwheel-bundled"


@dataclass(frozen=True)
class PypiWheel:
    """One pinned wheel file and the ``pip download`` options that select it."""

    project: str
    version: str
    filename: str
    sha256: str
    platform: str
    python_version: str
    abi: str
    arch: str
    implementation: str = "cp"

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"

    def pip_args(self) -> list[str]:
        """Arguments of ``pip download`` that select exactly this file."""
        return [
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            self.platform,
            "--python-version",
            self.python_version,
            "--implementation",
            self.implementation,
            "--abi",
            self.abi,
            self.requirement,
        ]


NUMPY_X86_64 = PypiWheel(
    project="numpy",
    version="2.2.6",
    filename="numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="ba10f8411898fc418a521833e014a77d3ca01c15b0c6cdcce6a0d2897e6dbbdf",
    platform="manylinux_2_17_x86_64",
    python_version="3.11",
    abi="cp311",
    arch="x86_64",
)
NUMPY_AARCH64 = PypiWheel(
    project="numpy",
    version="2.2.6",
    filename="numpy-2.2.6-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    sha256="b64d8d4d17135e00c8e346e0a738deb17e754230d7e0810ac5012750bbd85a5a",
    platform="manylinux_2_17_aarch64",
    python_version="3.11",
    abi="cp311",
    arch="aarch64",
)
NUMPY_MUSL_X86_64 = PypiWheel(
    project="numpy",
    version="2.2.6",
    filename="numpy-2.2.6-cp311-cp311-musllinux_1_2_x86_64.whl",
    sha256="9551a499bf125c1d4f9e250377c1ee2eddd02e01eac6644c080162c0c51778ab",
    platform="musllinux_1_2_x86_64",
    python_version="3.11",
    abi="cp311",
    arch="x86_64",
)
NUMPY_I686 = PypiWheel(
    project="numpy",
    version="1.21.6",
    filename="numpy-1.21.6-cp39-cp39-manylinux_2_12_i686.manylinux2010_i686.whl",
    sha256="1dbe1c91269f880e364526649a52eff93ac30035507ae980d2fed33aaee633ac",
    platform="manylinux_2_12_i686",
    python_version="3.9",
    abi="cp39",
    arch="i686",
)
LXML_S390X = PypiWheel(
    project="lxml",
    version="5.3.0",
    filename="lxml-5.3.0-cp311-cp311-manylinux_2_17_s390x.manylinux2014_s390x.whl",
    sha256="168f2dfcfdedf611eb285efac1516c8454c8c99caf271dccda8943576b67552e",
    platform="manylinux_2_17_s390x",
    python_version="3.11",
    abi="cp311",
    arch="s390x",
)

PILLOW_X86_64 = PypiWheel(
    project="pillow",
    version="11.2.1",
    filename="pillow-11.2.1-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256="8f4f3724c068be008c08257207210c138d5f3731af6c155a81c2b09a9eb3a788",
    platform="manylinux_2_28_x86_64",
    python_version="3.11",
    abi="cp311",
    arch="x86_64",
)
PILLOW_MUSL_AARCH64 = PypiWheel(
    project="pillow",
    version="11.2.1",
    filename="pillow-11.2.1-cp311-cp311-musllinux_1_2_aarch64.whl",
    sha256="a0a6709b47019dff32e678bc12c63008311b82b9327613f534e496dacaefb71e",
    platform="musllinux_1_2_aarch64",
    python_version="3.11",
    abi="cp311",
    arch="aarch64",
)
PYDANTIC_CORE_ARMV7L = PypiWheel(
    project="pydantic-core",
    version="2.33.2",
    filename="pydantic_core-2.33.2-cp311-cp311-manylinux_2_17_armv7l.manylinux2014_armv7l.whl",
    sha256="a144d4f717285c6d9234a66778059f33a89096dfb9b39117663fd8413d582dcc",
    platform="manylinux_2_17_armv7l",
    python_version="3.11",
    abi="cp311",
    arch="armv7l",
)
OPENCV_HEADLESS_X86_64 = PypiWheel(
    project="opencv-python-headless",
    version="4.10.0.84",
    filename=(
        "opencv_python_headless-4.10.0.84-cp37-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    ),
    sha256="377d08a7e48a1405b5e84afcbe4798464ce7ee17081c1c23619c8b398ff18295",
    platform="manylinux_2_17_x86_64",
    python_version="3.11",
    abi="abi3",
    arch="x86_64",
)
PYARROW_X86_64 = PypiWheel(
    project="pyarrow",
    version="20.0.0",
    filename="pyarrow-20.0.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256="a6ad3e7758ecf559900261a4df985662df54fb7fdb55e8e3b3aa99b23d526b62",
    platform="manylinux_2_28_x86_64",
    python_version="3.11",
    abi="cp311",
    arch="x86_64",
)

PINNED: tuple[PypiWheel, ...] = (
    NUMPY_X86_64,
    NUMPY_AARCH64,
    NUMPY_MUSL_X86_64,
    NUMPY_I686,
    LXML_S390X,
)

# The audit conformance tests also use these; kept out of PINNED because reading every
# symbol of opencv's and pyarrow's libraries with pyelftools would take minutes (~210 MB).
AUDIT_PINNED: tuple[PypiWheel, ...] = (
    *PINNED,
    PILLOW_X86_64,
    PILLOW_MUSL_AARCH64,
    PYDANTIC_CORE_ARMV7L,
    OPENCV_HEADLESS_X86_64,
    PYARROW_X86_64,
)


def bundled_wheels() -> list[Path]:
    """The wheels of auditwheel's test suite kept in ``tests/data/auditwheel-bundled/``, sorted."""
    return sorted(BUNDLED_DIR.rglob("*.whl"))


def cache_dir() -> Path:
    """Where downloaded wheels are kept between runs."""
    configured = os.environ.get("REPAIRWHEEL_WHEEL_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "repairwheel" / "wheels"


def fetch(wheel: PypiWheel) -> Path:
    """The path of ``wheel`` in the cache, downloading it with pip on first use.

    Skips the calling test when the wheel cannot be had, or fails it under CI.
    """
    target = cache_dir() / wheel.filename
    if target.is_file() and _sha256(target) == wheel.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", *wheel.pip_args(), "--dest", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = Path(tmp) / wheel.filename
        if proc.returncode != 0 or not got.is_file():
            unavailable(f"pip could not download {wheel.filename}: {proc.stderr.strip()[-500:]}")
        digest = _sha256(got)
        if digest != wheel.sha256:
            pytest.fail(f"{wheel.filename}: sha256 {digest}, pinned {wheel.sha256}")
        shutil.move(str(got), target)
    return target


def elf_members(wheel_path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, contents) of every ELF file in a wheel, in archive order."""
    with zipfile.ZipFile(wheel_path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            with archive.open(info) as member:
                if member.read(4) != ELF_MAGIC:
                    continue
            yield info.filename, archive.read(info)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unavailable(message: str) -> None:
    """Skip the calling test, or fail it under CI where every test must run."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
