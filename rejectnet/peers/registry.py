"""The post-hoc peers by name: one small builder per pytorch-ood detector, in a table.

Like :mod:`rejectnet.scores.registry`, a name maps to a :class:`PeerSpec`; building a
peer is a table lookup, and adding a detector is one builder function and one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rejectnet.peers.backend import detectors
from rejectnet.peers.features import ClassifierTap, FeatureModule, LogitsModule
from rejectnet.peers.peer import Peer

__all__ = [
    "DEFAULT_SETTINGS",
    "FIT_SAMPLES",
    "PEERS",
    "PEER_NAMES",
    "TUNED_PEER_NAMES",
    "FitData",
    "PeerSpec",
    "keeping_grads",
    "mahalanobis_odin",
    "make",
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


_REF = "pytorch_ood.detector."


@dataclass(frozen=True)
class FitData:
    """In-distribution training features and labels, for the fitted detectors.

    Attributes:
        features: ``(N, D)`` penultimate features on the CPU.
        labels: ``(N,)`` class labels.
    """

    features: torch.Tensor
    labels: torch.Tensor


Fit = Callable[[], FitData]
"""Returns the fit data, computed on first use (one pass shared by every peer)."""


@dataclass(frozen=True)
class PeerSpec:
    """One peer of the table.

    Attributes:
        name: The peer's name.
        build: ``(tap, settings, fit) -> Peer``; ``settings`` are checked, ``fit`` is
            called only by detectors that fit on in-distribution training data.
        fitted: Whether it needs in-distribution training data (``fit_loader``).
    """

    name: str
    build: Callable[[ClassifierTap, Mapping[str, Any], Fit], Peer]
    fitted: bool = False


def _vim_dim(dim: int) -> int:
    if dim >= 1500:
        return 1000
    if dim >= 768:
        return 512
    return max(1, dim // 2)


def keeping_grads(
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


def _on_logits(
    name: str, tap: ClassifierTap, s: Mapping[str, Any], det: Any, reference: str
) -> Peer:
    return Peer(
        name,
        kind="logits",
        tap=tap,
        settings=s,
        reference=_REF + reference,
        score_outputs=lambda f, z: det.predict_logits(z),
    )


def _on_features(
    name: str, tap: ClassifierTap, s: Mapping[str, Any], det: Any, reference: str, n: int
) -> Peer:
    return Peer(
        name,
        kind="features",
        tap=tap,
        settings=s,
        fit_samples=n,
        reference=_REF + reference,
        score_outputs=lambda f, z: det.predict_features(f.to("cpu")),  # fitted on the CPU
    )


def _energy(tap: ClassifierTap, s: Mapping[str, Any], fit: Fit) -> Peer:
    det = detectors().EnergyBased(None, t=float(s["temperature"]))
    return _on_logits("energy", tap, s, det, "EnergyBased")


def _max_logit(tap: ClassifierTap, s: Mapping[str, Any], fit: Fit) -> Peer:
    return _on_logits("max_logit", tap, s, detectors().MaxLogit(None), "MaxLogit")


def _odin(tap: ClassifierTap, s: Mapping[str, Any], fit: Fit) -> Peer:
    d = detectors()
    if s["eps"] == 0:
        # no perturbation: ODIN's score is the max softmax at temperature T of the input
        # itself, with no gradient needed (pytorch-ood's MaxSoftmax gives the same values)
        det = d.MaxSoftmax(None, t=float(s["temperature"]))
        return _on_logits("odin", tap, s, det, "MaxSoftmax")
    det = d.ODIN(LogitsModule(tap.model), eps=float(s["eps"]), temperature=float(s["temperature"]))
    return Peer(
        "odin",
        kind="inputs",
        tap=tap,
        settings=s,
        reference=_REF + "ODIN",
        score_inputs=det.predict,
    )


def _mahalanobis(tap: ClassifierTap, s: Mapping[str, Any], fit: Fit) -> Peer:
    data = fit()
    n = len(data.labels)
    if s["eps"] == 0:
        det = detectors().Mahalanobis(None).fit_features(data.features, data.labels)
        return _on_features("mahalanobis", tap, s, det, "Mahalanobis", n)
    det = mahalanobis_odin(tap, float(s["eps"]), data)
    return Peer(
        "mahalanobis",
        kind="inputs",
        tap=tap,
        settings=s,
        fit_samples=n,
        reference=_REF + "MahalanobisODIN",
        score_inputs=keeping_grads(tap.model, det.predict),
    )


def _knn(tap: ClassifierTap, s: Mapping[str, Any], fit: Fit) -> Peer:
    data = fit()
    n = len(data.labels)
    det = detectors().KNN(None, k=int(s["k"]), normalize=bool(s["normalize"]))
    if n < int(s["k"]):
        raise ValueError(f"setting 'k' of peer 'knn' ({s['k']}) exceeds the {n} fit samples")
    det.fit_features(data.features, data.labels)
    return _on_features("knn", tap, s, det, "KNN", n)


def _vim(tap: ClassifierTap, s: Mapping[str, Any], fit: Fit) -> Peer:
    data = fit()
    dim = data.features.shape[1]
    k = _vim_dim(dim) if s["d"] is None else int(s["d"])
    if k >= dim:
        raise ValueError(
            f"setting 'd' of peer 'vim' must be < the feature dimension {dim}, got {k}"
        )
    w = tap.head.weight.detach().to("cpu")
    b = tap.head.bias.detach().to("cpu") if tap.head.bias is not None else torch.zeros(len(w))
    det = detectors().ViM(None, d=k, w=w, b=b).fit_features(data.features, data.labels)
    return _on_features("vim", tap, {"d": k}, det, "ViM", len(data.labels))


PEERS: Mapping[str, PeerSpec] = {
    spec.name: spec
    for spec in (
        PeerSpec("energy", _energy),
        PeerSpec("max_logit", _max_logit),
        PeerSpec("odin", _odin),
        PeerSpec("mahalanobis", _mahalanobis, fitted=True),
        PeerSpec("knn", _knn, fitted=True),
        PeerSpec("vim", _vim, fitted=True),
    )
}
"""Peer name -> :class:`PeerSpec`, for every name of :data:`PEER_NAMES`."""


def make(name: str, tap: ClassifierTap, settings: Mapping[str, Any], fit: Fit) -> Peer:
    """Build the peer ``name`` with checked settings.

    Args:
        name: One of :data:`PEER_NAMES`.
        tap: The located classifier.
        settings: The peer's settings (checked, defaults filled in).
        fit: Returns the in-distribution fit data (called by fitted detectors only).

    Returns:
        The :class:`~rejectnet.peers.peer.Peer`.

    Raises:
        ValueError: For a setting that does not fit the data (``k`` above the fit
            samples, ``d`` not below the feature dimension).
    """
    return PEERS[name].build(tap, settings, fit)


def mahalanobis_odin(tap: ClassifierTap, eps: float, data: FitData) -> Any:
    """pytorch-ood's ``MahalanobisODIN`` on the tap's features, fitted on ``data``.

    Args:
        tap: The located classifier.
        eps: The input-preprocessing step.
        data: The fit data.

    Returns:
        The fitted detector.
    """
    det = detectors().MahalanobisODIN(FeatureModule(tap), eps=eps)
    det.fit_features(data.features.to(tap.device), data.labels.to(tap.device))
    return det
