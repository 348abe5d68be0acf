"""Malformed ELF input ends in a value or an ElfError, never a crash, hang or runaway memory.

Every case is a corrupted copy of a valid file (gcc fixtures, and a big-endian
s390x member when the bundled test data is present).  All cases run in a child
interpreter with a per-case watchdog, a memory cap and a guard page right
after the input, so a segfault, an over-read or an endless loop in the C core
fails the test that owns the case and names it, instead of killing pytest.
"""

from __future__ import annotations

import json
import random
import re
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pytest
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from pypi_wheels import BUNDLED_DIR, elf_members

from repairwheel.elf import read_elf
from repairwheel.errors import ElfError

SEED = 20240611
HANG_SECONDS = 5
MEMORY_CAP = 2 << 30
S390X_WHEEL = BUNDLED_DIR / "glibc" / "testsimple-0.0.1-cp313-cp313-linux_s390x.whl"

DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10
DT_VERDEFNUM, DT_VERNEEDNUM = 0x6FFFFFFD, 0x6FFFFFFF
DT_VERDEF, DT_VERNEED, DT_GNU_HASH, DT_HASH = 0x6FFFFFFC, 0x6FFFFFFE, 0x6FFFFEF5, 4
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_GNU_PROPERTY = 1, 2, 3, 4, 0x6474E553

# Each case's bytes end exactly where an inaccessible page begins, so reading even
# one byte past the end of the input faults instead of going unnoticed.
RUNNER = textwrap.dedent(
    """
    import ctypes, faulthandler, json, mmap, resource, sys
    from pathlib import Path
    from repairwheel.elf import read_elf
    from repairwheel.errors import ElfError

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    PAGE = mmap.PAGESIZE

    def guarded(data):
        span = max(PAGE, -(-len(data) // PAGE) * PAGE)
        region = mmap.mmap(-1, span + PAGE)
        region[span - len(data) : span] = data
        anchor = ctypes.c_char.from_buffer(region)
        base = ctypes.addressof(anchor)
        del anchor
        if libc.mprotect(base + span, PAGE, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
        return memoryview(region)[span - len(data) : span]

    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
    faulthandler.enable()
    for path in sys.argv[3:]:
        name = Path(path).name
        view = guarded(Path(path).read_bytes())
        print(json.dumps({"start": name}), flush=True)
        faulthandler.dump_traceback_later(float(sys.argv[1]), exit=True)
        try:
            elf = read_elf(view, name=name)
            elf.symbols()
            result = {"kind": "ok", "needed": list(elf.needed)}
        except ElfError as exc:
            result = {"kind": "ElfError", "message": str(exc)}
        except BaseException as exc:
            result = {"kind": type(exc).__name__, "message": repr(exc)}
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps({"case": name, **result}), flush=True)
    """
)


@dataclass(frozen=True)
class Case:
    """One corrupted file. ``must_fail`` holds a pattern the ElfError message must match."""

    name: str
    category: str
    data: bytes
    must_fail: str | None = None
    needed: tuple[str, ...] | None = None


@dataclass
class Layout:
    """Where the structures of a valid base file lie, read once with pyelftools."""

    data: bytes
    elf_class: int
    order: str
    phoff: int
    phentsize: int
    phnum: int
    ehsize: int
    shoff: int
    shentsize: int
    shnum: int
    phdrs: list[tuple[int, int, int, int]] = field(default_factory=list)  # at, type, off, filesz
    dyn: list[tuple[int, int, int]] = field(default_factory=list)  # at, tag, value
    needed: tuple[str, ...] = ()
    offsets: dict[int, int] = field(default_factory=dict)  # DT_* table tag -> file offset

    @property
    def wide(self) -> bool:
        return self.elf_class == 64

    def dyn_entry(self, tag: int) -> tuple[int, int, int] | None:
        return next((entry for entry in self.dyn if entry[1] == tag), None)

    def phdr(self, ptype: int) -> tuple[int, int, int, int] | None:
        return next((p for p in self.phdrs if p[1] == ptype), None)


def layout_of(data: bytes) -> Layout:
    elf = ELFFile(BytesIO(data))
    h = elf.header
    lay = Layout(
        data=data,
        elf_class=elf.elfclass,
        order="<" if elf.little_endian else ">",
        phoff=h["e_phoff"],
        phentsize=h["e_phentsize"],
        phnum=h["e_phnum"],
        ehsize=h["e_ehsize"],
        shoff=h["e_shoff"],
        shentsize=h["e_shentsize"],
        shnum=h["e_shnum"],
    )
    for i in range(lay.phnum):
        at = lay.phoff + i * lay.phentsize
        ptype = struct.unpack_from(lay.order + "I", data, at)[0]
        lay.phdrs.append((at, ptype, *_phdr_fields(lay, at)))
    dynamic = next((s for s in elf.iter_segments() if isinstance(s, DynamicSegment)), None)
    if dynamic is not None:
        entsize = elf.structs.Elf_Dyn.sizeof()
        fmt = lay.order + ("qQ" if lay.wide else "iI")
        for i in range(dynamic.num_tags()):
            at = dynamic["p_offset"] + i * entsize
            tag, value = struct.unpack_from(fmt, data, at)
            lay.dyn.append((at, tag, value))
            offset = next(elf.address_offsets(value), None)
            if tag in (DT_VERNEED, DT_VERDEF, DT_GNU_HASH, DT_HASH, DT_STRTAB) and offset:
                lay.offsets[tag] = offset
        lay.needed = tuple(t.needed for t in dynamic.iter_tags("DT_NEEDED"))
    return lay


def _phdr_fields(lay: Layout, at: int) -> tuple[int, int]:
    """p_offset and p_filesz of the program header at ``at``."""
    offset_at, offset_fmt = _phdr_field(lay, at, "offset")
    filesz_at, filesz_fmt = _phdr_field(lay, at, "filesz")
    offset = struct.unpack_from(lay.order + offset_fmt, lay.data, offset_at)[0]
    return offset, struct.unpack_from(lay.order + filesz_fmt, lay.data, filesz_at)[0]


def patched(lay: Layout, *edits: tuple[int, str, int]) -> bytes:
    """A copy with (offset, struct format, value) edits; formats get the file's byte order."""
    data = bytearray(lay.data)
    for at, fmt, value in edits:
        struct.pack_into(lay.order + fmt, data, at, value)
    return bytes(data)


def _word(lay: Layout) -> str:
    return "Q" if lay.wide else "I"


def _ehdr(lay: Layout, name: str) -> tuple[int, str]:
    """Offset and format of an ELF header field."""
    table64 = {"phoff": (0x20, "Q"), "shoff": (0x28, "Q"), "phentsize": (0x36, "H")}
    table64 |= {"phnum": (0x38, "H"), "shnum": (0x3C, "H"), "shstrndx": (0x3E, "H")}
    table32 = {"phoff": (0x1C, "I"), "shoff": (0x20, "I"), "phentsize": (0x2A, "H")}
    table32 |= {"phnum": (0x2C, "H"), "shnum": (0x30, "H"), "shstrndx": (0x32, "H")}
    return (table64 if lay.wide else table32)[name]


def _phdr_field(lay: Layout, at: int, name: str) -> tuple[int, str]:
    table64 = {"offset": (8, "Q"), "vaddr": (16, "Q"), "filesz": (32, "Q")}
    table32 = {"offset": (4, "I"), "vaddr": (8, "I"), "filesz": (16, "I")}
    off, fmt = (table64 if lay.wide else table32)[name]
    return at + off, fmt


def _dyn_value(lay: Layout, tag: int, value: int) -> tuple[int, str, int] | None:
    entry = lay.dyn_entry(tag)
    if entry is None:
        return None
    return (entry[0] + (8 if lay.wide else 4), _word(lay), value)


def _no_sections(lay: Layout) -> list[tuple[int, str, int]]:
    return [(*_ehdr(lay, "shoff"), 0), (*_ehdr(lay, "shnum"), 0), (*_ehdr(lay, "shstrndx"), 0)]


def truncations(base: str, lay: Layout, rng: random.Random) -> Iterator[Case]:
    """Cut at every header boundary and at random offsets."""
    size = len(lay.data)
    cuts = {0, 1, 4, 5, 6, 16, 18, 20, 24, lay.ehsize - 1, lay.ehsize, size - 1}
    for at, _, off, filesz in lay.phdrs:
        cuts |= {
            at,
            at + lay.phentsize // 2,
            at + lay.phentsize,
            off,
            off + filesz // 2,
            off + filesz,
        }
    for at, _, _ in lay.dyn[:: max(1, len(lay.dyn) // 6)]:
        cuts |= {at, at + 4}
    cuts |= set(lay.offsets.values())
    cuts |= {lay.shoff + i * lay.shentsize for i in range(0, lay.shnum, max(1, lay.shnum // 4))}
    cuts |= {rng.randrange(size) for _ in range(30)}
    phdr_end = lay.phoff + lay.phnum * lay.phentsize
    dynamic = lay.phdr(PT_DYNAMIC)
    for cut in sorted(c for c in cuts if 0 <= c < size):
        must = None
        if cut < lay.ehsize:
            must = r"trunc|short|small|header|size|end|bound|ELF|magic|class|data"
        elif cut < phdr_end:
            must = r"program header|phdr|segment|trunc|bound|end|outside|past"
        elif dynamic is not None and cut <= dynamic[2]:
            must = r"dynamic|trunc|bound|end|outside|past"
        yield Case(f"{base}-cut-{cut}", "truncation", lay.data[:cut], must_fail=must)


def header_flips(base: str, lay: Layout, rng: random.Random) -> Iterator[Case]:
    """One random bit flipped in each byte of the ELF header."""
    for at in range(lay.ehsize):
        data = bytearray(lay.data)
        data[at] ^= 1 << rng.randrange(8)
        must = None
        if at < 4:
            must = r"magic|not an? ELF|ELF"
        elif at in (4, 5) and data[at] not in (1, 2):
            must = r"class|endian|data|encoding|byte order|ELF"
        yield Case(f"{base}-flip-{at}", "header-flip", bytes(data), must_fail=must)


def overwrites(
    base: str, lay: Layout, rng: random.Random, region: str, start: int, end: int, count: int
) -> Iterator[Case]:
    """``count`` copies with 1 to 8 random bytes (or 0xff runs) written inside [start, end)."""
    for i in range(count):
        data = bytearray(lay.data)
        width = rng.randint(1, 8)
        at = rng.randrange(start, max(start + 1, end - width))
        fill = b"\xff" * width if i % 3 == 0 else rng.randbytes(width)
        data[at : at + width] = fill
        yield Case(f"{base}-{region}-{i}", f"overwrite-{region}", bytes(data))


def huge_counts(base: str, lay: Layout) -> Iterator[Case]:
    big = (1 << 64) - 1 if lay.wide else (1 << 32) - 1
    # 0xffff is PN_XNUM (the count moves to section 0), so the plainly huge count is 0xfffe.
    yield Case(
        f"{base}-phnum-fffe",
        "huge-count",
        patched(lay, (*_ehdr(lay, "phnum"), 0xFFFE)),
        must_fail=r"program header|phdr|segment|count|bound|end|past|outside",
    )
    yield Case(f"{base}-phnum-xnum", "huge-count", patched(lay, (*_ehdr(lay, "phnum"), 0xFFFF)))
    for size in (0, 1, 0xFFFF):
        yield Case(
            f"{base}-phentsize-{size}",
            "huge-count",
            patched(lay, (*_ehdr(lay, "phentsize"), size)),
            must_fail=r"program header|phdr|entry size|phentsize|size",
        )
    yield Case(f"{base}-shnum-ffff", "huge-count", patched(lay, (*_ehdr(lay, "shnum"), 0xFFFF)))
    yield Case(
        f"{base}-shnum-ffff-shstrndx", "huge-count", patched(lay, (*_ehdr(lay, "shstrndx"), 0xFFFE))
    )
    for tag in (DT_VERNEEDNUM, DT_VERDEFNUM, DT_STRSZ):
        edit = _dyn_value(lay, tag, big)
        if edit is not None:
            yield Case(f"{base}-dyn-{tag:x}-max", "huge-count", patched(lay, edit))
    dynamic = lay.phdr(PT_DYNAMIC)
    if dynamic is not None:
        edit = (*_phdr_field(lay, dynamic[0], "filesz"), big)
        yield Case(f"{base}-dynamic-filesz-max", "huge-count", patched(lay, edit))
    verneed, verdef = lay.offsets.get(DT_VERNEED), lay.offsets.get(DT_VERDEF)
    if verneed is not None:
        yield Case(f"{base}-vn-cnt-max", "huge-count", patched(lay, (verneed + 2, "H", 0xFFFF)))
    if verdef is not None:
        yield Case(f"{base}-vd-cnt-max", "huge-count", patched(lay, (verdef + 6, "H", 0xFFFF)))
    gnu_hash, sysv_hash = lay.offsets.get(DT_GNU_HASH), lay.offsets.get(DT_HASH)
    for at, label in ((gnu_hash, "gnu-hash"), (sysv_hash, "sysv-hash")):
        if at is not None:
            for word in range(4 if label == "gnu-hash" else 2):
                data = patched(lay, (at + 4 * word, "I", 0xFFFFFFFF), *_no_sections(lay))
                yield Case(f"{base}-{label}-word{word}-max", "huge-count", data)


def past_end(base: str, lay: Layout) -> Iterator[Case]:
    size = len(lay.data)
    far = 1 << 63 if lay.wide else 1 << 31
    for value in (size, far):
        yield Case(
            f"{base}-phoff-{value:x}",
            "past-end",
            patched(lay, (*_ehdr(lay, "phoff"), value)),
            must_fail=r"program header|phdr|segment|bound|end|past|outside|trunc",
        )
        yield Case(
            f"{base}-shoff-{value:x}", "past-end", patched(lay, (*_ehdr(lay, "shoff"), value))
        )
    dynamic = lay.phdr(PT_DYNAMIC)
    if dynamic is not None:
        # ld.so reads the table at p_vaddr: a bad p_offset alone changes nothing.
        yield Case(
            f"{base}-dynamic-offset-end",
            "past-end",
            patched(lay, (*_phdr_field(lay, dynamic[0], "offset"), size)),
            needed=lay.needed,
        )
        yield Case(
            f"{base}-dynamic-offset-end-vaddr-unmapped",
            "past-end",
            patched(
                lay,
                (*_phdr_field(lay, dynamic[0], "offset"), size),
                (*_phdr_field(lay, dynamic[0], "vaddr"), 0xDEAD0000),
            ),
            must_fail=r"PT_DYNAMIC.*past the end",
        )
    interp = lay.phdr(PT_INTERP)
    if interp is not None:
        yield Case(
            f"{base}-interp-offset-far",
            "past-end",
            patched(lay, (*_phdr_field(lay, interp[0], "offset"), far)),
        )
        data = bytearray(lay.data)
        data[interp[2] : interp[2] + interp[3]] = b"A" * interp[3]
        yield Case(f"{base}-interp-unterminated", "past-end", bytes(data))
    for tag in (DT_NEEDED,):
        edit = _dyn_value(lay, tag, 0x7FFFFFF0)
        if edit is not None:
            yield Case(f"{base}-needed-name-far", "past-end", patched(lay, edit))
    verneed = lay.offsets.get(DT_VERNEED)
    if verneed is not None:
        for field_at, label in ((4, "vn-file"), (8, "vn-aux"), (12, "vn-next")):
            data = patched(lay, (verneed + field_at, "I", 0x7FFFFFF0))
            yield Case(f"{base}-{label}-far", "past-end", data)
    if lay.dyn and dynamic is not None:
        entsize = 16 if lay.wide else 8
        dyn_end = dynamic[2] + dynamic[3]
        edits = [(at, "i", 0x7FFFFFFF) for at in range(lay.dyn[-1][0], dyn_end, entsize)]
        yield Case(f"{base}-dynamic-unterminated", "past-end", patched(lay, *edits))


def strtab_outside(base: str, lay: Layout) -> Iterator[Case]:
    """DT_STRTAB at an address no PT_LOAD maps."""
    edit = _dyn_value(lay, DT_STRTAB, 0xDEAD0000)
    if edit is None:
        return
    yield Case(f"{base}-strtab-unmapped", "strtab-outside", patched(lay, edit), needed=lay.needed)
    yield Case(
        f"{base}-strtab-unmapped-no-sections",
        "strtab-outside",
        patched(lay, edit, *_no_sections(lay)),
        must_fail=r"strtab|string|address|map|load|segment" if lay.needed else None,
    )


def cycles(base: str, lay: Layout) -> Iterator[Case]:
    """Version chains that point back at themselves, with counts too large to stop them."""
    big = (1 << 64) - 1 if lay.wide else (1 << 32) - 1
    back = (1 << 32) - 16
    for table, count_tag, next_at, aux_at, aux_next_at, cnt_at, label in (
        (DT_VERNEED, DT_VERNEEDNUM, 12, 8, 12, 2, "vn"),
        (DT_VERDEF, DT_VERDEFNUM, 16, 12, 4, 6, "vd"),
    ):
        at = lay.offsets.get(table)
        count = _dyn_value(lay, count_tag, big)
        if at is None or count is None:
            continue
        yield Case(
            f"{base}-{label}-next-zero", "cycle", patched(lay, count, (at + next_at, "I", 0))
        )
        yield Case(
            f"{base}-{label}-next-back", "cycle", patched(lay, count, (at + next_at, "I", back))
        )
        aux = at + struct.unpack_from(lay.order + "I", lay.data, at + aux_at)[0]
        yield Case(
            f"{base}-{label}-aux-next-zero",
            "cycle",
            patched(lay, (at + cnt_at, "H", 0xFFFF), (aux + aux_next_at, "I", 0)),
        )
        yield Case(
            f"{base}-{label}-aux-next-back",
            "cycle",
            patched(lay, (at + cnt_at, "H", 0xFFFF), (aux + aux_next_at, "I", back)),
        )
    gnu_hash = lay.offsets.get(DT_GNU_HASH)
    if gnu_hash is not None:
        nbuckets, _, bloom_size = struct.unpack_from(lay.order + "III", lay.data, gnu_hash)
        chains = gnu_hash + 16 + bloom_size * (8 if lay.wide else 4) + 4 * nbuckets
        data = bytearray(patched(lay, *_no_sections(lay)))
        for at in range(chains, min(len(data), chains + 4096), 4):
            data[at : at + 4] = bytes(4)
        yield Case(f"{base}-gnu-hash-endless-chain", "cycle", bytes(data))


def notes(base: str, lay: Layout, rng: random.Random) -> Iterator[Case]:
    """Note headers and GNU property fields set to extreme sizes, and random bytes in notes.

    Each note segment is also copied to the end of the file (its program header
    pointing there, its size cut down) so that reading past the segment is
    reading past the input, which the runner's guard page turns into a crash.
    """
    for index, (phdr_at, ptype, off, filesz) in enumerate(lay.phdrs):
        if ptype not in (PT_NOTE, PT_GNU_PROPERTY) or filesz < 12:
            continue
        namesz = struct.unpack_from(lay.order + "I", lay.data, off)[0]
        desc = 12 + (namesz + 3) // 4 * 4
        fields = {"namesz": 0, "descsz": 4, "pr-datasz": desc + 4}
        for size in sorted({filesz, filesz - 4, desc + 8, desc, 16, 12}):
            if not 0 < size <= filesz:
                continue
            moved = Layout(**{**vars(lay), "data": lay.data + lay.data[off : off + size]})
            repoint = [
                (*_phdr_field(lay, phdr_at, "offset"), len(lay.data)),
                (*_phdr_field(lay, phdr_at, "filesz"), size),
            ]
            yield Case(f"{base}-note{index}-at-end-{size}", "note", patched(moved, *repoint))
            for name_size, desc_size in ((0, 0), (0, 1), (0, 4), (1, 1), (4, 1), (3, 5)):
                sizes = [(len(lay.data), "I", name_size), (len(lay.data) + 4, "I", desc_size)]
                data = patched(moved, *repoint, *sizes)
                label = f"{base}-note{index}-at-end-{size}-sizes-{name_size}-{desc_size}"
                yield Case(label, "note", data)
            for label, at in fields.items():
                if at + 4 > size:
                    continue
                for value in (0, 1, 3, 0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF):
                    data = patched(moved, *repoint, (len(lay.data) + at, "I", value))
                    yield Case(f"{base}-note{index}-at-end-{size}-{label}-{value:x}", "note", data)
        for label, at in fields.items():
            if at + 4 > filesz:
                continue
            for value in (0, 1, 3, 0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF):
                data = patched(lay, (off + at, "I", value))
                yield Case(f"{base}-note{index}-{label}-{value:x}", "note", data)
        for i in range(20):
            data = bytearray(lay.data)
            width = rng.randint(1, 8)
            at = rng.randrange(off, max(off + 1, off + filesz - width))
            data[at : at + width] = rng.randbytes(width)
            yield Case(f"{base}-note{index}-random-{i}", "note", bytes(data))


def all_cases(bases: dict[str, bytes]) -> list[Case]:
    rng = random.Random(SEED)
    cases: list[Case] = []
    for base, data in bases.items():
        lay = layout_of(data)
        phdr_end = lay.phoff + lay.phnum * lay.phentsize
        dyn_start = lay.dyn[0][0] if lay.dyn else 0
        dyn_end = lay.dyn[-1][0] + (16 if lay.wide else 8) if lay.dyn else 0
        cases += truncations(base, lay, rng)
        cases += header_flips(base, lay, rng)
        cases += overwrites(base, lay, rng, "phdrs", lay.phoff, phdr_end, 40)
        cases += overwrites(base, lay, rng, "dynamic", dyn_start, dyn_end, 40)
        for tag, region in ((DT_VERNEED, "verneed"), (DT_VERDEF, "verdef"), (DT_GNU_HASH, "hash")):
            if tag in lay.offsets:
                start = lay.offsets[tag]
                cases += overwrites(base, lay, rng, region, start, start + 64, 20)
        cases += huge_counts(base, lay)
        cases += past_end(base, lay)
        cases += strtab_outside(base, lay)
        cases += cycles(base, lay)
        cases += notes(base, lay, rng)
    return cases


def run_batch(paths: list[Path]) -> dict[str, dict[str, object]]:
    """Outcome per case file name; a crash or hang ends only the case that caused it."""
    outcomes: dict[str, dict[str, object]] = {}
    remaining = paths
    while remaining:
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, str(HANG_SECONDS), str(MEMORY_CAP)]
            + [str(p) for p in remaining],
            capture_output=True,
            text=True,
            check=False,
        )
        started = None
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                outcomes[record.pop("case")] = record
                started = None
        if proc.returncode == 0:
            break
        if started is None:
            raise RuntimeError(f"case runner failed outside any case:\n{proc.stderr}")
        kind = "hang" if "Timeout" in proc.stderr else f"crash (exit {proc.returncode})"
        outcomes[started] = {"kind": kind, "message": proc.stderr.strip()[-400:]}
        names = [p.name for p in remaining]
        remaining = remaining[names.index(started) + 1 :]
    return outcomes


@pytest.fixture(scope="module")
def bases(
    request: pytest.FixtureRequest, ext_rpath: Path, libvers: Path, isa_marked: dict[str, Path]
) -> dict[str, bytes]:
    """Valid files to corrupt: 64-bit and (with gcc-multilib) 32-bit, plus big-endian s390x."""
    found = {"ext64": ext_rpath.read_bytes(), "libvers64": libvers.read_bytes()}
    found["isa64"] = isa_marked["x86-64-v3"].read_bytes()
    try:
        found["ext32"] = request.getfixturevalue("ext32").read_bytes()
    except pytest.skip.Exception:
        pass
    if S390X_WHEEL.is_file():
        found["s390x"] = next(data for _, data in elf_members(S390X_WHEEL))
    return found


@pytest.fixture(scope="module")
def cases(bases: dict[str, bytes]) -> list[Case]:
    return all_cases(bases)


@pytest.fixture(scope="module")
def outcomes(
    cases: list[Case], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, object]]:
    folder = tmp_path_factory.mktemp("corrupt")
    paths = []
    for case in cases:
        path = folder / case.name
        path.write_bytes(case.data)
        paths.append(path)
    return run_batch(paths)


def _problems(
    cases: list[Case], outcomes: dict[str, dict[str, object]], category: str
) -> list[str]:
    chosen = [c for c in cases if c.category == category]
    assert chosen, f"no {category} case was generated"
    problems = []
    for case in chosen:
        outcome = outcomes[case.name]
        kind, message = outcome["kind"], str(outcome.get("message", ""))
        if kind == "ElfError":
            detail = message.split(": ", 1)[1] if ": " in message else ""
            if len(detail.strip()) < 8:
                problems.append(f"{case.name}: ElfError without a useful message: {message!r}")
            elif case.must_fail and not re.search(case.must_fail, detail, re.I):
                problems.append(
                    f"{case.name}: message {detail!r} does not match /{case.must_fail}/"
                )
        elif kind == "ok":
            if case.must_fail:
                problems.append(f"{case.name}: accepted, expected an ElfError")
            elif case.needed is not None and tuple(outcome["needed"]) != case.needed:  # type: ignore[arg-type]
                problems.append(f"{case.name}: needed {outcome['needed']}, expected {case.needed}")
        else:
            problems.append(f"{case.name}: {kind}: {message}")
    return problems


@pytest.mark.parametrize(
    "category",
    [
        "truncation",
        "header-flip",
        "overwrite-phdrs",
        "overwrite-dynamic",
        "overwrite-verneed",
        "overwrite-verdef",
        "overwrite-hash",
        "huge-count",
        "past-end",
        "strtab-outside",
        "cycle",
        "note",
    ],
)
def test_corruption_returns_or_raises_elf_error(
    cases: list[Case], outcomes: dict[str, dict[str, object]], category: str
) -> None:
    problems = _problems(cases, outcomes, category)
    assert not problems, f"{len(problems)} bad outcomes:\n  " + "\n  ".join(problems)


def test_malformed_file_read_by_path_raises_elf_error(ext_rpath: Path, tmp_path: Path) -> None:
    """Reading by path maps the file; the mapping must not mask the ElfError when it closes."""
    cut = tmp_path / "cut.so"
    cut.write_bytes(ext_rpath.read_bytes()[:30])
    with pytest.raises(ElfError, match="cut.so"):
        read_elf(cut)


def test_symbols_error_is_labelled_with_the_given_name(libvers: Path) -> None:
    """A table that only fails when symbols are read still names the file it came from."""
    lay = layout_of(libvers.read_bytes())
    gnu_hash = lay.offsets[DT_GNU_HASH]
    broken = patched(lay, (gnu_hash, "I", 0xFFFFFFFF), *_no_sections(lay))
    elf = read_elf(broken, name="member.so")
    with pytest.raises(ElfError, match="^member.so: "):
        elf.symbols()
