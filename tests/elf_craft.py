"""Build small synthetic ELF files byte by byte, for cases no linker writes.

The file is one PT_LOAD mapping everything at ``BASE`` (so a table's address is
``BASE`` plus its file offset), then whatever segments the test asks for.  Layout:
ELF header, program headers, the dynamic string table, blobs in the order they
were added, and the dynamic table last.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

BASE = 0x400000
PAGE = 0x1000
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT = 0, 1, 4, 5, 6, 10, 11
DT_SONAME, DT_RPATH, DT_RUNPATH, DT_GNU_HASH = 14, 15, 29, 0x6FFFFEF5
ET_DYN, EM_X86_64 = 3, 62


@dataclass
class ElfBuilder:
    """An ELF file under construction; ``entries`` are (tag, int value or dynstr string)."""

    elf_class: int = 64
    big_endian: bool = False
    machine: int = EM_X86_64
    elf_type: int = ET_DYN
    entries: list[tuple[int, int | str]] = field(default_factory=list)
    dynstr: bytearray = field(default_factory=lambda: bytearray(b"\0"))
    blobs: list[bytes] = field(default_factory=list)
    _strings: dict[str, int] = field(default_factory=dict)

    @property
    def order(self) -> str:
        return ">" if self.big_endian else "<"

    @property
    def word(self) -> str:
        return "Q" if self.elf_class == 64 else "I"

    def string(self, text: str) -> int:
        """The dynstr offset of ``text``, added once."""
        if text not in self._strings:
            self._strings[text] = len(self.dynstr)
            self.dynstr += text.encode() + b"\0"
        return self._strings[text]

    def dyn_table(self, entries: list[tuple[int, int | str]], *, null: bool = True) -> bytes:
        """Encode a dynamic table (strings become dynstr offsets)."""
        fmt = self.order + ("qQ" if self.elf_class == 64 else "iI")
        out = bytearray()
        for tag, value in [*entries, *([(DT_NULL, 0)] if null else [])]:
            out += struct.pack(fmt, tag, self.string(value) if isinstance(value, str) else value)
        return bytes(out)

    @property
    def strtab_address(self) -> int:
        """The virtual address of the dynamic string table."""
        return BASE + self._layout()[1]

    def add_blob(self, data: bytes) -> int:
        """Append ``data`` (8-aligned); returns its index for :meth:`address`."""
        self.blobs.append(data)
        return len(self.blobs) - 1

    def _layout(self) -> tuple[int, int, list[int], int]:
        ehsize, phentsize = (64, 56) if self.elf_class == 64 else (52, 32)
        phoff = ehsize
        strtab = phoff + 2 * phentsize
        pos = _align(strtab + len(self.dynstr))
        offsets = []
        for blob in self.blobs:
            offsets.append(pos)
            pos = _align(pos + len(blob))
        return phoff, strtab, offsets, pos

    def address(self, blob: int) -> int:
        """The virtual address blob ``blob`` will have (call after every string is added)."""
        return BASE + self._layout()[2][blob]

    def build(
        self, *, dynamic_offset: int | None = None, dynamic_vaddr: int | None = None
    ) -> bytes:
        """The file; PT_DYNAMIC's p_offset / p_vaddr can be overridden to disagree."""
        for _, value in self.entries:  # intern every string before laying out
            if isinstance(value, str):
                self.string(value)
        phoff, strtab, offsets, dyn_at = self._layout()
        table = self.dyn_table(
            [*self.entries, (DT_STRTAB, BASE + strtab), (DT_STRSZ, len(self.dynstr))]
        )
        size = dyn_at + len(table)
        data = bytearray(size)
        o, w = self.order, self.word
        ident = b"\x7fELF" + bytes([2 if self.elf_class == 64 else 1, 2 if self.big_endian else 1])
        data[0:16] = ident + bytes([1]) + bytes(9)
        ehsize, phentsize = (64, 56) if self.elf_class == 64 else (52, 32)
        struct.pack_into(o + "HHI", data, 16, self.elf_type, self.machine, 1)
        struct.pack_into(o + w * 3, data, 24, 0, phoff, 0)
        flags_at = 24 + 3 * (8 if self.elf_class == 64 else 4)
        struct.pack_into(o + "IHHHHHH", data, flags_at, 0, ehsize, phentsize, 2, 0, 0, 0)
        segments = [
            (PT_LOAD, 0, BASE, size, size, 5, PAGE),
            (
                PT_DYNAMIC,
                dyn_at if dynamic_offset is None else dynamic_offset,
                BASE + dyn_at if dynamic_vaddr is None else dynamic_vaddr,
                len(table),
                len(table),
                6,
                8,
            ),
        ]
        for i, (ptype, offset, vaddr, filesz, memsz, flags, align) in enumerate(segments):
            at = phoff + i * phentsize
            if self.elf_class == 64:
                fields = (ptype, flags, offset, vaddr, vaddr, filesz, memsz, align)
                struct.pack_into(o + "II" + "Q" * 6, data, at, *fields)
            else:
                fields = (ptype, offset, vaddr, vaddr, filesz, memsz, flags, align)
                struct.pack_into(o + "I" * 8, data, at, *fields)
        data[strtab : strtab + len(self.dynstr)] = self.dynstr
        for at, blob in zip(offsets, self.blobs):
            data[at : at + len(blob)] = blob
        data[dyn_at:size] = table
        return bytes(data)


def _align(value: int, to: int = 8) -> int:
    return (value + to - 1) // to * to
