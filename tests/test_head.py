"""RejectHead: wrapping, exact logits, scores, calibration, predict, unwrap."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet.head import RejectLinear
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
