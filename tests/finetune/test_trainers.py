"""The shared loop through the public trainers: single forward, resume, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from rejectnet import (
    OutlierExposureFinetuner,
    RejectHead,
    SelfSupervisedOODFinetuner,
    train_classifier,
)
from tests.finetune.helpers import DropoutCNN, in_distribution, loaders, outliers


def _net(seed: int = 0, k: int = 2) -> RejectHead:
    torch.manual_seed(seed)
    return RejectHead.wrap(DropoutCNN(), k=k)


def _weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in m.state_dict().items()}


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality that treats NaN (the unset threshold) as equal to NaN."""
    if a.is_floating_point():
        return a.shape == b.shape and torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True)
    return torch.equal(a, b)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(_equal(a[n], b[n]) for n in a)


def test_one_forward_per_step_over_the_concatenated_batch() -> None:
    net = _net()
    sizes: list[int] = []
    net.model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    in_loader, out_loader = loaders(batch=16, out_batch=7)
    ft = SelfSupervisedOODFinetuner(net, epochs=1, progress=False)
    sizes.clear()
    ft.fit(in_loader, out_loader)
    # 96 samples / 16 = 6 steps, each ONE forward of 16 + 80 inputs (outlier ratio 5)
    # (validation runs one no-grad probe of 2 samples before training)
    assert sizes == [2] + [96] * 6


def test_batchnorm_sees_in_and_outliers() -> None:
    net = _net()
    in_loader, out_loader = loaders()
    means: list[torch.Tensor] = []
    net.model.bn.register_forward_hook(lambda m, a, o: means.append(a[0].mean((0, 2, 3))))
    ft = SelfSupervisedOODFinetuner(net, epochs=1, progress=False, lr=1e-9)
    ft.fit(in_loader, out_loader)
    # the statistics of the mixed batch differ from those of the in-batch alone
    x_in, _ = next(iter(in_loader))
    with torch.no_grad():
        in_only = net.model.conv1(x_in).mean((0, 2, 3))
    assert not torch.allclose(means[-1], in_only, atol=1e-3)


def test_learns_to_reject_outliers() -> None:
    torch.manual_seed(0)
    model = DropoutCNN()
    in_loader, out_loader = loaders()
    train_classifier(model, in_loader, epochs=6, lr=0.05, progress=False)
    net = RejectHead.wrap(model, k=2)
    hist = SelfSupervisedOODFinetuner(net, epochs=6, progress=False).fit(
        in_loader, out_loader, val_loader=DataLoader(in_distribution(seed=5), batch_size=32)
    )
    assert hist[-1].out_on_reject is not None and hist[-1].out_on_reject > 0.85
    assert hist[-1].val_accuracy is not None and hist[-1].val_accuracy > 0.9
    net.eval()
    s_in = net.ood_score(in_distribution(seed=7).tensors[0])
    s_out = net.ood_score(outliers(seed=8).tensors[0])
    assert float(s_out.median()) > float(s_in.max())
    cols = hist.to_dict()
    assert len(cols["loss"]) == 6 and cols["epoch"] == [1, 2, 3, 4, 5, 6]


def test_unwrapped_model_with_k_is_wrapped() -> None:
    torch.manual_seed(0)
    model = DropoutCNN()
    ft = SelfSupervisedOODFinetuner(model, k=3, epochs=1, progress=False)
    assert isinstance(ft.model, RejectHead) and ft.model.k == 3
    assert isinstance(model.fc, nn.Linear), "the caller's model is not modified"
    with pytest.raises(TypeError, match="pass k="):
        SelfSupervisedOODFinetuner(model)
    with pytest.raises(ValueError, match="already wrapped with k=3"):
        SelfSupervisedOODFinetuner(ft.model, k=5)


def test_same_seed_same_weights() -> None:
    results = []
    for _ in range(2):
        net = _net()
        SelfSupervisedOODFinetuner(net, epochs=2, progress=False, seed=11).fit(*loaders())
        results.append(_weights(net))
    assert _same(*results)
    net = _net()
    SelfSupervisedOODFinetuner(net, epochs=2, progress=False, seed=12).fit(*loaders())
    assert not _same(results[0], _weights(net))


def test_outlier_exposure_and_stage_one() -> None:
    torch.manual_seed(0)
    model = DropoutCNN()
    in_loader, out_loader = loaders()
    val = DataLoader(in_distribution(seed=5), batch_size=32)
    h1 = train_classifier(model, in_loader, epochs=6, lr=0.05, progress=False, val_loader=val)
    assert h1[-1].in_loss < 0.5 * h1[0].in_loss and h1[-1].out_loss is None
    assert h1[-1].val_accuracy is not None and h1[-1].val_accuracy > 0.9
    before = copy.deepcopy(model)
    h2 = OutlierExposureFinetuner(model, epochs=3, lr=0.05, progress=False).fit(
        in_loader, out_loader
    )
    assert h2[-1].out_loss is not None and h2[-1].out_on_reject is None
    assert h2[-1].out_loss < h2[0].out_loss
    assert not _same(_weights(model), _weights(before))
    with pytest.raises(TypeError, match="plain C-class"):
        OutlierExposureFinetuner(_net())
    with pytest.raises(TypeError, match="no k"):
        OutlierExposureFinetuner(model, k=3)
