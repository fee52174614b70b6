"""RejectHead: wrapping, exact logits, scores, calibration, predict, unwrap."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import rejectnet
from rejectnet import RejectHead
from rejectnet.export import dynamic_shapes_for, named_program
from rejectnet.head import RejectLinear
from rejectnet.input_spec import InputSpec, NamedInputSpec
from rejectnet.scores import sum_reject, threshold_for_coverage
from tests.conftest import TinyCNN


def _state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[n], sb[n]) for n in sa)


def test_wrap_shapes_and_exact_class_logits(tiny_cnn: TinyCNN, images: torch.Tensor) -> None:
    before = copy.deepcopy(tiny_cnn)
    net = RejectHead.wrap(tiny_cnn, k=3)
    assert (net.num_classes, net.k, net.head_path) == (4, 3, "fc2")
    out = net(images)
    assert out.shape == (6, 7)
    ref = tiny_cnn(images)
    assert out.dtype == ref.dtype and out.device == ref.device
    assert torch.equal(out[:, :4], ref)
    # default: the caller's model object is untouched
    assert isinstance(tiny_cnn.fc2, nn.Linear) and _state_equal(tiny_cnn, before)


def test_wrap_inplace_shares_weights(tiny_cnn: TinyCNN, images: torch.Tensor) -> None:
    ref = tiny_cnn(images)
    net = RejectHead.wrap(tiny_cnn, k=2, inplace=True)
    assert isinstance(tiny_cnn.fc2, RejectLinear)
    assert net.model is tiny_cnn
    assert torch.equal(net(images)[:, :4], ref)


def test_wrap_keeps_training_mode_and_dtype() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).double().train()
    net = RejectHead.wrap(model, k=2)
    assert net.training
    assert net.head.reject.weight.dtype == torch.float64
    x = torch.randn(3, 3, 4, dtype=torch.float64)
    assert torch.equal(net(x)[:, :5], model(x))


def test_reject_layer_is_independent_and_trainable(tiny_cnn: TinyCNN) -> None:
    net = RejectHead.wrap(tiny_cnn, k=4)
    rej = net.head.reject
    assert rej.weight.shape == (4, 16) and rej.bias is not None and rej.weight.requires_grad
    names = [n for n, _ in net.named_reject_parameters()]
    assert names == ["model.fc2.reject.weight", "model.fc2.reject.bias"]
    params = dict(net.named_parameters())
    assert all(n in params for n in names)


def test_wrap_is_reproducible_with_seed(tiny_cnn: TinyCNN) -> None:
    torch.manual_seed(5)
    a = RejectHead.wrap(tiny_cnn, k=2)
    torch.manual_seed(5)
    b = RejectHead.wrap(tiny_cnn, k=2)
    assert torch.equal(a.head.reject.weight, b.head.reject.weight)


@pytest.mark.parametrize("k", [0, -1])
def test_k_must_be_positive(tiny_cnn: TinyCNN, k: int) -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        RejectHead.wrap(tiny_cnn, k=k)


@pytest.mark.parametrize("k", [2.0, True, "5"])
def test_k_must_be_int(tiny_cnn: TinyCNN, k: object) -> None:
    with pytest.raises(TypeError, match="k must be an int"):
        RejectHead.wrap(tiny_cnn, k=k)  # type: ignore[arg-type]


def test_already_wrapped_is_refused(tiny_cnn: TinyCNN) -> None:
    net = RejectHead.wrap(tiny_cnn, k=2)
    with pytest.raises(ValueError, match="already wrapped"):
        RejectHead.wrap(net, k=2)
    with pytest.raises(ValueError, match="already wrapped"):
        RejectHead.wrap(net.model, k=2)


def test_not_a_module() -> None:
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        RejectHead.wrap(lambda x: x, k=2)  # type: ignore[arg-type]


def test_input_rank_checked(tiny_cnn: TinyCNN, images: torch.Tensor) -> None:
    net = RejectHead.wrap(tiny_cnn, k=2)
    assert net.expected_input_ndim == 4
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        net(images[0])
    with pytest.raises(ValueError, match="4-D"):
        net(images.flatten(1))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        net(images.numpy())  # type: ignore[arg-type]


class Sliced(nn.Module):
    """A model that post-processes its last Linear's output (keeps 2 of 3 columns)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)[:, :2]


def test_head_that_is_not_final_layer_is_caught() -> None:
    net = RejectHead.wrap(Sliced(), k=2)
    with pytest.raises(RuntimeError, match="not the model's final layer"):
        net(torch.randn(2, 6))


class DictModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(5, 8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.classifier(torch.relu(self.backbone(x))), "aux": x}


class Output:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class ObjModel(DictModel):
    def forward(self, x: torch.Tensor) -> Output:  # type: ignore[override]
        return Output(super().forward(x)["logits"])


@pytest.mark.parametrize("cls", [DictModel, ObjModel])
def test_dict_and_object_outputs(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = cls()
    x = torch.randn(4, 5)
    net = RejectHead.wrap(model, k=2)
    assert net.head_path == "classifier"
    out = net(x)
    ref = model(x)
    ref_logits = ref["logits"] if isinstance(ref, dict) else ref.logits
    assert out.shape == (4, 5) and torch.equal(out[:, :3], ref_logits)


def test_ood_score_matches_scores_module(tiny_cnn: TinyCNN, images: torch.Tensor) -> None:
    net = RejectHead.wrap(tiny_cnn, k=3).eval()
    s = net.ood_score(images)
    assert s.shape == (6,)
    assert torch.allclose(s, sum_reject(net(images), 4))
    msp = net.ood_score(images, score="msp")
    ref = -torch.softmax(tiny_cnn(images), dim=1).max(dim=1).values
    assert torch.allclose(msp, ref)
    with pytest.raises(ValueError, match="sum_reject"):
        net.ood_score(images, score="nope")


def test_weighted_score_uses_buffer(tiny_cnn: TinyCNN, images: torch.Tensor) -> None:
    net = RejectHead.wrap(tiny_cnn, k=3).eval()
    net.score_weights.copy_(torch.tensor([1.0, 0.0, 0.0]))
    p = torch.softmax(net(images).double(), dim=1)
    assert torch.allclose(net.ood_score(images, "weighted").double(), p[:, 4], atol=1e-6)


def test_predict_before_calibration_is_an_error(tiny_cnn: TinyCNN, images: torch.Tensor) -> None:
    net = RejectHead.wrap(tiny_cnn, k=2)
    assert not net.is_calibrated and net.calibrated_score is None
    with pytest.raises(RuntimeError, match="no threshold set"):
        net.predict(images)


def test_calibrate_then_predict(tiny_cnn: TinyCNN) -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(tiny_cnn, k=2).train()
    val = torch.randn(200, 1, 8, 8)
    loader = [(val[i : i + 32], torch.zeros(len(val[i : i + 32]))) for i in range(0, 200, 32)]
    result = net.calibrate(loader, coverage=0.9, score="max")
    assert net.training, "calibrate must restore the previous mode"
    assert net.calibrated_score == "max_reject"
    net.eval()
    s = net.ood_score(val)
    ref = threshold_for_coverage(s, coverage=0.9)
    assert float(result) == pytest.approx(ref.value) == pytest.approx(float(net.threshold))
    pred = net.predict(val)
    assert pred.score == "max_reject"
    assert pred.probs.shape == (200, 4)
    assert torch.allclose(pred.probs.sum(1), torch.ones(200))
    kept = (~pred.is_ood).double().mean().item()
    assert kept >= 0.9
    assert torch.equal(pred.is_ood, s.double() > float(net.threshold))
    assert torch.equal(pred.labels[pred.is_ood], torch.full_like(pred.labels[pred.is_ood], -1))
    assert torch.equal(pred.labels[~pred.is_ood], pred.classes[~pred.is_ood])
    assert torch.equal(pred.classes, tiny_cnn(val).argmax(1))


def test_threshold_lives_in_state_dict(tiny_cnn: TinyCNN) -> None:
    net = RejectHead.wrap(tiny_cnn, k=2)
    net.set_threshold(0.25, "entropy")
    sd = net.state_dict()
    other = RejectHead.wrap(TinyCNN(), k=2)
    other.load_state_dict(sd)
    assert float(other.threshold) == 0.25 and other.calibrated_score == "entropy_reject"


def test_threshold_survives_half(tiny_cnn: TinyCNN) -> None:
    net = RejectHead.wrap(tiny_cnn, k=2)
    net.set_threshold(0.123456789)
    net.half()
    assert net.threshold.dtype == torch.float64
    assert float(net.threshold) == 0.123456789
    assert net.head.reject.weight.dtype == torch.float16


def test_set_threshold_validates(tiny_cnn: TinyCNN) -> None:
    net = RejectHead.wrap(tiny_cnn, k=2)
    with pytest.raises(ValueError, match="finite"):
        net.set_threshold(math.nan)
    with pytest.raises(ValueError, match="sum_reject"):
        net.set_threshold(0.1, "bogus")
    assert not net.is_calibrated


def test_calibrate_empty_loader(tiny_cnn: TinyCNN) -> None:
    net = RejectHead.wrap(tiny_cnn, k=2)
    with pytest.raises(ValueError, match="no batches"):
        net.calibrate([])
    with pytest.raises(ValueError, match="coverage"):
        net.calibrate([torch.randn(4, 1, 8, 8)], coverage=95)
    assert not net.is_calibrated


def test_unwrap_gives_plain_model_with_current_weights(
    tiny_cnn: TinyCNN, images: torch.Tensor
) -> None:
    net = RejectHead.wrap(tiny_cnn, k=2)
    with torch.no_grad():
        net.model.conv1.weight.add_(0.5)
    plain = net.unwrap()
    assert isinstance(plain.fc2, nn.Linear)
    assert torch.equal(plain(images), net(images)[:, :4])
    assert plain.fc2.weight.data_ptr() != net.head.base.weight.data_ptr()
    assert not any(isinstance(m, RejectLinear) for m in plain.modules())


@pytest.mark.parametrize(
    "score", ["sum_reject", "max_reject", "entropy_reject", "entropy_diff", "msp", "energy"]
)
def test_score_logits_equals_the_scores_functions_bit_for_bit(score: str) -> None:
    import rejectnet.scores as scores

    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(8, 4), k=3).eval()
    logits = net(torch.randn(64, 8) * 5).detach()
    fn = getattr(scores, score)
    reject = score in ("sum_reject", "max_reject", "entropy_reject", "entropy_diff")
    want = fn(logits, num_classes=4) if reject else fn(logits[:, :4])
    assert torch.equal(net.score_logits(logits, score), want)


# ---------------------------------------------------------------------------------------
# Named inputs: a tiny Hugging Face BERT end to end. RejectHead forward / ood_score /
# predict / calibrate / fit_temperature take a dict of named tensors or keyword arguments;
# the input spec records every input; save/load, deployable(), torch.export and ONNX take
# the same named inputs and decide like predict() (bit for bit in torch, within 1e-5 in
# onnxruntime).

_needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="needs transformers"
)


def _bert() -> nn.Module:
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        max_position_embeddings=64,
    )
    return transformers.BertForSequenceClassification(cfg).eval()


def _tokens(n: int, length: int, seed: int, pad_from: int | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    if pad_from is not None:
        ids[0, pad_from:] = 0
        mask[0, pad_from:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def net() -> RejectHead:
    wrapped = RejectHead.wrap(_bert(), k=2).eval()
    # calibration batches of unequal sequence lengths
    wrapped.calibrate([_tokens(16, 7, 1), _tokens(16, 11, 2, pad_from=5)], coverage=0.6)
    return wrapped


@_needs_transformers
def test_forward_takes_a_dict_or_keyword_arguments(net: RejectHead) -> None:
    x = _tokens(4, 9, 3, pad_from=6)
    by_dict = net(x)
    by_kwargs = net(**x)
    assert by_dict.shape == (4, 5) and torch.equal(by_dict, by_kwargs)
    # the first C logits are the original model's
    original = net.unwrap()(**x).logits
    assert torch.equal(by_dict[:, :3], original)
    with pytest.raises(TypeError, match=r"either as x .* or as keyword"):
        net(x, input_ids=x["input_ids"])
    with pytest.raises(TypeError, match="no inputs"):
        net()
    # x= as a keyword is the positional batch, as before named inputs existed
    plain = RejectHead.wrap(nn.Linear(4, 3), k=2)
    t = torch.randn(2, 4)
    assert torch.equal(plain(x=t), plain(t))
    with pytest.raises(TypeError, match=r"x\['input_ids'\] must be a torch.Tensor"):
        net({"input_ids": [[1, 2]], "attention_mask": x["attention_mask"]})
    with pytest.raises(ValueError, match="batch"):
        net({"input_ids": x["input_ids"], "attention_mask": x["attention_mask"][:2]})


@_needs_transformers
def test_input_spec_records_every_named_input(net: RejectHead) -> None:
    spec = net.input_spec
    assert isinstance(spec, NamedInputSpec)
    assert spec.names == ("input_ids", "attention_mask")
    assert dict(spec.inputs) == {
        "input_ids": InputSpec((None,), torch.int64),
        "attention_mask": InputSpec((None,), torch.int64),
    }
    assert NamedInputSpec.from_dict(spec.to_dict()) == spec
    # any sequence length passes; a missing input, another dtype or one tensor do not
    net.predict(**_tokens(2, 30, 4))
    with pytest.raises(ValueError, match=r"missing \['attention_mask'\]"):
        net.predict(input_ids=_tokens(2, 5, 4)["input_ids"])
    with pytest.raises(TypeError, match=r"x\['attention_mask'\] has dtype float32"):
        x = _tokens(2, 5, 4)
        net.predict(input_ids=x["input_ids"], attention_mask=x["attention_mask"].float())
    with pytest.raises(TypeError, match="dict of named tensors"):
        net.predict(torch.zeros(2, 5, dtype=torch.long))


@_needs_transformers
def test_predict_and_ood_score_agree_across_forms(net: RejectHead) -> None:
    x = _tokens(6, 10, 5, pad_from=4)
    p_dict = net.predict(x)
    p_kwargs = net.predict(**x)
    assert torch.equal(p_dict.labels, p_kwargs.labels)
    assert torch.equal(p_dict.ood_score, p_kwargs.ood_score)
    assert torch.equal(net.ood_score(x), p_dict.ood_score)
    assert torch.equal(net.ood_score(score="msp", **x), net.ood_score(x, score="msp"))
    # a padded row decides like the same tokens unpadded
    short = {k: v[:1, :4] for k, v in x.items()}
    assert torch.allclose(net.ood_score(short), p_dict.ood_score[:1], atol=1e-5)


@_needs_transformers
def test_fit_temperature_and_keys_on_dict_batches() -> None:
    net = RejectHead.wrap(_bert(), k=2).eval()
    batches = []
    for i, length in enumerate((6, 9)):
        b = _tokens(32, length, 10 + i)
        g = torch.Generator().manual_seed(30 + i)
        right = net(b)[:, :3].argmax(1)
        noise = torch.randint(0, 3, (32,), generator=g)
        b["labels"] = torch.where(torch.rand(32, generator=g) < 0.7, right, noise)
        batches.append(b)
    t = net.fit_temperature(batches)
    assert 0.009 <= t <= 100 and float(net.temperature) == pytest.approx(t)
    # named keys: a tuple of input keys and the label key
    keys = (("input_ids", "attention_mask"), "labels")
    assert net.fit_temperature(batches, keys=keys) == pytest.approx(t)
    unlabelled = [_tokens(8, 6, 20)]
    # a key the keys= argument would drop is named, not silently dropped
    with pytest.raises(ValueError, match="'attention_mask' would be dropped"):
        net.calibrate(unlabelled, keys=("input_ids", "labels"))
    # a missing label key is named (not a bare KeyError)
    with pytest.raises(TypeError, match="'labels'"):
        net.fit_temperature(unlabelled, keys=keys)
    with pytest.raises(ValueError, match="carry no labels"):
        net.fit_temperature(unlabelled)
    # calibrate ignores labels: unlabelled dicts with keys= naming both inputs work
    result = net.calibrate(unlabelled, keys=keys)
    assert net.is_calibrated and result.n_in == 8


@_needs_transformers
def test_save_and_load_keep_the_named_inputs(net: RejectHead, tmp_path: Path) -> None:
    path = rejectnet.save(net, tmp_path / "bert.safetensors")
    loaded = rejectnet.load(path, _bert())
    assert loaded.input_spec == net.input_spec
    x = _tokens(5, 8, 6)
    a, b = net.predict(x), loaded.predict(**x)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.ood_score, b.ood_score)


@_needs_transformers
def test_deployable_and_torch_export_equal_predict_bit_for_bit(net: RejectHead) -> None:
    dep = net.deployable()
    x = _tokens(5, 12, 7, pad_from=3)
    want = net.predict(x)
    for got in (dep(x), dep(**x)):
        assert torch.equal(got[0], want.labels) and torch.equal(got[1], want.ood_score)
        assert torch.equal(got[2], want.is_ood)
    example = _tokens(4, 9, 8)
    program = torch.export.export(
        named_program(dep, list(example)),
        tuple(example.values()),
        dynamic_shapes=dynamic_shapes_for(example),
    )
    seen_both = False
    for n, length, seed in [(5, 12, 7), (2, 20, 9), (9, 4, 10)]:
        x = _tokens(n, length, seed, pad_from=2)
        want = net.predict(x)
        labels, score, is_ood = program.module()(x["input_ids"], x["attention_mask"])
        assert torch.equal(score, want.ood_score) and torch.equal(labels, want.labels)
        assert torch.equal(is_ood, want.is_ood)
        seen_both |= bool(want.is_ood.any()) and bool((~want.is_ood).any())
    assert seen_both


@_needs_transformers
def test_onnx_takes_the_model_input_names(net: RejectHead, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    path = rejectnet.export_onnx(net, tmp_path / "bert.onnx", _tokens(4, 9, 8))
    session = ort.InferenceSession(str(path))
    inputs = session.get_inputs()
    assert [i.name for i in inputs] == ["input_ids", "attention_mask"]
    assert all(isinstance(d, str) for i in inputs for d in i.shape)  # batch and sequence
    assert [o.name for o in session.get_outputs()] == ["labels", "ood_score", "is_ood"]
    for n, length, seed in [(3, 13, 11), (7, 5, 12)]:
        x = _tokens(n, length, seed, pad_from=3)
        want = net.predict(x)
        labels, score, is_ood = session.run(None, {k: v.numpy() for k, v in x.items()})
        assert abs(torch.from_numpy(score) - want.ood_score).max() <= 1e-5
        clear = (want.ood_score.double() - float(net.threshold)).abs() > 1e-5
        assert torch.equal(torch.from_numpy(labels)[clear], want.labels[clear])
        assert torch.equal(torch.from_numpy(is_ood)[clear], want.is_ood[clear])


class _TwoInputs(nn.Module):
    """A model of two floating named inputs (features and a side signal)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(2, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, feats: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.a(feats) + self.b(side)))


@pytest.mark.parametrize("score", ["sum_reject", "max_reject"])
def test_non_finite_named_inputs(score: str) -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(_TwoInputs(), k=2).eval()
    net.calibrate([{"feats": torch.randn(32, 4), "side": torch.randn(32, 2)}], score=score)
    x = {"feats": torch.randn(4, 4), "side": torch.randn(4, 2)}
    x["side"][2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"x\['side'\] holds NaN .* \(rows 2\)"):
        net.predict(x)
    labels, s, is_ood = net.deployable()(x)
    assert s.isnan().tolist() == [False, False, True, False]
    assert is_ood[2] and labels[2] == rejectnet.REJECTED
    clean = {k: v[[0, 1, 3]] for k, v in x.items()}
    want = net.predict(clean)
    assert torch.equal(s[[0, 1, 3]], want.ood_score)
