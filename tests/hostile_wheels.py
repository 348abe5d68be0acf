"""Builders of malformed wheels: every header field a hostile archive can lie about, on demand.

``zipfile`` refuses to write most of these (NUL bytes in names, sizes that disagree with the
data, wrong CRCs), so wheels are written here field by field. A wheel starts as a valid one
around a small gcc-built extension module (``valid_members``) and is then spoiled in one way.
"""

from __future__ import annotations

import base64
import hashlib
import stat
import struct
import subprocess
import sysconfig
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path
from typing import Any

from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile

DIST_INFO = "demo-1.0.dist-info"
EXT_SUFFIX: str = sysconfig.get_config_var("EXT_SUFFIX")
EXT_MEMBER = f"demo/_ext{EXT_SUFFIX}"
PLATFORM = sysconfig.get_platform().replace("-", "_").replace(".", "_")
WHEEL_NAME = f"demo-1.0-py3-none-{PLATFORM}.whl"
WHEEL_TEXT = (
    f"Wheel-Version: 1.0\nGenerator: hostile\nRoot-Is-Purelib: false\nTag: py3-none-{PLATFORM}\n"
).encode()
METADATA_TEXT = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"

STORED, DEFLATED = 0, 8
REGULAR = stat.S_IFREG | 0o644
EXECUTABLE = stat.S_IFREG | 0o755
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_ZIP64_LIMIT = 0xFFFFFFFF
_UTF8_NAME = 0x800
_UNICODE_PATH = 0x7075
_UNIX = 3
_EMPTY_FINAL_BLOCK = b"\x03\x00"  # BFINAL, fixed Huffman codes, end of block
_DATE, _TIME = (2024 - 1980) << 9 | 1 << 5 | 1, 0

# Uses libc at two symbol versions, so the module has a version-need chain to corrupt.
EXTENSION_C = """
#include <Python.h>
#include <stdlib.h>
#include <string.h>
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__ext(void) {
    static char buffer[64];
    const char *name = getenv("REPAIRWHEEL_HOSTILE");
    memcpy(buffer, name ? name : "", name ? strlen(name) % 64 : 0);
    return PyModule_Create(&module);
}
"""


@dataclass(frozen=True)
class Entry:
    """One zip member. ``None`` fields are derived from ``data``; set them to make the headers lie.

    ``payload`` is the bytes stored in the archive (the deflated ``data`` by default).
    ``flags`` are the general-purpose bits (by default the UTF-8 bit for a non-ASCII name),
    ``extra`` the extra field of both headers, and ``listed_as`` the name RECORD lists it by
    (by default the name decoded as UTF-8).
    """

    name: str | bytes
    data: bytes = b""
    mode: int = REGULAR
    method: int = DEFLATED
    crc: int | None = None
    file_size: int | None = None
    compress_size: int | None = None
    payload: bytes | None = None
    flags: int | None = None
    extra: bytes = b""
    listed_as: str | None = None

    @property
    def raw_name(self) -> bytes:
        return self.name if isinstance(self.name, bytes) else self.name.encode("utf-8")

    @property
    def text_name(self) -> str:
        if self.listed_as is not None:
            return self.listed_as
        return self.raw_name.decode("utf-8", "replace")


def unicode_path_extra(
    raw_name: bytes, name: str | bytes, *, version: int = 1, crc: int | None = None
) -> bytes:
    """An Info-ZIP Unicode Path extra field (0x7075) naming ``name``, for a member whose stored
    name is ``raw_name`` (its CRC32 goes in the field unless ``crc`` is given)."""
    encoded = name.encode("utf-8") if isinstance(name, str) else name
    body = struct.pack("<BL", version, zlib.crc32(raw_name) if crc is None else crc) + encoded
    return struct.pack("<2H", _UNICODE_PATH, len(body)) + body


def deflate(data: bytes, level: int = 6) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def deflate_padded(data: bytes, zeros: int) -> bytes:
    """A raw deflate stream of ``data`` then ``zeros`` zero bytes (a multiple of 16 MiB).

    Gigabytes of zeros are cheap to describe: a full flush makes a block of 16 MiB of zeros
    independent of what comes before it, so its compressed bytes are repeated, not recomputed.
    """
    block = 16 << 20
    assert zeros % block == 0, zeros
    head = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    prefix = head.compress(data) + head.flush(zlib.Z_FULL_FLUSH)
    body = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    repeated = body.compress(bytes(block)) + body.flush(zlib.Z_FULL_FLUSH)
    return prefix + repeated * (zeros // block) + _EMPTY_FINAL_BLOCK


def record_row(name: str, data: bytes) -> str:
    return f"{name},{record_hash(data)},{len(data)}\n"


def write_zip(path: Path, entries: Iterable[Entry]) -> Path:
    """Write ``entries`` exactly as declared (zip64 extra fields where a size needs them)."""
    out = bytearray()
    central = bytearray()
    count = 0
    for entry in entries:
        payload = entry.payload
        if payload is None:
            payload = deflate(entry.data) if entry.method == DEFLATED else entry.data
        crc = zlib.crc32(entry.data) if entry.crc is None else entry.crc
        size = len(entry.data) if entry.file_size is None else entry.file_size
        csize = len(payload) if entry.compress_size is None else entry.compress_size
        name = entry.raw_name
        flags = (0 if name.isascii() else _UTF8_NAME) if entry.flags is None else entry.flags
        zip64 = max(size, csize) >= _ZIP64_LIMIT
        fields = (_ZIP64_LIMIT, _ZIP64_LIMIT) if zip64 else (csize, size)
        extra = struct.pack("<2H2Q", 1, 16, size, csize) if zip64 else b""
        extra += entry.extra
        version = 45 if zip64 else 20
        common = (flags, entry.method, _TIME, _DATE, crc, *fields, len(name), len(extra))
        central += _CENTRAL.pack(
            b"PK\x01\x02", version, _UNIX, version, 0, *common, 0, 0, 0, entry.mode << 16, len(out)
        )
        central += name + extra
        out += _LOCAL.pack(b"PK\x03\x04", version, *common) + name + extra + payload
        count += 1
    end = _END.pack(b"PK\x05\x06", 0, 0, count, count, len(central), len(out), 0)
    path.write_bytes(bytes(out + central + end))
    return path


def dist_info_entries(
    members: Sequence[Entry],
    *,
    wheel: bytes | None = WHEEL_TEXT,
    metadata: bytes | None = METADATA_TEXT,
    record: bytes | None = None,
    with_record: bool = True,
    dist_info: str = DIST_INFO,
) -> list[Entry]:
    """METADATA, WHEEL and, unless ``record`` is given, a RECORD that agrees with what the zip
    headers of ``members`` declare (so a member whose header lies is not caught by RECORD);
    ``None`` leaves a file out. ``dist_info`` is the folder they go in."""
    found = [Entry(f"{dist_info}/METADATA", metadata)] if metadata is not None else []
    found += [Entry(f"{dist_info}/WHEEL", wheel)] if wheel is not None else []
    if with_record:
        if record is None:
            rows = [record_row(e.text_name, e.data[: e.file_size]) for e in [*members, *found]]
            record = "".join(rows + [f"{dist_info}/RECORD,,\n"]).encode()
        found.append(Entry(f"{dist_info}/RECORD", record))
    return found


def build_wheel(
    directory: Path, members: Sequence[Entry], *, name: str = WHEEL_NAME, **dist_info: Any
) -> Path:
    """A wheel of ``members`` plus its dist-info files (``dist_info`` as for
    ``dist_info_entries``)."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_zip(directory / name, [*members, *dist_info_entries(members, **dist_info)])


def valid_members(extension: bytes) -> list[Entry]:
    """A platform wheel's contents that ``fix`` repairs as they are."""
    return [
        Entry("demo/__init__.py", b"from ._ext import *\n"),
        Entry(EXT_MEMBER, extension, mode=EXECUTABLE),
        Entry("demo/data.txt", b"plain text that is not ELF\n" * 40),
    ]


def spoil(members: Sequence[Entry], name: str, **changes: Any) -> list[Entry]:
    """``members`` with the entry called ``name`` changed."""
    assert any(m.name == name for m in members), name
    return [replace(m, **changes) if m.name == name else m for m in members]


def gcc(output: Path, source: str, *args: str) -> Path:
    """Compile C ``source`` (on stdin) with ``args``; RuntimeError with gcc's words if it fails."""
    output.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-O1", "-fPIC", "-o", str(output), "-x", "c", "-", "-x", "none", *args]
    proc = subprocess.run(cmd, input=source, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return output


def build_extension(directory: Path) -> bytes:
    include = sysconfig.get_paths()["include"]
    return gcc(directory / f"_ext{EXT_SUFFIX}", EXTENSION_C, "-shared", f"-I{include}").read_bytes()


# --- ELF corruption (ELF64 little-endian, the host's format where these tests run) -------------

DT_STRTAB, DT_VERNEED, DT_VERNEEDNUM = 5, 0x6FFFFFFE, 0x6FFFFFFF
PT_DYNAMIC = 2
_E_PHOFF, _E_SHOFF, _E_PHNUM, _E_SHNUM, _E_SHSTRNDX = 0x20, 0x28, 0x38, 0x3C, 0x3E


@dataclass(frozen=True)
class ElfLayout:
    """Where the fields a corruption edits live in one valid ELF64 file (read with pyelftools)."""

    data: bytes
    phoff: int
    phnum: int
    phentsize: int
    dynamic_phdr: int  # file offset of the PT_DYNAMIC program header
    dyn_values: dict[int, int]  # d_tag -> file offset of its d_val
    verneed: int  # file offset of the first Elf64_Verneed

    @classmethod
    def of(cls, data: bytes) -> ElfLayout:
        elf = ELFFile(BytesIO(data))
        if elf.elfclass != 64 or not elf.little_endian:
            raise ValueError("the ELF corruptions are written for ELF64 little-endian")
        header = elf.header
        index, dynamic = next(
            (i, s) for i, s in enumerate(elf.iter_segments()) if isinstance(s, DynamicSegment)
        )
        values = {}
        for i in range(dynamic.num_tags()):
            at = dynamic["p_offset"] + 16 * i
            values.setdefault(struct.unpack_from("<q", data, at)[0], at + 8)
        verneed_address = struct.unpack_from("<Q", data, values[DT_VERNEED])[0]
        return cls(
            data=data,
            phoff=header["e_phoff"],
            phnum=header["e_phnum"],
            phentsize=header["e_phentsize"],
            dynamic_phdr=header["e_phoff"] + index * header["e_phentsize"],
            dyn_values=values,
            verneed=next(elf.address_offsets(verneed_address)),
        )

    def patched(self, *edits: tuple[int, str, int]) -> bytes:
        """A copy with (offset, struct format, value) edits, little-endian."""
        data = bytearray(self.data)
        for at, fmt, value in edits:
            struct.pack_into("<" + fmt, data, at, value)
        return bytes(data)

    def without_sections(self) -> list[tuple[int, str, int]]:
        """Edits that drop the section headers, so nothing can stand in for a dynamic table."""
        return [(_E_SHOFF, "Q", 0), (_E_SHNUM, "H", 0), (_E_SHSTRNDX, "H", 0)]


def broken_elf(data: bytes) -> dict[str, bytes]:
    """Named corruptions of ``data`` that leave no well-formed reading of the file."""
    lay = ElfLayout.of(data)
    phdrs_end = lay.phoff + lay.phnum * lay.phentsize
    size = len(data)
    return {
        "truncated-in-program-headers": data[: (lay.phoff + phdrs_end) // 2],
        "huge-program-header-count": lay.patched((_E_PHNUM, "H", 0xFFFE)),
        "program-headers-past-the-end": lay.patched((_E_PHOFF, "Q", size)),
        # Both p_offset and p_vaddr (what ld.so maps) lead nowhere: the vaddr one alone is
        # enough for the loader, and for the core.
        "dynamic-segment-past-the-end": lay.patched(
            (lay.dynamic_phdr + 8, "Q", size), (lay.dynamic_phdr + 16, "Q", 0xDEAD0000)
        ),
        "strtab-outside-every-load": lay.patched(
            (lay.dyn_values[DT_STRTAB], "Q", 0xDEAD0000), *lay.without_sections()
        ),
        # vn_next is a 32-bit offset added to a 64-bit address: this is 4 GiB on, not 16 back.
        "version-need-next-wraps-around": lay.patched(
            (lay.dyn_values[DT_VERNEEDNUM], "Q", (1 << 64) - 1),
            (lay.verneed + 12, "I", 0xFFFFFFF0),
        ),
    }


def cyclic_elf(data: bytes) -> dict[str, bytes]:
    """Version chains whose counts never run out while their links point back at the same
    entry. The loader stops at a zero link whatever the count says, so a reader may accept
    these; it must not loop."""
    lay = ElfLayout.of(data)
    aux = lay.verneed + struct.unpack_from("<I", lay.data, lay.verneed + 8)[0]
    return {
        "version-need-count-outlives-chain": lay.patched(
            (lay.dyn_values[DT_VERNEEDNUM], "Q", (1 << 64) - 1), (lay.verneed + 12, "I", 0)
        ),
        "version-aux-count-outlives-chain": lay.patched(
            (lay.verneed + 2, "H", 0xFFFF), (aux + 12, "I", 0)
        ),
    }


# --- dependency graphs --------------------------------------------------------------------------

LIBRARY_C = "int hostile_library(void) { return 1; }\n"


def shared_library(path: Path, *, needs: Sequence[Path] = (), rpath: str | None = None) -> Path:
    """``path`` with SONAME its file name, DT_NEEDED the SONAMEs of ``needs``, and DT_RPATH."""
    args = ["-shared", f"-Wl,-soname,{path.name}", "-Wl,--no-as-needed", *map(str, needs)]
    if rpath is not None:
        args += ["-Wl,--disable-new-dtags", f"-Wl,-rpath,{rpath}"]
    return gcc(path, LIBRARY_C, *args)


def extension_linking(directory: Path, libraries: Sequence[Path]) -> bytes:
    """The extension module, with DT_NEEDED entries for ``libraries``."""
    include = sysconfig.get_paths()["include"]
    args = ["-shared", f"-I{include}", "-Wl,--no-as-needed", *map(str, libraries)]
    return gcc(directory / f"_ext{EXT_SUFFIX}", EXTENSION_C, *args).read_bytes()


def rpath_cycle(directory: Path) -> Path:
    """liba.so needs libb.so through DT_RPATH $ORIGIN/../b, and libb.so needs liba.so back
    through $ORIGIN/../a; returns liba.so."""
    placeholder = shared_library(directory / "b" / "libb.so")
    liba = shared_library(directory / "a" / "liba.so", needs=[placeholder], rpath="$ORIGIN/../b")
    shared_library(directory / "b" / "libb.so", needs=[liba], rpath="$ORIGIN/../a")
    return liba


def self_needing(directory: Path) -> Path:
    """libself.so whose DT_NEEDED names its own SONAME."""
    placeholder = shared_library(directory / "placeholder" / "libself.so")
    return shared_library(directory / "self" / "libself.so", needs=[placeholder])
