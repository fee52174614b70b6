"""Pairing in-distribution batches with outlier batches, for any training loop.

rejectnet's stage two needs, at every step, a labeled in-distribution batch and an
unlabeled outlier batch (the paper's is 5 times larger). The two data sets rarely have
the same number of batches, and an epoch is a pass over the in-distribution data, so
the outliers must run as a stream of their own that restarts (and reshuffles) whenever
it is exhausted. :class:`OutlierPairs` is that pairing as a plain iterable: hand it to
``lightning.Trainer.fit``, to ``accelerate``, or loop over it yourself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from rejectnet._batches import split_batch
from rejectnet._validation import check_number
from rejectnet.finetune.distributed import set_epoch
from rejectnet.finetune.streams import OutlierStream

__all__ = ["OutlierPairs"]


def _unsharded(loader: Any) -> bool:
    """A ``DataLoader`` with torch's default (random or sequential) sampler, unsplit."""
    if not isinstance(loader, DataLoader):
        return False
    batch_sampler = loader.batch_sampler
    return type(batch_sampler) is BatchSampler and type(batch_sampler.sampler) in (
        RandomSampler,
        SequentialSampler,
    )


class OutlierPairs:
    """One pass over ``in_loader`` per epoch, each batch paired with an outlier batch.

    Iterating yields ``(x_in, y, x_out)`` tuples: the inputs and labels of one
    in-distribution batch, and ``x_out``, the inputs of the next outlier batch (labels
    in the outlier batches are ignored). The outlier loader is read as an endless
    stream: when it is exhausted it is iterated again (a shuffled ``DataLoader``
    reshuffles), independently of the in-distribution epochs, and it resumes where it
    stopped at the next epoch.

    With ``ratio`` set (the paper's 5, the default) the outlier stream is re-cut so that
    every ``x_out`` has exactly ``round(ratio * len(x_in))`` rows (rows left over from a
    loader batch are kept for the next step), as in rejectnet's own fine-tuner; with
    ``ratio=None`` each ``x_out`` is one outlier loader batch as it comes.

    Under ``torch.distributed`` give each ``DataLoader`` a ``DistributedSampler``
    (Lightning's automatic sampler replacement does not reach loaders inside this
    object), or pass loaders that ``accelerator.prepare`` has already split: a
    ``DataLoader`` with torch's default sampler raises a ``ValueError`` when iterated in
    a process group of two or more, because every rank would train on the same
    batches. ``set_epoch`` is called on the samplers: the epoch count for
    ``in_loader``, the pass count for ``outlier_loader``.

    Args:
        in_loader: Labeled in-distribution batches (``(x, y)``, or a dict with an input
            and a label key).
        outlier_loader: Outlier batches (a tensor, ``(x,)``, ``(x, anything)`` or a dict).
        ratio: Outlier rows per in-distribution row (> 0), or ``None`` to use the
            outlier loader's batches as they are.

    Raises:
        TypeError: If a loader is not an iterable of batches, or ``ratio`` is not a
            number or ``None``.
        ValueError: If ``ratio`` is not a finite number > 0.

    Example:
        >>> import torch
        >>> in_loader = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))] * 3
        >>> outliers = [torch.randn(7, 3), torch.randn(7, 3)]
        >>> pairs = OutlierPairs(in_loader, outliers, ratio=2)
        >>> [tuple(x_out.shape) for _, _, x_out in pairs]
        [(8, 3), (8, 3), (8, 3)]
        >>> len(pairs)
        3
    """

    def __init__(
        self,
        in_loader: Iterable[Any],
        outlier_loader: Iterable[Any],
        ratio: float | None = 5.0,
    ) -> None:
        for name, loader in (("in_loader", in_loader), ("outlier_loader", outlier_loader)):
            if isinstance(loader, (torch.Tensor, str, bytes)) or not hasattr(loader, "__iter__"):
                raise TypeError(
                    f"{name} must be an iterable of batches (a DataLoader or a list of "
                    f"batches), got {type(loader).__name__}"
                )
        if ratio is not None:
            ratio = check_number(ratio, "ratio", positive=True)
        self.in_loader = in_loader
        self.outlier_loader = outlier_loader
        self.ratio = ratio
        self.epoch = 0
        self._stream = OutlierStream(outlier_loader)

    @property
    def passes(self) -> int:
        """Passes started over ``outlier_loader`` so far."""
        return self._stream.passes

    def __len__(self) -> int:
        """The number of in-distribution batches (steps per epoch)."""
        return len(self.in_loader)  # type: ignore[arg-type]

    def _check_distributed(self) -> None:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return
        for name, loader in (
            ("in_loader", self.in_loader),
            ("outlier_loader", self.outlier_loader),
        ):
            if _unsharded(loader):
                raise ValueError(
                    f"{name} has no DistributedSampler, so all {dist.get_world_size()} "
                    "processes would train on the same batches; create it with "
                    "DataLoader(dataset, batch_size=..., sampler=DistributedSampler(dataset))"
                )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(x_in, y, x_out)`` for every batch of ``in_loader`` (one epoch)."""
        self._check_distributed()
        set_epoch(self.in_loader, self.epoch)
        self.epoch += 1
        for batch in self.in_loader:
            x_in, y = split_batch(batch, "in_loader batch")
            if y is None:
                raise ValueError(
                    "in_loader batches must carry labels: (x, y) or a dict with a label key"
                )
            if self.ratio is None:
                x_out = self._stream.next_batch()
            else:
                x_out = self._stream.take(max(1, round(self.ratio * int(x_in.shape[0]))))
            if tuple(x_out.shape[1:]) != tuple(x_in.shape[1:]):
                raise ValueError(
                    f"outlier_loader inputs have shape {tuple(x_out.shape[1:])} but "
                    f"in_loader inputs have {tuple(x_in.shape[1:])}; both go through one "
                    "forward pass"
                )
            yield x_in, y, x_out
