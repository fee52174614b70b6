"""The three kinds of evaluation input, normalised to scores: the format step of evaluate.

:func:`rejectnet.evaluate` takes, per dataset, a loader (run through a model or a
scorer), precomputed :class:`DatasetLogits` (scored with the model's score) or
precomputed :class:`DatasetScores`. :class:`ScoreSource` turns each of them into a
:class:`ScoredSet`: one score per sample and, when labels and predictions are known,
whether each prediction was right. What is measured on those scores is
:mod:`rejectnet.report.protocol` (torchmetrics' split of format and compute).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from rejectnet._batches import Inputs, batch_size, call_model, extract_logits, split_inputs
from rejectnet._inference import collect_logits, eval_mode, module_device
from rejectnet._validation import as_score_array
from rejectnet.head import RejectHead
from rejectnet.scores import registry

__all__ = [
    "DatasetLogits",
    "DatasetScores",
    "ScoreSource",
    "ScoredSet",
    "Scorer",
    "Source",
    "compute_logits",
    "compute_scores",
]

Scorer: TypeAlias = Callable[[Inputs], Any]
"""Any callable mapping a batch of inputs (a tensor, or a dict of named tensors for a
model called as ``model(**x)``) to one OOD score per input (higher = more OOD), as a
tensor, array or list of shape ``(N,)``."""


@dataclass(frozen=True)
class DatasetLogits:
    """Logits of one model on one dataset (computed once, reused for every score).

    Pass it to :func:`evaluate` in place of a loader to score the same logits several
    times without running the model again.

    Attributes:
        logits: ``(N, W)`` logits on the CPU (``W = C + k`` for a wrapped model).
        labels: ``(N,)`` labels, or ``None`` when the batches had none.

    Example:
        >>> import torch
        >>> data = DatasetLogits(torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2]))
        >>> data.logits.shape, data.labels.shape
        (torch.Size([6, 5]), torch.Size([6]))
    """

    logits: torch.Tensor
    labels: torch.Tensor | None


@dataclass(frozen=True)
class DatasetScores:
    """OOD scores of one method on one dataset, computed beforehand.

    Pass it to :func:`evaluate` in place of a loader, e.g. when several detectors share
    one forward pass (see :func:`rejectnet.peers.evaluate_peers`).

    Attributes:
        scores: ``(N,)`` scores, higher = more OOD (tensor, array or list).
        labels: ``(N,)`` class labels, or ``None``.
        predictions: ``(N,)`` predicted classes, or ``None``; with ``labels`` they give
            the accuracy and the selective-classification risk.

    Example:
        >>> import torch
        >>> labels, predicted = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0])
        >>> data = DatasetScores(torch.rand(4), labels, predicted)
        >>> data.scores.shape
        torch.Size([4])
    """

    scores: Any
    labels: torch.Tensor | None = None
    predictions: torch.Tensor | None = None


def compute_scores(scorer: Scorer, loader: Iterable[Any], *, name: str = "loader") -> DatasetScores:
    """Run a scorer over a loader.

    The scorer gets each batch's inputs as they come (it moves them where it needs) and
    is called with autograd enabled, since some detectors (ODIN) need input gradients.

    Args:
        scorer: ``x -> (N,)`` scores, higher = more OOD; ``x`` is a tensor, or a dict of
            named tensors for batches of several model inputs.
        loader: Batches: a tensor, ``(x, y)``, or a dict (one input tensor, or named
            tensors such as ``input_ids`` and ``attention_mask``, plus the labels), read
            by the rule of :mod:`rejectnet._batches`.
        name: What to call the loader in error messages.

    Returns:
        The scores (float64) and labels (``None`` without labels); no predictions.

    Raises:
        ValueError: If the loader yields no batch, or the scorer returns the wrong number
            of scores or non-finite ones.
        TypeError: If a batch has none of the accepted forms.

    Example:
        >>> import torch
        >>> data = compute_scores(lambda x: x.abs().sum(1), [torch.ones(3, 2), torch.zeros(1, 2)])
        >>> data.scores.tolist(), data.labels
        ([2.0, 2.0, 2.0, 0.0], None)
    """
    parts: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    labels: list[torch.Tensor] = []
    for batch in loader:
        x, y = split_inputs(batch, f"{name} batch")
        n = batch_size(x, f"{name} batch inputs")
        out = scorer(x)
        if isinstance(out, torch.Tensor):
            out = out.detach().to("cpu", torch.float64)
        s = as_score_array(out, f"scores returned for a batch of {name}")
        if len(s) != n:
            raise ValueError(
                f"the scorer returned {len(s)} scores for a batch of {name} with {n} inputs; "
                "it must return one score per input, shape (N,)"
            )
        parts.append(s)
        if y is not None:
            labels.append(y.detach().to("cpu"))
    if not parts:
        raise ValueError(f"{name} yielded no batches; it needs at least one sample")
    y_all = torch.cat(labels) if labels and len(labels) == len(parts) else None
    return DatasetScores(torch.from_numpy(np.concatenate(parts)), y_all, None)


def compute_logits(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: str | torch.device | None = None,
    name: str = "loader",
) -> DatasetLogits:
    """Run ``model`` over ``loader`` in eval mode without gradients.

    Args:
        model: A :class:`~rejectnet.RejectHead` or a plain classifier; a dict of named
            tensors is passed as keyword arguments (``model(**x)``, Hugging Face style).
        loader: Batches: a tensor, ``(x, y)``, or a dict (one input tensor, or named
            tensors plus the labels), read by the rule of :mod:`rejectnet._batches`.
        device: Where to run; defaults to the model's device.
        name: What to call the loader in error messages.

    Returns:
        The logits (on the CPU) and labels (``None`` if the batches had none).

    Raises:
        ValueError: If the loader yields no batches.
        TypeError: If a batch has none of the accepted forms or the model's output
            holds no logits tensor.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead
        >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
        >>> loader = [
        ...     (torch.randn(4, 8), torch.tensor([0, 1, 2, 0])),
        ...     (torch.randn(2, 8), torch.tensor([1, 1])),
        ... ]
        >>> data = compute_logits(net, loader)
        >>> data.logits.shape, data.labels.tolist()
        (torch.Size([6, 5]), [0, 1, 2, 0, 1, 1])
    """
    dev = torch.device(device) if device is not None else module_device(model)

    def forward(x: Inputs) -> torch.Tensor:
        return extract_logits(call_model(model, x))

    with eval_mode(model):
        logits, labels = collect_logits(forward, loader, dev, name=name)
    return DatasetLogits(logits, labels)


Source: TypeAlias = "Iterable[Any] | DatasetLogits | DatasetScores"
"""What :func:`rejectnet.evaluate` takes per dataset: batches, logits or scores."""


@dataclass(frozen=True)
class ScoredSet:
    """One dataset, scored.

    Attributes:
        scores: ``(N,)`` float64 scores, higher = more OOD.
        correct: ``(N,)`` whether each class prediction was right, or ``None`` without
            labels (or predictions).
    """

    scores: npt.NDArray[np.float64]
    correct: npt.NDArray[np.bool_] | None = None


def _logit_scores(model: nn.Module, logits: torch.Tensor, score: str) -> npt.NDArray[np.float64]:
    if isinstance(model, RejectHead):
        s = model.score_logits(logits, score)
    else:
        if registry.spec(score).kind != "baseline":
            raise ValueError(
                f"score={score!r} needs reject units, but the model is a plain classifier; "
                f"use one of {registry.available('baseline')} or wrap it with RejectHead.wrap"
            )
        s = registry.compute(score, logits)
    return np.asarray(s.detach().cpu().double().numpy())


class ScoreSource:
    """What scores a dataset: a model with a score name, or a scorer.

    Args:
        model: A :class:`~rejectnet.RejectHead`, a plain classifier or a scorer.
        score: The score name for a model (``None``: the calibrated score, else
            ``sum_reject`` for a RejectHead and ``msp`` for a plain model); must be
            ``None`` for a scorer.
        device: Where to run a model.

    Attributes:
        label: What the report's "score" column says: the score's name, or a scorer's
            ``score`` attribute (``"custom"`` without one).

    Raises:
        TypeError: If ``model`` is neither an ``nn.Module`` nor callable.
        ValueError: If ``score`` is unknown, or given with a scorer.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> source = ScoreSource(nn.Linear(4, 3), None)
        >>> source.label, source.scored([torch.randn(5, 4)], "id").scores.shape
        ('msp', (5,))
    """

    def __init__(self, model: nn.Module | Scorer, score: str | None, device: Any = None) -> None:
        self.model = model
        self.device = device
        self.module: nn.Module | None = model if isinstance(model, nn.Module) else None
        if self.module is None and not callable(model):
            raise TypeError(
                "model must be an nn.Module (a RejectHead or a plain classifier) or a callable "
                f"scorer x -> scores, got {type(model).__name__}"
            )
        if self.module is not None:
            if score is None:
                head = self.module if isinstance(self.module, RejectHead) else None
                score = (head.calibrated_score or "sum_reject") if head is not None else "msp"
            self.score: str | None = registry.spec(score).name
            self.label: str = self.score
            return
        if score is not None:
            raise ValueError(
                f"score={score!r} applies to a model's logits; a scorer computes its own "
                "scores, so leave score=None"
            )
        self.score = None
        attr = getattr(model, "score", None)
        self.label = attr if isinstance(attr, str) else "custom"

    def scored(self, src: Source, what: str) -> ScoredSet:
        """Score one dataset.

        Args:
            src: Batches, :class:`DatasetLogits` (a model only) or :class:`DatasetScores`.
            what: What to call it in error messages (e.g. ``"id_loader"``).

        Returns:
            The scores and, with labels, whether each prediction was right.

        Raises:
            TypeError: If a scorer is given :class:`DatasetLogits`.
            ValueError: If the data are empty or the scores are not finite.
        """
        if isinstance(src, DatasetScores):
            s = as_score_array(src.scores, f"{what}.scores")
            correct = None
            if src.labels is not None and src.predictions is not None:
                correct = (src.predictions.cpu() == src.labels.cpu()).numpy()
            return ScoredSet(s, correct)
        if self.module is None:
            if isinstance(src, DatasetLogits):
                raise TypeError(
                    f"{what} is DatasetLogits, but model is a scorer, which needs inputs; "
                    "pass a loader or DatasetScores"
                )
            data_s = compute_scores(self.model, src, name=what)
            return ScoredSet(np.asarray(data_s.scores, dtype=np.float64), None)
        return self._from_logits(src, what)

    def _from_logits(self, src: Iterable[Any] | DatasetLogits, what: str) -> ScoredSet:
        module, score = self.module, self.score
        assert module is not None and score is not None
        data = (
            src
            if isinstance(src, DatasetLogits)
            else compute_logits(module, src, device=self.device, name=what)
        )
        correct = None
        if data.labels is not None:
            num_classes = (
                module.num_classes if isinstance(module, RejectHead) else data.logits.shape[1]
            )
            correct = (data.logits[:, :num_classes].argmax(1) == data.labels).numpy()
        return ScoredSet(_logit_scores(module, data.logits, score), correct)
