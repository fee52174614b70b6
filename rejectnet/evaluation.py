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

__all__ = [
    "METRIC_NAMES",
    "DatasetLogits",
    "OODResult",
    "Report",
    "compute_logits",
    "evaluate",
    "reports_to_markdown",
]

METRIC_NAMES = ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_error")
"""The metrics of every :class:`OODResult`, in table order (``fpr95`` is FPR at the TPR)."""
MIXED = "mixed"


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


def compute_logits(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: str | torch.device | None = None,
    name: str = "loader",
) -> DatasetLogits:
    """Run ``model`` over ``loader`` in eval mode without gradients.

    Args:
        model: A :class:`~rejectnet.RejectHead` or a plain classifier.
        loader: Batches (tensor, ``(x, y)`` or dict).
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

    def forward(x: torch.Tensor) -> torch.Tensor:
        return extract_logits(model(x))

    with eval_mode(model):
        logits, labels = collect_logits(forward, loader, dev, name=name)
    return DatasetLogits(logits, labels)


@dataclass
class OODResult:
    """Metrics for one OOD set: mean and std over the subsampled runs.

    Attributes:
        mean: Metric name -> mean over runs (fractions).
        std: Metric name -> standard deviation over runs.
        n: Samples per side in each run.
        n_ood: Size of the OOD set.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> ood = {"far": [torch.randn(50, 4) + 5]}
        >>> report = evaluate(net, [torch.randn(30, 4)], ood, n_runs=2)
        >>> result = report.ood["far"]
        >>> result.n, result.n_ood, sorted(result.mean) == sorted(METRIC_NAMES)
        (30, 50, True)
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

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> torch.manual_seed(0) and None
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> id_test = [(torch.randn(40, 4), torch.randint(0, 3, (40,)))]
        >>> ood = {"a": [torch.randn(40, 4) + 3], "b": [torch.rand(40, 4)]}
        >>> report = evaluate(net, id_test, ood, n_runs=2, name="rejectnet")
        >>> report.name, list(report.ood), sorted(report.selective)[:2]
        ('rejectnet', ['a', 'b', 'mixed'], ['coverage', 'risk'])
        >>> 0.0 <= report.ood["mixed"].mean["auroc"] <= 1.0
        True
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

        Returns:
            A dict of plain Python values with the keys ``name``, ``score``,
            ``id_accuracy``, ``n_runs``, ``tpr``, ``ood`` and ``selective``; the score
            arrays are left out.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead, evaluate
            >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
            >>> report = evaluate(net, [torch.randn(20, 4)], {"far": [torch.randn(20, 4) + 5]})
            >>> d = report.to_dict()
            >>> list(d)
            ['name', 'score', 'id_accuracy', 'n_runs', 'tpr', 'ood', 'selective']
            >>> sorted(d["ood"]["far"])
            ['aupr_in', 'aupr_out', 'auroc', 'detection_error', 'fpr95', 'n', 'n_ood', 'std']
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
        """The :meth:`to_dict` view as a JSON string.

        Args:
            **kwargs: Passed to ``json.dumps`` (e.g. ``indent=2``).

        Returns:
            The JSON text.

        Example:
            >>> import json, torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead, evaluate
            >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
            >>> report = evaluate(net, [torch.randn(20, 4)], {"far": [torch.randn(20, 4) + 5]})
            >>> json.loads(report.to_json(indent=2))["score"]
            'sum_reject'
        """
        return json.dumps(self.to_dict(), **kwargs)

    def to_markdown(self) -> str:
        """A Markdown table in percentages: one row per OOD set, mean ± std.

        Returns:
            The table, with the columns method, score, ID accuracy, OOD set, AUROC,
            AUPR-in, AUPR-out, FPR@95%TPR and detection error.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead, evaluate
            >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
            >>> report = evaluate(net, [torch.randn(20, 4)], {"far": [torch.randn(20, 4) + 5]})
            >>> table = report.to_markdown().splitlines()
            >>> len(table), table[2].startswith("| sum_reject | sum_reject | - | far |")
            (4, True)
        """
        return reports_to_markdown([self])

    def plot(self, out_dir: str | Path, *, others: Sequence[Report] = ()) -> list[Path]:
        """Write PNG plots (needs matplotlib: ``pip install "rejectnet[plot]"``).

        See :func:`rejectnet.plotting.plot_reports`; ``others`` are drawn on the same axes.

        Args:
            out_dir: Folder for the PNG files (created if missing).
            others: Further reports (other methods, same OOD sets) to compare with.

        Returns:
            The paths written: ``roc.png``, ``score_histograms.png``,
            ``error_vs_tpr.png`` and ``risk_coverage.png``.

        Raises:
            ImportError: If matplotlib is not installed.

        Example:
            >>> import tempfile, torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead, evaluate
            >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
            >>> id_test = [(torch.randn(30, 4), torch.randint(0, 3, (30,)))]
            >>> report = evaluate(net, id_test, {"far": [torch.randn(30, 4) + 5]}, n_runs=1)
            >>> [p.name for p in report.plot(tempfile.mkdtemp())]
            ['roc.png', 'score_histograms.png', 'error_vs_tpr.png', 'risk_coverage.png']
        """
        from rejectnet.plotting import plot_reports

        written: list[Path] = plot_reports([self, *others], out_dir)
        return written


def _fmt(mean: float, std: float, pct: bool = True) -> str:
    f = 100.0 if pct else 1.0
    return f"{f * mean:.2f} ± {f * std:.2f}"


def reports_to_markdown(reports: Sequence[Report]) -> str:
    """One Markdown table comparing several reports (methods), in percentages.

    Args:
        reports: Reports from :func:`evaluate`, one row per report and OOD set.

    Returns:
        The table, as :meth:`Report.to_markdown` but with every report's rows.
    """
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
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
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

    def logits_of(src: Iterable[Any] | DatasetLogits, what: str) -> DatasetLogits:
        if isinstance(src, DatasetLogits):
            return src
        return compute_logits(model, src, device=device, name=what)

    id_data = logits_of(id_loader, "id_loader")
    s_in = _scores(model, id_data.logits, score)
    num_classes = model.num_classes if isinstance(model, RejectHead) else id_data.logits.shape[1]
    correct = None
    accuracy = None
    if id_data.labels is not None:
        pred = id_data.logits[:, :num_classes].argmax(1)
        correct = (pred == id_data.labels).numpy()
        accuracy = float(correct.mean())

    scores_out = {
        k: _scores(model, logits_of(v, f"ood_loaders[{k!r}]").logits, score)
        for k, v in ood_loaders.items()
    }
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
