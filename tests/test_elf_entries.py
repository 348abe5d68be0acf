"""Dynamic entries the way loaders read them: every DT_RPATH/DT_RUNPATH kept apart, the
dynamic table found at p_vaddr, a lying DT_HASH passed over, out-of-memory reported.

Crafted files come from ``elf_craft``; pyelftools and the host's ld.so are the oracles.
Inputs that crashed the core once are parsed in a child process, so a fault fails the
test instead of killing pytest.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from elf_craft import (
    BASE,
    DT_NEEDED,
    DT_RPATH,
    DT_RUNPATH,
    DT_SONAME,
    DT_STRSZ,
    DT_STRTAB,
    ElfBuilder,
)
from elf_oracle import core_facts, diff_facts, oracle_facts
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from test_elf_fixtures import strip_section_headers

from repairwheel import elf as elf_module
from repairwheel.elf import read_elf
from repairwheel.errors import ElfError, RepairwheelError, ResourceError

ROOT = Path(__file__).resolve().parent.parent
LONG = "/" + "r" * 3999  # 4000 bytes, as in the crash report
X86_64_LOADER = Path("/lib64/ld-linux-x86-64.so.2")

_CHILD = r"""
import json, sys
from repairwheel.elf import read_elf
from repairwheel.errors import ElfError
try:
    elf = read_elf(open(sys.argv[1], "rb").read(), name="input")
    print(json.dumps({"rpaths": list(elf.rpaths), "runpaths": list(elf.runpaths),
                      "needed": list(elf.needed), "symbols": len(elf.symbols())}))
except ElfError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def many_runpaths(count: int, text: str = LONG) -> bytes:
    """``count`` DT_RUNPATH entries at one string: the file that made join_tag fault."""
    return ElfBuilder(entries=[(DT_RUNPATH, text)] * count).build()


def parse_in_child(data: bytes, tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "input.elf"
    path.write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"child died with {result.returncode}: {result.stderr[-2000:]}"
    outcome: dict[str, object] = json.loads(result.stdout)
    return outcome


def pyelftools_tags(data: bytes, tag: str) -> list[str]:
    elf = ELFFile(io.BytesIO(data))
    dynamic = next(s for s in elf.iter_segments() if isinstance(s, DynamicSegment))
    return [getattr(t, tag[3:].lower()) for t in dynamic.iter_tags() if t.entry.d_tag == tag]


def test_regression_file_is_the_reported_crash() -> None:
    data = (ROOT / "tests" / "data" / "fuzz" / "many-runpaths-one-long-string.elf").read_bytes()
    assert data == many_runpaths(150)
    assert 6000 < len(data) < 7000
    assert pyelftools_tags(data, "DT_RUNPATH") == [LONG] * 150


def test_many_runpaths_at_one_long_string_are_read_once_each(tmp_path: Path) -> None:
    data = many_runpaths(150)
    outcome = parse_in_child(data, tmp_path)
    assert outcome == {"rpaths": [], "runpaths": [LONG] * 150, "needed": [], "symbols": 0}


def test_entries_past_the_output_budget_are_an_elf_error(tmp_path: Path) -> None:
    # 400 entries of 4000 bytes (1.6 MB of strings) from a 16 KB file: over len*16 + 1 MiB.
    outcome = parse_in_child(many_runpaths(400), tmp_path)
    assert "crafted file" in str(outcome.get("error")), outcome


def test_budget_is_charged_once_per_entry(tmp_path: Path) -> None:
    # Just under the budget when each entry is charged once; double charging would refuse it.
    count = 240
    data = many_runpaths(count)
    assert count * (len(LONG) + 1) < 16 * len(data) + (1 << 20) < 2 * count * (len(LONG) + 1)
    assert parse_in_child(data, tmp_path)["runpaths"] == [LONG] * count


@pytest.mark.parametrize("elf_class", [32, 64])
@pytest.mark.parametrize("big_endian", [False, True], ids=["little", "big"])
def test_every_entry_is_kept_in_file_order(elf_class: int, big_endian: bool) -> None:
    entries: list[tuple[int, int | str]] = [
        (DT_RUNPATH, "$ORIGIN/first:/opt/a"),
        (DT_NEEDED, "liba.so.1"),
        (DT_RPATH, "/r1"),
        (DT_SONAME, "libself.so.1"),
        (DT_RUNPATH, "/second"),
        (DT_RPATH, "/r2:/r3"),
        (DT_NEEDED, "libb.so.2"),
        (DT_RUNPATH, ""),
        (DT_RUNPATH, "$ORIGIN/first:/opt/a"),
    ]
    data = ElfBuilder(elf_class=elf_class, big_endian=big_endian, entries=entries).build()
    elf = read_elf(data)
    assert elf.runpaths == tuple(pyelftools_tags(data, "DT_RUNPATH"))
    assert elf.rpaths == tuple(pyelftools_tags(data, "DT_RPATH")) == ("/r1", "/r2:/r3")
    assert elf.needed == ("liba.so.1", "libb.so.2")
    assert len(elf.runpaths) == 4
    # The loaders (glibc's and musl's) use the last entry of each tag.
    assert elf.runpath == tuple(elf.runpaths[-1].split(":"))
    assert elf.rpath == ("/r2", "/r3")
    assert not diff_facts(core_facts(data, symbols=False), oracle_facts(data, symbols=False))


def test_an_empty_entry_is_one_empty_directory() -> None:
    elf = read_elf(ElfBuilder(entries=[(DT_RUNPATH, "/a"), (DT_RUNPATH, "")]).build())
    assert (elf.runpaths, elf.runpath) == (("/a", ""), ("",))


def _diverging_dynamic_tables() -> bytes:
    """p_vaddr maps to a table needing libm.so.6; p_offset holds one needing libdecoy.so."""
    builder = ElfBuilder(entries=[(DT_NEEDED, "libm.so.6"), (DT_SONAME, "libreal.so")])
    for text in ("libm.so.6", "libreal.so", "libdecoy.so"):
        builder.string(text)
    # The decoy shares DT_STRTAB, so pyelftools (which reads p_offset) can name its entry.
    decoy = builder.dyn_table(
        [
            (DT_NEEDED, "libdecoy.so"),
            (DT_STRTAB, builder.strtab_address),
            (DT_STRSZ, len(builder.dynstr)),
        ]
    )
    index = builder.add_blob(decoy)
    return builder.build(dynamic_offset=builder.address(index) - BASE)


def test_dynamic_table_is_found_at_p_vaddr_like_the_loader() -> None:
    data = _diverging_dynamic_tables()
    assert pyelftools_tags(data, "DT_NEEDED") == ["libdecoy.so"]  # p_offset's table
    elf = read_elf(data)
    assert (elf.needed, elf.soname) == (("libm.so.6",), "libreal.so")


@pytest.mark.skipif(
    not X86_64_LOADER.exists() or os.uname().machine != "x86_64", reason="needs x86_64 ld.so"
)
def test_dynamic_table_choice_agrees_with_ld_so(tmp_path: Path) -> None:
    data = _diverging_dynamic_tables()
    path = tmp_path / "libreal.so"
    path.write_bytes(data)
    listed = subprocess.run(
        [str(X86_64_LOADER), "--list", str(path)], capture_output=True, text=True, timeout=30
    )
    assert "libm.so.6" in listed.stdout, listed.stdout + listed.stderr
    assert "libdecoy" not in listed.stdout + listed.stderr
    assert read_elf(path).needed == ("libm.so.6",)


def test_p_offset_is_the_fallback_when_p_vaddr_maps_nowhere() -> None:
    builder = ElfBuilder(entries=[(DT_NEEDED, "libz.so.1")])
    plain = builder.build()
    elf_file = ELFFile(io.BytesIO(plain))
    dynamic = next(s for s in elf_file.iter_segments() if isinstance(s, DynamicSegment))
    data = builder.build(dynamic_offset=dynamic["p_offset"], dynamic_vaddr=0xDEAD0000)
    assert read_elf(data).needed == ("libz.so.1",) == tuple(pyelftools_tags(data, "DT_NEEDED"))


def _set_nchain(src: Path, dst: Path, nchain: int) -> Path:
    data = bytearray(src.read_bytes())
    elf = ELFFile(io.BytesIO(bytes(data)))
    (section,) = [s for s in elf.iter_sections() if s["sh_type"] == "SHT_HASH"]
    struct.pack_into("<I", data, section["sh_offset"] + 4, nchain)
    dst.write_bytes(bytes(data))
    return strip_section_headers(dst, dst)


@pytest.mark.parametrize("nchain", [0xFFFFFFFF, 0x00100000])
def test_lying_dt_hash_falls_back_to_gnu_hash(
    hash_styles: dict[str, Path], tmp_path: Path, nchain: int
) -> None:
    both = hash_styles["both"]
    lying = _set_nchain(both, tmp_path / "lying.so", nchain)
    symbols = read_elf(lying).symbols()
    assert symbols == read_elf(both).symbols()
    assert len(symbols) == len(oracle_facts(both).symbols or ()) > 5


def test_lying_dt_hash_without_gnu_hash_is_an_elf_error(
    hash_styles: dict[str, Path], tmp_path: Path
) -> None:
    lying = _set_nchain(hash_styles["sysv"], tmp_path / "lying.so", 0xFFFFFFFF)
    read_elf(lying)  # the facts do not need the symbol count
    with pytest.raises(ElfError, match="DT_HASH"):
        read_elf(lying).symbols()


class _OutOfMemoryCore:
    """The cffi lib with rw_elf_parse failing as it does when malloc returns NULL."""

    def __init__(self) -> None:
        self._real = elf_module.lib

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def rw_elf_parse(self, *args: object) -> int:
        return int(self._real.RW_NOMEM)


def test_out_of_memory_is_a_resource_error_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, hash_styles: dict[str, Path]
) -> None:
    monkeypatch.setattr(elf_module, "lib", _OutOfMemoryCore())
    path = hash_styles["gnu"]
    with pytest.raises(ResourceError) as info:
        read_elf(path)
    assert isinstance(info.value, RepairwheelError) and not isinstance(info.value, ElfError)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "memory" in message and "\n" not in message
