"""Per-epoch statistics, accumulated on the device (no host sync in the step)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from rejectnet.finetune.collapse import Measure
from rejectnet.finetune.history import EpochStats
from rejectnet.finetune.step import StepOutput

__all__ = ["EpochAccumulator"]

_KEYS = ("loss", "in_loss", "out_loss", "correct", "n_in", "on_reject", "n_out", "steps")


class EpochAccumulator:
    """Sums of the loss terms and counts over one epoch, as float64 device tensors.

    Args:
        device: Where the sums live.
        num_classes: C (the class logits are the first C).
        reject_model: Whether the logits have reject units (then the share of outliers
            whose argmax falls on one is reported).
        values: Sums to start from (a resumed mid-epoch checkpoint).
    """

    def __init__(
        self,
        device: torch.device,
        num_classes: int,
        reject_model: bool,
        values: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.reject_model = reject_model
        self.has_out_loss = False
        if values is not None:
            self.values = {k: values[k].to(device) for k in _KEYS}
        else:
            self.values = {k: torch.zeros((), dtype=torch.float64, device=device) for k in _KEYS}

    def add(self, out: StepOutput, y: torch.Tensor) -> None:
        """Add one micro-batch's statistics."""
        v = self.values
        n_in = out.logits_in.shape[0]
        v["loss"] += out.terms.loss.detach() * n_in
        v["in_loss"] += out.terms.in_loss * n_in
        v["correct"] += (out.logits_in[:, : self.num_classes].argmax(dim=-1) == y).sum()
        v["n_in"] += n_in
        if out.logits_out is not None:
            n_out = out.logits_out.shape[0]
            if out.terms.out_loss is not None:
                v["out_loss"] += out.terms.out_loss * n_out
                self.has_out_loss = True
            v["n_out"] += n_out
            if self.reject_model:
                argmax = out.logits_out.detach().argmax(dim=-1)
                v["on_reject"] += (argmax >= self.num_classes).sum()

    def in_distribution(self, source: str) -> Measure:
        """The in-distribution accuracy and mean loss so far (one host sync)."""
        v = self.values
        rows = int(v["n_in"])
        n = max(rows, 1)
        return Measure(float(v["correct"]) / n, float(v["in_loss"]) / n, source, False, rows)

    def count_step(self) -> None:
        """Count one optimizer step."""
        self.values["steps"] += 1

    def running_loss(self) -> float:
        """The mean loss so far (one host sync: call it rarely, e.g. for a progress bar)."""
        return float(self.values["loss"] / self.values["n_in"].clamp(min=1))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The sums on the CPU, for a mid-epoch checkpoint."""
        return {k: v.cpu() for k, v in self.values.items()}

    def finish(
        self,
        reduce_sum: Callable[[torch.Tensor], torch.Tensor],
        *,
        epoch: int,
        lr: float,
        seconds: float,
        val_accuracy: float | None,
    ) -> EpochStats:
        """The epoch's :class:`EpochStats`, summed over the ranks by ``reduce_sum``.

        Args:
            reduce_sum: All-reduce (sum) over the ranks, or identity.
            epoch: The 1-based epoch number.
            lr: The learning rate at the end of the epoch.
            seconds: Wall time of the epoch.
            val_accuracy: Accuracy on the validation loader, if any.

        Returns:
            The statistics (``steps`` is this rank's optimizer steps).
        """
        keys = list(self.values)
        flat = reduce_sum(torch.stack([self.values[k] for k in keys]))
        vals = {k: float(x) for k, x in zip(keys, flat.unbind(0), strict=True)}
        vals["steps"] = float(self.values["steps"])
        n_in = max(vals["n_in"], 1.0)
        has_out = vals["n_out"] > 0
        return EpochStats(
            epoch=epoch,
            steps=int(vals["steps"]),
            loss=vals["loss"] / n_in,
            in_loss=vals["in_loss"] / n_in,
            out_loss=vals["out_loss"] / vals["n_out"]
            if has_out and (self.has_out_loss or vals["out_loss"] != 0)
            else None,
            in_accuracy=vals["correct"] / n_in,
            out_on_reject=vals["on_reject"] / vals["n_out"]
            if has_out and self.reject_model
            else None,
            val_accuracy=val_accuracy,
            lr=lr,
            seconds=seconds,
        )
