"""What ``predict`` and ``fit`` do with awkward inputs (issue 12's probe, items 6-10).

``predict`` in training mode changes no batch-norm statistic and decides like eval mode;
NaN pixels are refused even where the model never reads them (``deployable`` marks the
row OOD instead); a wrong dtype, an overflowing threshold, an empty calibration set or a
missing channel dimension are named; ``fit`` names a bad label in a later batch, a bare
tensor given as the outlier loader and a one-shot generator, before any weight changes.

The file/checkpoint items (1-5, 8's metadata part) are in ``test_model_files.py``,
``test_checkpoint_contents.py`` and ``test_resume_validation.py``; the unit-level tests of
each behaviour are in ``tests/test_input_spec.py`` and ``tests/test_prediction_modes.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from tests.conftest import ReliabilityCounts


class BnCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _calibrated() -> RejectHead:
    torch.manual_seed(0)
    net = RejectHead.wrap(BnCnn(), k=2)
    net.calibrate([torch.randn(64, 1, 8, 8)], coverage=0.9)
    return net


def test_predict_in_training_mode_changes_nothing(reliability: ReliabilityCounts) -> None:
    net = _calibrated().train()
    stats = net.model.bn.running_mean.clone()
    x = torch.randn(16, 1, 8, 8)
    in_train = net.predict(x)
    alone = torch.cat([net.predict(x[i : i + 1]).labels for i in range(16)])
    reliability.case(2)
    assert torch.equal(net.model.bn.running_mean, stats)  # batch norm untouched
    assert net.training and net.model.bn.training  # the caller's mode is back
    assert torch.equal(in_train.labels, net.eval().predict(x).labels)
    assert torch.equal(in_train.labels, alone)  # no dependence on the rest of the batch


def test_nan_pixels_the_model_never_reads(reliability: ReliabilityCounts) -> None:
    net = _calibrated().eval()
    x = torch.randn(4, 1, 8, 8)
    x[1, :, -1, :] = float("nan")  # the stride-2 conv on 8x8 never reads the last row
    x[1, :, :, -1] = float("nan")
    reliability.case(2)
    with pytest.raises(ValueError, match=r"\bx\b"):
        net.predict(x)
    labels, score, is_ood = net.deployable()(x)
    assert bool(is_ood[1]) and int(labels[1]) == -1 and bool(score[1].isnan())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float64])
def test_wrong_dtype_names_x(dtype: torch.dtype, reliability: ReliabilityCounts) -> None:
    net = _calibrated().eval()
    reliability.case()
    with pytest.raises((TypeError, ValueError), match=r"\bx\b.*float32|float32.*\bx\b"):
        net.predict(torch.zeros(2, 1, 8, 8, dtype=dtype))


def test_overflowing_threshold_and_empty_calibration(
    reliability: ReliabilityCounts,
) -> None:
    net = _calibrated()
    before = float(net.threshold)
    reliability.case(2)
    with pytest.raises(ValueError):
        net.set_threshold(10**400)
    assert float(net.threshold) == before
    with pytest.raises(ValueError, match="loader"):
        net.calibrate([torch.zeros(0, 1, 8, 8)])


def test_missing_channel_and_bare_tensor_outliers(reliability: ReliabilityCounts) -> None:
    net = _calibrated().eval()
    reliability.case(2)
    with pytest.raises(ValueError, match=r"unsqueeze\(1\)"):
        net.predict(torch.rand(4, 8, 8))
    ft = SelfSupervisedOODFinetuner(net, epochs=1, progress=False)
    in_loader = [(torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,)))]
    with pytest.raises(TypeError, match="single tensor"):
        ft.fit(in_loader, torch.rand(40, 1, 8, 8))


def test_bad_label_later_and_one_shot_generator(reliability: ReliabilityCounts) -> None:
    net = _calibrated()
    weights = {k: v.clone() for k, v in net.state_dict().items() if k != "threshold"}
    x = torch.randn(8, 1, 8, 8)
    ft = SelfSupervisedOODFinetuner(net, epochs=1, progress=False)
    reliability.case(2)
    with pytest.raises(ValueError, match="batch 1"):
        ft.fit([(x, torch.zeros(8, dtype=torch.long)), (x, torch.full((8,), 9))], [x * 3])
    with pytest.raises(TypeError, match="one-shot iterator"):
        ft.fit([(x, torch.zeros(8, dtype=torch.long))], (b for b in [x * 3]))
    after = {k: v for k, v in net.state_dict().items() if k != "threshold"}
    assert all(torch.equal(weights[k], after[k]) for k in weights)
