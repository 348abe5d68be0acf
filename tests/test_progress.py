"""The progress line: only on a terminal, only after a delay, cleared at the end."""

from __future__ import annotations

import io

import pytest

from repairwheel import progress as progress_module
from repairwheel.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_is_written_when_stderr_is_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress("reading", 10, stream=out) as p:
        p.started -= 10
        p.advance(5)
    assert out.getvalue() == ""


def test_nothing_is_written_for_short_work() -> None:
    out = _Tty()
    with Progress("reading", 10, stream=out) as p:
        p.advance(5)
    assert out.getvalue() == ""


def test_long_work_shows_a_percentage_then_clears_it(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Tty()
    clock = iter([0.0, 5.0, 5.05, 6.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    p = Progress("reading x.whl", 200, stream=out)
    p.advance(50)  # t=5.0: drawn
    p.advance(50)  # t=5.05: too soon to redraw
    p.advance(100)  # t=6.0: drawn
    p.close()
    text = out.getvalue()
    assert "\rreading x.whl:  25%" in text
    assert " 50%" not in text
    assert "\rreading x.whl: 100%" in text
    assert text.endswith("\r")
