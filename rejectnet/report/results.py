"""What an evaluation returns: :class:`OODResult` per OOD set and the :class:`Report`.

A report holds fractions and the raw scores; it writes itself out as a dict or strict
JSON, a Markdown table (:mod:`rejectnet.report.tables`), an HTML page
(:mod:`rejectnet.report.html_page`) and PNG plots (:mod:`rejectnet.report.plots`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rejectnet.report import html_page, plots, tables

__all__ = ["GROUPS", "METRIC_NAMES", "MIXED", "OODResult", "Report", "json_safe"]

METRIC_NAMES = tables.METRIC_NAMES
"""The metrics of every :class:`OODResult`, in table order (``fpr95`` is FPR at the TPR)."""
MIXED = tables.MIXED
"""The name of the mixed set (an equal mix of every OOD set)."""
GROUPS = tables.GROUPS
"""The OOD groups, ``near`` and ``far``."""


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
        return tables.group_means({k: v.mean for k, v in self.ood.items()}, self.groups)

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
        safe: dict[str, Any] = json_safe(out, "", undefined, self._reasons())
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
        return tables.reports_to_markdown([self])

    def to_html(self, *, others: Sequence[Report] = (), title: str | None = None) -> str:
        """One self-contained HTML page: the table, the notes and the plots (inline PNG).

        See :func:`rejectnet.report.html_page.reports_to_html`; the plots need matplotlib
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
        return html_page.reports_to_html([self, *others], title=title)

    def plot(self, out_dir: str | Path, *, others: Sequence[Report] = ()) -> list[Path]:
        """Write PNG plots (needs matplotlib: ``pip install "rejectnet[plot]"``).

        See :func:`rejectnet.report.plots.plot_reports`; ``others`` are drawn on the same axes.

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
        return plots.plot_reports([self, *others], out_dir)


def json_safe(
    value: Any,
    path: str = "",
    undefined: dict[str, str] | None = None,
    reasons: Mapping[str, str] | None = None,
) -> Any:
    """``value`` as strict JSON: every non-finite float as ``None`` (tuples as lists).

    Args:
        value: Plain Python values (dicts, lists, tuples, numbers, strings).
        path: Where ``value`` sits (``"selective.risk"``), for ``undefined``.
        undefined: If given, path -> why, for every number replaced.
        reasons: Path -> the reason to record (default: "not a finite number").

    Returns:
        The value, with the same structure.

    Example:
        >>> found = {}
        >>> json_safe({"a": [1.0, float("nan")], "b": (2, float("inf"))}, undefined=found)
        {'a': [1.0, None], 'b': [2, None]}
        >>> found
        {'a[1]': 'not a finite number (nan)', 'b[1]': 'not a finite number (inf)'}
    """
    if isinstance(value, dict):
        return {
            k: json_safe(v, f"{path}.{k}" if path else str(k), undefined, reasons)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{path}[{i}]", undefined, reasons) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        if undefined is not None:
            undefined[path] = (reasons or {}).get(path, f"not a finite number ({value})")
        return None
    return value
