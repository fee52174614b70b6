"""The recorded input spec and the input errors of predict / ood_score / calibrate.

Regression tests for issue 12 items 8 and 9 (dtype, missing dimension, wrong channel
count or size, dict keys, string labels, empty batches, huge thresholds).
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rejectnet import RejectHead
from rejectnet.input_spec import (
    InputSpec,
    ModelInput,
    NamedInputSpec,
    check_input_against_spec,
    missing_dim_hint,
)
from rejectnet.models import SmallCNN


def _cnn_net() -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(
        SmallCNN(num_classes=4, image_size=28, channels=(4, 8), hidden=16), k=2
    ).eval()


def _calibrated() -> RejectHead:
    net = _cnn_net()
    net.calibrate([torch.rand(32, 1, 28, 28)], coverage=0.9)
    return net


# ---------------------------------------------------------------- InputSpec itself
@settings(max_examples=50, deadline=None)
@given(
    shape=st.lists(st.none() | st.integers(0, 2**31 - 1), max_size=6).map(tuple),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.uint8]),
)
def test_spec_round_trips_through_its_dict(
    shape: tuple[int | None, ...], dtype: torch.dtype
) -> None:
    spec = InputSpec(shape, dtype)
    assert InputSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "data",
    [
        {"shape": [1, 28]},
        {"shape": "1,28", "dtype": "float32"},
        {"shape": [1, -3], "dtype": "float32"},
        {"shape": [1, True], "dtype": "float32"},
        {"shape": [1, 2**40], "dtype": "float32"},
        {"shape": [1] * 17, "dtype": "float32"},
        {"shape": [1], "dtype": "complex64"},
        {"shape": [1], "dtype": "float32", "extra": 1},
        [1, 28, 28],
    ],
)
def test_spec_from_bad_dicts_is_a_value_error(data: object) -> None:
    with pytest.raises(ValueError, match="input_spec"):
        InputSpec.from_dict(data)  # type: ignore[arg-type]


def test_merge_turns_differing_sizes_into_wildcards() -> None:
    a = InputSpec((3, 32, 32), torch.float32)
    m = a.merge(InputSpec((3, 64, 32), torch.float32))
    assert m.shape == (3, None, 32) and m.matches(torch.zeros(2, 3, 7, 32))
    with pytest.raises(ValueError, match="cannot be mixed"):
        a.merge(InputSpec((3, 32), torch.float32))


def test_missing_dimension_hints() -> None:
    assert "unsqueeze(1)" in missing_dim_hint((4, 28, 28), (1, 28, 28))
    assert "unsqueeze(0)" in missing_dim_hint((1, 28, 28), (1, 28, 28))
    assert "unsqueeze(0)" in missing_dim_hint((3, 32, 32), (3, 32, 32))
    assert "unsqueeze(3)" in missing_dim_hint((4, 28, 28), (28, 28, 1))
    # without a spec, the first convolution's in_channels decides
    assert "unsqueeze(1)" in missing_dim_hint((4, 28, 28), (), in_channels=1)
    assert "unsqueeze(0)" in missing_dim_hint((3, 28, 28), (), in_channels=3)


# ---------------------------------------------------------------- on the model
def test_calibrate_records_the_spec_outside_the_state_dict() -> None:
    net = _cnn_net()
    assert net.input_spec is None
    net.calibrate([torch.rand(16, 1, 28, 28), torch.rand(5, 1, 28, 28)])
    assert net.input_spec == InputSpec((1, 28, 28), torch.float32)
    assert not any("spec" in k for k in net.state_dict())
    assert copy.deepcopy(net).input_spec == net.input_spec
    net.input_spec = None
    assert net.input_spec is None
    net.input_spec = InputSpec((1, 28, 28), torch.float32)
    with pytest.raises(TypeError, match="InputSpec"):
        net.input_spec = ((1, 28, 28), torch.float32)  # type: ignore[assignment]


def test_missing_channel_dimension_suggests_unsqueeze_1() -> None:
    for net in (_calibrated(), _cnn_net()):  # with a recorded spec and without
        net.set_threshold(0.5)
        with pytest.raises(
            ValueError, match=r"x must be 4-D.*got shape \(4, 28, 28\).*x\.unsqueeze\(1\)"
        ):
            net.predict(torch.rand(4, 28, 28))
        with pytest.raises(ValueError, match=r"x\.unsqueeze\(0\)"):
            net.predict(torch.rand(1, 28, 28))


@pytest.mark.parametrize(
    ("shape", "said"),
    [((4, 3, 28, 28), r"x has 3 channels"), ((4, 1, 32, 32), r"resize or crop")],
)
def test_wrong_channels_or_size_name_x_and_both_shapes(shape: tuple[int, ...], said: str) -> None:
    net = _calibrated()
    got = ", ".join(str(d) for d in shape)
    pattern = rf"x must have shape \(N, 1, 28, 28\).*got \({got}\).*{said}"
    with pytest.raises(ValueError, match=pattern):
        net.predict(torch.rand(*shape))
    with pytest.raises(ValueError, match=pattern):
        net.ood_score(torch.rand(*shape))
    net.input_spec = None  # cleared: the shape is no longer checked before the model runs
    with pytest.raises(RuntimeError):
        net.predict(torch.rand(*shape))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float64])
def test_wrong_dtype_names_x_its_dtype_and_the_expected_one(dtype: torch.dtype) -> None:
    for net in (_calibrated(), _cnn_net()):
        net.set_threshold(0.5)
        x = (torch.rand(4, 1, 28, 28) * 255).to(dtype)
        name = str(dtype).removeprefix("torch.")
        with pytest.raises(TypeError, match=rf"x has dtype {name} but the model expects float32"):
            net.predict(x)
        with pytest.raises(TypeError, match=rf"x has dtype {name}"):
            net.ood_score(x)


def test_spec_dtype_follows_the_model_through_half() -> None:
    net = _calibrated()
    net.half()
    assert net.input_spec == InputSpec((1, 28, 28), torch.float16)
    assert net.threshold.dtype == torch.float64 and net.temperature.dtype == torch.float32


def test_autocast_and_embeddings_accept_their_inputs() -> None:
    net = _cnn_net()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(torch.rand(2, 1, 28, 28).bfloat16()).shape == (2, 6)
    emb = RejectHead.wrap(nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 3)), k=2)
    assert emb(torch.randint(0, 10, (5, 3))).shape == (5, 5)


def test_dict_batches_with_other_keys_and_string_labels() -> None:
    net = _cnn_net()
    x = torch.rand(20, 1, 28, 28)
    ref = net.calibrate([x], coverage=0.9)
    batches = [{"img": x[:10], "cls": ["a"] * 10}, {"img": x[10:], "cls": ["b"] * 10}]
    # without keys=, every non-label key is a model input (issue 21's one rule): the
    # list under 'cls' is refused, naming the key
    with pytest.raises(TypeError, match=r"loader batch\['cls'\] must be a torch.Tensor"):
        net.calibrate(batches)
    got = net.calibrate(batches, coverage=0.9, keys=("img", "cls"))
    assert got.value == ref.value
    # string labels in (x, y) batches are ignored too
    assert net.calibrate([(x, ["cat"] * 20)], coverage=0.9).value == ref.value
    with pytest.raises(TypeError, match="keys must be a pair"):
        net.calibrate(batches, keys="img")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"without the keys \('image', None\)"):
        net.calibrate(batches, keys=("image", None))


def test_calibrate_on_empty_batches_names_the_loader() -> None:
    net = _cnn_net()
    with pytest.raises(ValueError, match=r"loader yielded only empty batches"):
        net.calibrate([torch.rand(0, 1, 28, 28)])
    assert not net.is_calibrated and net.input_spec is None


@pytest.mark.parametrize("value", [10**400, -(10**5000)], ids=["1e400", "-1e5000"])
def test_huge_integer_threshold_is_a_value_error(value: int) -> None:
    net = _cnn_net()
    with pytest.raises(
        ValueError, match=r"value must be a finite threshold.*too large for a float"
    ):
        net.set_threshold(value)
    assert not net.is_calibrated


def test_nan_pixels_the_model_never_reads_are_caught() -> None:
    # a stride-2 convolution on 8x8 never reads the last row and column
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Flatten(), nn.Linear(2 * 3 * 3, 3))
    net = RejectHead.wrap(model, k=2).eval()
    net.calibrate([torch.rand(4, 1, 8, 8)])
    x8 = torch.rand(4, 1, 8, 8)
    x8[1, 0, -1, :] = float("nan")
    x8[1, 0, :, -1] = float("nan")
    assert torch.isfinite(net(x8)).all(), "the model really never reads those pixels"
    with pytest.raises(
        ValueError, match=r"x holds NaN or infinite values for 1 of 4 sample\(s\) \(rows 1\)"
    ):
        net.predict(x8)
    with pytest.raises(ValueError, match=r"finite inputs"):
        net.ood_score(x8)
    with pytest.raises(ValueError, match=r"loader holds NaN.*rows 5"):
        net.calibrate([torch.rand(4, 1, 8, 8), x8])
    labels, score, is_ood = net.deployable()(x8)
    assert is_ood.tolist()[1] and bool(score[1].isnan()) and int(labels[1]) == -1


def test_check_input_against_spec_accepts_wildcards() -> None:
    spec = InputSpec((3, None, None), torch.float32)
    check_input_against_spec(torch.zeros(2, 3, 5, 9), spec)
    with pytest.raises(ValueError, match=r"\(N, 3, \*, \*\)"):
        check_input_against_spec(torch.zeros(2, 1, 5, 9), spec)


def test_model_input_checks_form_rank_and_dtype_before_any_spec() -> None:
    rule = ModelInput(ndim=4, channels=1, dtype=torch.float32)
    rule.check(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"x must be 4-D \(batch, channels, \.\.\.\), got shape"):
        rule.check(torch.zeros(2, 8, 8))
    with pytest.raises(TypeError, match="x has dtype float64 but the model expects float32"):
        rule.check(torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="x must be a torch.Tensor batch or a dict"):
        rule.check([1.0, 2.0])
    with pytest.raises(ValueError, match="x holds no inputs"):
        rule.check({})
    with pytest.raises(ValueError, match="disagree on the batch size"):
        rule.check({"a": torch.zeros(2, 3), "b": torch.zeros(3, 3)})
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(TypeError, match="int64"):
        ModelInput(dtype=torch.float32).check(ids)
    ModelInput(dtype=torch.float32, takes_integers=True).check(ids)  # token ids


def test_model_input_matches_the_recorded_spec_only_when_asked() -> None:
    rule = ModelInput(spec=InputSpec((1, 8, 8), torch.float32))
    wrong_size = torch.zeros(2, 1, 9, 9)
    rule.check(wrong_size, match_spec=False)  # forward: rank and dtype only
    with pytest.raises(ValueError, match="net.input_spec"):
        rule.check(wrong_size)
    with pytest.raises(TypeError, match="one tensor of shape"):
        rule.check({"x": wrong_size})
    assert rule.without_spec().spec is None
    assert ModelInput().without_spec() == ModelInput()
    named = ModelInput(spec=NamedInputSpec.of({"ids": torch.zeros(2, 4, dtype=torch.long)}))
    with pytest.raises(TypeError, match="dict of named tensors"):
        named.check(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="missing"):
        named.check({"other": torch.zeros(2, 4, dtype=torch.long)})
