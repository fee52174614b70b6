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

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from rejectnet._batches import split_batch
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
    batch larger than the request are kept for the next request.
    """

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        self._iter: Iterator[Any] | None = None
        self.start_rng: torch.Tensor | None = None
        self.position = 0
        self.passes = 0
        self.leftover: torch.Tensor | None = None
        self._rows = 0

    def _restart(self) -> None:
        set_epoch(self.loader, self.passes)
        self.start_rng = torch.random.get_rng_state()
        self._iter = iter(self.loader)
        self.position = 0
        self._rows = 0
        self.passes += 1

    def _next_batch(self) -> torch.Tensor:
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
        x, _ = split_batch(batch, "outlier_loader batch", labels=False)
        self._rows += int(x.shape[0])
        return x

    def next_batch(self) -> torch.Tensor:
        """The next non-empty loader batch as it comes (after any leftover rows)."""
        if self.leftover is not None:
            out, self.leftover = self.leftover, None
            return out
        while True:
            x = self._next_batch()
            if x.shape[0] > 0:
                return x

    def take(self, n: int) -> torch.Tensor:
        """Return exactly ``n`` outlier inputs (new tensor, the caller's data untouched)."""
        parts: list[torch.Tensor] = []
        have = 0
        if self.leftover is not None:
            parts.append(self.leftover)
            have = int(self.leftover.shape[0])
            self.leftover = None
        while have < n:
            x = self._next_batch()
            if x.shape[0] == 0:
                continue
            parts.append(x)
            have += int(x.shape[0])
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        if have > n:
            self.leftover = out[n:].clone()
            out = out[:n]
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
            x, _ = split_batch(next(self._iter), "outlier_loader batch", labels=False)
            self._rows += int(x.shape[0])
            self.position += 1
        _restore_rng(current)
