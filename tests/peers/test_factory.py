"""Building peers (rejectnet.peers.factory): settings, fit data, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

pytest.importorskip(
    "pytorch_ood", reason='the peers need pytorch-ood (pip install "rejectnet[peers]")'
)


from rejectnet import RejectHead, peers
from tests.peers.conftest import _blobs, _loader


def test_fitted_peers_separate_far_ood(trained: nn.Sequential) -> None:
    x_fit, y_fit = _blobs(600, 2)
    built = peers.build_peers(trained, _loader(x_fit, y_fit), settings={"knn": {"k": 10}})
    assert list(built) == list(peers.PEER_NAMES)
    x_test, y_test = _blobs(200, 3)
    far = torch.randn(200, 4) * 0.5 + torch.tensor([-4.0, -4.0, 0.0, 4.0])
    reports = peers.evaluate_peers(built, _loader(x_test, y_test), {"far": _loader(far)}, n_runs=1)
    aurocs = {r.name: r.ood["far"].mean["auroc"] for r in reports}
    for name in ("mahalanobis", "knn", "vim"):
        assert aurocs[name] > 0.95, aurocs
    assert all(r.id_accuracy is not None and r.id_accuracy > 0.95 for r in reports)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "odin2"}, ValueError, r"name must be one of \['energy'"),
        ({"name": "knn", "kk": 3}, ValueError, r"unknown setting\(s\) \['kk'\] for peer 'knn'"),
        (
            {"name": "odin", "temperature": 0.0},
            ValueError,
            "'temperature' of peer 'odin' must be > 0",
        ),
        ({"name": "odin", "eps": -1.0}, ValueError, "'eps' of peer 'odin' must be >= 0"),
        ({"name": "knn", "k": 0}, ValueError, "'k' of peer 'knn' must be an int >= 1"),
        ({"name": "knn", "normalize": "yes"}, TypeError, "True or False"),
        ({"name": "knn"}, ValueError, "fit_loader is required"),
        ({"name": "odin-tuned", "eps": 0.1}, ValueError, "is a grid"),
        ({"name": "knn", "fit_samples": 0}, ValueError, "fit_samples must be an int >= 1"),
    ],
)
def test_bad_arguments(
    trained: nn.Sequential, kwargs: dict[str, object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        peers.build(model=trained, **kwargs)  # type: ignore[arg-type]


def test_bad_models_and_fit_data(trained: nn.Sequential) -> None:
    with pytest.raises(TypeError, match="plain C-class classifier"):
        peers.build("energy", RejectHead.wrap(copy.deepcopy(trained), k=2))
    x, y = _blobs(60, 8)
    with pytest.raises(ValueError, match=r"no sample of class\(es\) \[2\]"):
        peers.build("mahalanobis", trained, fit_loader=[(x[y < 2], y[y < 2])])
    with pytest.raises(ValueError, match="labelled batches"):
        peers.build("vim", trained, fit_loader=[x])
    with pytest.raises(ValueError, match="exceeds the 60 fit samples"):
        peers.build("knn", trained, fit_loader=[(x, y)], k=61)
    # fit_samples caps the samples seen (the first batches)
    capped = peers.build("knn", trained, fit_loader=_loader(x, y, bs=16), k=3, fit_samples=40)
    assert capped.fit_samples == 40
