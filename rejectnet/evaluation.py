"""`evaluate`: how well a model separates in-distribution data from several OOD sets.

Measured as the paper measures: equal numbers of in- and out-of-distribution samples
(a random subsample of the larger side, repeated ``n_runs`` times), OOD as the positive
class, AUROC / AUPR-in / AUPR-out / FPR at 95% TPR / detection error as mean and std,
plus a "mixed" set (an equal mix of every OOD set) and selective classification on the
in-distribution test set at the 95%-TPR threshold. Logits are computed once per model and
dataset and reused for every score and run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from rejectnet._inference import collect_logits, eval_mode, module_device
from rejectnet._outputs import extract_logits
from rejectnet.head import RejectHead
from rejectnet.metrics import ood_metrics, total_misclassification_rate
from rejectnet.scores import registry, threshold_at_tpr

__all__ = ["METRIC_NAMES", "DatasetLogits", "OODResult", "Report", "compute_logits", "evaluate"]

METRIC_NAMES = ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_error")
MIXED = "mixed"


@dataclass(frozen=True)
class DatasetLogits:
    """Logits of one model on one dataset (computed once, reused for every score)."""

    logits: torch.Tensor
    labels: torch.Tensor | None


def compute_logits(
    model: nn.Module, loader: Iterable[Any], *, device: str | torch.device | None = None
) -> DatasetLogits:
    """Run ``model`` over ``loader`` in eval mode without gradients.

    Args:
        model: A :class:`~rejectnet.RejectHead` or a plain classifier.
        loader: Batches (tensor, ``(x, y)`` or dict).
        device: Where to run; defaults to the model's device.

    Returns:
        The logits (on the CPU) and labels (``None`` if the batches had none).
    """
    dev = torch.device(device) if device is not None else module_device(model)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return extract_logits(model(x))

    with eval_mode(model):
        logits, labels = collect_logits(forward, loader, dev)
    return DatasetLogits(logits, labels)


@dataclass
class OODResult:
    """Metrics for one OOD set: mean and std over the subsampled runs.

    Attributes:
        mean: Metric name -> mean over runs (fractions).
        std: Metric name -> standard deviation over runs.
        n: Samples per side in each run.
        n_ood: Size of the OOD set.
    """

    mean: dict[str, float]
    std: dict[str, float]
    n: int
    n_ood: int


@dataclass
class Report:
    """What :func:`evaluate` returns.

    Attributes:
        name: The method's name (e.g. ``"rejectnet"``, ``"msp"``).
        score: The score that was evaluated.
        id_accuracy: Accuracy over the C classes on the in-distribution set (``None``
            without labels).
        ood: OOD set name (and ``"mixed"``) -> :class:`OODResult`.
        selective: Selective classification at the ``tpr`` threshold on the mixed set:
            ``threshold``, ``coverage``, ``risk`` (error on accepted in-distribution
            samples), ``risk_without_rejection`` and ``total_misclassification``.
        n_runs: Subsampling runs per OOD set.
        tpr: The TPR of the FPR metric and of the selective threshold.
        scores_in: In-distribution scores (for plots).
        scores_out: OOD set name -> scores (for plots).
        correct: Per in-distribution sample, whether the class prediction was right.
    """

    name: str
    score: str
    id_accuracy: float | None
    ood: dict[str, OODResult]
    selective: dict[str, float]
    n_runs: int
    tpr: float
    scores_in: npt.NDArray[np.float64] = field(repr=False)
    scores_out: dict[str, npt.NDArray[np.float64]] = field(repr=False)
    correct: npt.NDArray[np.bool_] | None = field(repr=False, default=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: ``{"name", "score", "id_accuracy", "ood": {...}, ...}``.

        ``ood`` maps each set to its mean metrics (``auroc``, ``aupr_in``, ``aupr_out``,
        ``fpr95``, ``detection_error``) plus ``std`` and ``n``; values are fractions.
        """
        return {
            "name": self.name,
            "score": self.score,
            "id_accuracy": self.id_accuracy,
            "n_runs": self.n_runs,
            "tpr": self.tpr,
            "ood": {
                k: {**v.mean, "std": v.std, "n": v.n, "n_ood": v.n_ood} for k, v in self.ood.items()
            },
            "selective": self.selective,
        }

    def to_json(self, **kwargs: Any) -> str:
        """The :meth:`to_dict` view as a JSON string."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_markdown(self) -> str:
        """A Markdown table in percentages: one row per OOD set, mean ± std."""
        return reports_to_markdown([self])

    def plot(self, out_dir: str | Path, *, others: Sequence[Report] = ()) -> list[Path]:
        """Write PNG plots (needs matplotlib: ``pip install "rejectnet[plot]"``).

        See :func:`rejectnet.plotting.plot_reports`; ``others`` are drawn on the same axes.
        """
        from rejectnet.plotting import plot_reports

        written: list[Path] = plot_reports([self, *others], out_dir)
        return written


def _fmt(mean: float, std: float, pct: bool = True) -> str:
    f = 100.0 if pct else 1.0
    return f"{f * mean:.2f} ± {f * std:.2f}"


def reports_to_markdown(reports: Sequence[Report]) -> str:
    """One Markdown table comparing several reports (methods), in percentages."""
    lines = [
        "| method | score | ID acc | OOD set | AUROC | AUPR-in | AUPR-out | FPR@95%TPR "
        "| det. err |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        acc = f"{100 * r.id_accuracy:.2f}" if r.id_accuracy is not None else "-"
        for name, res in r.ood.items():
            cells = [_fmt(res.mean[m], res.std[m]) for m in METRIC_NAMES]
            lines.append(f"| {r.name} | {r.score} | {acc} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _subsample(
    rng: np.random.Generator, a: npt.NDArray[np.float64], n: int
) -> npt.NDArray[np.float64]:
    return a if len(a) == n else a[rng.choice(len(a), size=n, replace=False)]


def _summarise(
    s_in: npt.NDArray[np.float64],
    s_out: npt.NDArray[np.float64],
    n_runs: int,
    seed: int,
    tpr: float,
) -> OODResult:
    n = min(len(s_in), len(s_out))
    rng = np.random.default_rng(seed)
    runs: dict[str, list[float]] = {m: [] for m in METRIC_NAMES}
    for _ in range(n_runs):
        m = ood_metrics(_subsample(rng, s_in, n), _subsample(rng, s_out, n), tpr=tpr)
        m["fpr95"] = m["fpr_at_tpr"]
        for key in METRIC_NAMES:
            runs[key].append(m[key])
    mean = {k: float(np.mean(v)) for k, v in runs.items()}
    std = {k: float(np.std(v)) for k, v in runs.items()}
    return OODResult(mean, std, n, len(s_out))


def _scores(model: nn.Module, logits: torch.Tensor, score: str) -> npt.NDArray[np.float64]:
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


def evaluate(
    model: nn.Module,
    id_loader: Iterable[Any] | DatasetLogits,
    ood_loaders: Mapping[str, Iterable[Any] | DatasetLogits],
    score: str | None = None,
    *,
    n_runs: int = 10,
    seed: int = 0,
    mixed: bool = True,
    tpr: float = 0.95,
    name: str | None = None,
    device: str | torch.device | None = None,
) -> Report:
    """Evaluate OOD detection and selective classification, as the paper does.

    Args:
        model: A :class:`~rejectnet.RejectHead` (reject scores) or a plain classifier
            (baseline scores: ``"msp"``, ``"energy"``, ``"max_logit"``).
        id_loader: In-distribution test batches (labels give the accuracy), or
            precomputed :class:`DatasetLogits`.
        ood_loaders: OOD set name -> loader (or :class:`DatasetLogits`).
        score: Score name; defaults to the model's calibrated score, else ``"sum_reject"``
            for a RejectHead and ``"msp"`` for a plain model.
        n_runs: Random equal-size subsamples per OOD set.
        seed: Seed of the subsampling.
        mixed: Add a ``"mixed"`` row: an equal mix of every OOD set.
        tpr: TPR for the FPR metric and the selective-classification threshold.
        name: Method name for tables; defaults to the score name.
        device: Where to run the model.

    Returns:
        A :class:`Report`.

    Raises:
        ValueError: If ``ood_loaders`` is empty, a loader is empty, ``n_runs < 1`` or the
            score does not fit the model.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> torch.manual_seed(0) and None
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> x_in = [(torch.randn(50, 4), torch.randint(0, 3, (50,)))]
        >>> report = evaluate(net, x_in, {"shifted": [torch.randn(40, 4) + 3]}, n_runs=3)
        >>> sorted(report.ood), report.score
        (['mixed', 'shifted'], 'sum_reject')
    """
    if isinstance(n_runs, bool) or not isinstance(n_runs, int) or n_runs < 1:
        raise ValueError(f"n_runs must be an int >= 1, got {n_runs!r}")
    if not isinstance(ood_loaders, Mapping) or not ood_loaders:
        raise ValueError("ood_loaders must be a non-empty mapping {name: loader}")
    if MIXED in ood_loaders and mixed:
        raise ValueError(f"{MIXED!r} is reserved for the mixed set; rename that OOD set")
    if score is None:
        if isinstance(model, RejectHead):
            score = model.calibrated_score or "sum_reject"
        else:
            score = "msp"
    score = registry.spec(score).name

    def logits_of(src: Iterable[Any] | DatasetLogits) -> DatasetLogits:
        return src if isinstance(src, DatasetLogits) else compute_logits(model, src, device=device)

    id_data = logits_of(id_loader)
    s_in = _scores(model, id_data.logits, score)
    num_classes = model.num_classes if isinstance(model, RejectHead) else id_data.logits.shape[1]
    correct = None
    accuracy = None
    if id_data.labels is not None:
        pred = id_data.logits[:, :num_classes].argmax(1)
        correct = (pred == id_data.labels).numpy()
        accuracy = float(correct.mean())

    scores_out = {k: _scores(model, logits_of(v).logits, score) for k, v in ood_loaders.items()}
    results = {
        k: _summarise(s_in, s, n_runs, seed + i, tpr) for i, (k, s) in enumerate(scores_out.items())
    }
    mixed_scores = None
    if mixed:
        m = min(len(s) for s in scores_out.values())
        rng = np.random.default_rng(seed + 10_000)
        mixed_scores = np.concatenate([_subsample(rng, s, m) for s in scores_out.values()])
        results[MIXED] = _summarise(s_in, mixed_scores, n_runs, seed + 20_000, tpr)

    selective: dict[str, float] = {}
    target = mixed_scores if mixed_scores is not None else next(iter(scores_out.values()))
    thr = threshold_at_tpr(s_in, target, tpr=tpr)
    selective["threshold"] = thr.value
    selective["coverage"] = thr.coverage
    if correct is not None:
        accepted = s_in <= thr.value
        n_acc = int(accepted.sum())
        selective["risk"] = float((~correct[accepted]).mean()) if n_acc else math.nan
        selective["risk_without_rejection"] = float((~correct).mean())
        selective["total_misclassification"] = total_misclassification_rate(
            s_in, correct, target, thr.value
        )
    return Report(
        name=name or score,
        score=score,
        id_accuracy=accuracy,
        ood=results,
        selective=selective,
        n_runs=n_runs,
        tpr=tpr,
        scores_in=s_in,
        scores_out={**scores_out, **({MIXED: mixed_scores} if mixed_scores is not None else {})},
        correct=correct,
    )
