"""The paper's protocol on scores: the pure compute step of :func:`rejectnet.evaluate`.

Given one score per in-distribution sample (and whether its class prediction was right)
and the scores of each OOD set, :func:`score_report` measures, as the paper does: equal
numbers of in- and out-of-distribution samples (a random subsample of the larger side,
repeated ``n_runs`` times; one exact run when both sides already have the same size),
OOD as the positive class, AUROC / AUPR-in / AUPR-out / FPR at the TPR / detection
error as mean and std, a "mixed" set (an equal mix of every OOD set, when there are at
least two) and selective classification on the in-distribution set at the TPR
threshold. No model, loader or device here: only arrays in, a
:class:`~rejectnet.report.results.Report` out.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from rejectnet.metrics import ood_metrics, total_misclassification_rate
from rejectnet.report.results import METRIC_NAMES, MIXED, OODResult, Report
from rejectnet.scores import threshold_at_tpr

__all__ = ["Protocol", "score_report"]

Scores = npt.NDArray[np.float64]


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


def _mixed(scores_out: Mapping[str, Scores], seed: int) -> tuple[Scores, int]:
    """An equal mix of every OOD set: the same number drawn from each (by name, so the
    mix does not depend on the order of the sets)."""
    m = min(len(s) for s in scores_out.values())
    parts = [
        _subsample(np.random.default_rng(_set_seed(seed, f"{k} in {MIXED}")), s, m)
        for k, s in sorted(scores_out.items())
    ]
    return np.concatenate(parts), m


def _selective(
    s_in: Scores,
    correct: npt.NDArray[np.bool_] | None,
    target: Scores,
    tpr: float,
) -> dict[str, float]:
    """Selective classification at the threshold that reaches ``tpr`` on ``target``."""
    thr = threshold_at_tpr(s_in, target, tpr=tpr)
    selective = {"threshold": thr.value, "coverage": thr.coverage}
    if correct is not None:
        accepted = s_in <= thr.value
        n_acc = int(accepted.sum())
        selective["risk"] = float((~correct[accepted]).mean()) if n_acc else math.nan
        selective["risk_without_rejection"] = float((~correct).mean())
        selective["total_misclassification"] = total_misclassification_rate(
            s_in, correct, target, thr.value
        )
    return selective


@dataclass(frozen=True)
class Protocol:
    """How scores are measured: the settings of :func:`rejectnet.evaluate` (checked there).

    Attributes:
        n_runs: Equal-size subsamples per set (one exact run for equal sizes).
        seed: Seed of the subsampling; each set's subsamples depend only on it and the
            set's name.
        mixed: Add the mixed set when there are at least two sets.
        tpr: The TPR of the FPR metric and of the selective threshold.
        groups: Set name -> ``"near"`` / ``"far"``.
    """

    n_runs: int = 10
    seed: int = 0
    mixed: bool = True
    tpr: float = 0.95
    groups: Mapping[str, str] = field(default_factory=dict)


def _ood_results(
    s_in: Scores, scores_out: Mapping[str, Scores], p: Protocol
) -> tuple[dict[str, OODResult], list[str], Scores | None]:
    """Every set's result (and the mixed set's), the notes, and the mixed scores."""
    # each set's subsamples are drawn from (seed, the set's name): the same samples whatever
    # other sets are evaluated beside it, and in whatever order
    results = {
        k: _summarise(s_in, s, p.n_runs, _set_seed(p.seed, k), p.tpr) for k, s in scores_out.items()
    }
    notes = [_describe(k, r) for k, r in results.items()]
    mixed_scores = None
    if p.mixed and len(scores_out) >= 2:
        mixed_scores, m = _mixed(scores_out, p.seed)
        results[MIXED] = _summarise(s_in, mixed_scores, p.n_runs, _set_seed(p.seed, MIXED), p.tpr)
        notes.append(
            f"{MIXED}: {m} samples from each of the {len(scores_out)} OOD sets "
            f"({', '.join(scores_out)}); " + _describe(MIXED, results[MIXED]).split(": ", 1)[1]
        )
    elif p.mixed:
        notes.append("one OOD set, so no mixed row")
    return results, notes, mixed_scores


def score_report(
    name: str,
    score: str,
    s_in: Scores,
    correct: npt.NDArray[np.bool_] | None,
    scores_out: Mapping[str, Scores],
    protocol: Protocol,
) -> Report:
    """Measure one method's scores with the paper's protocol.

    Args:
        name: The method's name.
        score: What the "score" column says.
        s_in: In-distribution scores, higher = more OOD.
        correct: Per in-distribution sample, whether its prediction was right (``None``
            without labels).
        scores_out: OOD set name -> scores (checked, non-empty, finite).
        protocol: The settings (checked).

    Returns:
        The :class:`~rejectnet.report.results.Report`.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> s_in, s_out = rng.normal(0, 1, 50), {"far": rng.normal(3, 1, 50)}
        >>> r = score_report("m", "s", s_in, None, s_out, Protocol(n_runs=1))
        >>> round(r.ood["far"].mean["auroc"], 2), r.notes[1]
        (0.99, 'one OOD set, so no mixed row')
    """
    results, notes, mixed_scores = _ood_results(s_in, scores_out, protocol)
    target_name = MIXED if mixed_scores is not None else next(iter(scores_out))
    target = mixed_scores if mixed_scores is not None else scores_out[target_name]
    notes.append(f"selective threshold: {100 * protocol.tpr:g}% TPR on {target_name}")
    selective = _selective(s_in, correct, target, protocol.tpr)
    if correct is not None and selective["coverage"] == 0.0:
        notes.append("selective risk undefined: no in-distribution sample is accepted")
    return Report(
        name=name,
        score=score,
        id_accuracy=float(correct.mean()) if correct is not None else None,
        ood=results,
        selective=selective,
        n_runs=protocol.n_runs,
        tpr=protocol.tpr,
        scores_in=s_in,
        scores_out={**scores_out, **({MIXED: mixed_scores} if mixed_scores is not None else {})},
        correct=correct,
        notes=notes,
        groups=dict(protocol.groups),
    )
