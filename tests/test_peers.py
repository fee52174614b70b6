"""rejectnet.peers: post-hoc detectors via pytorch-ood, on tiny models and synthetic data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip(
    "pytorch_ood", reason='the peers need pytorch-ood (pip install "rejectnet[peers]")'
)

import pytorch_ood.detector as pod

from rejectnet import RejectHead, evaluate, peers
from rejectnet.metrics import ood_metrics
from rejectnet.models import SmallCNN


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    return centres[y] + 0.5 * torch.randn(n, 4, generator=g), y


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3)
    )
    x, y = _blobs(600, 0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def _loader(x: torch.Tensor, y: torch.Tensor | None = None, bs: int = 64) -> list[object]:
    if y is None:
        return [x[i : i + bs] for i in range(0, len(x), bs)]
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)]


def _penultimate(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model[:-1](x)


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


def test_the_how_to_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "howto" / "peers_example.py"
    env = runpy.run_path(str(path))
    out = capsys.readouterr().out
    names = [*peers.PEER_NAMES, *peers.TUNED_PEER_NAMES]
    assert [r.name for r in env["reports"]] == names
    for name in names:
        assert f"| {name} |" in out
    assert out.count("; tuned on OOD: far, near |") == 2 * 3  # 2 tuned peers x (far, near, mixed)
    assert env["report"].name == "knn"


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


def _tiny_bert() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
        num_labels=3,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).eval()


def _token_batches(
    n: int, length: int, low: int, seed: int, *, labels: bool = True, size: int = 16
) -> list[dict[str, torch.Tensor]]:
    """HF-style dict batches: input_ids, attention_mask (padded tails), token_type_ids."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, low + 40, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[::3, length // 2 :] = 0  # a third of the rows padded
    ids = ids.masked_fill(mask == 0, 0)
    batches = []
    for i in range(0, n, size):
        b = {
            "input_ids": ids[i : i + size],
            "attention_mask": mask[i : i + size],
            "token_type_ids": torch.zeros_like(ids[i : i + size]),
        }
        if labels:
            b["labels"] = torch.arange(i, min(i + size, n)) % 3
        batches.append(b)
    return batches


def _pooled(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    with torch.no_grad():
        keep = ("input_ids", "attention_mask", "token_type_ids")
        return torch.cat([model.bert(**{k: b[k] for k in keep}).pooler_output for b in batches])


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


def test_input_gradient_peers_refuse_named_tensors_clearly() -> None:
    model = _tiny_bert()
    odin = peers.build("odin", model)
    batch = {k: v for k, v in _token_batches(4, 6, 1, 0)[0].items() if k != "labels"}
    with pytest.raises(TypeError, match="takes one input tensor, not named tensors"):
        odin(batch)
