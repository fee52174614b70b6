"""`evaluate`: how well a model separates in-distribution data from several OOD sets.

Measured as the paper measures (see :mod:`rejectnet.report.protocol`): equal numbers of
in- and out-of-distribution samples, OOD as the positive class, AUROC / AUPR-in /
AUPR-out / FPR at 95% TPR / detection error as mean and std, a "mixed" set and
selective classification at the 95%-TPR threshold. Logits are computed once per model
and dataset and reused for every score and run.

:func:`evaluate` checks its arguments, turns each dataset into scores
(:class:`~rejectnet.report.sources.ScoreSource`: loaders, logits or scores; models or
any scorer ``x -> score``, e.g. a post-hoc peer from :mod:`rejectnet.peers`) and hands
them to :func:`~rejectnet.report.protocol.score_report`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from rejectnet._validation import check_seed
from rejectnet.report import tables
from rejectnet.report.protocol import score_report
from rejectnet.report.results import MIXED, Report
from rejectnet.report.sources import DatasetLogits, DatasetScores, Scorer, ScoreSource

__all__ = ["evaluate"]


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
            precomputed :class:`~rejectnet.report.sources.DatasetLogits` / ``Scores``.
        ood_loaders: OOD set name -> loader (or precomputed logits or scores).
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
        groups: OOD set name -> ``"near"`` (new classes of similar images) or ``"far"``
            (the default); ``Report.means`` averages each group (OpenOOD's split).

    Returns:
        A :class:`~rejectnet.report.results.Report`.

    Raises:
        ValueError: If ``ood_loaders`` is empty, a loader is empty, ``n_runs < 1``, the
            score does not fit the model, ``score`` is given with a scorer, or ``groups``
            names an unknown set or a group other than near / far.
        TypeError: If ``model`` is neither an ``nn.Module`` nor callable, a scorer is
            given :class:`~rejectnet.report.sources.DatasetLogits`, or ``groups`` is
            not a mapping of strings.

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
        >>> distance = evaluate(lambda x: x.norm(dim=1), x_in, {"shifted": [x_in[0][0] + 3]})
        >>> distance.name, distance.ood["shifted"].mean["auroc"] > 0.9
        ('scorer', True)
    """
    _check_protocol(seed, n_runs, ood_loaders, mixed)
    set_groups = tables.check_groups(groups, list(ood_loaders))
    source = ScoreSource(model, score, device)
    id_set = source.scored(id_loader, "id_loader")
    scores_out = {k: source.scored(v, f"ood_loaders[{k!r}]").scores for k, v in ood_loaders.items()}
    return score_report(
        name or _default_name(model),
        source.label,
        id_set.scores,
        id_set.correct,
        scores_out,
        n_runs=n_runs,
        seed=seed,
        mixed=mixed,
        tpr=tpr,
        groups=set_groups,
    )


def _check_protocol(seed: Any, n_runs: Any, ood_loaders: Any, mixed: bool) -> None:
    check_seed(seed)  # numpy refused -1 without naming seed
    if isinstance(n_runs, bool) or not isinstance(n_runs, int) or n_runs < 1:
        raise ValueError(f"n_runs must be an int >= 1, got {n_runs!r}")
    if not isinstance(ood_loaders, Mapping) or not ood_loaders:
        raise ValueError("ood_loaders must be a non-empty mapping {name: loader}")
    if MIXED in ood_loaders and mixed:
        raise ValueError(f"{MIXED!r} is reserved for the mixed set; rename that OOD set")
