"""Building the post-hoc peers on a stage-one classifier, with pytorch-ood."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rejectnet._inference import eval_mode
from rejectnet.peers._backend import detectors
from rejectnet.peers._features import ClassifierTap, FeatureModule, LogitsModule, collect_outputs
from rejectnet.peers._peer import Peer
from rejectnet.peers._tuning import TuningSet, check_tuning_set, choose, score_in_batches

__all__ = [
    "DEFAULT_SETTINGS",
    "FIT_SAMPLES",
    "PEER_NAMES",
    "TUNED_PEER_NAMES",
    "build",
    "build_peers",
]

PEER_NAMES = ("energy", "max_logit", "odin", "mahalanobis", "knn", "vim")
"""The peers with settings chosen without OOD data (defaults of their papers or of
pytorch-ood; fitted detectors see in-distribution training data only)."""

TUNED_PEER_NAMES = ("odin-tuned", "mahalanobis-tuned")
"""The peers whose settings are chosen on OOD samples, as the paper did for its Figure 1."""

FIT_SAMPLES = 10_000
"""Default cap on the in-distribution training samples a fitted peer sees."""

DEFAULT_SETTINGS: Mapping[str, Mapping[str, Any]] = {
    "energy": {"temperature": 1.0},
    "max_logit": {},
    "odin": {"temperature": 1000.0, "eps": 0.0014},
    "mahalanobis": {"eps": 0.0},
    "knn": {"k": 50, "normalize": True},
    "vim": {"d": None},
    "odin-tuned": {"temperature": (1.0, 10.0, 100.0, 1000.0), "eps": (0.0, 0.0014, 0.0028)},
    "mahalanobis-tuned": {"eps": (0.0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01)},
}
"""Each peer's settings and defaults; for a ``*-tuned`` peer, the grid searched.

* ``energy``: temperature ``T`` of ``-T logsumexp(logits / T)`` (Liu et al. 2020: 1).
* ``odin``: ``temperature`` and input-perturbation size ``eps`` (ODIN's published
  defaults 1000 and 0.0014, also pytorch-ood's; inputs in the model's own scale).
* ``mahalanobis``: ``eps`` of the input preprocessing; 0 = the plain class-conditional
  Gaussian on the penultimate features (Lee et al. 2018, one layer, no ensemble).
* ``knn``: ``k`` of the k-th nearest neighbour (Sun et al. 2022: 50 for CIFAR-10) and
  whether features are L2-normalised.
* ``vim``: dimension ``d`` of the principal subspace; ``None`` follows the ViM paper
  (Wang et al. 2022): 1000 if ``D >= 1500``, 512 if ``D >= 768``, else ``D // 2``.
* ``odin-tuned``: the grid of ``temperature`` x ``eps`` (OpenOOD's, plus ``eps = 0``).
* ``mahalanobis-tuned``: the ``eps`` grid of Lee et al. 2018.
"""


@dataclass(frozen=True)
class _Fit:
    features: torch.Tensor
    labels: torch.Tensor


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


def _fit_data(tap: ClassifierTap, fit_loader: Iterable[Any] | None, limit: int | None) -> _Fit:
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
    return _Fit(feats, labels.long())


def _vim_dim(dim: int) -> int:
    if dim >= 1500:
        return 1000
    if dim >= 768:
        return 512
    return max(1, dim // 2)


def _keeping_grads(
    model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    # pytorch-ood's MahalanobisODIN calls loss.backward(), which would compute (and leave)
    # gradients for every parameter of the caller's model although only the input gradient
    # is used: switch the parameters' requires_grad off for the call (the backward pass
    # then skips every weight gradient, a third of its cost or more) and restore both the
    # flags and the gradients as they were.
    def wrapped(x: torch.Tensor) -> torch.Tensor:
        params = list(model.parameters())
        saved = [(p.requires_grad, p.grad) for p in params]
        try:
            for p in params:
                p.requires_grad_(False)
            return fn(x)
        finally:
            for p, (flag, g) in zip(params, saved, strict=True):
                p.requires_grad_(flag)
                p.grad = g

    return wrapped


def _make(name: str, tap: ClassifierTap, s: Mapping[str, Any], fit: Callable[[], _Fit]) -> Peer:
    d = detectors()
    ref = "pytorch_ood.detector."
    if name == "energy":
        det = d.EnergyBased(None, t=float(s["temperature"]))
        return Peer(
            name,
            kind="logits",
            tap=tap,
            settings=s,
            reference=ref + "EnergyBased",
            score_outputs=lambda f, z: det.predict_logits(z),
        )
    if name == "max_logit":
        det = d.MaxLogit(None)
        return Peer(
            name,
            kind="logits",
            tap=tap,
            settings=s,
            reference=ref + "MaxLogit",
            score_outputs=lambda f, z: det.predict_logits(z),
        )
    if name == "odin" and s["eps"] == 0:
        # no perturbation: ODIN's score is the max softmax at temperature T of the input
        # itself, with no gradient needed (pytorch-ood's MaxSoftmax gives the same values)
        det = d.MaxSoftmax(None, t=float(s["temperature"]))
        return Peer(
            name,
            kind="logits",
            tap=tap,
            settings=s,
            reference=ref + "MaxSoftmax",
            score_outputs=lambda f, z: det.predict_logits(z),
        )
    if name == "odin":
        det = d.ODIN(
            LogitsModule(tap.model), eps=float(s["eps"]), temperature=float(s["temperature"])
        )
        return Peer(
            name,
            kind="inputs",
            tap=tap,
            settings=s,
            reference=ref + "ODIN",
            score_inputs=det.predict,
        )
    data = fit()
    n = len(data.labels)
    if name == "mahalanobis":
        if s["eps"] == 0:
            det = d.Mahalanobis(None).fit_features(data.features, data.labels)
            return Peer(
                name,
                kind="features",
                tap=tap,
                settings=s,
                fit_samples=n,
                reference=ref + "Mahalanobis",
                score_outputs=lambda f, z: det.predict_features(f.to("cpu")),  # fitted on the CPU
            )
        det = _mahalanobis_odin(tap, float(s["eps"]), data)
        return Peer(
            name,
            kind="inputs",
            tap=tap,
            settings=s,
            fit_samples=n,
            reference=ref + "MahalanobisODIN",
            score_inputs=_keeping_grads(tap.model, det.predict),
        )
    if name == "knn":
        det = d.KNN(None, k=int(s["k"]), normalize=bool(s["normalize"]))
        if n < int(s["k"]):
            raise ValueError(f"setting 'k' of peer 'knn' ({s['k']}) exceeds the {n} fit samples")
        det.fit_features(data.features, data.labels)
        return Peer(
            name,
            kind="features",
            tap=tap,
            settings=s,
            fit_samples=n,
            reference=ref + "KNN",
            score_outputs=lambda f, z: det.predict_features(f.to("cpu")),  # fitted on the CPU
        )
    if name == "vim":
        dim = data.features.shape[1]
        k = _vim_dim(dim) if s["d"] is None else int(s["d"])
        if k >= dim:
            raise ValueError(
                f"setting 'd' of peer 'vim' must be < the feature dimension {dim}, got {k}"
            )
        w = tap.head.weight.detach().to("cpu")
        b = tap.head.bias.detach().to("cpu") if tap.head.bias is not None else torch.zeros(len(w))
        det = d.ViM(None, d=k, w=w, b=b).fit_features(data.features, data.labels)
        return Peer(
            name,
            kind="features",
            tap=tap,
            settings={"d": k},
            fit_samples=n,
            reference=ref + "ViM",
            score_outputs=lambda f, z: det.predict_features(f.to("cpu")),  # fitted on the CPU
        )
    raise AssertionError(name)  # pragma: no cover - names are checked before


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


def _mahalanobis_odin(tap: ClassifierTap, eps: float, data: _Fit) -> Any:
    """pytorch-ood's ``MahalanobisODIN`` on the tap's features, fitted on ``data``."""
    det = detectors().MahalanobisODIN(FeatureModule(tap), eps=eps)
    det.fit_features(data.features.to(tap.device), data.labels.to(tap.device))
    return det


def _mahalanobis_grid(
    tap: ClassifierTap, grid: Mapping[str, Sequence[Any]], data: _Fit, x: torch.Tensor
) -> dict[float, np.ndarray[Any, np.dtype[np.float64]]]:
    """Mahalanobis scores for every ``eps`` of the grid, one input gradient per batch.

    Like :func:`_odin_grid`: the sign of the input gradient does not depend on ``eps``, so
    it is taken once (pytorch-ood's own preprocessing at ``eps = 1``, from which the sign
    is recovered exactly) and every ``eps`` costs one forward pass; the scores equal
    ``MahalanobisODIN(encoder, eps).predict`` bit for bit.
    """
    det = _mahalanobis_odin(tap, 1.0, data)
    preprocess = _keeping_grads(tap.model, lambda xb: det._odin_preprocess(xb, xb.device))
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


def _make_tuned(
    name: str,
    tap: ClassifierTap,
    grid: Mapping[str, Sequence[Any]],
    fit: Callable[[], _Fit],
    tuning: TuningSet,
) -> Peer:
    base = name.removesuffix("-tuned")
    tune_id, tune_ood = tuning
    x_out = torch.cat(list(tune_ood.values()))
    cache: dict[tuple[Any, ...], Peer] = {}

    def peer_for(settings: dict[str, Any]) -> Peer:
        key = tuple(settings.items())
        if key not in cache:
            cache[key] = _make(base, tap, settings, fit)
        return cache[key]

    scores_for: Callable[[dict[str, Any]], tuple[Any, Any]]
    scale = max(float(tune_id.abs().max()), float(x_out.abs().max()))
    exact = tune_id.is_floating_point() and scale * torch.finfo(tune_id.dtype).eps < 0.25
    if base == "odin" and exact:  # rounding x - (x - sign) recovers the sign exactly
        on_id, on_out = _odin_grid(tap, grid, tune_id), _odin_grid(tap, grid, x_out)

        def scores_for(settings: dict[str, Any]) -> tuple[Any, Any]:
            key = (float(settings["temperature"]), float(settings["eps"]))
            return on_id[key], on_out[key]

    elif base == "mahalanobis" and exact:
        data = fit()
        m_id, m_out = (
            _mahalanobis_grid(tap, grid, data, tune_id),
            _mahalanobis_grid(tap, grid, data, x_out),
        )

        def scores_for(settings: dict[str, Any]) -> tuple[Any, Any]:
            return m_id[float(settings["eps"])], m_out[float(settings["eps"])]

    else:

        def scores_for(settings: dict[str, Any]) -> tuple[Any, Any]:
            peer = peer_for(settings)
            return score_in_batches(peer, tune_id), score_in_batches(peer, x_out)

    chosen, table = choose(_grid(grid), scores_for)
    picked = peer_for(chosen)
    return picked.renamed(name, tuned_on=tuple(tune_ood), tuning=table)


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

    This is what ``rejectnet bench`` calls: every peer sees the same stage-one weights,
    the fitted ones (``mahalanobis``, ``knn``, ``vim``) the same in-distribution training
    features, and the ``*-tuned`` ones the same OOD tuning samples.

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
        fit_samples: Use at most this many samples of ``fit_loader`` (its first batches,
            so shuffle it); ``None`` uses all.

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
    if fit_samples is not None and (
        isinstance(fit_samples, bool) or not isinstance(fit_samples, int) or fit_samples < 1
    ):
        raise ValueError(f"fit_samples must be an int >= 1 or None, got {fit_samples!r}")
    if names is None:
        names = [*PEER_NAMES, *(TUNED_PEER_NAMES if tune_ood is not None else ())]
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"names must be a list of peer names, got {names!r}")
    settings = dict(settings or {})
    extra = sorted(set(settings) - set(names))
    if extra:
        raise ValueError(f"settings names peers {extra} that are not in names={list(names)}")
    checked = {name: _check_settings(name, settings.get(name, {})) for name in names}
    tuning = None
    if any(n in TUNED_PEER_NAMES for n in names):
        tuning = check_tuning_set(tune_id, tune_ood)
    cached: list[_Fit] = []

    def fit() -> _Fit:
        if not cached:
            cached.append(_fit_data(tap, fit_loader, fit_samples))
        return cached[0]

    built: dict[str, Peer] = {}
    for name in names:
        if name in TUNED_PEER_NAMES:
            assert tuning is not None
            built[name] = _make_tuned(name, tap, checked[name], fit, tuning)
        else:
            built[name] = _make(name, tap, checked[name], fit)
    return built


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
        head: Dotted path of the final ``nn.Linear``; found automatically when ``None``.
        fit_samples: Use at most this many samples of ``fit_loader`` (its first
            batches, so shuffle it); ``None`` uses all.
        **settings: Settings of the peer (see :data:`DEFAULT_SETTINGS`); for a tuned
            peer, grids.

    Returns:
        The :class:`Peer`.

    Raises:
        ValueError: For an unknown name or setting, a bad value, missing fit or tuning
            data, or fit data without every class.
        TypeError: If ``model`` is not a plain ``nn.Module`` classifier.
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
