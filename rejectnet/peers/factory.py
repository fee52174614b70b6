"""Building peers: settings checked against the table, one fit pass shared by all.

:func:`build` and :func:`build_peers` check the names and settings, collect the
in-distribution fit data once (on first need) and build each peer from
:mod:`rejectnet.peers.registry`, or, for a ``*-tuned`` peer, by the grid search of
:mod:`rejectnet.peers.tuning`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rejectnet._inference import eval_mode
from rejectnet.peers.features import ClassifierTap, collect_outputs
from rejectnet.peers.peer import Peer
from rejectnet.peers.registry import (
    DEFAULT_SETTINGS,
    FIT_SAMPLES,
    PEER_NAMES,
    TUNED_PEER_NAMES,
    FitData,
    make,
)
from rejectnet.peers.tuning import check_tuning_set, make_tuned

__all__ = ["build", "build_peers", "fit_data"]


def _check_settings(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    if name not in DEFAULT_SETTINGS:
        raise ValueError(f"name must be one of {[*PEER_NAMES, *TUNED_PEER_NAMES]}, got {name!r}")
    allowed = DEFAULT_SETTINGS[name]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {unknown} for peer {name!r}; valid: {sorted(allowed) or 'none'}"
        )
    out = {**allowed, **settings}
    tuned = name.endswith("-tuned")
    for key, value in out.items():
        values = value if tuned else (value,)
        if tuned and (
            isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value
        ):
            raise ValueError(
                f"setting {key!r} of {name!r} is a grid: a non-empty list, got {value!r}"
            )
        for v in values:
            _check_value(name, key, v)
    return out


def _check_value(name: str, key: str, v: Any) -> None:
    where = f"setting {key!r} of peer {name!r}"
    if key == "normalize":
        if not isinstance(v, bool):
            raise TypeError(f"{where} must be True or False, got {v!r}")
        return
    if key == "d" and v is None:
        return
    if key in ("k", "d"):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{where} must be an int >= 1, got {v!r}")
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{where} must be a finite number, got {v!r}")
    if key == "temperature" and v <= 0:
        raise ValueError(f"{where} must be > 0, got {v!r}")
    if key == "eps" and v < 0:
        raise ValueError(f"{where} must be >= 0, got {v!r}")


def fit_data(tap: ClassifierTap, fit_loader: Iterable[Any] | None, limit: int | None) -> FitData:
    """The in-distribution features and labels the fitted peers learn from (one pass).

    Args:
        tap: The classifier's features and logits.
        fit_loader: In-distribution TRAINING batches ``(x, y)``.
        limit: At most this many samples (the first batches); ``None``: all.

    Returns:
        The features and labels.

    Raises:
        ValueError: If ``fit_loader`` is missing, unlabelled, has a label outside the
            classes or lacks a class.
    """
    if fit_loader is None:
        raise ValueError(
            "fit_loader is required for mahalanobis, knn and vim: in-distribution TRAINING "
            "batches (x, y), never test or OOD data"
        )
    with eval_mode(tap.model):
        feats, logits, labels = collect_outputs(tap, fit_loader, name="fit_loader", limit=limit)
    if labels is None:
        raise ValueError("fit_loader must yield labelled batches (x, y); its batches had no labels")
    num_classes = logits.shape[1]
    present = set(labels.unique().tolist())
    missing = sorted(set(range(num_classes)) - present)
    bad = sorted(present - set(range(num_classes)))
    if bad:
        raise ValueError(f"fit_loader labels must lie in 0..{num_classes - 1}, got {bad[:5]}")
    if missing:
        raise ValueError(
            f"fit_loader has no sample of class(es) {missing[:10]} (of {num_classes}); "
            "shuffle it or raise fit_samples so that every class occurs"
        )
    return FitData(feats, labels.long())


def _checked_settings(
    names: Any, settings: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """Each peer name -> its checked settings, defaults filled in."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"names must be a list of peer names, got {names!r}")
    settings = dict(settings or {})
    extra = sorted(set(settings) - set(names))
    if extra:
        raise ValueError(f"settings names peers {extra} that are not in names={list(names)}")
    return {name: _check_settings(name, settings.get(name, {})) for name in names}


def build_peers(
    model: nn.Module,
    fit_loader: Iterable[Any] | None,
    *,
    names: Sequence[str] | None = None,
    tune_id: torch.Tensor | None = None,
    tune_ood: Mapping[str, torch.Tensor] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    head: str | None = None,
    fit_samples: int | None = FIT_SAMPLES,
) -> dict[str, Peer]:
    """Build several peers on one classifier, sharing one pass over the fit data.

    ``rejectnet bench`` calls it: every peer sees the same weights, the fitted ones the
    same training features and the ``*-tuned`` ones the same OOD tuning samples.

    Args:
        model: The plain C-class classifier (the stage-one model), not a RejectHead.
        fit_loader: In-distribution TRAINING batches ``(x, y)`` for the fitted peers
            (``None`` if none of ``names`` needs a fit).
        names: Peers to build, in order; default :data:`PEER_NAMES`, plus
            :data:`TUNED_PEER_NAMES` when ``tune_ood`` is given.
        tune_id: Held-out in-distribution inputs (not the test set) for the tuned peers.
        tune_ood: OOD set name -> a small subsample of that set's inputs, for the tuned
            peers; keep these samples out of the evaluated sets.
        settings: Peer name -> settings overriding :data:`DEFAULT_SETTINGS`.
        head: Dotted path of the final ``nn.Linear``; found automatically when ``None``.
        fit_samples: At most this many samples of ``fit_loader`` (its first batches, so
            shuffle it); ``None`` uses all.

    Returns:
        Peer name -> :class:`Peer`, in the order of ``names``.

    Raises:
        ValueError: For an unknown name or setting, a bad value, missing fit or tuning
            data, or fit data without every class.
        TypeError: If ``model`` is not a plain ``nn.Module`` classifier.
        ImportError: If pytorch-ood is not installed.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import peers
        >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> fit = [(torch.randn(90, 4), torch.arange(90) % 3)]
        >>> knn_settings = {"knn": {"k": 5}}
        >>> built = peers.build_peers(model, fit, names=["max_logit", "knn"], settings=knn_settings)
        >>> list(built), built["knn"].fit_samples, built["knn"](torch.randn(2, 4)).shape
        (['max_logit', 'knn'], 90, torch.Size([2]))
    """
    tap = ClassifierTap(model, head)
    _check_fit_samples(fit_samples)
    if names is None:
        names = [*PEER_NAMES, *(TUNED_PEER_NAMES if tune_ood is not None else ())]
    checked = _checked_settings(names, settings)
    tuned = any(n in TUNED_PEER_NAMES for n in names)
    tuning = check_tuning_set(tune_id, tune_ood) if tuned else None
    fit = functools.cache(lambda: fit_data(tap, fit_loader, fit_samples))  # once, on first need
    return {name: _make_peer(name, tap, checked[name], fit, tuning) for name in names}


def _make_peer(
    name: str, tap: ClassifierTap, settings: dict[str, Any], fit: Any, tuning: Any
) -> Peer:
    """One peer from the table (:mod:`~rejectnet.peers.registry`) or the grid search."""
    if name in TUNED_PEER_NAMES:
        assert tuning is not None
        return make_tuned(name, tap, settings, fit, tuning)
    return make(name, tap, settings, fit)


def _check_fit_samples(fit_samples: Any) -> None:
    if fit_samples is not None and (
        isinstance(fit_samples, bool) or not isinstance(fit_samples, int) or fit_samples < 1
    ):
        raise ValueError(f"fit_samples must be an int >= 1 or None, got {fit_samples!r}")


def build(
    name: str,
    model: nn.Module,
    *,
    fit_loader: Iterable[Any] | None = None,
    tune_id: torch.Tensor | None = None,
    tune_ood: Mapping[str, torch.Tensor] | None = None,
    head: str | None = None,
    fit_samples: int | None = FIT_SAMPLES,
    **settings: Any,
) -> Peer:
    """Build one post-hoc peer detector on a trained classifier.

    Args:
        name: One of :data:`PEER_NAMES` or :data:`TUNED_PEER_NAMES`.
        model: The plain C-class classifier (the stage-one model), not a RejectHead.
        fit_loader: In-distribution TRAINING batches ``(x, y)``; needed by
            ``mahalanobis``, ``knn`` and ``vim`` (and their tuned variants).
        tune_id: Held-out in-distribution inputs, for a ``*-tuned`` peer only.
        tune_ood: OOD set name -> a small subsample of that set's inputs, for a
            ``*-tuned`` peer only (keep these samples out of the evaluated sets).
        head: As for :func:`build_peers`.
        fit_samples: As for :func:`build_peers`.
        **settings: Settings of the peer (see :data:`DEFAULT_SETTINGS`); for a tuned
            peer, grids.

    Returns:
        The :class:`Peer`.

    Raises:
        TypeError: If ``name`` is not a str; otherwise as :func:`build_peers` does.
        ValueError: As :func:`build_peers` does.
        ImportError: If pytorch-ood is not installed.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import peers
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> peer = peers.build("energy", model)
        >>> peer(torch.randn(5, 4)).shape, peer.score
        (torch.Size([5]), 'energy(temperature=1)')
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a peer name such as 'knn', got {name!r}")
    return build_peers(
        model,
        fit_loader,
        names=[name],
        tune_id=tune_id,
        tune_ood=tune_ood,
        settings={name: settings},
        head=head,
        fit_samples=fit_samples,
    )[name]
