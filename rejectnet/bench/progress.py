"""Stage-by-stage progress with an ETA: one line per stage (and tqdm bars on terminals)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rejectnet.finetune.progress import is_terminal

__all__ = ["StageProgress"]


def _fmt(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class StageProgress:
    """Prints ``[i/n] stage ... done in T; elapsed E, ETA R`` lines to a stream.

    The ETA weighs the remaining stages by their estimated cost (training steps and
    forward passes) and converts cost to seconds at the rate measured so far.

    Args:
        costs: Stage name -> estimated cost (any unit), in run order.
        enabled: Print anything at all.
        stream: Where to print (default ``sys.stderr``).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> p = StageProgress({"a": 1.0, "b": 3.0}, stream=out)
        >>> p.start("a"); p.done("a")
        >>> out.getvalue().startswith("[1/2] a ...")
        True
    """

    def __init__(
        self, costs: dict[str, float], *, enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        self.costs = dict(costs)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self._done_cost = 0.0
        self._started: dict[str, float] = {}
        self._index = 0

    @property
    def interactive(self) -> bool:
        """Whether the stream is a terminal (then the training loops show tqdm bars)."""
        return self.enabled and is_terminal(self.stream)

    def start(self, stage: str) -> None:
        """Mark the beginning of a stage.

        Args:
            stage: Its name (a key of ``costs``).
        """
        self._index += 1
        self._started[stage] = time.perf_counter()
        if self.enabled:
            print(f"[{self._index}/{len(self.costs)}] {stage} ...", file=self.stream, flush=True)

    def done(self, stage: str, note: str = "") -> None:
        """Mark the end of a stage and print the time, the elapsed time and the ETA.

        Args:
            stage: Its name.
            note: A short result to show (e.g. an accuracy).
        """
        now = time.perf_counter()
        took = now - self._started.get(stage, now)
        self._done_cost += self.costs.get(stage, 0.0)
        elapsed = now - self.t0
        left = sum(self.costs.values()) - self._done_cost
        eta = elapsed / self._done_cost * left if self._done_cost > 0 else float("nan")
        if self.enabled:
            extra = f" {note};" if note else ""
            print(
                f"      {stage} done in {_fmt(took)};{extra} elapsed {_fmt(elapsed)}, "
                f"ETA {_fmt(eta) if eta == eta else '?'}",
                file=self.stream,
                flush=True,
            )
