"""Per-epoch training statistics and the callback hook."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rejectnet.finetune.loop import TrainingLoop

__all__ = ["Callback", "EpochStats", "History", "StopTraining"]


@dataclass
class EpochStats:
    """Statistics of one epoch (one pass over the in-distribution loader).

    Attributes:
        epoch: 1-based epoch number.
        steps: Optimizer steps taken in this epoch.
        loss: Mean total loss.
        in_loss: Mean in-distribution cross-entropy.
        out_loss: Mean outlier loss (``None`` without outliers).
        in_accuracy: Training accuracy over the C classes.
        out_on_reject: Share of outliers whose argmax over all C + k outputs already
            fell on a reject unit (self-supervised fine-tuning only).
        val_accuracy: Accuracy on ``val_loader`` at the end of the epoch, if given.
        lr: Learning rate at the end of the epoch.
        seconds: Wall time of the epoch.
    """

    epoch: int
    steps: int
    loss: float
    in_loss: float
    out_loss: float | None
    in_accuracy: float
    out_on_reject: float | None
    val_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class History:
    """What :meth:`fit` returns: one :class:`EpochStats` per completed epoch."""

    epochs: list[EpochStats] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, i: int) -> EpochStats:
        return self.epochs[i]

    def to_dict(self) -> dict[str, list[Any]]:
        """Column-wise view: ``{"loss": [...], "in_accuracy": [...], ...}``."""
        rows = [asdict(e) for e in self.epochs]
        keys = list(rows[0]) if rows else [f for f in EpochStats.__dataclass_fields__]
        return {k: [r[k] for r in rows] for k in keys}


class StopTraining(Exception):
    """Raise from a callback to end :meth:`fit` early (after a checkpoint, if enabled)."""


class Callback:
    """Subclass and override any hook; every hook does nothing by default."""

    def on_fit_start(self, loop: TrainingLoop) -> None:
        """Called once, after resuming (if any) and before the first step."""

    def on_step_end(self, loop: TrainingLoop, step: int) -> None:
        """Called after every optimizer step; ``step`` counts from 1 over the whole run."""

    def on_epoch_end(self, loop: TrainingLoop, stats: EpochStats) -> None:
        """Called after each epoch with its statistics."""
