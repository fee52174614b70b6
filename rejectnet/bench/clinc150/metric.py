"""CLINC150's own metric and the evaluation of one model (every split's logits once)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import nn

from rejectnet.bench.clinc150.data import Context, loader
from rejectnet.evaluation import DatasetLogits, Report, compute_logits, evaluate
from rejectnet.head import RejectHead
from rejectnet.scores import registry, threshold_for_coverage
from rejectnet.text import TextDataset

__all__ = ["clinc150_metric", "model_report", "with_metric"]


def clinc150_metric(
    s_val: npt.ArrayLike,
    s_test: npt.ArrayLike,
    correct: npt.ArrayLike,
    s_oos: Mapping[str, npt.ArrayLike],
    coverage: float = 0.95,
) -> dict[str, Any]:
    """CLINC150's own metric at a threshold calibrated on in-scope ``val`` scores only.

    The threshold accepts ``coverage`` of the in-scope validation queries
    (:func:`rejectnet.scores.threshold_for_coverage`); a query scoring above it is
    predicted out-of-scope.

    Args:
        s_val: In-scope validation scores (higher = more out-of-scope).
        s_test: In-scope test scores.
        correct: Per in-scope test query, whether its intent was predicted right.
        s_oos: Out-of-scope set name -> scores.
        coverage: Share of ``s_val`` accepted.

    Returns:
        ``{"threshold", "coverage", "in_scope_accuracy", "oos_recall": {set: recall}}``:
        in-scope accuracy counts a rejected in-scope query as an error.

    Example:
        >>> m = clinc150_metric([0.1, 0.2, 0.3, 0.9], [0.1, 0.5, 0.95], [True, True, True],
        ...                     {"oos": [0.95, 0.2]}, coverage=0.75)
        >>> m["threshold"], round(m["in_scope_accuracy"], 3), m["oos_recall"]
        (0.3, 0.333, {'oos': 0.5})
    """
    thr = threshold_for_coverage(np.asarray(s_val, dtype=np.float64), coverage).value
    s_in = np.asarray(s_test, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if ok.shape != s_in.shape:
        raise ValueError(f"correct has shape {ok.shape}, s_test {s_in.shape}; give one each")
    return {
        "threshold": thr,
        "coverage": coverage,
        "in_scope_accuracy": float(np.mean(ok & (s_in <= thr))),
        "oos_recall": {k: float(np.mean(np.asarray(v) > thr)) for k, v in s_oos.items()},
    }


def with_metric(ctx: Context, report: Report, s_val: npt.ArrayLike) -> Report:
    """Attach the dataset's metric to ``report.selective`` (``clinc150_*`` keys)."""
    assert report.correct is not None
    oos = {k: v for k, v in report.scores_out.items() if k != "mixed"}
    m = clinc150_metric(s_val, report.scores_in, report.correct, oos, ctx.recipe.coverage)
    report.selective["clinc150_threshold"] = m["threshold"]
    report.selective["clinc150_in_scope_accuracy"] = m["in_scope_accuracy"]
    for k, v in m["oos_recall"].items():
        report.selective[f"clinc150_oos_recall_{k}"] = v
    return report


def model_report(ctx: Context, model: nn.Module, name: str, score: str) -> Report:
    """Evaluate ``model`` with ``score``: logits once per split, then the metrics."""
    dev = ctx.device

    def logits(ds: TextDataset, what: str) -> DatasetLogits:
        return compute_logits(model, loader(ds), device=dev, name=what)

    val = logits(ctx.data.val, "val")
    if isinstance(model, RejectHead):
        s_val = model.score_logits(val.logits, score)
    else:
        s_val = registry.compute(score, val.logits)
    report = evaluate(
        model,
        logits(ctx.data.test, "test"),
        {n: logits(ds, n) for n, ds in ctx.data.ood.items()},
        score,
        name=name,
        n_runs=ctx.recipe.n_runs,
        seed=ctx.seed,
    )
    return with_metric(ctx, report, s_val.double().cpu().numpy())
