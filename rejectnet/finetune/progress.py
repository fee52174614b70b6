"""Progress: a tqdm bar with the running loss on a terminal, one line per epoch elsewhere.

The per-epoch summary line also goes to the ``"rejectnet"`` logger at INFO level (enable
it with ``logging.basicConfig(level=logging.INFO)`` or
``logging.getLogger("rejectnet").setLevel(logging.INFO)``).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

from rejectnet.finetune.history import EpochStats

__all__ = ["EpochProgress", "epoch_summary", "is_terminal"]

_REFRESH_S = 0.5


def epoch_summary(name: str, epochs: int, stats: EpochStats) -> str:
    """One line: ``"rejectnet epoch 2/10: loss 0.1234 in-acc 98.10% ... (12.3 s)"``."""
    parts = [f"{name} epoch {stats.epoch}/{epochs}: loss {stats.loss:.4f}"]
    parts.append(f"in-acc {100 * stats.in_accuracy:.2f}%")
    if stats.out_on_reject is not None:
        parts.append(f"outliers-on-reject {100 * stats.out_on_reject:.1f}%")
    if stats.val_accuracy is not None:
        parts.append(f"val-acc {100 * stats.val_accuracy:.2f}%")
    return " ".join(parts) + f" ({stats.seconds:.1f} s)"


def _logged_anyway() -> bool:
    """Whether the ``"rejectnet"`` logger already shows the INFO epoch line somewhere."""
    log = logging.getLogger("rejectnet")
    return log.isEnabledFor(logging.INFO) and log.hasHandlers()


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (the one ``isatty`` test of the package).

    Example:
        >>> import io
        >>> is_terminal(io.StringIO())
        False
    """
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class EpochProgress:
    """Shows one epoch's progress.

    On a terminal: a tqdm bar with the running loss (read from the device at most twice
    a second), which stays on screen with the epoch's final loss. Elsewhere (output
    redirected to a file or a pipe): nothing per step, one summary line per epoch.

    Args:
        enabled: Show anything at all (``progress=True`` and rank 0).
        name: The run's name.
        epoch: 0-based epoch.
        epochs: Epochs of the run.
        total: Steps in the epoch.
        initial: Steps already done (resumed mid-epoch).
        stream: Where to write (default ``sys.stderr``).
    """

    def __init__(
        self,
        *,
        enabled: bool,
        name: str,
        epoch: int,
        epochs: int,
        total: int,
        initial: int = 0,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.name, self.epochs = name, epochs
        self._last = 0.0
        self.bar: Any = None
        if enabled and is_terminal(self.stream):
            self.bar = tqdm(
                total=total,
                initial=initial,
                leave=True,
                desc=f"{name} {epoch + 1}/{epochs}",
                dynamic_ncols=True,
                file=self.stream,
            )

    def update(self, running_loss: Any) -> None:
        """One more step; ``running_loss()`` is called only when the bar refreshes."""
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.monotonic()
        if now - self._last >= _REFRESH_S:
            self._last = now
            self.bar.set_postfix(loss=f"{running_loss():.4f}", refresh=False)

    def close(self, stats: EpochStats | None = None) -> None:
        """End the epoch: final loss on the bar, or the summary line without a terminal."""
        if stats is not None:
            if self.enabled and self.bar is None and not _logged_anyway():
                print(epoch_summary(self.name, self.epochs, stats), file=self.stream, flush=True)
        if self.bar is not None:
            if stats is not None:
                self.bar.set_postfix(loss=f"{stats.loss:.4f}", refresh=False)
            self.bar.close()
            self.bar = None
