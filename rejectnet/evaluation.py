"""`evaluate`: how well a model separates in-distribution data from several OOD sets.

Measured as the paper measures: equal numbers of in- and out-of-distribution samples
(a random subsample of the larger side, repeated ``n_runs`` times; one exact run when
both sides already have the same size), OOD as the positive class, AUROC / AUPR-in /
AUPR-out / FPR at 95% TPR / detection error as mean and std, plus a "mixed" set (an
equal mix of every OOD set, when there are at least two) and selective classification
on the in-distribution test set at the 95%-TPR threshold. Logits are computed once per
model and dataset and reused for every score and run.

Besides wrapped and plain classifiers, :func:`evaluate` takes any scorer ``x -> score``
(higher = more OOD), e.g. a post-hoc peer from :mod:`rejectnet.peers`.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from rejectnet import _report_table, plotting, report_html
from rejectnet._batches import split_batch
from rejectnet._inference import collect_logits, eval_mode, module_device
from rejectnet._outputs import extract_logits
from rejectnet._validation import as_score_array
from rejectnet.head import RejectHead
from rejectnet.metrics import ood_metrics, total_misclassification_rate
from rejectnet.scores import registry, threshold_at_tpr

__all__ = [
    "GROUPS",
    "METRIC_NAMES",
    "DatasetLogits",
    "DatasetScores",
    "OODResult",
    "Report",
    "Scorer",
    "compute_logits",
    "compute_scores",
    "evaluate",
    "reports_to_html",
    "reports_to_markdown",
]

METRIC_NAMES = _report_table.METRIC_NAMES
"""The metrics of every :class:`OODResult`, in table order (``fpr95`` is FPR at the TPR)."""
MIXED = _report_table.MIXED
GROUPS = _report_table.GROUPS

Scorer: TypeAlias = Callable[[torch.Tensor], Any]
"""Any callable mapping a batch of inputs to one OOD score per input (higher = more OOD),
as a tensor, array or list of shape ``(N,)``."""


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
        scorer: ``x -> (N,)`` scores, higher = more OOD.
        loader: Batches (tensor, ``(x, y)`` or dict).
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
        x, y = split_batch(batch, f"{name} batch")
        out = scorer(x)
        if isinstance(out, torch.Tensor):
            out = out.detach().to("cpu", torch.float64)
        s = as_score_array(out, f"scores returned for a batch of {name}")
        if len(s) != len(x):
            raise ValueError(
                f"the scorer returned {len(s)} scores for a batch of {name} with {len(x)} inputs; "
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
        std: Metric name -> standard deviation over runs (0 for a single run).
        n: Samples per side in each run.
        n_ood: Size of the OOD set.
        n_in: Size of the in-distribution set.
        runs: Distinct runs the mean is over: ``n_runs`` when a side was subsampled,
            1 when both sides have the same size (nothing to subsample).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> ood = {"far": [torch.randn(50, 4) + 5]}
        >>> report = evaluate(net, [torch.randn(30, 4)], ood, n_runs=2)
        >>> result = report.ood["far"]
        >>> result.n, result.n_ood, result.runs, sorted(result.mean) == sorted(METRIC_NAMES)
        (30, 50, 2, True)
    """

    mean: dict[str, float]
    std: dict[str, float]
    n: int
    n_ood: int
    n_in: int = 0
    runs: int = 1

    @property
    def subsampled(self) -> bool:
        """Whether a side was randomly subsampled to ``n``."""
        return self.n_in != self.n_ood


@dataclass
class Report:
    """What :func:`evaluate` returns.

    Attributes:
        name: The method's name (e.g. ``"rejectnet"``, ``"msp"``).
        score: The score that was evaluated.
        id_accuracy: Accuracy over the C classes on the in-distribution set (``None``
            without labels).
        ood: OOD set name (and ``"mixed"`` with two or more sets) -> :class:`OODResult`.
        selective: Selective classification at the ``tpr`` threshold on the mixed set
            (on the only set, with one): ``threshold``, ``coverage``, ``risk`` (error on
            accepted in-distribution samples), ``risk_without_rejection`` and
            ``total_misclassification``.
        n_runs: Subsampling runs requested per OOD set (``runs`` of each
            :class:`OODResult` says how many were done).
        tpr: The TPR of the FPR metric and of the selective threshold.
        scores_in: In-distribution scores (for plots).
        scores_out: OOD set name -> scores (for plots).
        correct: Per in-distribution sample, whether the class prediction was right.
        notes: What was done, in words: the subsampling of each set, the mixed set (or
            why there is none), the set the selective threshold was set on.
        groups: OOD set name -> ``"near"`` or ``"far"`` (see :func:`evaluate`); the
            near / far means are :attr:`means`.

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
        >>> report.notes[0]
        'a: 40 in-distribution vs 40 OOD samples, no subsampling (equal sizes)'
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
    notes: list[str] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)

    @property
    def means(self) -> dict[str, dict[str, Any]]:
        """OpenOOD's near / far summary: each metric's mean over the sets of a group.

        Returns:
            ``{"near": {"auroc": ..., "aupr_in": ..., "aupr_out": ..., "fpr95": ...,
            "detection_error": ..., "sets": [...]}, "far": {...}}`` (fractions), for
            each group that holds a set; the mixed set belongs to none.
        """
        return _report_table.group_means({k: v.mean for k, v in self.ood.items()}, self.groups)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: ``{"name", "score", "id_accuracy", "ood": {...}, ...}``.

        ``ood`` maps each set to its mean metrics (``auroc``, ``aupr_in``, ``aupr_out``,
        ``fpr95``, ``detection_error``) plus ``std``, ``n`` (per side and run),
        ``n_in``, ``n_ood``, ``runs`` and ``group`` (``"near"``, ``"far"``, ``None`` for
        the mixed set); ``means`` is :attr:`means` (OpenOOD's near / far summary);
        values are fractions. A number that is not finite is ``None``, and
        ``"undefined"`` (present only then) maps its path to the reason.

        Returns:
            A dict of plain Python values with the keys ``name``, ``score``,
            ``id_accuracy``, ``n_runs``, ``tpr``, ``ood``, ``means``, ``selective`` and
            ``notes`` (and ``undefined``); the score arrays are left out.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead, evaluate
            >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
            >>> report = evaluate(net, [torch.randn(20, 4)], {"far": [torch.randn(20, 4) + 5]})
            >>> d = report.to_dict()
            >>> list(d)
            ['name', 'score', 'id_accuracy', 'n_runs', 'tpr', 'ood', 'means', 'selective', 'notes']
            >>> sorted(d["ood"]["far"])  # doctest: +NORMALIZE_WHITESPACE
            ['aupr_in', 'aupr_out', 'auroc', 'detection_error', 'fpr95', 'group', 'n', 'n_in',
             'n_ood', 'runs', 'std']
            >>> d["ood"]["far"]["group"], d["means"]["far"]["sets"]
            ('far', ['far'])
        """
        out = {
            "name": self.name,
            "score": self.score,
            "id_accuracy": self.id_accuracy,
            "n_runs": self.n_runs,
            "tpr": self.tpr,
            "ood": {
                k: {
                    **v.mean,
                    "std": v.std,
                    "n": v.n,
                    "n_in": v.n_in,
                    "n_ood": v.n_ood,
                    "runs": v.runs,
                    "group": self.groups.get(k),
                }
                for k, v in self.ood.items()
            },
            "means": self.means,
            "selective": self.selective,
            "notes": list(self.notes),
        }
        undefined: dict[str, str] = {}
        safe: dict[str, Any] = _json_safe(out, "", undefined, self._reasons())
        if undefined:
            safe["undefined"] = undefined
        return safe

    def _reasons(self) -> dict[str, str]:
        """Why a number can be undefined, by its path in :meth:`to_dict`."""
        reasons = {}
        if self.selective.get("coverage") == 0.0:
            reasons["selective.risk"] = (
                "coverage is 0: no in-distribution sample is accepted at the threshold, so "
                "there is no error on accepted samples to measure"
            )
        return reasons

    def to_json(self, **kwargs: Any) -> str:
        """The :meth:`to_dict` view as a JSON string (strict JSON: never ``NaN``).

        A number that is undefined (the selective risk when the coverage is 0, any other
        non-finite value) is written as ``null``, and ``"undefined"`` maps its path
        (e.g. ``"selective.risk"``) to the reason.

        Args:
            **kwargs: Passed to ``json.dumps`` (e.g. ``indent=2``); ``allow_nan`` is
                always ``False``.

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
        return json.dumps(self.to_dict(), **{**kwargs, "allow_nan": False})

    def to_markdown(self) -> str:
        """A Markdown table in percentages: one row per OOD set, then what was done.

        Returns:
            The table (columns method, score, ID accuracy, OOD set, AUROC, AUPR-in,
            AUPR-out, FPR@95%TPR, detection error and group; ``mean ± std`` over runs, a
            bare number for a single run), a line saying which direction is better, the
            near / far means when a set is tagged ``near``, then the ``notes`` as a list.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead, evaluate
            >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
            >>> report = evaluate(net, [torch.randn(20, 4)], {"far": [torch.randn(20, 4) + 5]})
            >>> table = report.to_markdown().splitlines()
            >>> table[2].startswith("| RejectHead | sum_reject | - | far |")
            True
            >>> print("\\n".join(table[4:]))
            ↑ higher is better, ↓ lower is better.
            <BLANKLINE>
            - far: 20 in-distribution vs 20 OOD samples, no subsampling (equal sizes)
            - one OOD set, so no mixed row
            - selective threshold: 95% TPR on far
        """
        return reports_to_markdown([self])

    def to_html(self, *, others: Sequence[Report] = (), title: str | None = None) -> str:
        """One self-contained HTML page: the table, the notes and the plots (inline PNG).

        See :func:`rejectnet.report_html.reports_to_html`; the plots need matplotlib
        (``pip install "rejectnet[plot]"``) and are left out without it.

        Args:
            others: Further reports (other methods, same OOD sets) to compare with.
            title: The page title; defaults to the method names.

        Returns:
            The HTML text.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead, evaluate
            >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
            >>> report = evaluate(net, [torch.randn(20, 4)], {"far": [torch.randn(20, 4) + 5]})
            >>> page = report.to_html()
            >>> page.startswith("<!DOCTYPE html>"), "<table>" in page
            (True, True)
        """
        return reports_to_html([self, *others], title=title)

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
        return plotting.plot_reports([self, *others], out_dir)


def reports_to_markdown(reports: Sequence[Report]) -> str:
    """One Markdown table comparing several reports (methods), in percentages.

    Args:
        reports: Reports from :func:`evaluate`, one row per report and OOD set.

    Returns:
        The table, as :meth:`Report.to_markdown` but with every report's rows (the best
        value of each column and OOD set in bold when there are several methods), the
        near / far means when a set is tagged ``near``, then the notes of all reports
        (each distinct note once).
    """
    table = _report_table
    lines = _markdown_table(table.HEADER, table.rows(reports), table.best_cells(reports))
    lines.append("")
    lines.append(_DIRECTIONS + (" **Bold**: the best of the methods." if len(reports) > 1 else ""))
    if any(g == "near" for r in reports for g in r.groups.values()):
        means, best = table.means_rows(reports)
        lines += ["", "Near / far means (OpenOOD's summary, mean over the sets of a group):", ""]
        lines += _markdown_table(table.MEANS_HEADER, means, best)
    notes = table.notes_of(reports)
    if notes:
        lines.append("")
        lines += [f"- {table.markdown_cell(n)}" for n in notes]
    return "\n".join(lines)


_DIRECTIONS = "\u2191 higher is better, \u2193 lower is better."


def _markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], best: set[tuple[int, int]]
) -> list[str]:
    cell = _report_table.markdown_cell  # a name with "|" or a newline cannot break a row
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        cells = [f"**{cell(c)}**" if (i, j) in best else cell(c) for j, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def reports_to_html(reports: Sequence[Report], *, title: str | None = None) -> str:
    """One self-contained HTML page comparing several reports.

    See :func:`rejectnet.report_html.reports_to_html`.

    Args:
        reports: Reports from :func:`evaluate` (same OOD sets).
        title: The page title; defaults to the method names.

    Returns:
        The HTML text.
    """
    return report_html.reports_to_html(reports, title=title)


def _json_safe(value: Any, path: str, undefined: dict[str, str], reasons: dict[str, str]) -> Any:
    """``value`` with every non-finite float as ``None`` and its reason in ``undefined``."""
    if isinstance(value, dict):
        return {
            k: _json_safe(v, f"{path}.{k}" if path else str(k), undefined, reasons)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_json_safe(v, f"{path}[{i}]", undefined, reasons) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        undefined[path] = reasons.get(path, f"not a finite number ({value})")
        return None
    return value


def _subsample(
    rng: np.random.Generator, a: npt.NDArray[np.float64], n: int
) -> npt.NDArray[np.float64]:
    return a if len(a) == n else a[rng.choice(len(a), size=n, replace=False)]


def _set_seed(seed: int, name: str) -> tuple[int, int]:
    """The subsampling seed of one OOD set: the run's seed and a hash of the set's name."""
    return (seed, zlib.crc32(name.encode()))


def _summarise(
    s_in: npt.NDArray[np.float64],
    s_out: npt.NDArray[np.float64],
    n_runs: int,
    seed: Sequence[int],
    tpr: float,
) -> OODResult:
    n = min(len(s_in), len(s_out))
    runs_done = n_runs if len(s_in) != len(s_out) else 1  # equal sizes: every run is the same
    rng = np.random.default_rng(list(seed))
    runs: dict[str, list[float]] = {m: [] for m in METRIC_NAMES}
    for _ in range(runs_done):
        m = ood_metrics(_subsample(rng, s_in, n), _subsample(rng, s_out, n), tpr=tpr)
        m["fpr95"] = m["fpr_at_tpr"]
        for key in METRIC_NAMES:
            runs[key].append(m[key])
    mean = {k: float(np.mean(v)) for k, v in runs.items()}
    std = {k: float(np.std(v)) for k, v in runs.items()}
    return OODResult(mean, std, n, len(s_out), len(s_in), runs_done)


def _describe(name: str, res: OODResult) -> str:
    if not res.subsampled:
        return (
            f"{name}: {res.n_in} in-distribution vs {res.n_ood} OOD samples, "
            "no subsampling (equal sizes)"
        )
    side = "in-distribution" if res.n_in > res.n_ood else "OOD"
    total = max(res.n_in, res.n_ood)
    runs = (
        "one random subsample" if res.runs == 1 else f"mean ± std over {res.runs} random subsamples"
    )
    return f"{name}: {side} side subsampled to {res.n} of {total} samples, {runs}"


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


@dataclass(frozen=True)
class _Scored:
    scores: npt.NDArray[np.float64]
    correct: npt.NDArray[np.bool_] | None


def _default_name(model: Any) -> str:
    found = getattr(model, "name", None)
    if isinstance(found, str) and found:
        return found
    if isinstance(model, nn.Module):
        return type(model).__name__
    fn_name = getattr(model, "__name__", None)
    if isinstance(fn_name, str) and fn_name and fn_name != "<lambda>":
        return fn_name
    kind = type(model).__name__
    return (
        "scorer"
        if kind in ("function", "method", "builtin_function_or_method", "partial")
        else kind
    )


def evaluate(
    model: nn.Module | Scorer,
    id_loader: Iterable[Any] | DatasetLogits | DatasetScores,
    ood_loaders: Mapping[str, Iterable[Any] | DatasetLogits | DatasetScores],
    score: str | None = None,
    *,
    n_runs: int = 10,
    seed: int = 0,
    mixed: bool = True,
    tpr: float = 0.95,
    name: str | None = None,
    device: str | torch.device | None = None,
    groups: Mapping[str, str] | None = None,
) -> Report:
    """Evaluate OOD detection and selective classification, as the paper does.

    Args:
        model: A :class:`~rejectnet.RejectHead` (reject scores), a plain classifier
            (baseline scores: ``"msp"``, ``"energy"``, ``"max_logit"``), or any scorer
            ``x -> (N,)`` scores, higher = more OOD (e.g. a :class:`rejectnet.peers.Peer`).
        id_loader: In-distribution test batches (labels give the accuracy), or
            precomputed :class:`DatasetLogits` (for a model) or :class:`DatasetScores`.
        ood_loaders: OOD set name -> loader (or :class:`DatasetLogits` /
            :class:`DatasetScores`).
        score: Score name, for a model only; defaults to the model's calibrated score,
            else ``"sum_reject"`` for a RejectHead and ``"msp"`` for a plain model. A
            scorer's "score" column is its ``score`` attribute if it is a string.
        n_runs: Random equal-size subsamples per OOD set; a set of the same size as the
            in-distribution set is measured once, exactly (nothing to subsample).
        seed: Seed of the subsampling.
        mixed: Add a ``"mixed"`` row, an equal mix of every OOD set, when there are at
            least two sets (with one, it would repeat that set).
        tpr: TPR for the FPR metric and the selective-classification threshold.
        name: Method name for tables; defaults to the scorer's ``name`` attribute, the
            function's name, or the model's class name (never the score's name).
        device: Where to run the model (ignored for a scorer, which places inputs itself).
        groups: OOD set name -> ``"near"`` or ``"far"`` (OpenOOD's split: near = new
            classes of similar images, far = also a different kind of image); a set not
            named is ``"far"``. :attr:`Report.means` averages each group.

    Returns:
        A :class:`Report`.

    Raises:
        ValueError: If ``ood_loaders`` is empty, a loader is empty, ``n_runs < 1``, the
            score does not fit the model, ``score`` is given with a scorer, or ``groups``
            names an unknown set or a group other than near / far.
        TypeError: If ``model`` is neither an ``nn.Module`` nor callable, a scorer is
            given :class:`DatasetLogits`, or ``groups`` is not a mapping of strings.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead, evaluate
        >>> torch.manual_seed(0) and None
        >>> net = RejectHead.wrap(nn.Linear(4, 3), k=2)
        >>> x_in = [(torch.randn(50, 4), torch.randint(0, 3, (50,)))]
        >>> report = evaluate(net, x_in, {"shifted": [torch.randn(40, 4) + 3]}, n_runs=3)
        >>> sorted(report.ood), report.score, report.name
        (['shifted'], 'sum_reject', 'RejectHead')

        Any callable works as a detector:

        >>> def distance(x):
        ...     return x.norm(dim=1)
        >>> report = evaluate(distance, x_in, {"shifted": [torch.randn(40, 4) + 3]})
        >>> report.name, report.ood["shifted"].mean["auroc"] > 0.9
        ('distance', True)
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if isinstance(n_runs, bool) or not isinstance(n_runs, int) or n_runs < 1:
        raise ValueError(f"n_runs must be an int >= 1, got {n_runs!r}")
    if not isinstance(ood_loaders, Mapping) or not ood_loaders:
        raise ValueError("ood_loaders must be a non-empty mapping {name: loader}")
    if MIXED in ood_loaders and mixed:
        raise ValueError(f"{MIXED!r} is reserved for the mixed set; rename that OOD set")
    set_groups = _report_table.check_groups(groups, list(ood_loaders))
    is_module = isinstance(model, nn.Module)
    if not is_module and not callable(model):
        raise TypeError(
            "model must be an nn.Module (a RejectHead or a plain classifier) or a callable "
            f"scorer x -> scores, got {type(model).__name__}"
        )
    if is_module:
        assert isinstance(model, nn.Module)
        if score is None:
            if isinstance(model, RejectHead):
                score = model.calibrated_score or "sum_reject"
            else:
                score = "msp"
        score = registry.spec(score).name
        module: nn.Module | None = model
        score_label = score
    else:
        if score is not None:
            raise ValueError(
                f"score={score!r} applies to a model's logits; a scorer computes its own "
                "scores, so leave score=None"
            )
        module = None
        attr = getattr(model, "score", None)
        score_label = attr if isinstance(attr, str) else "custom"

    def scored(src: Iterable[Any] | DatasetLogits | DatasetScores, what: str) -> _Scored:
        if isinstance(src, DatasetScores):
            s = as_score_array(src.scores, f"{what}.scores")
            correct = None
            if src.labels is not None and src.predictions is not None:
                correct = (src.predictions.cpu() == src.labels.cpu()).numpy()
            return _Scored(s, correct)
        if module is None:
            if isinstance(src, DatasetLogits):
                raise TypeError(
                    f"{what} is DatasetLogits, but model is a scorer, which needs inputs; "
                    "pass a loader or DatasetScores"
                )
            data_s = compute_scores(model, src, name=what)
            return _Scored(np.asarray(data_s.scores, dtype=np.float64), None)
        assert score is not None
        data = (
            src
            if isinstance(src, DatasetLogits)
            else compute_logits(module, src, device=device, name=what)
        )
        s = _scores(module, data.logits, score)
        correct = None
        if data.labels is not None:
            num_classes = (
                module.num_classes if isinstance(module, RejectHead) else data.logits.shape[1]
            )
            pred = data.logits[:, :num_classes].argmax(1)
            correct = (pred == data.labels).numpy()
        return _Scored(s, correct)

    id_scored = scored(id_loader, "id_loader")
    s_in = id_scored.scores
    correct = id_scored.correct
    accuracy = float(correct.mean()) if correct is not None else None

    scores_out = {k: scored(v, f"ood_loaders[{k!r}]").scores for k, v in ood_loaders.items()}
    # each set's subsamples are drawn from (seed, the set's name): the same samples whatever
    # other sets are evaluated beside it, and in whatever order
    results = {
        k: _summarise(s_in, s, n_runs, _set_seed(seed, k), tpr) for k, s in scores_out.items()
    }
    notes = [_describe(k, r) for k, r in results.items()]
    mixed_scores = None
    if mixed and len(scores_out) >= 2:
        m = min(len(s) for s in scores_out.values())
        mixed_scores = np.concatenate(
            [
                _subsample(np.random.default_rng(_set_seed(seed, f"{k} in {MIXED}")), s, m)
                for k, s in sorted(scores_out.items())  # by name: order-independent
            ]
        )
        results[MIXED] = _summarise(s_in, mixed_scores, n_runs, _set_seed(seed, MIXED), tpr)
        notes.append(
            f"{MIXED}: {m} samples from each of the {len(scores_out)} OOD sets "
            f"({', '.join(scores_out)}); " + _describe(MIXED, results[MIXED]).split(": ", 1)[1]
        )
    elif mixed:
        notes.append("one OOD set, so no mixed row")

    selective: dict[str, float] = {}
    target_name = MIXED if mixed_scores is not None else next(iter(scores_out))
    target = mixed_scores if mixed_scores is not None else scores_out[target_name]
    thr = threshold_at_tpr(s_in, target, tpr=tpr)
    notes.append(f"selective threshold: {100 * tpr:g}% TPR on {target_name}")
    selective["threshold"] = thr.value
    selective["coverage"] = thr.coverage
    if correct is not None:
        accepted = s_in <= thr.value
        n_acc = int(accepted.sum())
        selective["risk"] = float((~correct[accepted]).mean()) if n_acc else math.nan
        if not n_acc:
            notes.append("selective risk undefined: no in-distribution sample is accepted")
        selective["risk_without_rejection"] = float((~correct).mean())
        selective["total_misclassification"] = total_misclassification_rate(
            s_in, correct, target, thr.value
        )
    return Report(
        name=name or _default_name(model),
        score=score_label,
        id_accuracy=accuracy,
        ood=results,
        selective=selective,
        n_runs=n_runs,
        tpr=tpr,
        scores_in=s_in,
        scores_out={**scores_out, **({MIXED: mixed_scores} if mixed_scores is not None else {})},
        correct=correct,
        notes=notes,
        groups=set_groups,
    )
