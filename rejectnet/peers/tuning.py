"""Choosing a peer's settings on OOD samples, as the paper did for ODIN and Mahalanobis.

:func:`make_tuned` builds a ``*-tuned`` peer: every candidate of its grid is scored on
the tuning samples (ODIN's and Mahalanobis' grids with one input gradient per batch) and
:func:`choose` picks one.

Used only for the ``*-tuned`` peers, which are labelled as tuned on OOD data. The
criterion is the usual one (ODIN, Liang et al. 2018; Lee et al. 2018): the lowest FPR at
95% TPR on the tuning samples, ties broken by the higher AUROC, then by grid order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rejectnet._inference import eval_mode
from rejectnet.metrics import ood_metrics
from rejectnet.peers.backend import detectors
from rejectnet.peers.features import ClassifierTap, LogitsModule
from rejectnet.peers.peer import Peer
from rejectnet.peers.registry import Fit, FitData, keeping_grads, mahalanobis_odin, make

__all__ = ["TuningSet", "check_tuning_set", "choose", "make_tuned", "score_in_batches"]

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


def _grid(settings: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(settings)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*settings.values())]


def _odin_grid(
    tap: ClassifierTap, grid: Mapping[str, Sequence[Any]], x: torch.Tensor
) -> dict[tuple[float, float], np.ndarray[Any, np.dtype[np.float64]]]:
    """ODIN's scores for every (temperature, eps) of the grid, one gradient per temperature.

    The input gradient's sign depends on the temperature only, so it is computed once per
    temperature with pytorch-ood's ``odin_preprocessing`` (at ``eps = 1``, from which the
    sign is recovered exactly) and reused for every ``eps``; ``eps = 0`` (no
    perturbation) reuses one forward pass for every temperature. The scores equal those
    of pytorch-ood's ``ODIN(model, eps, temperature).predict``, bit for bit.
    """
    d = detectors()
    model = LogitsModule(tap.model)
    eps_grid = [float(e) for e in grid["eps"]]
    parts: dict[tuple[float, float], list[torch.Tensor]] = {
        (float(t), e): [] for t in grid["temperature"] for e in eps_grid
    }
    with eval_mode(tap.model):
        for i in range(0, len(x), 256):
            xb = x[i : i + 256].to(tap.device)
            with torch.no_grad():  # the logits of eps = 0, the same for every temperature
                plain = model(xb) if 0.0 in eps_grid else None
            for t in grid["temperature"]:
                moved = d.odin_preprocessing(model, xb, eps=1.0, temperature=float(t))
                sign = (xb - moved).round()  # exactly the sign of the gradient, -1, 0 or 1
                with torch.no_grad():
                    for e in eps_grid:
                        z = plain if e == 0 else model(xb - e * sign)
                        s = d.MaxSoftmax.score(z, float(t))
                        parts[(float(t), e)].append(s.detach().to("cpu", torch.float64))
    return {k: torch.cat(v).numpy() for k, v in parts.items()}


def _mahalanobis_grid(
    tap: ClassifierTap, grid: Mapping[str, Sequence[Any]], data: FitData, x: torch.Tensor
) -> dict[float, np.ndarray[Any, np.dtype[np.float64]]]:
    """Mahalanobis scores for every ``eps`` of the grid, one input gradient per batch.

    Like :func:`_odin_grid`: the sign of the input gradient does not depend on ``eps``, so
    it is taken once (pytorch-ood's own preprocessing at ``eps = 1``, from which the sign
    is recovered exactly) and every ``eps`` costs one forward pass; the scores equal
    ``MahalanobisODIN(encoder, eps).predict`` bit for bit.
    """
    det = mahalanobis_odin(tap, 1.0, data)
    preprocess = keeping_grads(tap.model, lambda xb: det._odin_preprocess(xb, xb.device))
    parts: dict[float, list[torch.Tensor]] = {float(e): [] for e in grid["eps"]}
    with eval_mode(tap.model):
        for i in range(0, len(x), 256):
            xb = x[i : i + 256].to(tap.device)
            sign = (xb - preprocess(xb)).round()  # exactly the sign of the gradient
            with torch.no_grad():
                for e in grid["eps"]:
                    s = det._base.predict(xb - float(e) * sign)
                    parts[float(e)].append(s.detach().to("cpu", torch.float64))
    return {k: torch.cat(v).numpy() for k, v in parts.items()}


def make_tuned(
    name: str,
    tap: ClassifierTap,
    grid: Mapping[str, Sequence[Any]],
    fit: Fit,
    tuning: TuningSet,
) -> Peer:
    """Build a ``*-tuned`` peer: every setting of ``grid`` scored, the best one kept.

    The choice is :func:`choose`'s (lowest FPR@95%TPR on the mix of the OOD tuning sets);
    ODIN's and Mahalanobis' ``eps`` grids share one input gradient per batch when the
    inputs' scale allows it exactly, otherwise each setting is built and scored.

    Args:
        name: ``"odin-tuned"`` or ``"mahalanobis-tuned"``.
        tap: The classifier's features and logits.
        grid: Setting name -> the values to try (checked).
        fit: The in-distribution fit data, on first call.
        tuning: The tuning samples (:func:`check_tuning_set`).

    Returns:
        The chosen peer, named ``name``; its ``tuning`` lists every setting's FPR and
        AUROC on the tuning mix.
    """
    base = name.removesuffix("-tuned")
    tune_id, tune_ood = tuning
    x_out = torch.cat(list(tune_ood.values()))
    cache: dict[tuple[Any, ...], Peer] = {}

    def peer_for(settings: dict[str, Any]) -> Peer:
        key = tuple(settings.items())
        if key not in cache:
            cache[key] = make(base, tap, settings, fit)
        return cache[key]

    def scored(settings: dict[str, Any]) -> tuple[Any, Any]:
        peer = peer_for(settings)
        return score_in_batches(peer, tune_id), score_in_batches(peer, x_out)

    scores_for = _shared_gradient_scores(base, tap, grid, fit, tune_id, x_out) or scored
    chosen, table = choose(_grid(grid), scores_for)
    picked = peer_for(chosen)
    return picked.renamed(name, tuned_on=tuple(tune_ood), tuning=table)


def _shared_gradient_scores(
    base: str,
    tap: ClassifierTap,
    grid: Mapping[str, Sequence[Any]],
    fit: Fit,
    tune_id: torch.Tensor,
    x_out: torch.Tensor,
) -> Callable[[dict[str, Any]], tuple[Any, Any]] | None:
    """ODIN's or Mahalanobis' whole grid from one input gradient per batch, when exact."""
    scale = max(float(tune_id.abs().max()), float(x_out.abs().max()))
    exact = tune_id.is_floating_point() and scale * torch.finfo(tune_id.dtype).eps < 0.25
    if base == "odin" and exact:  # rounding x - (x - sign) recovers the sign exactly
        on_id, on_out = _odin_grid(tap, grid, tune_id), _odin_grid(tap, grid, x_out)

        def odin(settings: dict[str, Any]) -> tuple[Any, Any]:
            key = (float(settings["temperature"]), float(settings["eps"]))
            return on_id[key], on_out[key]

        return odin
    if base == "mahalanobis" and exact:
        data = fit()
        m_id, m_out = (
            _mahalanobis_grid(tap, grid, data, tune_id),
            _mahalanobis_grid(tap, grid, data, x_out),
        )

        def mahalanobis(settings: dict[str, Any]) -> tuple[Any, Any]:
            return m_id[float(settings["eps"])], m_out[float(settings["eps"])]

        return mahalanobis
    return None
