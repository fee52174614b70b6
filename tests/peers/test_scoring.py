"""Scoring and evaluating peers together (rejectnet.peers.scoring)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip(
    "pytorch_ood", reason='the peers need pytorch-ood (pip install "rejectnet[peers]")'
)


from rejectnet import evaluate, peers
from tests.peers.conftest import _blobs, _loader


def test_evaluate_peers_shares_passes_but_equals_evaluate(trained: nn.Sequential) -> None:
    x_fit, y_fit = _blobs(300, 4)
    built = peers.build_peers(
        trained, _loader(x_fit, y_fit), names=["energy", "odin", "knn"], settings={"knn": {"k": 5}}
    )
    x_test, y_test = _blobs(90, 5)
    ood = {"a": _loader(torch.randn(60, 4) * 3), "b": _loader(torch.rand(70, 4))}
    shared = peers.evaluate_peers(built, _loader(x_test, y_test, bs=32), ood, n_runs=3, seed=1)
    for rep, (name, peer) in zip(shared, built.items(), strict=True):
        alone = evaluate(peer, _loader(x_test, y_test, bs=32), ood, n_runs=3, seed=1)
        assert rep.name == alone.name == name and rep.score == alone.score == peer.score
        np.testing.assert_allclose(rep.scores_in, alone.scores_in, rtol=1e-12)
        for s in ("a", "b", "mixed"):
            assert rep.ood[s].mean == pytest.approx(alone.ood[s].mean, abs=1e-12)
        # the shared pass also gives the class predictions, hence the accuracy
        with torch.no_grad():
            acc = float((trained(x_test).argmax(1) == y_test).double().mean())
        assert rep.id_accuracy == pytest.approx(acc) and alone.id_accuracy is None


def test_the_how_to_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "howto" / "peers_example.py"
    env = runpy.run_path(str(path))
    out = capsys.readouterr().out
    names = [*peers.PEER_NAMES, *peers.TUNED_PEER_NAMES]
    assert [r.name for r in env["reports"]] == names
    for name in names:
        assert f"| {name} |" in out
    assert out.count("; tuned on OOD: far, near |") == 2 * 3  # 2 tuned peers x (far, near, mixed)
    assert env["report"].name == "knn"
