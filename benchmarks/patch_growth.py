"""How much each patcher grows the libraries of a host folder, and how long it takes.

Applies tests/test_patch_host_libs.py's plan (every DT_NEEDED renamed to a longer alias, a
DT_RPATH of 200+ characters, a new SONAME) to a copy of every shared library in ``--dir``,
once per patcher, and prints the growth distribution side by side as a markdown table::

    python benchmarks/patch_growth.py [--dir /usr/lib/x86_64-linux-gnu] [--json out.json]

The wall time is apply_patches alone (patching and verifying every file), not the copying.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_patch_host_libs import (  # noqa: E402
    PATCHERS,
    Aliases,
    candidates,
    copy_into,
    growth,
    percentile,
    plan_all,
)

from repairwheel.patch import apply_patches, get_patcher  # noqa: E402


@dataclass(frozen=True)
class Result:
    """One patcher's run over the folder."""

    patcher: str
    count: int
    min: int
    median: float
    p90: int
    p99: int
    max: int
    total: int
    wall_s: float
    growth: dict[str, int]  # file name -> bytes added


def measure(patcher: str, folder: Path, workdir: Path) -> Result:
    """Plan, copy and patch every library of ``folder`` under ``workdir`` with ``patcher``."""
    plans = plan_all(candidates(folder), Aliases(workdir / "aliases"))
    jobs = copy_into(plans, workdir / "libs")
    start = time.perf_counter()
    reports = apply_patches(get_patcher(patcher), jobs)
    wall = time.perf_counter() - start
    grown = growth(reports)
    return Result(
        patcher=patcher,
        count=len(grown),
        min=grown[0],
        median=statistics.median(grown),
        p90=percentile(grown, 0.9),
        p99=percentile(grown, 0.99),
        max=grown[-1],
        total=sum(grown),
        wall_s=wall,
        growth={r.path.name: r.size_after - r.size_before for r in reports},
    )


def table(results: Sequence[Result]) -> str:
    """The results as a markdown table, one column per patcher."""
    rows: list[tuple[str, list[str]]] = [
        ("files", [str(r.count) for r in results]),
        ("min", [f"{r.min:,}" for r in results]),
        ("median", [f"{r.median:,.0f}" for r in results]),
        ("p90", [f"{r.p90:,}" for r in results]),
        ("p99", [f"{r.p99:,}" for r in results]),
        ("max", [f"{r.max:,}" for r in results]),
        ("total", [f"{r.total:,}" for r in results]),
        ("wall time (s)", [f"{r.wall_s:.2f}" for r in results]),
    ]
    lines = [
        "| growth (bytes) | " + " | ".join(r.patcher for r in results) + " |",
        "| --- |" + " ---: |" * len(results),
    ]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/usr/lib/x86_64-linux-gnu"))
    parser.add_argument("--json", type=Path, help="also write the results, per file, here")
    parser.add_argument(
        "--patchers", nargs="+", choices=PATCHERS, default=list(PATCHERS), metavar="NAME"
    )
    args = parser.parse_args(argv)
    results = []
    for patcher in args.patchers:
        with tempfile.TemporaryDirectory(prefix=f"patch-growth-{patcher}-") as workdir:
            results.append(measure(patcher, args.dir, Path(workdir)))
    print(f"{args.dir}: {results[0].count} libraries\n")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
