"""The *-tuned peers (rejectnet.peers.tuning): settings chosen on OOD samples."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip(
    "pytorch_ood", reason='the peers need pytorch-ood (pip install "rejectnet[peers]")'
)

import pytorch_ood.detector as pod

from rejectnet import peers
from rejectnet.metrics import ood_metrics
from tests.peers.conftest import _blobs, _loader, _penultimate


def test_tuned_peers_pick_the_best_setting_on_ood_and_say_so(trained: nn.Sequential) -> None:
    x_fit, y_fit = _blobs(300, 6)
    tune_id, _ = _blobs(80, 7)
    tune_ood = {"noise": torch.randn(40, 4) * 3, "flat": torch.rand(40, 4)}
    built = peers.build_peers(
        trained,
        _loader(x_fit, y_fit),
        names=["odin-tuned", "mahalanobis-tuned"],
        tune_id=tune_id,
        tune_ood=tune_ood,
        settings={"odin-tuned": {"temperature": [1.0, 100.0], "eps": [0.0, 0.05]}},
    )
    odin = built["odin-tuned"]
    assert odin.tuned_on == ("noise", "flat") and odin.tuned_on_ood
    assert odin.score.endswith("; tuned on OOD: noise, flat")
    assert len(odin.tuning) == 4
    best = min(odin.tuning, key=lambda r: (r["fpr95"], -r["auroc"]))
    assert odin.settings == {"temperature": best["temperature"], "eps": best["eps"]}
    # the chosen detector is pytorch-ood's ODIN with those settings, and its tuning
    # numbers are the metrics of those scores on the tuning mix
    ref = pod.ODIN(trained, eps=odin.settings["eps"], temperature=odin.settings["temperature"])
    torch.testing.assert_close(odin(tune_id), ref.predict(tune_id).double())
    mix = torch.cat(list(tune_ood.values()))
    m = ood_metrics(odin(tune_id), odin(mix))
    assert best["fpr95"] == pytest.approx(m["fpr95"]) and best["auroc"] == pytest.approx(m["auroc"])
    # every candidate's numbers are those of pytorch-ood's ODIN with its settings
    for row in odin.tuning:
        det = pod.ODIN(trained, eps=row["eps"], temperature=row["temperature"])
        m = ood_metrics(det.predict(tune_id).double(), det.predict(mix).double())
        assert (row["fpr95"], row["auroc"]) == (m["fpr95"], m["auroc"]), row
    maha = built["mahalanobis-tuned"]
    assert all(p.grad is None for p in trained.parameters())  # backward() left no gradients
    assert [r["eps"] for r in maha.tuning] == list(
        peers.DEFAULT_SETTINGS["mahalanobis-tuned"]["eps"]
    )
    # one input gradient shared by every eps, yet each candidate's numbers are those of
    # pytorch-ood's MahalanobisODIN with that eps
    z_fit = _penultimate(trained, x_fit)
    for row in maha.tuning:
        det = pod.MahalanobisODIN(trained[:-1], eps=row["eps"]).fit_features(z_fit, y_fit)
        m = ood_metrics(det.predict(tune_id).double(), det.predict(mix).double())
        assert (row["fpr95"], row["auroc"]) == (m["fpr95"], m["auroc"]), row
    trained.zero_grad(set_to_none=True)  # pytorch-ood's own predict() left gradients


def test_tuned_peers_are_only_built_with_tuning_data(trained: nn.Sequential) -> None:
    x, y = _blobs(90, 9)
    fit = _loader(x, y)
    assert list(peers.build_peers(trained, fit, settings={"knn": {"k": 3}})) == list(
        peers.PEER_NAMES
    )
    with_tuning = peers.build_peers(
        trained, fit, tune_id=x[:20], tune_ood={"n": torch.randn(20, 4)}, settings={"knn": {"k": 3}}
    )
    assert list(with_tuning) == [*peers.PEER_NAMES, *peers.TUNED_PEER_NAMES]
    assert [p.name for p in with_tuning.values() if p.tuned_on_ood] == list(peers.TUNED_PEER_NAMES)
    with pytest.raises(ValueError, match="tune_id"):
        peers.build("odin-tuned", trained)
