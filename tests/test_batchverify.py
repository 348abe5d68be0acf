"""Checking a wheel's small members against RECORD many to one call of the C core
(``csrc/verify.c``, ``wheel/batchverify.py``): the same digests, findings and errors as one
member at a time, and the batch path is the one taken."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import zipfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from repairwheel.errors import WheelError
from repairwheel.wheel import WheelArchive, archive, inflate
from repairwheel.wheel.records import RecordMismatch

DIST = "demo-1.0.dist-info"
WHEEL = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-any\n"


def _digest(data: bytes, algorithm: str = "sha256") -> str:
    raw = hashlib.new(algorithm, data).digest()
    return f"{algorithm}=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _wheel(path: Path, files: dict[str, bytes], rows: dict[str, str] | None = None) -> Path:
    """A wheel of ``files`` whose RECORD rows are right unless ``rows`` gives one."""
    files = {**files, f"{DIST}/METADATA": b"Name: demo\nVersion: 1.0\n", f"{DIST}/WHEEL": WHEEL}
    lines = []
    for name, data in files.items():
        lines.append((rows or {}).get(name, f"{name},{_digest(data)},{len(data)}"))
    lines.append(f"{DIST}/RECORD,,")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{DIST}/RECORD", "\n".join(lines) + "\n")
    return path


def _small_files(n: int) -> dict[str, bytes]:
    return {f"demo/m{i}.py": f"value = {i}\n".encode() * (i % 7 + 1) for i in range(n)}


def _needs_c_core() -> None:
    if inflate.inflater() is None or archive.verify_members(-1, []) is None:
        pytest.skip("no C inflate or OpenSSL here: every member takes the one-call path")


def test_small_members_are_checked_many_to_a_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 small members take one call; a member with a sha384 row and one over the batch
    limit take the one-member path; every digest is hashlib's and RECORD agrees."""
    _needs_c_core()
    files = _small_files(300)
    files["demo/other.py"] = b"hashed with sha384\n"
    files["demo/big.bin"] = os.urandom(archive._BATCH_MEMBER + 1)
    rows = {"demo/other.py": f"demo/other.py,{_digest(files['demo/other.py'], 'sha384')},19"}
    wheel = _wheel(tmp_path / "demo-1.0-py3-none-any.whl", files, rows)
    calls: list[int] = []
    alone: list[str] = []
    batch, one = archive.verify_members, WheelArchive._verify

    def counted_batch(fd: int, jobs: list[object]) -> object:
        calls.append(len(jobs))
        return batch(fd, jobs)  # type: ignore[arg-type]

    def counted_one(self: WheelArchive, name: str, refuse: bool | None) -> None:
        alone.append(name)
        one(self, name, refuse)

    monkeypatch.setattr(archive, "verify_members", counted_batch)
    monkeypatch.setattr(WheelArchive, "_verify", counted_one)
    with WheelArchive(wheel, hash_reads=True) as wheel_archive:
        with wheel_archive.checking_others() as checked:
            checked()
        assert sorted(alone) == ["demo/big.bin", "demo/other.py"]
        assert calls == [300, 2]  # before other.py; after big.bin, METADATA and WHEEL
        for name, data in files.items():
            if name != "demo/other.py":
                assert str(wheel_archive.digest(name)) == _digest(data), name
        assert wheel_archive.verify_record() == []
    assert calls == [300, 2]  # verify_record inflated nothing again


def test_record_findings_are_the_same_as_one_member_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong hash, a wrong size and a row with no hash give the same findings batched as
    one member at a time (where the batch call is made unavailable)."""
    _needs_c_core()
    files = _small_files(40)
    rows = {
        "demo/m3.py": f"demo/m3.py,{_digest(b'other bytes')},{len(files['demo/m3.py'])}",
        "demo/m5.py": f"demo/m5.py,{_digest(files['demo/m5.py'])},999",
        "demo/m7.py": "demo/m7.py,,",
    }
    wheel = _wheel(tmp_path / "demo-1.0-py3-none-any.whl", files, rows)

    def findings() -> list[RecordMismatch]:
        with WheelArchive(wheel, hash_reads=True, refuse_record_mismatch=False) as a:
            with a.checking_others() as checked:
                checked()
            return a.verify_record()

    batched = findings()
    monkeypatch.setattr(archive, "verify_members", lambda fd, jobs: None)
    assert batched == findings()
    assert [f.path for f in batched][:2] == ["demo/m3.py", "demo/m5.py"]


class _Counting(ThreadPoolExecutor):
    """A pool that records the members of each part it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.parts: list[list[str]] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.parts.append([member.name for member in args[0]])
        return super().submit(fn, *args, **kwargs)


def test_on_the_audits_pool_the_others_are_checked_in_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the audit's pool, the members that are not ELF are checked in parts of about
    _OTHERS_PART bytes, all of them once, in archive order, with the findings and digests a
    thread of its own gives; a part that fails makes the wait raise what a lone check says."""
    files = _small_files(40)
    rows = {"demo/m3.py": f"demo/m3.py,{_digest(b'other bytes')},{len(files['demo/m3.py'])}"}
    wheel = _wheel(tmp_path / "demo-1.0-py3-none-any.whl", files, rows)
    monkeypatch.setattr(archive, "_OTHERS_PART", 100)

    def checked(pool: ThreadPoolExecutor | None) -> tuple[object, ...]:
        with WheelArchive(wheel, hash_reads=True, refuse_record_mismatch=False) as a:
            with a.checking_others(pool) as wait:
                wait()
            names = [m.name for m in a.members if m.name != "demo/m3.py"]
            return a.verify_record(contents=False), {n: str(a.digest(n)) for n in names}

    with _Counting() as pool:
        shared = checked(pool)
    assert shared == checked(None)
    assert shared[0] and shared[0][0].path == "demo/m3.py"  # type: ignore[index]
    order = zipfile.ZipFile(wheel).namelist()
    assert len(pool.parts) > 3 and [n for part in pool.parts for n in part] == order

    with _Counting() as pool, WheelArchive(wheel, hash_reads=True) as a:
        with pytest.raises(WheelError) as caught, a.checking_others(pool) as wait:
            wait()
    assert "demo/m3.py: hash differs from RECORD" in str(caught.value)


def _patch_central(path: Path, name: str, field: int, value: int) -> None:
    """Rewrite a 4-byte field (CRC at 16, uncompressed size at 24) of ``name``'s central
    directory entry."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while data[at + 46 : at + 46 + struct.unpack_from("<H", data, at + 28)[0]] != name.encode():
        at = data.find(b"PK\x01\x02", at + 4)
    struct.pack_into("<I", data, at + field, value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["crc", "size"])
def test_a_batched_member_that_fails_says_what_a_lone_check_says(
    tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_c_core()
    files = _small_files(30)
    wheel = _wheel(tmp_path / "demo-1.0-py3-none-any.whl", files)
    data = files["demo/m12.py"]
    if damage == "crc":
        _patch_central(wheel, "demo/m12.py", 16, zlib.crc32(data) ^ 1)
    else:
        _patch_central(wheel, "demo/m12.py", 24, len(data) - 1)

    def error() -> str:
        with WheelArchive(wheel, hash_reads=True) as a:
            with pytest.raises(WheelError) as caught, a.checking_others() as checked:
                checked()
        return str(caught.value)

    batched = error()
    monkeypatch.setattr(archive, "verify_members", lambda fd, jobs: None)
    assert batched == error()
    expected = "fails its CRC check" if damage == "crc" else "inflates beyond its declared size"
    assert "demo/m12.py" in batched and expected in batched
