"""Resumable data streams for the training loop.

Both streams remember the global torch RNG state from just before they called ``iter()``
on the user's loader, and how many batches they have drawn since. A shuffled
``DataLoader`` draws its permutation seed from the global RNG at ``iter()`` time, so
restoring that state and skipping the batches already drawn puts a resumed run on exactly
the same data order as an uninterrupted one. A loader whose sampler has ``set_epoch``
(a ``DistributedSampler``) gets ``set_epoch(epoch)`` before every pass over the
in-distribution data and ``set_epoch(pass)`` before every pass over the outliers, which
makes its order a pure function of (seed, epoch) as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from rejectnet._batches import BatchKeys, Inputs, batch_size, cat_inputs, split_inputs, take_rows
from rejectnet.finetune.distributed import set_epoch

__all__ = ["EpochStream", "OutlierStream"]


def _restore_rng(state: torch.Tensor) -> None:
    torch.random.set_rng_state(state)


class EpochStream:
    """One pass over the in-distribution loader per epoch, resumable mid-epoch."""

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        self._iter: Iterator[Any] | None = None
        self.start_rng: torch.Tensor | None = None
        self.position = 0

    def start(self, skip: int = 0, start_rng: torch.Tensor | None = None, epoch: int = 0) -> None:
        """Begin (0-based) ``epoch``; when resuming, replay ``start_rng`` and skip ``skip``."""
        set_epoch(self.loader, epoch)
        if start_rng is not None:
            current = torch.random.get_rng_state()
            _restore_rng(start_rng)
        self.start_rng = torch.random.get_rng_state()
        self._iter = iter(self.loader)
        self.position = 0
        for _ in range(skip):
            next(self._iter)
            self.position += 1
        if start_rng is not None:
            _restore_rng(current)

    def __iter__(self) -> Iterator[Any]:
        assert self._iter is not None, "call start() first"
        for batch in self._iter:
            self.position += 1
            yield batch


class OutlierStream:
    """An endless stream of outlier inputs, served in batches of any requested size.

    The user's loader is read in its own order (sampling without replacement when it
    shuffles); when it is exhausted it is iterated again, which reshuffles a shuffled
    ``DataLoader``. Labels in the batches are ignored. Leftover samples from a loader
    batch larger than the request are kept for the next request. Batches of named
    tensors (token sequences) of different lengths are joined with
    :func:`rejectnet._batches.cat_inputs`, padded with ``pad_values`` (never truncated).
    """

    def __init__(
        self,
        loader: Iterable[Any],
        *,
        keys: BatchKeys | None = None,
        pad_values: Mapping[str, int | float] | None = None,
    ) -> None:
        self.loader = loader
        self.keys = keys
        self.pad_values = pad_values
        self._iter: Iterator[Any] | None = None
        self.start_rng: torch.Tensor | None = None
        self.position = 0
        self.passes = 0
        self.leftover: Inputs | None = None
        self._rows = 0

    def _restart(self) -> None:
        set_epoch(self.loader, self.passes)
        self.start_rng = torch.random.get_rng_state()
        self._iter = iter(self.loader)
        self.position = 0
        self._rows = 0
        self.passes += 1

    def _read(self, batch: Any) -> Inputs:
        x, _ = split_inputs(batch, "outlier_loader batch", keys=self.keys, labels=False)
        return x

    def _next_batch(self) -> Inputs:
        if self._iter is None:
            self._restart()
        assert self._iter is not None
        try:
            batch = next(self._iter)
        except StopIteration:
            if self.position == 0 and self.passes > 1:
                raise ValueError(
                    f"outlier_loader yielded batches in its first pass but none when read "
                    f"again (pass {self.passes}): it is a one-shot iterator (a generator?), "
                    "but it is restarted whenever it is exhausted; pass a re-iterable loader "
                    "(a DataLoader or a list of batches: list(generator))"
                ) from None
            if self.position == 0:
                raise ValueError(
                    "outlier_loader yielded no outliers (no batches at all); it needs outliers"
                ) from None
            if self._rows == 0:
                raise ValueError(
                    "outlier_loader yielded no outliers in a whole pass, only empty batches "
                    "(under torch.distributed, "
                    "each rank keeps every world_size-th row of a batch: use batches with "
                    "at least world_size rows)"
                ) from None
            self._restart()
            return self._next_batch()
        self.position += 1
        x = self._read(batch)
        self._rows += batch_size(x, "outlier_loader batch")
        return x

    def next_batch(self) -> Inputs:
        """The next non-empty loader batch as it comes (after any leftover rows)."""
        if self.leftover is not None:
            out, self.leftover = self.leftover, None
            return out
        while True:
            x = self._next_batch()
            if batch_size(x) > 0:
                return x

    def take(self, n: int) -> Inputs:
        """Return exactly ``n`` outlier inputs (new tensors, the caller's data untouched)."""
        parts: list[Inputs] = []
        have = 0
        if self.leftover is not None:
            parts.append(self.leftover)
            have = batch_size(self.leftover)
            self.leftover = None
        while have < n:
            x = self._next_batch()
            rows = batch_size(x)
            if rows == 0:
                continue
            parts.append(x)
            have += rows
        out = parts[0] if len(parts) == 1 else cat_inputs(parts, pad_values=self.pad_values)
        if have > n:
            rest = take_rows(out, slice(n, None))
            self.leftover = (
                rest.clone()
                if isinstance(rest, torch.Tensor)
                else {k: v.clone() for k, v in rest.items()}
            )
            out = take_rows(out, slice(0, n))
        return out

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue the stream exactly."""
        return {
            "start_rng": self.start_rng,
            "position": self.position,
            "passes": self.passes,
            "leftover": self.leftover,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Re-create the stream position saved by :meth:`state_dict`."""
        self.passes = int(state["passes"])
        self.leftover = state["leftover"]
        self._iter = None
        self.position = 0
        start_rng = state["start_rng"]
        if start_rng is None:
            return
        current = torch.random.get_rng_state()
        _restore_rng(start_rng)
        set_epoch(self.loader, self.passes - 1)
        self.start_rng = torch.random.get_rng_state()
        self._iter = iter(self.loader)
        self._rows = 0
        for _ in range(int(state["position"])):
            self._rows += batch_size(self._read(next(self._iter)))
            self.position += 1
        _restore_rng(current)
