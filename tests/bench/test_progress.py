"""Stage-by-stage progress lines with an ETA (rejectnet.bench.progress)."""

from __future__ import annotations

import io

from rejectnet.bench.progress import StageProgress


def test_lines_count_the_stages_and_weigh_the_eta_by_cost() -> None:
    out = io.StringIO()
    p = StageProgress({"a": 1.0, "b": 3.0}, stream=out)
    p.start("a")
    p.done("a", "acc 90%")
    p.start("b")
    p.done("b")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/2] a ..." and lines[2] == "[2/2] b ..."
    assert "a done in " in lines[1] and " acc 90%;" in lines[1] and "ETA " in lines[1]
    assert lines[3].endswith("ETA 0s")
    assert not p.interactive  # a StringIO is not a terminal: no tqdm bars


def test_disabled_progress_prints_nothing() -> None:
    out = io.StringIO()
    p = StageProgress({"a": 1.0}, enabled=False, stream=out)
    p.start("a")
    p.done("a")
    assert out.getvalue() == "" and not p.interactive
