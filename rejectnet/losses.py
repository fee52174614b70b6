"""Training losses to call in any training loop: rejectnet's stage two and Outlier Exposure.

Both losses take the logits of ONE forward pass over the concatenated batch
``torch.cat([x_in, x_out])``, split into ``logits_in`` (labeled in-distribution rows) and
``logits_out`` (outlier rows), and return a scalar. Run the two halves through the model
together, not one after the other: batch-norm layers then normalise in-distribution and
outlier inputs with the same batch statistics, as at the paper's training time (see the
how-to "Use rejectnet in your own training loop").

They are plain :class:`torch.nn.Module` objects with no parameters: they never modify
their inputs, compute in float32 whatever the logits' dtype (safe under ``torch.autocast``
with bfloat16 or float16 logits), synchronise nothing with the host, and work unchanged
with gradient accumulation (divide the loss by the number of micro-batches as usual) and
under ``DistributedDataParallel`` (each rank computes its own batch's loss; DDP averages
the gradients). :class:`~rejectnet.SelfSupervisedOODFinetuner` and
:class:`~rejectnet.OutlierExposureFinetuner` optimise exactly these modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rejectnet._validation import check_int, check_number

__all__ = [
    "CrossEntropyLoss",
    "LossTerms",
    "OutlierExposureLoss",
    "PseudoLabeler",
    "SelfSupervisedRejectLoss",
    "pseudo_labels",
]


def pseudo_labels(
    logits_out: torch.Tensor, num_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The paper's Algorithm 1 pseudo-labels for outlier logits of shape ``(M, C + k)``.

    If the argmax over all C + k outputs is a reject unit, that unit is the target;
    otherwise a uniformly random reject unit is. Computed on the logits' device with no
    host synchronisation and without modifying ``logits_out``.

    Args:
        logits_out: Outlier logits ``(M, C + k)``.
        num_classes: C, the number of in-distribution classes.
        generator: Optional RNG for the random reject units (on the logits' device).

    Returns:
        ``(M,)`` int64 targets in ``[C, C + k)``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[0.0, 0.0, 5.0, 1.0], [9.0, 0.0, 1.0, 2.0]])
        >>> t = pseudo_labels(logits, num_classes=2)
        >>> int(t[0]), int(t[1]) in (2, 3)
        (2, True)
    """
    k = logits_out.shape[-1] - num_classes
    with torch.no_grad():
        argmax = logits_out.argmax(dim=-1)
        random = torch.randint(
            num_classes,
            num_classes + k,
            argmax.shape,
            device=logits_out.device,
            generator=generator,
        )
        return torch.where(argmax >= num_classes, argmax, random)


PseudoLabeler = Callable[[torch.Tensor, int], torch.Tensor]
"""``(logits_out, num_classes) -> (M,) int64 targets in [C, C + k)``: assigns each outlier
to a reject unit (Algorithm 1's rule is :func:`pseudo_labels`)."""


class LossTerms(NamedTuple):
    """A loss and its two parts, as returned by ``loss.terms(...)``.

    Attributes:
        loss: The scalar to minimise (with gradients).
        in_loss: The in-distribution cross-entropy (detached).
        out_loss: The outlier term before its weight ``lam`` (detached), or ``None``
            when there were no outlier rows.
    """

    loss: torch.Tensor
    in_loss: torch.Tensor
    out_loss: torch.Tensor | None


def _check_in(logits_in: torch.Tensor, targets: torch.Tensor) -> None:
    if not isinstance(logits_in, torch.Tensor):
        raise TypeError(
            f"logits_in must be a 2-D (N, outputs) torch.Tensor, got {type(logits_in).__name__}"
        )
    if logits_in.ndim != 2:
        raise ValueError(
            f"logits_in must be a 2-D (N, outputs) tensor, got shape {tuple(logits_in.shape)}"
        )
    if not logits_in.dtype.is_floating_point:
        raise ValueError(f"logits_in must be a floating-point tensor, got {logits_in.dtype}")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(
            "targets must be a 1-D integer tensor of class indices (a torch.Tensor), got "
            f"{type(targets).__name__}"
        )
    if (
        targets.ndim != 1
        or targets.dtype.is_floating_point
        or targets.dtype == torch.bool
        or targets.shape[0] != logits_in.shape[0]
    ):
        raise ValueError(
            "targets must be a 1-D integer tensor of class indices with one entry per row "
            f"of logits_in ({logits_in.shape[0]}), got {targets.dtype} {tuple(targets.shape)}"
        )


def _check_out(logits_out: torch.Tensor | None, width: int) -> None:
    if logits_out is None:
        return
    if not isinstance(logits_out, torch.Tensor):
        raise TypeError(
            "logits_out must be a 2-D (M, outputs) torch.Tensor or None, got "
            f"{type(logits_out).__name__}"
        )
    if logits_out.ndim != 2:
        raise ValueError(
            "logits_out must be a 2-D (M, outputs) tensor or None, got shape "
            f"{tuple(logits_out.shape)}"
        )
    if not logits_out.dtype.is_floating_point:
        raise ValueError(f"logits_out must be a floating-point tensor, got {logits_out.dtype}")
    if logits_out.shape[1] != width:
        raise ValueError(
            f"logits_out has {logits_out.shape[1]} outputs but logits_in has {width}; both "
            "must come from the same forward pass"
        )


def _combined(
    logits_in: torch.Tensor,
    targets: torch.Tensor,
    logits_out: torch.Tensor | None,
    lam: float,
    out_loss: Callable[[torch.Tensor], torch.Tensor],
) -> LossTerms:
    """``CE(in, targets) + lam * out_loss(out)``; the outlier part only when there are rows."""
    in_loss = F.cross_entropy(logits_in.float(), targets)
    if logits_out is None or logits_out.shape[0] == 0:
        return LossTerms(in_loss, in_loss.detach(), None)
    out = out_loss(logits_out)
    return LossTerms(in_loss + lam * out, in_loss.detach(), out.detach())


def _uniform_cross_entropy(logits_out: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to the uniform distribution over every output (Outlier Exposure)."""
    return -torch.log_softmax(logits_out.float(), dim=-1).mean(dim=-1).mean()


class CrossEntropyLoss(nn.Module):
    """Plain cross-entropy on the in-distribution rows (the paper's stage one).

    The same call as the outlier losses (``logits_out`` is ignored), so that one loop
    can run all three.

    Example:
        >>> import torch
        >>> loss = CrossEntropyLoss()(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))
        >>> round(float(loss), 4)
        1.0986
    """

    uses_outliers = False

    def terms(
        self,
        logits_in: torch.Tensor,
        targets: torch.Tensor,
        logits_out: torch.Tensor | None = None,
    ) -> LossTerms:
        """The loss and its parts; see :class:`LossTerms`."""
        _check_in(logits_in, targets)
        loss = F.cross_entropy(logits_in.float(), targets)
        return LossTerms(loss, loss.detach(), None)

    def forward(
        self,
        logits_in: torch.Tensor,
        targets: torch.Tensor,
        logits_out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``CE(logits_in, targets)``.

        Args:
            logits_in: ``(N, C)`` logits of the labeled rows.
            targets: ``(N,)`` class indices.
            logits_out: Ignored.

        Returns:
            The scalar loss.
        """
        return self.terms(logits_in, targets, logits_out).loss


class SelfSupervisedRejectLoss(nn.Module):
    """The paper's Algorithm 1 loss over all C + k outputs of a wrapped model.

    ``CE(logits_in, targets) + lam * CE(logits_out, pseudo_labels(logits_out))``: each
    outlier's target is recomputed at every call from the same logits, without
    gradients: the argmax when it already falls on a reject unit, otherwise a uniformly
    random reject unit (drawn from ``generator``, or torch's global RNG when ``None``).

    Args:
        num_classes: C, the number of in-distribution classes (``net.num_classes``).
        lam: Weight of the outlier term (the paper's lambda, 5).
        generator: RNG of the random reject units, on the logits' device; ``None`` uses
            torch's default generator of that device, which ``torch.manual_seed`` seeds.
        pseudo_labels: ``"random"`` (Algorithm 1, the default) or a callable
            ``(logits_out, num_classes) -> targets`` assigning each outlier to a reject
            unit (e.g. :class:`rejectnet.outliers.ClusterLabeler`); ``generator`` is then
            unused.

    Raises:
        TypeError: If ``num_classes`` is not an int, ``lam`` not a number, ``generator``
            not a ``torch.Generator``, or ``pseudo_labels`` neither ``"random"`` nor
            callable (the rule of :mod:`rejectnet._validation`: a wrong type is a
            ``TypeError``).
        ValueError: If ``num_classes < 1`` or ``lam`` is negative or not finite.

    Example:
        >>> import torch
        >>> loss_fn = SelfSupervisedRejectLoss(num_classes=3, lam=5.0)
        >>> logits = torch.randn(12, 5, requires_grad=True)  # C = 3 classes + k = 2
        >>> y = torch.tensor([0, 1, 2, 0])
        >>> loss = loss_fn(logits[:4], y, logits[4:])  # 4 labeled rows, 8 outliers
        >>> loss.backward()
        >>> loss.ndim, logits.grad is not None
        (0, True)
    """

    uses_outliers = True

    def __init__(
        self,
        num_classes: int,
        lam: float = 5.0,
        generator: torch.Generator | None = None,
        pseudo_labels: str | PseudoLabeler = "random",
    ) -> None:
        super().__init__()
        check_int(num_classes, "num_classes")  # C: TypeError for a non-int, ValueError < 1
        self.num_classes = int(num_classes)
        self.lam = check_number(lam, "lam")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        self.generator = generator
        if pseudo_labels != "random" and not callable(pseudo_labels):
            raise TypeError(
                "pseudo_labels must be 'random' (Algorithm 1) or a callable "
                f"(logits_out, num_classes) -> targets; got {pseudo_labels!r}"
            )
        self.labeler: PseudoLabeler | None = None if pseudo_labels == "random" else pseudo_labels  # type: ignore[assignment]

    def targets_for(self, logits_out: torch.Tensor) -> torch.Tensor:
        """The reject-unit targets of the outlier rows (no gradients, inputs unchanged).

        Args:
            logits_out: ``(M, C + k)`` outlier logits.

        Returns:
            ``(M,)`` int64 targets in ``[C, C + k)``.
        """
        detached = logits_out.detach()
        if self.labeler is not None:
            return self.labeler(detached, self.num_classes)
        return pseudo_labels(detached, self.num_classes, self.generator)

    def terms(
        self,
        logits_in: torch.Tensor,
        targets: torch.Tensor,
        logits_out: torch.Tensor | None,
    ) -> LossTerms:
        """The loss and its parts; see :class:`LossTerms`.

        Raises:
            ValueError: If the shapes do not fit (logits not 2-D, fewer than C + 1
                outputs, targets not one class index per row, or the two logit tensors
                of different widths).
        """
        _check_in(logits_in, targets)
        width = int(logits_in.shape[1])
        if width <= self.num_classes:
            raise ValueError(
                f"logits_in has {width} outputs but num_classes={self.num_classes}: a "
                "RejectHead has C + k outputs (k >= 1); wrap the model with RejectHead.wrap"
            )
        _check_out(logits_out, width)
        return _combined(logits_in, targets, logits_out, self.lam, self._out_loss)

    def _out_loss(self, logits_out: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits_out.float(), self.targets_for(logits_out))

    def forward(
        self,
        logits_in: torch.Tensor,
        targets: torch.Tensor,
        logits_out: torch.Tensor | None,
    ) -> torch.Tensor:
        """``CE(in) + lam * CE(out, pseudo-labels)`` over all C + k outputs.

        Args:
            logits_in: ``(N, C + k)`` logits of the labeled in-distribution rows.
            targets: ``(N,)`` class indices in ``[0, C)``.
            logits_out: ``(M, C + k)`` logits of the outlier rows from the same forward
                pass (``None`` or empty: the in-distribution term alone).

        Returns:
            The scalar loss (float32).
        """
        return self.terms(logits_in, targets, logits_out).loss

    def extra_repr(self) -> str:
        """C, lambda and the pseudo-label rule, for ``repr``."""
        rule = "random" if self.labeler is None else type(self.labeler).__name__
        return f"num_classes={self.num_classes}, lam={self.lam}, pseudo_labels={rule}"


class OutlierExposureLoss(nn.Module):
    """Outlier Exposure (Hendrycks et al., 2019) for a plain C-class model.

    ``CE(logits_in, targets) + lam * mean_outliers(-mean_c log_softmax(logits_out)_c)``:
    cross-entropy to the uniform distribution on the outliers.

    Args:
        lam: Weight of the outlier term (OE's default, 0.5).

    Example:
        >>> import torch
        >>> loss_fn = OutlierExposureLoss(lam=0.5)
        >>> logits = torch.zeros(6, 4)  # uniform on every row
        >>> round(float(loss_fn(logits[:2], torch.tensor([0, 3]), logits[2:])), 4)
        2.0794
    """

    uses_outliers = True

    def __init__(self, lam: float = 0.5) -> None:
        super().__init__()
        self.lam = check_number(lam, "lam")

    def terms(
        self,
        logits_in: torch.Tensor,
        targets: torch.Tensor,
        logits_out: torch.Tensor | None,
    ) -> LossTerms:
        """The loss and its parts; see :class:`LossTerms`."""
        _check_in(logits_in, targets)
        _check_out(logits_out, int(logits_in.shape[1]))
        return _combined(logits_in, targets, logits_out, self.lam, _uniform_cross_entropy)

    def forward(
        self,
        logits_in: torch.Tensor,
        targets: torch.Tensor,
        logits_out: torch.Tensor | None,
    ) -> torch.Tensor:
        """``CE(in) + lam * CE(out, uniform)``.

        Args:
            logits_in: ``(N, C)`` logits of the labeled rows.
            targets: ``(N,)`` class indices.
            logits_out: ``(M, C)`` outlier logits from the same forward pass.

        Returns:
            The scalar loss (float32).
        """
        return self.terms(logits_in, targets, logits_out).loss

    def extra_repr(self) -> str:
        """Lambda, for ``repr``."""
        return f"lam={self.lam}"
