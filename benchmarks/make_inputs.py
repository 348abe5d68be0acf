"""Prepare the input wheels of ``compare.py``: python benchmarks/make_inputs.py OUTDIR.

Idempotent: a wheel that already exists in OUTDIR is kept. Wheels are rewritten with
repairwheel's own zip writer, which copies unchanged members as their compressed bytes, so
re-tagging the 192 MB torch wheel takes seconds, not a minute of re-compression.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from repairwheel.wheel import WheelArchive, WheelWriter, replace_platform_tags

TORCH_VERSION = "2.13.0"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
WHEELS_DIR = Path("/opt/wheels")
LINUX_TAG = "linux_x86_64"
GOMP_MEMBER = "torch/lib/libgomp.so.1"
MANY_SO_COUNT = 3000
MANY_SO_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "bench" / "make_many_so_wheel.sh"


@dataclass(frozen=True)
class Inputs:
    """The benchmark's input wheels (absolute paths)."""

    torch: Path
    torch_linux: Path
    torch_nogomp: Path
    many_so: Path


def find_torch(outdir: Path) -> Path:
    """The torch CPU wheel from /opt/wheels, else one downloaded into ``outdir`` once."""
    for directory in (WHEELS_DIR, outdir):
        found = sorted(directory.glob(f"torch-{TORCH_VERSION}*.whl"))
        if found:
            return found[0].resolve()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"torch=={TORCH_VERSION}",
            "--no-deps",
            "--index-url",
            TORCH_INDEX,
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            f"{sys.version_info.major}.{sys.version_info.minor}",
            "--only-binary=:all:",
            "-d",
            str(outdir),
        ],
        check=True,
    )
    return sorted(outdir.glob(f"torch-{TORCH_VERSION}*.whl"))[0].resolve()


def retag(source: Path, target_dir: Path, platform: str, drop: frozenset[str]) -> Path:
    """Copy ``source`` into ``target_dir`` with ``platform`` as its only platform tag.

    The file name and the WHEEL ``Tag:`` lines change; members named in ``drop`` are left out,
    and the regenerated RECORD lists exactly what was written.
    """
    with WheelArchive(source) as archive:
        wheel_path = f"{archive.dist_info}/WHEEL"
        filename, text = replace_platform_tags(
            archive.filename, archive.read(wheel_path), [platform]
        )
        target = target_dir / str(filename)
        if target.exists():
            return target
        missing = drop - {member.name for member in archive.members}
        if missing:
            raise SystemExit(f"{source.name} has no member {', '.join(sorted(missing))}")
        target_dir.mkdir(parents=True, exist_ok=True)
        with WheelWriter(target, archive.dist_info) as writer:
            for member in archive.members:
                if member.name in drop:
                    continue
                if member.name == wheel_path:
                    writer.add(member.name, text, mode=member.mode, date_time=member.date_time)
                else:
                    writer.copy(archive, member.name)
    return target


def many_so(outdir: Path, count: int) -> Path:
    """The wheel of ``count`` small extensions that all need libffi (built once)."""
    target_dir = outdir / f"many_so_{count}"
    found = sorted(target_dir.glob("manyso-*.whl"))
    if found:
        return found[0]
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=outdir) as scratch:
        subprocess.run(
            ["bash", str(MANY_SO_SCRIPT), scratch, str(count)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (built,) = Path(scratch).glob("manyso-*.whl")
        shutil.move(built, target_dir / built.name)
    return target_dir / built.name


def make_inputs(outdir: Path, many_so_count: int = MANY_SO_COUNT) -> Inputs:
    outdir.mkdir(parents=True, exist_ok=True)
    outdir = outdir.resolve()
    torch = find_torch(outdir)
    return Inputs(
        torch=torch,
        torch_linux=retag(torch, outdir / "torch_linux", LINUX_TAG, frozenset()),
        torch_nogomp=retag(torch, outdir / "torch_nogomp", LINUX_TAG, frozenset({GOMP_MEMBER})),
        many_so=many_so(outdir, many_so_count),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--many-so", type=int, default=MANY_SO_COUNT, metavar="N")
    args = parser.parse_args()
    inputs = make_inputs(args.outdir, args.many_so)
    for name, path in vars(inputs).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
