"""Hostile input through the command line: every bad wheel is refused cleanly, whole path covered.

Each case runs ``python -m repairwheel fix -w OUT WHEEL`` (and ``show WHEEL`` where the problem
is in the archive or an ELF file, which ``show`` reads too) in a child process with a 2 GB
address-space limit and a timeout. A refusal must: exit non-zero; print exactly one line,
``repairwheel: error: ...``, naming the wheel, the member and the problem; leave the input
byte-for-byte unchanged; and leave nothing behind, hidden files included, in the output
folder, the working directory or TMPDIR. A failing case lists every rule it broke.

Where the input is not wrong enough to refuse (version chains the loader accepts, library
cycles, a RECORD row that a repair may correct instead), success is allowed but must end in
one valid wheel. Read-only and full output folders are tmpfs mounts in a private mount
namespace (root and ``unshare``); without them those tests skip, or fail under CI.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hostile_wheels import (
    DIST_INFO,
    EXT_MEMBER,
    PLATFORM,
    STORED,
    WHEEL_NAME,
    WHEEL_TEXT,
    Entry,
    broken_elf,
    build_extension,
    build_wheel,
    cyclic_elf,
    deflate,
    deflate_padded,
    dist_info_entries,
    extension_linking,
    record_hash,
    record_row,
    rpath_cycle,
    self_needing,
    spoil,
    unicode_path_extra,
    valid_members,
)
from pypi_wheels import unavailable

MEMORY_LIMIT = 2_000_000_000
TIMEOUT = 30
ERROR = "repairwheel: error: "
DATA_MEMBER = "demo/data.txt"
BIG_MEMBER_SIZE = 30 << 20

Builder = Callable[[Path, bytes], Path]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Scene:
    """The folders one case runs in: all start empty, and a refusal must leave them so."""

    root: Path

    @classmethod
    def make(cls, root: Path) -> Scene:
        scene = cls(root)
        for folder in (scene.inputs, scene.out, scene.cwd, scene.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        return scene

    @property
    def inputs(self) -> Path:
        return self.root / "in"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def command(
        self,
        *args: str,
        wrapper: Sequence[str] = (),
        program: Sequence[str] = ("-m", "repairwheel"),
    ) -> list[str]:
        return [*wrapper, sys.executable, *program, *args]

    def env(self, **extra: str) -> dict[str, str]:
        kept = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REPAIRWHEEL_", "AUDITWHEEL_", "LD_", "SOURCE_DATE_EPOCH"))
        }
        return {**kept, "TMPDIR": str(self.tmp), **extra}

    def run(
        self,
        *args: str,
        wrapper: Sequence[str] = (),
        program: Sequence[str] = ("-m", "repairwheel"),
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                self.command(*args, wrapper=wrapper, program=program),
                cwd=self.cwd,
                env=self.env(**(env or {})),
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                preexec_fn=_limit_memory,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"repairwheel {' '.join(args)} did not finish within {TIMEOUT} s")

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.cwd,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_limit_memory,
        )

    def fix(
        self, wheel: Path, *options: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run("fix", "-w", str(self.out), *options, str(wheel), env=env)

    def leftovers(self, out_listing: Sequence[str] | None = None) -> list[str]:
        """What is left in the output folder, the working directory and TMPDIR.

        ``out_listing`` stands for the output folder's contents: as seen from inside a mount
        namespace, or ``()`` where a wheel is expected there and is checked apart.
        """
        found = {
            "output folder": sorted(os.listdir(self.out)) if out_listing is None else out_listing,
            "working directory": sorted(os.listdir(self.cwd)),
            "TMPDIR": sorted(os.listdir(self.tmp)),
        }
        return [f"left in the {where}: {names}" for where, names in found.items() if names]


def _named(line: str, name: str) -> bool:
    """``name`` appears as written or as repr() escapes it (backslashes, NUL bytes)."""
    return name in line or repr(name)[1:-1] in line


def assert_none(problems: Sequence[str]) -> None:
    """Fail listing every problem found, not only the first."""
    assert not problems, "\n".join(["", *problems])


def refusal_problems(
    proc: subprocess.CompletedProcess[str],
    scene: Scene,
    wheel: Path,
    digest: str,
    pattern: str,
    names: Sequence[str] = (),
    out_listing: Sequence[str] | None = None,
) -> list[str]:
    """Every way ``proc`` falls short of a clean refusal naming ``names`` (none: it refused
    cleanly)."""
    problems = []
    if proc.returncode == 0:
        problems.append("exit code 0")
    lines = proc.stderr.splitlines()
    if len(lines) != 1 or not lines[0].startswith(ERROR):
        problems.append(f"stderr is not one {ERROR!r} line: {proc.stderr!r}")
    else:
        missing = [name for name in names if not _named(lines[0], name)]
        if missing:
            problems.append(f"the error does not name {missing}: {lines[0]!r}")
        if not re.search(pattern, lines[0], re.IGNORECASE):
            problems.append(f"the error does not match {pattern!r}: {lines[0]!r}")
    if not wheel.is_file() or sha256(wheel) != digest:
        problems.append("the input wheel changed")
    return problems + scene.leftovers(out_listing)


def assert_refused(
    scene: Scene, command: str, wheel: Path, pattern: str, names: Sequence[str] = ()
) -> None:
    digest = sha256(wheel)
    if command == "fix":
        proc = scene.fix(wheel)
    else:
        proc = scene.run(command, str(wheel))
    assert_none(refusal_problems(proc, scene, wheel, digest, pattern, (wheel.name, *names)))


def unzip_problems(wheel: Path) -> list[str]:
    proc = subprocess.run(["unzip", "-tq", str(wheel)], capture_output=True, text=True)
    return [] if proc.returncode == 0 else [f"unzip -t {wheel.name}: {proc.stdout.strip()}"]


@pytest.fixture(scope="module")
def extension(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    return build_extension(tmp_path_factory.mktemp("hostile-ext"))


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    return Scene.make(tmp_path)


@pytest.fixture(scope="module", autouse=True)
def unzip_installed() -> None:
    if shutil.which("unzip") is None:
        unavailable("unzip is not installed (the outputs are checked with unzip -t)")


# --- the harness itself ------------------------------------------------------------------------


def test_the_unspoiled_wheel_is_repaired(scene: Scene, extension: bytes) -> None:
    """Every refusal below is caused by its one defect, not by the base wheel."""
    wheel = build_wheel(scene.inputs, valid_members(extension))
    proc = scene.fix(wheel)
    outputs = sorted(scene.out.iterdir())
    assert (proc.returncode, len(outputs)) == (0, 1), proc.stderr
    assert_none(unzip_problems(outputs[0]))


# --- archives ------------------------------------------------------------------------------------


def _not_a_zip(folder: Path, extension: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / WHEEL_NAME
    path.write_bytes(b"#!/bin/sh\necho this is a shell script, not a zip archive\n" * 20)
    return path


def _truncated(folder: Path, extension: bytes) -> Path:
    path = build_wheel(folder, valid_members(extension))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _members(*extra: Entry) -> Builder:
    return lambda folder, extension: build_wheel(folder, [*valid_members(extension), *extra])


def _spoiled(name: str, **changes: Any) -> Builder:
    return lambda folder, extension: build_wheel(
        folder, spoil(valid_members(extension), name, **changes)
    )


def _inflates_past_header(name: str) -> Builder:
    """``name``'s header (and RECORD) describe it truly, but its stream goes on to inflate
    3 GiB of zeros more: more than the child's whole address space."""

    def build(folder: Path, extension: bytes) -> Path:
        members = valid_members(extension)
        data = next(m.data for m in members if m.name == name)
        return build_wheel(folder, spoil(members, name, payload=deflate_padded(data, 3 << 30)))

    return build


def _zeros(size: int) -> Entry:
    return Entry("demo/zeros.bin", bytes(size), payload=deflate(bytes(size), 9))


@dataclass(frozen=True)
class Case:
    """A spoiled wheel and what its refusal must say."""

    build: Builder
    pattern: str  # the error line must match this (case-insensitive)
    names: tuple[str, ...] = ()  # ... and name these besides the wheel
    commands: tuple[str, ...] = ("fix", "show")  # the commands that must refuse it


def _zip_slip(name: str | bytes, reason: str) -> Case:
    entry = Entry(name, b"print('escaped')\n")
    return Case(_members(entry), reason, (entry.raw_name.decode(),))


ARCHIVE_CASES = {
    "not-a-zip": Case(_not_a_zip, r"not a zip"),
    "truncated-zip": Case(_truncated, r"truncated|corrupt"),
    "member-data-shorter-than-declared": Case(
        _spoiled(DATA_MEMBER, compress_size=1 << 20), r"overlap|truncat|short", (DATA_MEMBER,)
    ),
    "bad-crc-in-elf-member": Case(_spoiled(EXT_MEMBER, crc=0x12345678), r"CRC", (EXT_MEMBER,)),
    # fix copies non-ELF members as their compressed bytes; a bad CRC there makes an output
    # that unzip -t and pip reject, so fix must notice (show has no reason to read it).
    "bad-crc-in-copied-member": Case(
        _spoiled(DATA_MEMBER, crc=0x12345678), r"CRC", (DATA_MEMBER,), ("fix",)
    ),
    "dot-dot-member": _zip_slip("../evil.py", r"\.\."),
    "dot-dot-inside-member": _zip_slip("demo/../../evil.py", r"\.\."),
    "absolute-member": _zip_slip("/tmp/evil.py", r"absolute"),
    "backslash-member": _zip_slip("demo\\..\\..\\evil.py", r"backslash"),
    "nul-byte-member": _zip_slip(b"demo/evil.py\x00.txt", r"NUL"),
    "drive-letter-member": _zip_slip("C:/evil.py", r"drive"),
    "duplicate-member": Case(
        _members(Entry(DATA_MEMBER, b"a second copy")), r"duplicate", (DATA_MEMBER,)
    ),
    "symlink-member": Case(
        _members(Entry("demo/passwd", b"/etc/passwd", mode=stat.S_IFLNK | 0o777)),
        r"symbolic link|symlink",
        ("demo/passwd",),
    ),
    "directory-entry-with-a-file-name": Case(
        _members(Entry("demo/sub", mode=stat.S_IFDIR | 0o755)), r"director", ("demo/sub",)
    ),
    "directory-entry-over-a-file": Case(
        _members(Entry(f"{EXT_MEMBER}/", mode=stat.S_IFDIR | 0o755)), r"director", (EXT_MEMBER,)
    ),
    "directory-entry-with-contents": Case(
        _members(Entry("demo/sub/", b"bytes in a directory", mode=stat.S_IFDIR | 0o755)),
        r"director",
        ("demo/sub/",),
    ),
    "declares-20-gb": Case(
        _members(Entry("demo/huge.bin", b"small", file_size=20 << 30)),
        r"declares",
        ("demo/huge.bin",),
    ),
    "declares-20-gb-at-a-plausible-ratio": Case(
        _members(Entry("demo/huge.bin", file_size=20 << 30, payload=bytes(25 << 20))),
        r"declares",
        ("demo/huge.bin",),
    ),
    "ratio-above-1000": Case(_members(_zeros(10 << 20)), r"ratio", ("demo/zeros.bin",)),
    "elf-member-inflates-past-its-size": Case(
        _inflates_past_header(EXT_MEMBER), r"declared size", (EXT_MEMBER,)
    ),
    "copied-member-inflates-past-its-size": Case(
        _inflates_past_header(DATA_MEMBER), r"declared size", (DATA_MEMBER,), ("fix",)
    ),
}


@pytest.mark.parametrize(
    ("case", "command"),
    [(case, command) for case, spec in ARCHIVE_CASES.items() for command in spec.commands],
)
def test_bad_archive_is_refused(scene: Scene, extension: bytes, case: str, command: str) -> None:
    spec = ARCHIVE_CASES[case]
    assert_refused(scene, command, spec.build(scene.inputs, extension), spec.pattern, spec.names)


@pytest.mark.parametrize("name", ["demo.whl", "demo-1.0-py3-none-linux_x86_64.zip", "demo-1-2.whl"])
@pytest.mark.parametrize("command", ["fix", "show"])
def test_file_name_that_is_not_a_wheel_name_is_refused(
    scene: Scene, extension: bytes, name: str, command: str
) -> None:
    wheel = build_wheel(scene.inputs, valid_members(extension), name=name)
    assert_refused(scene, command, wheel, r"wheel file name")


# --- dist-info files -----------------------------------------------------------------------------


def _dist_info_case(file: str, pattern: str, **files: Any) -> Case:
    def build(folder: Path, extension: bytes) -> Path:
        return build_wheel(folder, valid_members(extension), **files)

    return Case(build, pattern, (f"{DIST_INFO}/{file}",), ("fix",))


DIST_INFO_CASES = {
    "wheel-missing": _dist_info_case("WHEEL", r"WHEEL", wheel=None),
    "wheel-without-wheel-version": _dist_info_case(
        "WHEEL", r"Wheel-Version", wheel=b"Generator: hostile\nRoot-Is-Purelib: false\n"
    ),
    "wheel-version-2": _dist_info_case(
        "WHEEL",
        r"Wheel-Version",
        wheel=WHEEL_TEXT.replace(b"Wheel-Version: 1.0", b"Wheel-Version: 2.0"),
    ),
    "wheel-not-utf8": _dist_info_case(
        "WHEEL", r"UTF-8", wheel=WHEEL_TEXT + b"Generator: \xff\xfe\n"
    ),
    "record-missing": _dist_info_case("RECORD", r"RECORD", with_record=False),
    "record-row-of-two-fields": _dist_info_case(
        "RECORD", r"field", record=b"demo/__init__.py,sha256=AAAA\n"
    ),
    "record-not-utf8": _dist_info_case("RECORD", r"UTF-8", record=b"demo/\xff\xfe.py,,\n"),
    "metadata-missing": _dist_info_case("METADATA", r"METADATA", metadata=None),
    "metadata-not-utf8": _dist_info_case(
        "METADATA", r"UTF-8", metadata=b"Metadata-Version: 2.1\nName: d\xffmo\nVersion: 1.0\n"
    ),
    "metadata-without-name-and-version": _dist_info_case(
        "METADATA", r"Name|Version", metadata=b"Metadata-Version: 2.1\nSummary: nameless\n"
    ),
}


@pytest.mark.parametrize("case", DIST_INFO_CASES)
def test_bad_dist_info_is_refused_by_fix(scene: Scene, extension: bytes, case: str) -> None:
    spec = DIST_INFO_CASES[case]
    assert_refused(scene, "fix", spec.build(scene.inputs, extension), spec.pattern, spec.names)


# A RECORD row whose hash or size differs from the member's bytes means the wheel is damaged
# or was changed after it was built: installers refuse it. fix must refuse it too, or it would
# write a RECORD that verifies and launder the change. Each member is reached another way: the
# data file is copied raw, the extension is inflated by the audit, WHEEL is rewritten.
RECORD_ROW_CASES = {
    "hash-differs": (lambda real: real[:-1] + b"?", r"hash differs from RECORD \(recorded sha256="),
    "size-differs": (lambda real: real + b"more", r"size differs from RECORD \(recorded \d+ bytes"),
}
RECORD_MEMBERS = [DATA_MEMBER, EXT_MEMBER, f"{DIST_INFO}/WHEEL"]


def _record_describing(name: str, listed: Callable[[bytes], bytes]) -> Builder:
    """A wheel whose RECORD row for ``name`` describes ``listed(its real contents)``."""

    def build(folder: Path, extension: bytes) -> Path:
        members = valid_members(extension)
        files = [*members, *dist_info_entries(members, with_record=False)]
        rows = [
            record_row(m.text_name, listed(m.data) if m.name == name else m.data) for m in files
        ]
        record = "".join([*rows, f"{DIST_INFO}/RECORD,,\n"]).encode()
        return build_wheel(folder, members, record=record)

    return build


def _record_rows(edit: Callable[[list[str]], list[str]]) -> Builder:
    """A wheel whose true RECORD rows are passed through ``edit``."""

    def build(folder: Path, extension: bytes) -> Path:
        members = valid_members(extension)
        record = dist_info_entries(members)[-1].data.decode()
        return build_wheel(folder, members, record="".join(edit(record.splitlines(True))).encode())

    return build


def record_problems(wheel: Path) -> list[str]:
    """Rows of the wheel's RECORD that do not match the member they name."""
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        for row in csv.reader(io.StringIO(archive.read(record).decode())):
            if row and row[0] != record:
                data = archive.read(row[0])
                if row[1:] != [record_hash(data), str(len(data))]:
                    problems.append(f"{wheel.name}: RECORD row {row} does not match {row[0]}")
    return problems


@pytest.mark.parametrize("member", RECORD_MEMBERS)
@pytest.mark.parametrize("case", RECORD_ROW_CASES)
def test_record_row_that_differs_from_a_member_is_refused_by_fix(
    scene: Scene, extension: bytes, case: str, member: str
) -> None:
    listed, pattern = RECORD_ROW_CASES[case]
    wheel = _record_describing(member, listed)(scene.inputs, extension)
    digest = sha256(wheel)
    proc = scene.fix(wheel)
    assert_none(refusal_problems(proc, scene, wheel, digest, pattern, (wheel.name, member)))
    assert proc.returncode == 2, proc.stderr


@pytest.mark.parametrize("member", [DATA_MEMBER, EXT_MEMBER])
@pytest.mark.parametrize("case", RECORD_ROW_CASES)
def test_show_reports_a_record_row_that_differs(
    scene: Scene, extension: bytes, case: str, member: str
) -> None:
    """show audits the wheel all the same and names the one member RECORD does not vouch for.
    (Needs show to call WheelArchive.verify_record; see the laundering change.)"""
    listed, pattern = RECORD_ROW_CASES[case]
    wheel = _record_describing(member, listed)(scene.inputs, extension)
    proc = scene.run("show", str(wheel))
    assert proc.returncode == 0, proc.stderr
    flagged = [line for line in proc.stdout.splitlines() if "differs from RECORD" in line]
    assert len(flagged) == 1 and member in flagged[0], proc.stdout
    assert re.search(pattern, flagged[0]), flagged[0]


# Installers accept these (installer's validate_record aside, which only warns-by-refusing when
# asked): fix succeeds and its new RECORD is complete and right.
RECORD_WARNING_CASES = {
    "member-not-listed": _record_rows(lambda rows: [r for r in rows if DATA_MEMBER not in r]),
    "row-for-a-missing-file": _record_rows(lambda rows: ["demo/gone.py,,\n", *rows]),
    "row-without-hash-or-size": _record_rows(
        lambda rows: [f"{DATA_MEMBER},,\n" if r.startswith(DATA_MEMBER) else r for r in rows]
    ),
}


@pytest.mark.parametrize("case", RECORD_WARNING_CASES)
def test_incomplete_record_is_completed_by_fix(scene: Scene, extension: bytes, case: str) -> None:
    wheel = RECORD_WARNING_CASES[case](scene.inputs, extension)
    proc = scene.fix(wheel)
    assert proc.returncode == 0, proc.stderr
    (output,) = scene.out.iterdir()
    with zipfile.ZipFile(output) as archive:
        record = archive.read(f"{DIST_INFO}/RECORD").decode()
        files = [n for n in archive.namelist() if not n.endswith("/")]
    listed = [row[0] for row in csv.reader(io.StringIO(record))]
    assert sorted(listed) == sorted(files)
    assert_none(record_problems(output) + unzip_problems(output))


@pytest.mark.parametrize("case", ["member-not-listed", "row-for-a-missing-file"])
def test_show_notes_an_incomplete_record(scene: Scene, extension: bytes, case: str) -> None:
    """(Needs show to call WheelArchive.verify_record; see the laundering change.)"""
    wheel = RECORD_WARNING_CASES[case](scene.inputs, extension)
    proc = scene.run("show", str(wheel))
    assert proc.returncode == 0, proc.stderr
    expected = {
        "member-not-listed": f"{DATA_MEMBER}: not listed in RECORD",
        "row-for-a-missing-file": "demo/gone.py: listed in RECORD but not in the wheel",
    }[case]
    assert expected in proc.stdout, proc.stdout


# --- what installers see -------------------------------------------------------------------------


def _dist_info_named(dist_info: str) -> Builder:
    def build(folder: Path, extension: bytes) -> Path:
        return build_wheel(folder, valid_members(extension), dist_info=dist_info)

    return build


@pytest.mark.parametrize("command", ["fix", "show"])
@pytest.mark.parametrize(
    "dist_info", ["other-1.0.dist-info", "demo-2.0.dist-info", "demo.dist-info"]
)
def test_dist_info_of_another_distribution_is_refused(
    scene: Scene, extension: bytes, dist_info: str, command: str
) -> None:
    wheel = _dist_info_named(dist_info)(scene.inputs, extension)
    assert_refused(scene, command, wheel, r"does not match the file name", (dist_info,))


def test_dist_info_spelled_another_way_is_accepted(scene: Scene, extension: bytes) -> None:
    """Names compare canonicalized and versions as versions: Demo-1.0.0 is demo 1.0."""
    wheel = _dist_info_named("Demo-1.0.0.dist-info")(scene.inputs, extension)
    proc = scene.fix(wheel)
    assert proc.returncode == 0, proc.stderr


def test_root_is_purelib_true_becomes_false(scene: Scene, extension: bytes) -> None:
    text = WHEEL_TEXT.replace(b"Root-Is-Purelib: false", b"Root-Is-Purelib: true")
    wheel = build_wheel(scene.inputs, valid_members(extension), wheel=text)
    proc = scene.fix(wheel)
    assert proc.returncode == 0, proc.stderr
    (output,) = scene.out.iterdir()
    with zipfile.ZipFile(output) as archive:
        lines = archive.read(f"{DIST_INFO}/WHEEL").decode().splitlines()
    assert lines[:3] == ["Wheel-Version: 1.0", "Generator: hostile", "Root-Is-Purelib: false"]
    assert lines[3:] and all(line.startswith("Tag: py3-none-") for line in lines[3:])
    assert f"Tag: py3-none-{PLATFORM}" not in lines
    assert_none(record_problems(output) + unzip_problems(output))


def _unicode_path_wheel(folder: Path, extension: bytes) -> Path:
    """demo/donnees.txt stored, demo/données.txt in its 0x7075 field (listed so in RECORD);
    demo/caf\x82.txt stored without the UTF-8 flag (cp437: café)."""
    raw = b"demo/donnees.txt"
    members = [
        *valid_members(extension),
        Entry(
            raw,
            b"1",
            extra=unicode_path_extra(raw, "demo/données.txt"),
            listed_as="demo/données.txt",
        ),
        Entry(b"demo/caf\x82.txt", b"2", flags=0, listed_as="demo/café.txt"),
    ]
    return build_wheel(folder, members)


def test_member_names_are_the_ones_installers_see_and_written_utf8(
    scene: Scene, extension: bytes
) -> None:
    wheel = _unicode_path_wheel(scene.inputs, extension)
    proc = scene.fix(wheel)
    assert proc.returncode == 0, proc.stderr
    (output,) = scene.out.iterdir()
    with zipfile.ZipFile(output) as archive:
        found = {i.filename: i for i in archive.infolist()}
    for name, data in (("demo/données.txt", b"1"), ("demo/café.txt", b"2")):
        assert name in found, sorted(found)
        assert found[name].flag_bits & 0x800 and found[name].extra == b""
        with zipfile.ZipFile(output) as archive:
            assert archive.read(name) == data
    assert_none(record_problems(output) + unzip_problems(output))


_BAD_NAME_CASES = {
    "utf8-flag-on-bytes-that-are-not": Case(
        _members(Entry(b"demo/\xff\xfe.py", b"x", flags=0x800)),
        r"member name is not valid UTF-8",
    ),
    "unicode-path-not-utf8": Case(
        _members(
            Entry(b"demo/a.py", b"x", extra=unicode_path_extra(b"demo/a.py", b"demo/\xff.py"))
        ),
        r"unicode path extra field \(0x7075\)",
    ),
    "unicode-path-escapes": Case(
        _members(Entry(b"demo/a.py", b"x", extra=unicode_path_extra(b"demo/a.py", "../evil.py"))),
        r"'\.\.' component",
        ("../evil.py",),
    ),
    "stored-name-escapes-behind-a-safe-unicode-path": Case(
        _members(Entry(b"../evil.py", b"x", extra=unicode_path_extra(b"../evil.py", "demo/a.py"))),
        r"'\.\.' component",
        ("../evil.py",),
    ),
}


@pytest.mark.parametrize(
    ("case", "command"),
    [(case, command) for case in _BAD_NAME_CASES for command in ("fix", "show")],
)
def test_bad_member_name_is_refused(
    scene: Scene, extension: bytes, case: str, command: str
) -> None:
    spec = _BAD_NAME_CASES[case]
    assert_refused(scene, command, spec.build(scene.inputs, extension), spec.pattern, spec.names)


# --- the environment -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yesterday", "-1", "1.5", "99999999999999"])
def test_bad_source_date_epoch_is_refused(scene: Scene, extension: bytes, value: str) -> None:
    wheel = build_wheel(scene.inputs, valid_members(extension))
    digest = sha256(wheel)
    proc = scene.fix(wheel, env={"SOURCE_DATE_EPOCH": value})
    names = ("SOURCE_DATE_EPOCH", value)
    assert_none(refusal_problems(proc, scene, wheel, digest, r"SOURCE_DATE_EPOCH", names))
    assert proc.returncode == 2, proc.stderr


# --- ELF members ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["fix", "show"])
@pytest.mark.parametrize(
    "case",
    [
        "truncated-in-program-headers",
        "huge-program-header-count",
        "program-headers-past-the-end",
        "dynamic-segment-past-the-end",
        "strtab-outside-every-load",
        "version-need-next-wraps-around",
    ],
)
def test_broken_elf_member_is_refused(
    scene: Scene, extension: bytes, case: str, command: str
) -> None:
    members = spoil(valid_members(extension), EXT_MEMBER, data=broken_elf(extension)[case])
    wheel = build_wheel(scene.inputs, members)
    assert_refused(scene, command, wheel, r"ELF|header|PT_|DT_|version|past|outside", (EXT_MEMBER,))


@pytest.mark.parametrize(
    "case", ["version-need-count-outlives-chain", "version-aux-count-outlives-chain"]
)
def test_version_chain_outliving_its_count_ends(scene: Scene, extension: bytes, case: str) -> None:
    """The loader follows links until a zero one, whatever the count says: such a file loads,
    so a repair may succeed; it must end, and end in one valid wheel or one error line."""
    members = spoil(valid_members(extension), EXT_MEMBER, data=cyclic_elf(extension)[case])
    wheel = build_wheel(scene.inputs, members)
    digest = sha256(wheel)
    proc = scene.fix(wheel)
    if proc.returncode != 0:
        assert_none(
            refusal_problems(proc, scene, wheel, digest, r"version", (wheel.name, EXT_MEMBER))
        )
    else:
        outputs = sorted(scene.out.iterdir())
        assert len(outputs) == 1, outputs
        assert_none(unzip_problems(outputs[0]))


# --- dependency graphs ---------------------------------------------------------------------------


def _graft_problems(
    scene: Scene, proc: subprocess.CompletedProcess[str], libs: set[str]
) -> list[str]:
    """How a repair that should graft ``libs`` (by name before the hash) fell short."""
    problems = [] if proc.returncode == 0 else [f"exit {proc.returncode}: {proc.stderr!r}"]
    outputs = sorted(os.listdir(scene.out))
    if len(outputs) != 1 or outputs[0].startswith("."):
        return [*problems, f"output folder holds {outputs}"]
    output = scene.out / outputs[0]
    problems += unzip_problems(output)
    listing = subprocess.run(["unzip", "-Z1", str(output)], capture_output=True, text=True)
    grafted = {Path(n).name.split("-", 1)[0] for n in listing.stdout.split() if ".libs/" in n}
    if grafted != libs:
        problems.append(f"grafted {sorted(grafted)}, expected {sorted(libs)}")
    return problems + scene.leftovers(())


def test_rpath_cycle_between_grafted_libraries_terminates(scene: Scene, tmp_path: Path) -> None:
    liba = rpath_cycle(tmp_path / "libs")
    members = spoil(
        valid_members(b""), EXT_MEMBER, data=extension_linking(tmp_path / "ext", [liba])
    )
    proc = scene.fix(build_wheel(scene.inputs, members), "--ldpaths", str(liba.parent))
    assert_none(_graft_problems(scene, proc, {"liba", "libb"}))


def test_library_needing_itself_terminates(scene: Scene, tmp_path: Path) -> None:
    libself = self_needing(tmp_path / "libs")
    members = spoil(
        valid_members(b""), EXT_MEMBER, data=extension_linking(tmp_path / "ext", [libself])
    )
    proc = scene.fix(build_wheel(scene.inputs, members), "--ldpaths", str(libself.parent))
    assert_none(_graft_problems(scene, proc, {"libself"}))


# --- the output folder ---------------------------------------------------------------------------

_MOUNT_SCRIPT = """
options=$1 folder=$2 listing=$3
shift 3
mount -t tmpfs -o "$options" repairwheel-hostile "$folder" || exit 97
"$@"
status=$?
ls -A "$folder" > "$listing"
exit $status
"""


@pytest.fixture(scope="module")
def mount_namespace() -> None:
    """Root and ``unshare -m``: chmod cannot make a folder read-only for root, a mount can."""
    if os.geteuid() != 0:
        unavailable("needs root to mount a read-only or a small tmpfs in a mount namespace")
    if shutil.which("unshare") is None:
        unavailable("unshare is not installed")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable(f"unshare -m does not work here: {probe.stderr.strip()}")


def _big_wheel(folder: Path, extension: bytes, size: int) -> Path:
    """The valid wheel plus ``size`` random bytes, stored: the output is at least that big."""
    blob = Entry("demo/blob.bin", os.urandom(size), method=STORED)
    return build_wheel(folder, [*valid_members(extension), blob])


def _fix_on_tmpfs(
    scene: Scene, wheel: Path, options: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run fix with its output folder a fresh tmpfs mounted with ``options`` in a private
    mount namespace; returns the run and what the tmpfs held when fix had ended."""
    listing = scene.root / "listing"
    script = ["sh", "-c", _MOUNT_SCRIPT, "sh", options, str(scene.out), str(listing)]
    proc = scene.run("fix", "-w", str(scene.out), str(wheel), wrapper=["unshare", "-m", *script])
    assert proc.returncode != 97, f"mounting the tmpfs failed: {proc.stderr}"
    return proc, listing.read_text().split()


@pytest.mark.usefixtures("mount_namespace")
def test_read_only_output_folder_is_refused(scene: Scene, extension: bytes) -> None:
    wheel = build_wheel(scene.inputs, valid_members(extension))
    digest = sha256(wheel)
    proc, inside = _fix_on_tmpfs(scene, wheel, "ro")
    assert_none(
        refusal_problems(proc, scene, wheel, digest, r"read-only", (str(scene.out),), inside)
    )
    assert proc.returncode == 1, proc.stderr  # ResourceError: the machine, not the wheel


@pytest.mark.usefixtures("mount_namespace")
def test_full_output_folder_is_refused(scene: Scene, extension: bytes) -> None:
    wheel = _big_wheel(scene.inputs, extension, 2 << 20)
    digest = sha256(wheel)
    proc, inside = _fix_on_tmpfs(scene, wheel, "size=1m")
    assert_none(
        refusal_problems(proc, scene, wheel, digest, r"no space", (str(scene.out),), inside)
    )
    assert proc.returncode == 1, proc.stderr  # ResourceError


# --- interruption and concurrency ----------------------------------------------------------------


def _writing(folder: Path) -> bool:
    """A hidden file in ``folder`` has data in it."""
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                if entry.name.startswith(".") and entry.stat().st_size > 0:
                    return True
            except FileNotFoundError:  # renamed into place meanwhile
                pass
    return False


def _interrupt(scene: Scene, wheel: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run fix and send it SIGINT once data reaches its hidden temporary output; retried
    when fix finishes first, failing if it always does."""
    for _ in range(5):
        proc = scene.popen("fix", "-w", str(scene.out), *options, str(wheel))
        sent = False
        try:
            while not sent and proc.poll() is None:
                if _writing(scene.out):
                    proc.send_signal(signal.SIGINT)
                    sent = True
                time.sleep(0.0002)
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if sent:
            return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        for output in scene.out.iterdir():
            output.unlink()
    pytest.fail("fix finished every time before SIGINT could be sent")


def interrupt_problems(
    scene: Scene, proc: subprocess.CompletedProcess[str], wheel: Path, digest: str
) -> list[str]:
    problems = [] if proc.returncode == 130 else [f"exit {proc.returncode}, not 130"]
    lines = proc.stderr.splitlines()
    if len(lines) != 1 or not re.fullmatch(r"repairwheel: .*interrupted.*", lines[0]):
        problems.append(f"stderr is not one 'repairwheel: ... interrupted' line: {proc.stderr!r}")
    if sha256(wheel) != digest:
        problems.append("the input wheel changed")
    return problems + scene.leftovers()


def test_interrupt_while_writing_leaves_nothing(scene: Scene, extension: bytes) -> None:
    """SIGINT once the first MiB of a 30 MiB output has reached the temporary file."""
    wheel = _big_wheel(scene.inputs, extension, BIG_MEMBER_SIZE)
    digest = sha256(wheel)
    proc = _interrupt(scene, wheel)
    assert_none(interrupt_problems(scene, proc, wheel, digest))


def test_interrupt_while_copying_a_pure_wheel_leaves_nothing(scene: Scene) -> None:
    """``--allow-pure-python-wheel`` copies the wheel through its own temporary file."""
    blob = Entry("demo/blob.bin", os.urandom(BIG_MEMBER_SIZE), method=STORED)
    any_text = WHEEL_TEXT.replace(PLATFORM.encode(), b"any")
    wheel = build_wheel(scene.inputs, [blob], name="demo-1.0-py3-none-any.whl", wheel=any_text)
    digest = sha256(wheel)
    proc = _interrupt(scene, wheel, "--allow-pure-python-wheel")
    assert_none(interrupt_problems(scene, proc, wheel, digest))


# The CLI with os.open wrapped so that creating a file in the output folder (argv[1]) is
# followed at once by KeyboardInterrupt: what SIGINT does when it lands in that instant.
_INTERRUPT_AFTER_CREATE = """
import os, runpy, sys
folder, real_open = sys.argv.pop(1), os.open
def open_then_interrupt(path, flags, *args, **kwargs):
    fd = real_open(path, flags, *args, **kwargs)
    if flags & os.O_CREAT and os.path.dirname(os.fspath(path)) == folder:
        raise KeyboardInterrupt
    return fd
os.open = open_then_interrupt
runpy.run_module("repairwheel", run_name="__main__", alter_sys=True)
"""


def test_interrupt_as_the_output_is_created_leaves_nothing(scene: Scene, extension: bytes) -> None:
    """SIGINT can land between the temporary file's creation and the start of writing (seen
    in about 1 run in 30 by polling, so it is injected here): it must not leave the file."""
    wheel = build_wheel(scene.inputs, valid_members(extension))
    digest = sha256(wheel)
    program = ("-c", _INTERRUPT_AFTER_CREATE, str(scene.out))
    proc = scene.run("fix", "-w", str(scene.out), str(wheel), program=program)
    assert_none(interrupt_problems(scene, proc, wheel, digest))


def test_two_repairs_into_one_folder_leave_one_valid_wheel(scene: Scene, extension: bytes) -> None:
    """Both may succeed (the last rename wins) or one may fail cleanly; the folder ends with
    one complete wheel and no temporary file."""
    wheel = _big_wheel(scene.inputs, extension, BIG_MEMBER_SIZE)
    runs = [scene.popen("fix", "-w", str(scene.out), str(wheel)) for _ in range(2)]
    results = [(run.communicate(timeout=TIMEOUT)[1], run.returncode) for run in runs]
    problems = []
    for stderr, status in results:
        if status != 0 and (len(stderr.splitlines()) != 1 or not stderr.startswith(ERROR)):
            problems.append(f"a failing run did not fail cleanly: exit {status}, {stderr!r}")
    if all(status != 0 for _, status in results):
        problems.append("neither repair succeeded")
    outputs = sorted(os.listdir(scene.out))
    if len(outputs) != 1 or outputs[0].startswith(".") or not outputs[0].endswith(".whl"):
        problems.append(f"the output folder holds {outputs}")
    else:
        problems += unzip_problems(scene.out / outputs[0])
    assert_none(problems + scene.leftovers(()))
