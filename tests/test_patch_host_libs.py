"""Every shared library of this machine, patched, still loads.

Each library in /usr/lib/x86_64-linux-gnu (and the multilib /usr/lib/i386-linux-gnu) that
dlopen()s as it is gets the edits a repair makes, made larger than any repair's: every
DT_NEEDED renamed to a longer alias (a symlink to the file the host loader would pick), a
DT_RPATH of 200+ characters and a new SONAME. The patched copy must still dlopen() with
RTLD_NOW and hold exactly the planned entries, both as ``readelf -dW`` shows them (binutils,
not the C core apply_patches checks with) and as the loader reads them: readelf takes .dynstr
from the section headers, and so does the C core when DT_STRTAB + DT_STRSZ overruns its
PT_LOAD, while the loader reads whatever is mapped at DT_STRTAB.
benchmarks/patch_growth.py imports the plan from here.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

import pytest
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from pypi_wheels import unavailable

from repairwheel.elf import ElfType, read_elf
from repairwheel.errors import ElfError
from repairwheel.patch import PatchOps, PatchReport, apply_patches, get_patcher

PATCHERS = ("builtin", "patchelf")
HOST_DIRS = {"x86_64": Path("/usr/lib/x86_64-linux-gnu"), "i386": Path("/usr/lib/i386-linux-gnu")}
CFLAGS = {"x86_64": (), "i386": ("-m32",)}
# Where the loader looks after the ld.so cache; a candidate counts only if its class and
# machine match the library that needs it.
STANDARD_DIRS = tuple(
    Path(d)
    for d in (
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib/i386-linux-gnu",
        "/usr/lib/i386-linux-gnu",
        "/lib32",
        "/usr/lib32",
        "/lib",
        "/usr/lib",
    )
)
# glibc's own libraries: a second copy of one in a process breaks it, so they are not aliased.
CORE_NEEDED = re.compile(
    r"(libc\.so\.6|ld-linux.*\.so\.\d+|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1"
    r"|libutil\.so\.1|libresolv\.so\.2)"
)
NOT_PATCHED = re.compile(r"(libc\.so\.6|ld-linux.*\.so\.\d+)")
ALIAS_PREFIX = "rwalias-"
SONAME_PREFIX = "rwpatched-"
MISSING_RPATH = "/some/long/path/that/does/not/exist/" + "/".join(["rw-missing-folder"] * 10)
GROWTH_SLACK = 8 << 10  # the new strings (at most a few hundred bytes each), alignment
LOAD_TIMEOUT = 20  # seconds per library, in the dlopen child
SHOWN_FAILURES = 20
STRIP_SAMPLE = 50

DLOPEN_EACH_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* One path a line on stdin; for each, a forked child dlopen()s it (RTLD_NOW | RTLD_LOCAL)
   under alarm(argv[1]) and passes dlerror() back through a pipe. Prints "OK path" or
   "FAIL path: why", one line each. */
int main(int argc, char **argv) {
    unsigned timeout = argc > 1 ? (unsigned)atoi(argv[1]) : 20;
    static char path[8192], err[PIPE_BUF];
    while (fgets(path, sizeof path, stdin)) {
        path[strcspn(path, "\n")] = 0;
        int fds[2];
        if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) { perror("pipe2"); return 2; }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 2; }
        if (pid == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0); dup2(null, 1); dup2(null, 2);
            alarm(timeout);
            if (dlopen(path, RTLD_NOW | RTLD_LOCAL)) _exit(0);
            const char *why = dlerror();
            size_t len = strlen(why);
            if (write(fds[1], why, len < PIPE_BUF ? len : PIPE_BUF - 1) < 0) _exit(3);
            _exit(1);
        }
        close(fds[1]);
        int status;
        if (waitpid(pid, &status, 0) < 0) { perror("waitpid"); return 2; }
        ssize_t got = read(fds[0], err, sizeof err - 1);
        close(fds[0]);
        err[got > 0 ? got : 0] = 0;
        for (char *c = err; *c; c++) if (*c == '\n') *c = ' ';
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            printf("OK %s\n", path);
        else if (got > 0)
            printf("FAIL %s: %s\n", path, err);
        else if (WIFSIGNALED(status))
            printf("FAIL %s: killed by signal %d%s\n", path, WTERMSIG(status),
                   WTERMSIG(status) == SIGALRM ? " (timed out)" : "");
        else
            printf("FAIL %s: exit status %d\n", path, WEXITSTATUS(status));
    }
    return 0;
}
"""

_READELF_ENTRY = re.compile(r"^\s*0x[0-9a-f]+ \((NEEDED|SONAME|RPATH|RUNPATH)\)\s+[^\[]*\[(.*)\]$")


@dataclass(frozen=True)
class Plan:
    """The edits of one library and the dynamic entries they must leave."""

    name: str  # of the host file and of its copies
    source: Path  # the host file
    ops: PatchOps
    needed: tuple[str, ...]
    soname: str
    rpath: str


class Aliases:
    """Aliases of DT_NEEDED names, as symlinks in one folder to the file the host loader
    picks for each name (the ld.so cache, then the standard folders)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._cache = _ld_so_cache()

    def alias(self, name: str, arch: tuple[int, int]) -> str | None:
        """The alias of ``name`` for a library of ``arch``, None for glibc's core libraries
        and names the host cannot resolve."""
        if CORE_NEEDED.fullmatch(name):
            return None
        target = next(
            (
                path
                for path in (*self._cache.get(name, ()), *(d / name for d in STANDARD_DIRS))
                if _arch_of(path) == arch
            ),
            None,
        )
        if target is None:
            return None
        link = self.folder / f"{ALIAS_PREFIX}{name}"
        if not link.is_symlink():
            link.symlink_to(target)
        return link.name


def candidates(folder: Path) -> list[Path]:
    """The ELF shared objects with a dynamic section directly in ``folder``, symlinks resolved,
    in name order: each file once, and one file per name (the copies share a folder)."""
    seen: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if not (entry.name.endswith(".so") or ".so." in entry.name):
            continue
        real = entry.resolve()
        if real.is_file() and real.name not in seen:
            seen[real.name] = real
    return [path for path in seen.values() if _is_dynamic_library(path)]


def plan_all(libraries: Iterable[Path], aliases: Aliases) -> list[Plan]:
    """The plan of every library except libc and the loader themselves."""
    rpath = f"{aliases.folder}:{MISSING_RPATH}"
    plans = []
    for path in libraries:
        elf = read_elf(path)
        if NOT_PATCHED.fullmatch(elf.soname or path.name):
            continue
        arch = (elf.elf_class, elf.machine)
        renames = {n: a for n in elf.needed if (a := aliases.alias(n, arch)) is not None}
        soname = f"{SONAME_PREFIX}{elf.soname or path.name}"
        ops = PatchOps(set_soname=soname, replace_needed=tuple(renames.items()), rpath=rpath)
        needed = tuple(renames.get(n, n) for n in elf.needed)
        plans.append(Plan(path.name, path, ops, needed, soname, rpath))
    return plans


def copy_into(plans: Sequence[Plan], folder: Path) -> list[tuple[Path, PatchOps]]:
    """Copies of the planned libraries in ``folder``, as apply_patches jobs."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / plan.name, plan.ops) for plan in plans]
    with ThreadPoolExecutor() as pool:
        list(pool.map(shutil.copyfile, (plan.source for plan in plans), (p for p, _ in jobs)))
    return jobs


def growth(reports: Sequence[PatchReport]) -> list[int]:
    """Bytes each file grew by, sorted."""
    return sorted(report.size_after - report.size_before for report in reports)


def percentile(ordered: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _ld_so_cache() -> dict[str, list[Path]]:
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), "/sbin", "/usr/sbin"])
    ldconfig = shutil.which("ldconfig", path=path)
    if ldconfig is None:
        return {}
    out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=True).stdout
    cache: dict[str, list[Path]] = {}
    for match in re.finditer(r"^\s+(\S+) \(.*\) => (\S+)$", out, re.MULTILINE):
        cache.setdefault(match[1], []).append(Path(match[2]))
    return cache


@cache
def _arch_of(path: Path) -> tuple[int, int] | None:
    try:
        elf = read_elf(path)
    except ElfError:
        return None
    return elf.elf_class, elf.machine


def _is_dynamic_library(path: Path) -> bool:
    try:
        elf = read_elf(path)
    except ElfError:
        return False
    return elf.elf_type == ElfType.DYN and (elf.soname is not None or bool(elf.needed))


# --- the test machinery ---------------------------------------------------------------------


@dataclass(frozen=True)
class HostSet:
    """One host folder: the plans of its libraries that load unpatched, and the dlopen helper
    of its architecture."""

    arch: str
    helper: Path
    plans: tuple[Plan, ...]  # only libraries whose unpatched copy loads


@dataclass(frozen=True)
class Dynamic:
    """The dynamic entries of one file, as one reader sees them."""

    needed: tuple[str, ...]
    sonames: tuple[str, ...]
    rpaths: tuple[str, ...]
    runpaths: tuple[str, ...]

    def differences(self, planned: Dynamic) -> list[str]:
        """Each entry kind that differs from ``planned``, in words."""
        return [
            f"{field.name} {getattr(self, field.name)} (planned {getattr(planned, field.name)})"
            for field in fields(self)
            if getattr(self, field.name) != getattr(planned, field.name)
        ]


def load_failures(helper: Path, paths: Sequence[Path]) -> dict[Path, str]:
    """Each of ``paths`` that does not dlopen() -> why, using the host's default search path;
    one helper process per CPU, each over an interleaved share."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    shares = [paths[i :: os.cpu_count() or 1] for i in range(min(os.cpu_count() or 1, len(paths)))]

    def run(share: Sequence[Path]) -> str:
        return subprocess.run(
            [os.fspath(helper), str(LOAD_TIMEOUT)],
            input="".join(f"{p}\n" for p in share),
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout

    with ThreadPoolExecutor() as pool:
        lines = [line for out in pool.map(run, shares) for line in out.splitlines()]
    results: dict[Path, str | None] = {}
    for line in lines:
        status, _, rest = line.partition(" ")
        path, _, why = rest.partition(": ") if status == "FAIL" else (rest, "", "")
        results[Path(path)] = why if status == "FAIL" else None
    assert set(results) == set(paths), "dlopen_each did not report every library"
    return {path: why for path, why in results.items() if why is not None}


def readelf_dynamic(paths: Sequence[Path]) -> dict[Path, Dynamic]:
    """``readelf -dW`` of every file, parsed."""
    out = subprocess.run(
        ["readelf", "-dW", *map(os.fspath, paths)], capture_output=True, text=True, check=True
    ).stdout
    chunks = re.split(r"^File: (.+)$", out, flags=re.MULTILINE)
    texts = dict(zip(chunks[1::2], chunks[2::2])) if len(paths) > 1 else {str(paths[0]): out}
    found = {}
    for name, text in texts.items():
        entries: dict[str, list[str]] = {"NEEDED": [], "SONAME": [], "RPATH": [], "RUNPATH": []}
        for line in text.splitlines():
            if match := _READELF_ENTRY.match(line):
                entries[match[1]].append(match[2])
        found[Path(name)] = Dynamic(*(tuple(entries[k]) for k in entries))
    return found


def loader_dynamic(path: Path) -> Dynamic:
    """The entries as the loader reads them: strings at DT_STRTAB's address mapped through the
    PT_LOADs, whatever the section headers say."""
    with path.open("rb") as fh:
        elf = ELFFile(fh)
        segments = list(elf.iter_segments())
        dynamic = next(seg for seg in segments if isinstance(seg, DynamicSegment))
        tags = [(str(tag.entry.d_tag), int(tag.entry.d_val)) for tag in dynamic.iter_tags()]
        strtab = dict(tags)["DT_STRTAB"]
        offset = next(
            (
                seg["p_offset"] + strtab - seg["p_vaddr"]
                for seg in segments
                if seg["p_type"] == "PT_LOAD"
                and seg["p_vaddr"] <= strtab < seg["p_vaddr"] + seg["p_filesz"]
            ),
            None,
        )
        assert offset is not None, f"{path.name}: DT_STRTAB {strtab:#x} is in no PT_LOAD"
        entries: dict[str, list[str]] = {k: [] for k in ("NEEDED", "SONAME", "RPATH", "RUNPATH")}
        for tag, value in tags:
            if tag.removeprefix("DT_") in entries:
                fh.seek(offset + value)
                entries[tag.removeprefix("DT_")].append(_c_string(fh.read(4096)))
    return Dynamic(*(tuple(entries[k]) for k in entries))


def dynamic_mismatches(jobs: Sequence[tuple[Path, PatchOps]], plans: Sequence[Plan]) -> list[str]:
    """How each patched file differs from its plan, as readelf shows it and as the loader
    reads it."""
    shown = readelf_dynamic([path for path, _ in jobs])
    problems = []
    for (path, _), plan in zip(jobs, plans):
        want = Dynamic(plan.needed, (plan.soname,), (plan.rpath,), ())
        for view, got in (("readelf -dW", shown[path]), ("the loader", loader_dynamic(path))):
            if got != want:
                problems.append(f"{plan.name}: {view} reads {'; '.join(got.differences(want))}")
    return problems


def _c_string(data: bytes) -> str:
    return data.partition(b"\0")[0].decode("utf-8", "replace")


def patch_growth_bound(path: Path) -> int:
    """The most the built-in patcher may add to ``path``: the tables it may move (.dynstr,
    .dynamic, the notes, hash tables, .dynsym and .gnu.version after the program headers, or
    the program header table) again, plus GROWTH_SLACK for the new strings and alignment."""
    movable = {"SHT_NOTE", "SHT_HASH", "SHT_GNU_HASH", "SHT_DYNSYM", "SHT_GNU_versym"}
    with path.open("rb") as fh:
        elf = ELFFile(fh)
        size = sum(
            int(section["sh_size"])
            for section in elf.iter_sections()
            if section.name in (".dynstr", ".dynamic", ".interp") or section["sh_type"] in movable
        )
        return size + int(elf["e_phnum"]) * int(elf["e_phentsize"]) + GROWTH_SLACK


def assert_as_planned(
    helper: Path, jobs: Sequence[tuple[Path, PatchOps]], plans: Sequence[Plan], what: str
) -> None:
    """Every patched file has its planned entries, as readelf and the loader read them, and
    dlopen()s."""
    mismatches = dynamic_mismatches(jobs, plans)
    failures = load_failures(helper, [path for path, _ in jobs])
    print(f"{what}: {len(jobs) - len(failures)} of {len(jobs)} load")
    assert not mismatches and not failures, (
        f"{what}: {len(mismatches)} entry mismatches; {len(failures)} of {len(jobs)} files do"
        " not load"
        + "".join(f"\n  {line}" for line in mismatches[:SHOWN_FAILURES])
        + "".join(f"\n  {p.name}: {why}" for p, why in sorted(failures.items())[:SHOWN_FAILURES])
    )


def _distribution(label: str, grown: Sequence[int]) -> str:
    return (
        f"{label}: {len(grown)} files grew min {grown[0]} / median {statistics.median(grown):.0f}"
        f" / p90 {percentile(grown, 0.9)} / max {grown[-1]} bytes"
    )


@pytest.fixture(scope="session", params=list(HOST_DIRS))
def host_set(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> HostSet:
    """A host folder's libraries, copied, loaded unpatched, and planned."""
    arch: str = request.param
    folder = HOST_DIRS[arch]
    found = candidates(folder) if folder.is_dir() else []
    if not found:
        pytest.skip(f"{folder} holds no shared libraries")
    if shutil.which("gcc") is None:
        unavailable("gcc is not installed")
    workdir = tmp_path_factory.mktemp(f"host-{arch}")
    helper = workdir / "dlopen_each"
    source = workdir / "dlopen_each.c"
    source.write_text(DLOPEN_EACH_C)
    build = subprocess.run(
        ["gcc", *CFLAGS[arch], "-O1", "-o", os.fspath(helper), os.fspath(source), "-ldl"],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        if arch == "x86_64":
            raise RuntimeError(f"cannot build dlopen_each:\n{build.stderr}")
        pytest.skip(f"cannot build the {arch} dlopen_each (gcc-multilib?): {build.stderr}")
    plans = plan_all(found, Aliases(workdir / "aliases"))
    jobs = copy_into(plans, workdir / "unpatched")
    failing = load_failures(helper, [path for path, _ in jobs])
    loaded = tuple(plan for plan, (path, _) in zip(plans, jobs) if path not in failing)
    print(f"\n{arch}: {len(found)} candidates, {len(plans)} planned, {len(loaded)} load unpatched")
    return HostSet(arch, helper, loaded)


@pytest.mark.parametrize("patcher", PATCHERS)
def test_patched_host_libraries_load(host_set: HostSet, patcher: str, tmp_path: Path) -> None:
    """Every host library that loads, patched with longer names, still loads."""
    jobs = copy_into(host_set.plans, tmp_path)
    reports = apply_patches(get_patcher(patcher), jobs)
    grown = growth(reports)
    print(f"\n{_distribution(f'{host_set.arch} {patcher}', grown)}")
    assert_as_planned(host_set.helper, jobs, host_set.plans, f"{host_set.arch} {patcher}")
    if patcher == "builtin":
        too_big = [
            f"{plan.name} grew {r.size_after - r.size_before}, bound {bound}"
            for plan, r in zip(host_set.plans, reports)
            if r.size_after - r.size_before > (bound := patch_growth_bound(plan.source))
        ]
        assert not too_big, "\n".join(too_big[:SHOWN_FAILURES])


@pytest.mark.parametrize("order", ["strip-after", "strip-before"])
@pytest.mark.parametrize("patcher", PATCHERS)
def test_strip_and_patch_load(host_set: HostSet, patcher: str, order: str, tmp_path: Path) -> None:
    """``strip -s`` after patching, or before it, leaves a loadable file with the planned
    dynamic entries (a deterministic sample of about 50 libraries)."""
    if shutil.which("strip") is None:
        unavailable("strip (binutils) is not installed")
    plans = host_set.plans[:: max(1, len(host_set.plans) // STRIP_SAMPLE)]
    jobs = copy_into(plans, tmp_path)
    apply_patches(get_patcher(patcher), jobs, strip_first=order == "strip-before")
    if order == "strip-after":
        with ThreadPoolExecutor() as pool:
            procs = list(pool.map(_strip, (path for path, _ in jobs)))
        errors = [f"{p.args[-1]}: {p.stderr.strip()}" for p in procs if p.returncode != 0]
        assert not errors, "strip failed on patched files:\n" + "\n".join(errors)
    assert_as_planned(host_set.helper, jobs, plans, f"{host_set.arch} {patcher} {order}")


def _strip(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["strip", "-s", os.fspath(path)], capture_output=True, text=True)
