"""The peers' table (rejectnet.peers.registry): each builder equals pytorch-ood's detector."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

pytest.importorskip(
    "pytorch_ood", reason='the peers need pytorch-ood (pip install "rejectnet[peers]")'
)

import pytorch_ood.detector as pod

from rejectnet import peers
from tests.peers.conftest import _blobs, _loader, _penultimate


def test_logit_peers_are_pytorch_ood_scores(trained: nn.Sequential) -> None:
    x = torch.randn(20, 4)
    with torch.no_grad():
        logits = trained(x)
    built = peers.build_peers(trained, None, names=["energy", "max_logit"])
    torch.testing.assert_close(built["energy"](x), -torch.logsumexp(logits, 1).double())
    torch.testing.assert_close(built["max_logit"](x), -logits.max(1).values.double())
    hot = peers.build("energy", trained, temperature=2.0)
    torch.testing.assert_close(hot(x), (-2 * torch.logsumexp(logits / 2, 1)).double())


def test_odin_matches_pytorch_ood_and_leaves_the_model_alone(trained: nn.Sequential) -> None:
    x = torch.randn(16, 4)
    before = copy.deepcopy(trained.state_dict())
    trained.train()  # the peer scores in eval mode and restores the caller's mode
    peer = peers.build("odin", trained, temperature=10.0, eps=0.01)
    got = peer(x)
    assert trained.training
    trained.eval()
    want = pod.ODIN(trained, eps=0.01, temperature=10.0).predict(x).double()
    torch.testing.assert_close(got, want)
    assert peer.settings == {"temperature": 10.0, "eps": 0.01} and not peer.tuned_on_ood
    assert all(p.grad is None for p in trained.parameters())
    for k, v in trained.state_dict().items():
        assert torch.equal(v, before[k])


def test_odin_without_perturbation_needs_no_gradient(trained: nn.Sequential) -> None:
    x = torch.randn(16, 4)
    peer = peers.build("odin", trained, temperature=10.0, eps=0.0)
    assert peer.kind == "logits" and peer.reference.endswith("MaxSoftmax")
    want = pod.ODIN(trained, eps=0.0, temperature=10.0).predict(x).double()
    torch.testing.assert_close(peer(x), want, rtol=1e-6, atol=1e-7)


def test_fitted_peers_equal_their_definitions(trained: nn.Sequential) -> None:
    x_fit, y_fit = _blobs(300, 1)
    built = peers.build_peers(
        trained,
        _loader(x_fit, y_fit),
        names=["mahalanobis", "knn", "vim"],
        settings={"knn": {"k": 7}},
    )
    x = torch.randn(25, 4) * 3
    z_fit, z = _penultimate(trained, x_fit), _penultimate(trained, x)
    # Mahalanobis: half the smallest squared distance to a class mean, shared covariance
    mu = torch.stack([z_fit[y_fit == c].mean(0) for c in range(3)])
    centred = z_fit - mu[y_fit]
    precision = torch.linalg.inv(centred.T @ centred + 1e-6 * torch.eye(16))
    d = torch.stack([(((z - m) @ precision) * (z - m)).sum(1) for m in mu], 1)
    torch.testing.assert_close(
        built["mahalanobis"](x), (0.5 * d.min(1).values).double(), rtol=1e-3, atol=1e-3
    )
    # KNN: distance to the 7th nearest normalised training feature
    zn, zfn = z / z.norm(dim=1, keepdim=True), z_fit / z_fit.norm(dim=1, keepdim=True)
    kth = torch.cdist(zn.double(), zfn.double()).sort(1).values[:, 6]
    torch.testing.assert_close(built["knn"](x), kth, rtol=1e-5, atol=1e-5)
    assert built["knn"].fit_samples == 300
    # ViM: pytorch-ood's ViM with the final layer's weights and the paper's d = D // 2
    head = trained[-1]
    vim = pod.ViM(None, d=8, w=head.weight, b=head.bias).fit_features(z_fit, y_fit)
    torch.testing.assert_close(built["vim"](x), vim.predict_features(z).double())
    assert built["vim"].settings == {"d": 8}


def test_mahalanobis_with_eps_skips_weight_gradients_but_scores_like_pytorch_ood(
    trained: nn.Sequential,
) -> None:
    x_fit, y_fit = _blobs(300, 8)
    model = copy.deepcopy(trained)
    model[0].weight.requires_grad_(False)  # a partly frozen model keeps its flags
    peer = peers.build("mahalanobis", model, fit_loader=_loader(x_fit, y_fit), eps=0.01)
    x = torch.randn(30, 4) * 2
    ref = pod.MahalanobisODIN(model[:-1], eps=0.01)
    ref.fit_features(_penultimate(model, x_fit), y_fit)
    expected = ref.predict(x).double()  # pytorch-ood's own call: backward() into the weights
    model.zero_grad(set_to_none=True)
    seen: list[bool] = []
    hook = model[2].register_forward_hook(lambda m, i, o: seen.append(m.weight.requires_grad))
    got = peer(x)
    hook.remove()
    torch.testing.assert_close(got, expected)
    assert seen and not any(seen)  # no weight needed a gradient during the call
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True, True, True]
    assert all(p.grad is None for p in model.parameters())
