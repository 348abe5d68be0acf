"""Running an external tool (patchelf, strip): no shell, no stdin, a time limit, and any
failure as one PatchError line naming the file."""

from __future__ import annotations

import signal
import subprocess

from .errors import PatchError

# Seconds one tool call may take; after that it is killed and reaped.
TOOL_TIMEOUT = 300.0


def run_tool(argv: list[str], name: str, tool: str) -> None:
    """Run ``argv`` for the file called ``name``; raise PatchError if it fails in any way."""
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PatchError(f"{name}: {tool} did not finish within {exc.timeout:g} s") from exc
    except OSError as exc:
        raise PatchError(f"{name}: cannot run {argv[0]}: {exc.strerror or exc}") from exc
    if proc.returncode != 0:
        raise PatchError(
            f"{name}: {tool} failed ({_exit_status(proc.returncode)}): {_last_line(proc.stderr)}"
        )


def _exit_status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def _last_line(output: bytes) -> str:
    lines = output.decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip() if lines else "no error message"
