"""Features and logits of any classifier (rejectnet.peers.features)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip(
    "pytorch_ood", reason='the peers need pytorch-ood (pip install "rejectnet[peers]")'
)

import pytorch_ood.detector as pod

from rejectnet import peers
from rejectnet.models import SmallCNN
from tests.peers.conftest import _pooled, _tiny_bert, _token_batches


def test_features_are_the_input_of_the_final_linear_of_any_model() -> None:
    torch.manual_seed(0)
    cnn = SmallCNN(num_classes=4, image_size=8, channels=(4, 8), hidden=12).eval()
    x = torch.rand(30, 1, 8, 8)
    y = torch.arange(30) % 4
    peer = peers.build("knn", cnn, fit_loader=[(x, y)], k=3, normalize=False)
    with torch.no_grad():
        z = torch.relu(cnn.fc1(cnn.features(x)))  # what nn.Linear `fc` receives
    kth = torch.cdist(z.double(), z.double()).sort(1).values[:, 2]
    torch.testing.assert_close(peer(x), kth, rtol=1e-5, atol=1e-5)


def test_dict_batches_of_a_bert_reach_the_feature_peers_on_its_pooled_output() -> None:
    model = _tiny_bert()
    fit = _token_batches(48, 12, 1, 0) + _token_batches(24, 7, 1, 1)  # two sequence lengths
    test_in, test_out = _token_batches(30, 10, 1, 2), _token_batches(30, 10, 55, 3)
    built = peers.build_peers(
        model, fit, names=["energy", "mahalanobis", "knn", "vim"], settings={"knn": {"k": 5}}
    )
    assert built["knn"]._tap.head_path == "classifier" and built["knn"].fit_samples == 72
    # the features are BERT's pooled output, the input of its classifier
    x = {k: v for k, v in test_in[0].items() if k != "labels"}
    with torch.no_grad():
        f, z = built["knn"]._tap(x)
        logits = model(**x).logits
    assert torch.equal(f, _pooled(model, test_in[:1])) and torch.equal(z, logits)
    fit_f, fit_y = _pooled(model, fit), torch.cat([b["labels"] for b in fit])
    ref = {
        "mahalanobis": pod.Mahalanobis(None).fit_features(fit_f, fit_y),
        "knn": pod.KNN(None, k=5, normalize=True).fit_features(fit_f, fit_y),
    }
    pooled = _pooled(model, test_in[:1])
    for name, det in ref.items():
        assert torch.allclose(built[name](x), det.predict_features(pooled).double(), atol=1e-5)
    assert torch.allclose(built["energy"](x), -torch.logsumexp(logits, 1).double(), atol=1e-5)
    # evaluated together from dict loaders: accuracy from the labels, one report per peer
    reports = peers.evaluate_peers(built, test_in, {"ood": test_out}, n_runs=2)
    with torch.no_grad():
        pred = torch.cat([model(**{k: b[k] for k in x}).logits.argmax(1) for b in test_in])
    truth = torch.cat([b["labels"] for b in test_in])
    for r in reports:
        assert r.id_accuracy == pytest.approx((pred == truth).double().mean().item())
        assert len(r.scores_in) == 30 and len(r.scores_out["ood"]) == 30
