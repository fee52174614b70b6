"""Progress output: one line per epoch without a terminal, a running loss on one."""

from __future__ import annotations

import io

import pytest

from rejectnet.finetune.history import EpochStats
from rejectnet.finetune.progress import EpochProgress


def test_progress_without_a_terminal_is_one_line_per_epoch() -> None:
    stream = io.StringIO()
    bar = EpochProgress(enabled=True, name="rejectnet", epoch=0, epochs=2, total=300, stream=stream)
    for _ in range(300):
        bar.update(lambda: 0.5)
    stats = EpochStats(1, 300, 0.25, 0.2, 0.01, 0.98, 0.9, None, 0.01, 3.0)
    bar.close(stats)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "rejectnet epoch 1/2: loss 0.2500 in-acc 98.00% outliers-on-reject 90.0% (3.0 s)"
    ]


def test_progress_on_a_terminal_shows_the_running_loss() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = EpochProgress(enabled=True, name="rejectnet", epoch=0, epochs=1, total=5, stream=stream)
    for _ in range(5):
        bar.update(lambda: 0.125)
    assert "loss=0.1250" in str(bar.bar.postfix)  # the running loss, read when it refreshes
    bar.close(EpochStats(1, 5, 0.1, 0.1, None, 1.0, None, None, 0.01, 1.0))
    out = stream.getvalue()
    assert "loss=0.1000" in out and "5/5" in out  # the bar stays, with the epoch's loss


def test_epoch_line_is_not_repeated_when_the_logger_shows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = io.StringIO()
    stats = EpochStats(1, 3, 0.25, 0.2, None, 0.98, None, None, 0.01, 3.0)
    with caplog.at_level("INFO", logger="rejectnet"):
        bar = EpochProgress(enabled=True, name="x", epoch=0, epochs=1, total=3, stream=stream)
        bar.close(stats)
    assert stream.getvalue() == ""  # the logger's handler shows the line instead
