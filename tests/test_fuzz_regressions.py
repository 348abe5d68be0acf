"""Inputs that once crashed the C ELF core (found by fuzz/run.sh), replayed through read_elf.

Each input runs in a child process, copied flush against an unreadable page: a
read past the end of the buffer is then a segfault, i.e. a failed test, not a
silent read of whatever memory follows.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted((ROOT / "tests" / "data" / "fuzz").iterdir())

# argv[1]: input file; argv[2]: "parse" to parse it, "overread" to read one byte too many.
_CHILD = r"""
import ctypes
import mmap
import sys

from repairwheel.elf import read_elf
from repairwheel.errors import ElfError

data = open(sys.argv[1], "rb").read()
page = mmap.PAGESIZE
span = max(1, -(-len(data) // page)) * page
region = mmap.mmap(-1, span + page)
base = ctypes.addressof(ctypes.c_char.from_buffer(region))
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
if libc.mprotect(base + span, page, 0) != 0:  # PROT_NONE
    raise OSError(ctypes.get_errno(), "mprotect")
region[span - len(data) : span] = data
if sys.argv[2] == "overread":
    ctypes.string_at(base + span - len(data), len(data) + 1)
try:
    read_elf(memoryview(region)[span - len(data) : span], name="input").symbols()
except ElfError as exc:
    print(f"ElfError: {exc}")
else:
    print("ok")
"""


def _replay(case: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CHILD, str(case), mode],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_guard_page_turns_an_overread_into_a_crash() -> None:
    result = _replay(CASES[0], "overread")
    assert result.returncode in (-signal.SIGSEGV, -signal.SIGBUS), result.stderr


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_fuzz_input_is_parsed_or_rejected_without_crashing(case: Path) -> None:
    result = _replay(case, "parse")
    assert result.returncode == 0, result.stderr
    outcome = result.stdout.strip()
    assert outcome == "ok" or (
        outcome.startswith("ElfError: input: ") and len(outcome) > len("ElfError: input: ")
    ), outcome
