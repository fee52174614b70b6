"""The shared loop through the public trainers: single forward, resume, bad input."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rejectnet import (
    OutlierExposureFinetuner,
    RejectHead,
    SelfSupervisedOODFinetuner,
    train_classifier,
)
from rejectnet.finetune import Callback, FitView, StopTraining
from rejectnet.finetune.checkpoint import CURRENT, read_checkpoint
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


class Recorder(Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, view: FitView, step: int) -> None:
        self.steps.append(step)


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, view: FitView, step: int) -> None:
        if step == self.step:
            raise StopTraining


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


@pytest.mark.parametrize("stop_step", [4, 6, 9])
def test_resume_equals_uninterrupted(tmp_path: Path, stop_step: int) -> None:
    full = _net()
    SelfSupervisedOODFinetuner(full, epochs=2, progress=False, seed=3).fit(*loaders())

    net = _net()
    ckpt = tmp_path / "ckpt"
    kwargs = dict(epochs=2, progress=False, seed=3, checkpoint_dir=ckpt, checkpoint_every=2)
    ft = SelfSupervisedOODFinetuner(net, callbacks=[StopAt(stop_step)], **kwargs)  # type: ignore[arg-type]
    partial = ft.fit(*loaders())
    assert ft.step == stop_step and len(partial) == (stop_step - 1) // 6
    assert not _same(_weights(net), _weights(full))

    resumed = _net(seed=99)  # different initial weights: everything must come from the file
    rec = Recorder()
    hist = SelfSupervisedOODFinetuner(resumed, callbacks=[rec], **kwargs).fit(  # type: ignore[arg-type]
        *loaders(), resume=True
    )
    assert rec.steps == list(range(stop_step + 1, 13))
    assert _same(_weights(resumed), _weights(full))
    assert len(hist) == 2


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    net = _net()
    hist = SelfSupervisedOODFinetuner(net, epochs=1, progress=False, checkpoint_dir=tmp_path).fit(
        *loaders(), resume=True
    )
    assert len(hist) == 1 and (tmp_path / CURRENT).exists()
    state = read_checkpoint(tmp_path / CURRENT)
    assert state["epoch"] == 1 and state["step"] == 6


def test_resume_needs_checkpoint_dir() -> None:
    with pytest.raises(ValueError, match="checkpoint_dir"):
        SelfSupervisedOODFinetuner(_net(), epochs=1, progress=False).fit(*loaders(), resume=True)


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path: Path) -> None:
    ds = in_distribution()
    x = ds.tensors[0].clone()
    x[40] = float("nan")  # in batch 3 (samples 32..47), unshuffled
    in_loader = DataLoader(TensorDataset(x, ds.tensors[1]), batch_size=16)
    net = _net()
    ft = SelfSupervisedOODFinetuner(
        net, epochs=1, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1
    )
    with pytest.raises(FloatingPointError, match="step 3"):
        ft.fit(in_loader, loaders()[1])
    state = read_checkpoint(tmp_path / CURRENT)
    assert state["step"] == 2
    weights = {n: t for n, t in state["model"].items() if n != "threshold"}
    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())


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


def test_bf16_autocast_on_cpu() -> None:
    net = _net()
    before = _weights(net)
    fp32 = SelfSupervisedOODFinetuner(copy.deepcopy(net), epochs=1, progress=False)
    ref_loss = fp32.fit(*loaders())[0].loss
    hist = SelfSupervisedOODFinetuner(net, epochs=1, progress=False, amp=True).fit(*loaders())
    # bfloat16 keeps ~3 significant digits: the same run, the same loss to a few percent
    assert hist[0].loss == pytest.approx(ref_loss, rel=0.05)
    assert not _same(before, _weights(net))
    with pytest.raises(ValueError, match="CUDA"):
        SelfSupervisedOODFinetuner(_net(), epochs=1, progress=False, amp="fp16").fit(*loaders())


# ---------------------------------------------------------------- bad input, nothing changed
def _bad_fit(
    net: RejectHead,
    in_loader: object,
    out_loader: object,
    match: str,
    exc: type[Exception] = ValueError,
) -> None:
    before = _weights(net)
    with pytest.raises(exc, match=match):
        SelfSupervisedOODFinetuner(net, epochs=1, progress=False).fit(in_loader, out_loader)  # type: ignore[arg-type]
    assert _same(before, _weights(net)), "weights must be unchanged after rejected input"


def test_empty_loaders() -> None:
    in_loader, out_loader = loaders()
    _bad_fit(_net(), [], out_loader, "in_loader is empty")
    _bad_fit(_net(), in_loader, [], "outlier_loader is empty")


def test_shape_mismatch_names_both() -> None:
    in_loader, _ = loaders()
    big = DataLoader(TensorDataset(torch.randn(20, 1, 10, 10)), batch_size=5)
    _bad_fit(_net(), in_loader, big, r"\(1, 8, 8\).*\(1, 10, 10\)")


def test_labels_out_of_range() -> None:
    ds = in_distribution()
    bad = DataLoader(TensorDataset(ds.tensors[0], ds.tensors[1] + 5), batch_size=16)
    _bad_fit(_net(), bad, loaders()[1], r"labels in \[5, 7\].*C=3")
    floats = DataLoader(TensorDataset(ds.tensors[0], ds.tensors[1].float()), batch_size=16)
    _bad_fit(_net(), floats, loaders()[1], "integer tensor")
    unlabeled = DataLoader(TensorDataset(ds.tensors[0]), batch_size=16)
    _bad_fit(_net(), unlabeled, loaders()[1], "must carry labels")


def test_model_whose_logits_are_not_c_plus_k_wide() -> None:
    class Sliced(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(72, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).flatten(1))[:, :2]

    net = RejectHead.wrap(Sliced(), k=2)
    _bad_fit(net, loaders()[0], loaders()[1], "C \\+ k", RuntimeError)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": -1.0}, "lam must be a finite number >= 0"),
        ({"epochs": 0}, "epochs must be a positive int"),
        ({"outlier_ratio": 0}, "outlier_ratio must be a finite number > 0"),
        ({"lr": -0.1}, "lr must be a finite number > 0"),
        ({"amp": "fp8"}, "amp must be"),
        ({"grad_clip": 0.0}, "grad_clip must be a finite number > 0"),
        ({"accumulate_grad_batches": 0}, "accumulate_grad_batches must be a positive int"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SelfSupervisedOODFinetuner(_net(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": "3"}, "epochs must be a positive int"),
        ({"lr": "x"}, "lr must be a number"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"progress": 1}, "progress must be True or False"),
        ({"epoch": 3}, r"unexpected keyword argument\(s\) \['epoch'\]; valid options"),
    ],
)
def test_wrong_types_are_type_errors(kwargs: dict[str, object], match: str) -> None:
    """One rule: a wrong type is a TypeError, a wrong value of the right type a ValueError."""
    with pytest.raises(TypeError, match=match):
        SelfSupervisedOODFinetuner(_net(), **kwargs)  # type: ignore[arg-type]
