"""ElfScan: the reads of a wheel's ELF members begun before the audit asks for them (its
biggest member on a thread at once) give what a scan begun by the audit gives, and a wheel the
audit refuses first for its metadata is refused the same way, with nothing left running."""

from __future__ import annotations

import base64
import hashlib
import threading
import zipfile
from pathlib import Path

import pytest

from repairwheel.audit import analyze_wheel
from repairwheel.errors import WheelError
from repairwheel.scan import THREAD_MIN, ElfScan, scan_elf_members
from repairwheel.wheel import WheelArchive

DIST = "demo-1.0.dist-info"
WHEEL = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-linux_x86_64\n"


def host_library(minimum: int) -> bytes:
    """The smallest shared library this process has loaded of at least ``minimum`` bytes."""
    paths = {Path(line.split()[-1]) for line in Path("/proc/self/maps").read_text().splitlines()}
    sizes = {p: p.stat().st_size for p in paths if ".so" in p.name and p.is_file()}
    fitting = sorted((size, str(p)) for p, size in sizes.items() if size >= minimum)
    if not fitting:
        pytest.skip(f"no loaded library of {minimum} bytes")
    return Path(fitting[0][1]).read_bytes()


def write_wheel(path: Path, files: dict[str, bytes], metadata: bytes) -> Path:
    files = {**files, f"{DIST}/METADATA": metadata, f"{DIST}/WHEEL": WHEEL}
    rows = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{name},sha256={digest},{len(data)}")
    rows.append(f"{DIST}/RECORD,,")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{DIST}/RECORD", "\n".join(rows) + "\n")
    return path


@pytest.fixture
def elf_files() -> dict[str, bytes]:
    big = host_library(THREAD_MIN)  # big enough for the scan to use threads
    small = host_library(1)
    return {"demo/libbig.so": big, "demo/lib/libsmall.so": small, "demo/a.py": b"x = 1\n"}


def test_a_started_scan_reads_what_the_audits_own_scan_reads(
    tmp_path: Path, elf_files: dict[str, bytes]
) -> None:
    wheel = write_wheel(tmp_path / "demo-1.0-py3-none-linux_x86_64.whl", elf_files, b"")
    with WheelArchive(wheel) as archive:
        plain = scan_elf_members(archive)
    with WheelArchive(wheel) as archive, ElfScan(archive) as scan:
        started = scan.members()
    assert [m.path for m in started] == ["demo/libbig.so", "demo/lib/libsmall.so"]
    assert started == plain


def test_a_wheel_refused_for_its_metadata_is_refused_so_with_a_scan_started(
    tmp_path: Path, elf_files: dict[str, bytes]
) -> None:
    """The biggest member is being read when the metadata check fails: the error is the
    metadata's, and leaving the scan waits for that read (no thread outlives the archive)."""
    wheel = write_wheel(tmp_path / "demo-1.0-py3-none-linux_x86_64.whl", elf_files, b"Name: x\n")
    with WheelArchive(wheel) as archive, pytest.raises(WheelError) as plain:
        analyze_wheel(archive)
    before = threading.active_count()
    with WheelArchive(wheel) as archive, pytest.raises(WheelError) as started:
        with ElfScan(archive) as scan:
            analyze_wheel(archive, started=scan)
    assert "METADATA has no Version" in str(plain.value)
    assert str(started.value) == str(plain.value)
    assert threading.active_count() == before
