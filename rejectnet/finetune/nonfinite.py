"""Noticing a NaN or infinite loss, at once on one CPU process, without host sync elsewhere."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["LossWatch"]

_NO_BAD_STEP = 2**62


class LossWatch:
    """Watches the loss of every step for NaN/inf.

    On a single CPU process the loss is checked after every step (it costs nothing
    there). On CUDA or under torch.distributed the first bad step is accumulated on the
    device and read only by :meth:`raise_if_bad`, at checkpoint and epoch boundaries, so
    the step itself never waits for the host.

    Args:
        name: The run's name, for messages.
        device: The training device.
        deferred: Accumulate on the device instead of checking at once.
        reduce_min: All-reduce (minimum) over the ranks, or identity.
        steps_per_epoch: Optimizer steps per epoch (to name the epoch in messages).
    """

    def __init__(
        self,
        name: str,
        device: torch.device,
        *,
        deferred: bool,
        reduce_min: Callable[[torch.Tensor], torch.Tensor],
        steps_per_epoch: int,
    ) -> None:
        self.name = name
        self.deferred = deferred
        self.reduce_min = reduce_min
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.first_bad = torch.full((), _NO_BAD_STEP, dtype=torch.int64, device=device)

    def note(self, loss: torch.Tensor, step: int, epoch: int) -> None:
        """Check the loss of (1-based) optimizer step ``step`` of 0-based ``epoch``.

        Raises:
            FloatingPointError: On a single CPU process, if the loss is NaN or infinite.
        """
        finite = torch.isfinite(loss.detach())
        if self.deferred:
            here = torch.where(finite, _NO_BAD_STEP, step)
            torch.minimum(self.first_bad, here, out=self.first_bad)
        elif not bool(finite):
            raise FloatingPointError(
                f"{self.name}: the loss became {float(loss.detach())} at step {step} (epoch "
                f"{epoch + 1}); training stopped. The last good checkpoint is intact; lower "
                "lr, enable grad_clip, or check the data for NaN/inf"
            )

    def raise_if_bad(self, current_step: int) -> None:
        """At a boundary: raise if any rank saw a non-finite loss since the start.

        Raises:
            FloatingPointError: Naming the first bad step and where it was noticed.
        """
        if not self.deferred:
            return
        first = int(self.reduce_min(self.first_bad.clone()))  # the one host sync
        if first >= _NO_BAD_STEP:
            return
        epoch = (first - 1) // self.steps_per_epoch + 1
        raise FloatingPointError(
            f"{self.name}: the loss became non-finite (NaN or inf) at step {first} (epoch "
            f"{epoch}); noticed at step {current_step}, where training stopped (the loss is "
            "checked without host synchronisation and read at checkpoint and epoch "
            "boundaries, so the weights in memory are no longer valid). The last good "
            "checkpoint is intact; lower lr, enable grad_clip, or check the data for NaN/inf"
        )
