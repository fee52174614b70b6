"""Callbacks and the narrow, read-only view of a running fit that they receive."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from rejectnet.finetune.history import EpochStats, History

__all__ = ["Callback", "FitView", "StopTraining"]


@dataclass(frozen=True)
class FitView:
    """What a callback may see of a running fit (a snapshot; changing it changes nothing).

    Attributes:
        name: The run's name (``"rejectnet"``, ``"outlier-exposure"``, ``"stage-one"`` or
            a custom fine-tuner's).
        model: The module being trained (never the ``DistributedDataParallel`` wrapper).
        epoch: The current 0-based epoch.
        epochs: The number of epochs of the run.
        step: Optimizer steps taken so far over the whole run.
        history: Statistics of the epochs completed so far.
        rank: This process's rank (0 when not distributed).
        world_size: Number of training processes (1 when not distributed).
        lr: The current learning rate of the first parameter group.
    """

    name: str
    model: nn.Module
    epoch: int
    epochs: int
    step: int
    history: History
    rank: int
    world_size: int
    lr: float

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes checkpoints (rank 0)."""
        return self.rank == 0


class StopTraining(Exception):
    """Raise from a callback to end ``fit`` early (after a checkpoint, if enabled).

    ``fit`` catches it and returns the history of the epochs completed so far.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import train_classifier
        >>> from rejectnet.finetune import Callback, StopTraining
        >>> class StopEarly(Callback):
        ...     def on_step_end(self, view, step):
        ...         if step == 3:  # the first step of the second epoch
        ...             raise StopTraining
        >>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> batches = [(x[:16], y[:16]), (x[16:], y[16:])]
        >>> history = train_classifier(
        ...     nn.Linear(4, 2), batches, epochs=5, progress=False, callbacks=[StopEarly()]
        ... )
        >>> len(history)  # only completed epochs are recorded
        1
    """


class Callback:
    """Subclass and override any hook; every hook does nothing by default.

    Pass instances to a fine-tuner's ``callbacks=``. Each hook receives a
    :class:`FitView` (model, epoch, step, history, rank...). A hook may raise
    :class:`StopTraining` to end training early. Under torch.distributed callbacks run on
    every rank (``view.rank``, ``view.is_main`` tell them apart); one that raises
    ``StopTraining`` must do so on every rank at the same step.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import train_classifier
        >>> from rejectnet.finetune import Callback
        >>> class Record(Callback):
        ...     def __init__(self):
        ...         self.losses = []
        ...     def on_epoch_end(self, view, stats):
        ...         self.losses.append(stats.loss)
        >>> rec = Record()
        >>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> model = nn.Linear(4, 2)
        >>> _ = train_classifier(model, [(x, y)], epochs=2, callbacks=[rec], progress=False)
        >>> len(rec.losses)
        2
    """

    def on_fit_start(self, view: FitView) -> None:
        """Called once, after resuming (if any) and before the first step.

        Args:
            view: The running fit.
        """

    def on_step_end(self, view: FitView, step: int) -> None:
        """Called after every optimizer step; ``step`` counts from 1 over the whole run.

        Args:
            view: The running fit.
            step: Optimizer steps taken so far, over all epochs.
        """

    def on_epoch_end(self, view: FitView, stats: EpochStats) -> None:
        """Called after each epoch with its statistics.

        Args:
            view: The running fit.
            stats: The statistics of the epoch that just ended.
        """
