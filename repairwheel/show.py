"""Human-readable rendering of a :class:`~repairwheel.audit.WheelReport`.

The first line keeps auditwheel's wording (scripts grep for it); the rest names, for every
better tag, what stands in the way.
"""

from __future__ import annotations

from collections.abc import Sequence

from .audit import WheelReport
from .include import IncludeEffect
from .verdict import Blocker, BlockerKind, PolicyCheck, describe_group, group_blockers
from .wheel import RecordMismatch


def format_report(report: WheelReport, record_problems: Sequence[RecordMismatch] = ()) -> str:
    v = report.verdict
    lines = [
        f'{report.wheel} is consistent with the following platform tag: "{report.tag}".',
        f"libc: {report.libc}; architecture: {report.arch}; ELF files: {len(report.members)} "
        f"(Python extensions: {sum(m.is_extension for m in report.members)})",
    ]
    for member, why in report.ignored:
        lines.append(f"ignored: {member}: {why}")
    for false in report.false_tags:
        reachable = f'"{report.repair_tag}"' if report.repair_tag else "none"
        lines.append(
            f"warning: the file name claims {false}, which no repair can make true (the best "
            f"tag fix reaches: {reachable}); fix keeps the tags a wheel has, so it would stay"
        )
    for problem in record_problems:  # fatal ones first
        if problem.fatal:
            lines.append(f"error: {problem}: installers and `repairwheel fix` refuse this wheel")
        else:
            lines.append(f"note: {problem}")
    if not record_problems:  # verify_record lists unrecorded ELF files among the others
        for member in report.unrecorded:
            lines.append(f"note: {member} is missing from RECORD (audited all the same)")
    for group in report.duplicates:
        lines.append(f"note: these ELF files look like copies of one library: {', '.join(group)}")
    if v.versioned_symbols:
        lines.append("Versioned symbols needed from system libraries:")
        lines += [f"  {lib}: {', '.join(vers)}" for lib, vers in v.versioned_symbols.items()]
    else:
        lines.append("The wheel needs no versioned symbols from system libraries.")

    external = report.external_libs
    if external:
        lines.append("External shared libraries (grafted by a repair to the most compatible tag):")
        lines += [f"  {name} => {path or 'not found'}" for name, path in external.items()]
    else:
        lines.append("The wheel needs no external shared libraries.")
    if report.provided:
        lines.append("Libraries other distributions provide (linked where they install):")
        for lib in report.provided:
            undeclared = lib.requirement_problem
            declared = (
                f"{undeclared}: fix refuses it"
                if undeclared
                else f"Requires-Dist: {lib.requirement}"
            )
            where = f"{lib.distribution} {lib.version} ({lib.install_dir})"
            lines.append(f"  {lib.soname} => {where}; {declared}")
    effect = IncludeEffect.of(report)
    if effect is not None:
        lines += effect.lines()

    android = report.libc == "android"
    if android:
        own = next(c for c in v.checks if c.policy.priority > 0)
        lines.append(
            f"Android API level {own.policy.api_level} (the wheel's tag {own.tag}, kept by a "
            "repair); system libraries of that level are taken as present."
        )
    if report.repair_tag is None and android:
        lines.append(f"`repairwheel fix` cannot repair it for {own.tag} (see below).")
    elif report.repair_tag is None:
        lines.append("`repairwheel fix` cannot make it a manylinux/musllinux wheel (see below).")
    elif report.repair_tag != report.tag:
        grafts = v.check(v.repair_tag).external_libs
        lines.append(
            f'`repairwheel fix` can make it "{report.repair_tag}" by grafting '
            f"{len(grafts)} librar{'y' if len(grafts) == 1 else 'ies'}."
        )
    better = [c for c in v.checks if c.policy.priority > v.tag.priority]
    if better:
        lines.append("Why not a better tag:")
        lines += [f"  {text}" for text in _explain(better)]
    lower = [c for c in v.lower if c.as_is_blockers]
    if lower:
        lines.append("Why not a lower API level:")
        lines += [f"  {text}" for text in _explain(lower)]
    elif android and v.lower:
        lines.append(
            f"Nothing it needs keeps it from API level {v.lower[0].policy.api_level} either "
            "(the tag is the build's choice; a repair keeps it)."
        )
    lines += _abi3_lines(report)
    return "\n".join(lines)


def _abi3_lines(report: WheelReport) -> list[str]:
    """The abi3 tag's verdict: what in the ELF files the stable ABI of its version lacks."""
    abi3 = report.abi3
    if abi3 is None:
        return []
    if abi3.ok:
        return [f"{abi3.tag}: every ELF file uses only the stable ABI of that version."]
    lines = [f"Why not {abi3.tag} (the stable ABI of CPython {abi3.version}):"]
    lines += [f"  {blocker}" for blocker in abi3.blockers]
    lines += [
        f"  {path} is named for one CPython version: no other version imports it"
        for path in abi3.versioned_files
    ]
    return lines


def _explain(checks: list[PolicyCheck]) -> list[str]:
    """One line per distinct obstacle (all files sharing it folded into one), with the range
    of tags it blocks; those blocking the most tags (the nearest to the one reached) first."""
    spans: dict[tuple[BlockerKind, str | None, str | None], list[str]] = {}
    groups: dict[tuple[BlockerKind, str | None, str | None], tuple[Blocker, dict[str, None]]] = {}
    for check in checks:
        for first, files in group_blockers(check.as_is_blockers):
            spans.setdefault(first.key, []).append(check.tag)
            groups.setdefault(first.key, (first, {}))[1].update(dict.fromkeys(files))
    lines = []
    # The obstacles that block the most tags (those nearest the one reached) come first.
    for key, tags in sorted(spans.items(), key=lambda item: -len(item[1])):
        first, file_set = groups[key]
        span = tags[0] if len(tags) == 1 else f"{tags[0]} … {tags[-1]}"
        graftable = first.kind == BlockerKind.EXTERNAL_LIBRARY and first.detail
        fix = " [fix grafts it]" if graftable else ""
        lines.append(f"{span}: {describe_group(first, list(file_set))}{fix}")
    return lines
