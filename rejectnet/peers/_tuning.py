"""Choosing a peer's settings on OOD samples, as the paper did for ODIN and Mahalanobis.

Used only for the ``*-tuned`` peers, which are labelled as tuned on OOD data. The
criterion is the usual one (ODIN, Liang et al. 2018; Lee et al. 2018): the lowest FPR at
95% TPR on the tuning samples, ties broken by the higher AUROC, then by grid order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rejectnet.metrics import ood_metrics

__all__ = ["TuningSet", "check_tuning_set", "choose", "score_in_batches"]

TuningSet = tuple[torch.Tensor, Mapping[str, torch.Tensor]]
"""In-distribution tuning inputs and OOD set name -> OOD tuning inputs."""


def check_tuning_set(tune_id: Any, tune_ood: Any) -> TuningSet:
    """Check the tuning samples.

    Args:
        tune_id: Held-out in-distribution inputs ``(N, ...)`` (not the test set).
        tune_ood: OOD set name -> inputs ``(M, ...)``, a small subsample of each set.

    Returns:
        The pair, unchanged.

    Raises:
        ValueError: If an argument is missing or empty.
        TypeError: If an argument is not a tensor (or a mapping of tensors).
    """
    if tune_id is None or tune_ood is None:
        raise ValueError(
            "the OOD-tuned peers need tune_id (held-out in-distribution inputs) and tune_ood "
            "({set name: a small subsample of that OOD set}); got "
            f"tune_id={'None' if tune_id is None else 'a tensor'}, "
            f"tune_ood={'None' if tune_ood is None else 'a mapping'}"
        )
    if not isinstance(tune_id, torch.Tensor) or len(tune_id) == 0:
        raise TypeError(
            f"tune_id must be a non-empty tensor of inputs, got {type(tune_id).__name__}"
        )
    if not isinstance(tune_ood, Mapping) or not tune_ood:
        raise ValueError("tune_ood must be a non-empty mapping {OOD set name: tensor of inputs}")
    for key, x in tune_ood.items():
        if not isinstance(x, torch.Tensor) or len(x) == 0:
            raise TypeError(f"tune_ood[{key!r}] must be a non-empty tensor of inputs")
    return tune_id, tune_ood


def score_in_batches(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 256
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Apply a scorer to ``x`` in batches.

    Args:
        fn: Maps a batch to ``(B,)`` scores.
        x: Inputs ``(N, ...)``.
        batch: Batch size.

    Returns:
        ``(N,)`` float64 scores.
    """
    parts = [
        fn(x[i : i + batch]).detach().to("cpu", torch.float64) for i in range(0, len(x), batch)
    ]
    return torch.cat(parts).numpy()


def choose(
    candidates: Sequence[dict[str, Any]],
    scores_for: Callable[
        [dict[str, Any]],
        tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]],
    ],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pick the settings with the lowest FPR@95%TPR on the mix of the OOD tuning sets.

    Args:
        candidates: The grid, one settings dict each, in order.
        scores_for: The scores of the in-distribution tuning inputs and of all OOD
            tuning inputs (the mix) under one settings dict.

    Returns:
        The chosen settings and, per candidate, its settings with ``fpr95`` and ``auroc``
        on the tuning mix (fractions).
    """
    table: list[dict[str, Any]] = []
    best: tuple[float, float, int] | None = None
    chosen = candidates[0]
    for i, settings in enumerate(candidates):
        m = ood_metrics(*scores_for(settings))
        table.append({**settings, "fpr95": m["fpr95"], "auroc": m["auroc"]})
        key = (m["fpr95"], -m["auroc"], i)
        if best is None or key < best:
            best, chosen = key, settings
    return dict(chosen), table
