"""Command line: a thin layer over the library API.

Exit codes: 0 success; 1 audit verdict or generic error; 2 bad wheel or usage;
3 policy error; 4 missing library; 5 patchelf error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Callable

from . import __version__
from .errors import RepairwheelError

log = logging.getLogger("repairwheel")

Command = Callable[[argparse.Namespace], int]


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _cmd_check_system(args: argparse.Namespace) -> int:
    from .system import check_system, format_report

    report = check_system()
    if args.json:
        _print_json(report.to_json())
    else:
        print(format_report(report))
    return 0


def _add_check_system(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-system",
        help="which manylinux/musllinux tags this interpreter accepts",
        description="Print libc kind and version, architecture and the platform tags this "
        "interpreter accepts, most preferred first (PEP 600 _manylinux honoured).",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_check_system)


def _cmd_lddtree(args: argparse.Namespace) -> int:
    from .resolve import lddtree

    tree = lddtree(args.file, ldpaths=args.ldpaths)
    if args.json:
        _print_json(tree.to_json())
    else:
        print(tree.format_tree())
    return 0


def _add_lddtree(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lddtree",
        help="show the shared libraries an ELF file loads, resolved like ld.so",
        description="Resolve the dependency tree of an ELF file like the dynamic loader.",
    )
    p.add_argument("file", help="an ELF executable or shared library")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--ldpaths",
        help="colon-separated directories that replace the system search list "
        "(REPAIRWHEEL_LD_LIBRARY_PATH / AUDITWHEEL_LD_LIBRARY_PATH still add to it)",
    )
    p.set_defaults(func=_cmd_lddtree)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repairwheel",
        description="Audit and repair Linux binary wheels for manylinux / musllinux.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"repairwheel {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging; tracebacks on errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_lddtree,
    _add_check_system,
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s" if args.verbose else "%(message)s",
        stream=sys.stderr,
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except RepairwheelError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"repairwheel: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("repairwheel: interrupted", file=sys.stderr)
        return 130
