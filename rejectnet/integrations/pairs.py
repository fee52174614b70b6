"""Pairing in-distribution batches with outlier batches, for any training loop.

rejectnet's stage two needs, at every step, a labeled in-distribution batch and an
unlabeled outlier batch (the paper's is 5 times larger). The two data sets rarely have
the same number of batches, and an epoch is a pass over the in-distribution data, so
the outliers must run as a stream of their own that restarts (and reshuffles) whenever
it is exhausted. :class:`OutlierPairs` is that pairing as a plain iterable: hand it to
``lightning.Trainer.fit``, to ``accelerate``, or loop over it yourself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from rejectnet._batches import Inputs, batch_size, check_keys, split_inputs
from rejectnet.finetune.batching import (
    check_all_rows,
    check_outlier_bound,
    check_reiterable,
    check_rows_fit,
    outlier_rows,
)
from rejectnet.finetune.distributed import set_epoch
from rejectnet.finetune.options import check_outlier_ratio
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
    in the outlier batches are ignored). Inputs are tensors, or dicts of named tensors
    (Hugging Face style: ``input_ids``, ``attention_mask``, ...) read by the one rule of
    :mod:`rejectnet._batches`; outlier token sequences re-cut across loader batches of
    different lengths are right-padded with ``pad_values`` (never truncated), and
    :class:`~rejectnet.integrations.lightning.RejectNetModule` pads ``x_in`` and
    ``x_out`` to one length for its forward pass. The outlier loader is read as an endless
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
        ratio: Outlier rows per in-distribution row, in ``(0, 1000]``
            (:data:`~rejectnet.finetune.options.MAX_OUTLIER_RATIO`), or ``None`` to use
            the outlier loader's batches as they are. A step's outlier rows are bounded
            by :data:`~rejectnet.finetune.options.MAX_OUTLIER_ROWS` too, checked on the
            first batch.

        keys: ``(input_key, label_key)`` for dict batches with other names (see
            :class:`~rejectnet.finetune.TrainOptions`' ``keys``).
        pad_values: Pad value per input name for outlier token sequences (default 0;
            pass :func:`rejectnet._batches.pad_values_for` of your model for its pad id).

    Raises:
        TypeError: If a loader is not an iterable of batches, or is a one-shot iterator
            (a generator: iterating it again would give an empty epoch; pass
            ``list(generator)``), or ``ratio`` is not a number or ``None``.
        ValueError: If ``ratio`` is not a finite number in ``(0, 1000]``. When iterated,
            before the first step: a ratio asking for too many rows, or an in-memory
            batch (a list's, or a ``TensorDataset``'s rows) whose inputs do not fit the
            first in-distribution batch

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
        *,
        keys: Any = None,
        pad_values: Mapping[str, int | float] | None = None,
    ) -> None:
        check_reiterable(in_loader, "in_loader", "labeled in-distribution batches")
        check_reiterable(outlier_loader, "outlier_loader", "outlier batches")
        if ratio is not None:
            ratio = check_outlier_ratio(ratio, "ratio")
        self.in_loader = in_loader
        self.outlier_loader = outlier_loader
        self.ratio = ratio
        self.keys = check_keys(keys)
        self.pad_values = dict(pad_values) if pad_values is not None else None
        self.epoch = 0
        self._stream = OutlierStream(outlier_loader, keys=self.keys, pad_values=self.pad_values)

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

    def __iter__(self) -> Iterator[tuple[Inputs, torch.Tensor, Inputs]]:
        """Yield ``(x_in, y, x_out)`` for every batch of ``in_loader`` (one epoch)."""
        self._check_distributed()
        set_epoch(self.in_loader, self.epoch)
        self.epoch += 1
        for step, batch in enumerate(self.in_loader):
            x_in, y = split_inputs(batch, "in_loader batch", keys=self.keys)
            if y is None:
                raise ValueError(
                    "in_loader batches must carry labels: (x, y) or a dict with a label key"
                )
            if step == 0 and self.epoch == 1:
                self._preflight(x_in)
            if self.ratio is None:
                x_out = self._stream.next_batch()
            else:
                x_out = self._stream.take(outlier_rows(self.ratio, batch_size(x_in), "ratio"))
            check_rows_fit(x_in, x_out, f"step {step + 1} of epoch {self.epoch}")
            yield x_in, y, x_out

    def _preflight(self, x_in: Inputs) -> None:
        """Before the first step: the ratio's rows bound, and every in-memory batch's shape."""
        if self.ratio is not None:
            check_outlier_bound(x_in, self.in_loader, self.ratio, "ratio")
        check_all_rows(x_in, self.in_loader, self.outlier_loader, self.keys)
