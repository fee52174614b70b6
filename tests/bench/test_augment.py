"""Augmentation and normalisation for natural images: deterministic, resumable, in the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from rejectnet import RejectHead
from rejectnet.bench.augment import AugmentCollate, Normalized, channel_stats, crop_flip
from rejectnet.bench.networks import CifarResNet
from rejectnet.bench.presets import PRESETS
from rejectnet.bench.runner import _train_loader
from rejectnet.finetune import Callback, FitView, StopTraining, train_classifier


def test_crop_flip_is_random_per_image_and_leaves_the_input_alone() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    before = x.clone()
    torch.manual_seed(0)
    a = crop_flip(x)
    torch.manual_seed(0)
    b = crop_flip(x)
    assert torch.equal(a, b) and torch.equal(x, before)
    assert a.shape == x.shape and not torch.equal(a, x)
    outs = {crop_flip(x)[0].sum().item() for _ in range(20)}
    assert len(outs) > 3  # different crops (zero borders) and flips
    plain = crop_flip(x, pad=0, flip=False)
    assert torch.equal(plain, x) and plain is not x


def test_crop_keeps_a_window_of_the_padded_image() -> None:
    x = torch.ones(50, 1, 8, 8)
    out = crop_flip(x, pad=4, flip=False)
    zeros = (out == 0).float().mean().item()
    assert 0.1 < zeros < 0.7  # zero padding enters the crops
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_collate_augments_images_only() -> None:
    samples = [(torch.ones(3, 8, 8), torch.tensor(i)) for i in range(4)]
    x, y = AugmentCollate(4, True)(samples)
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 1, 2, 3]
    only = AugmentCollate(0, False)([torch.ones(3, 4, 4)] * 2)
    assert torch.equal(only, torch.ones(2, 3, 4, 4))


def test_normalized_model_is_wrapped_and_normalises() -> None:
    x = torch.rand(64, 3, 8, 8) * 0.5 + 0.2
    mean, std = channel_stats(x)
    net = Normalized(CifarResNet(4, 3, depth=8, width=4), mean, std)
    head = RejectHead.wrap(net, k=2)
    assert head(x[:2]).shape == (2, 6)
    seen: list[torch.Tensor] = []
    net.net.stem.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    net(x)
    assert abs(seen[0].mean().item()) < 1e-4 and abs(seen[0].std().item() - 1) < 0.05
    assert {"mean", "std"} <= set(net.state_dict())
    with pytest.raises(ValueError, match="std > 0"):
        Normalized(nn.Identity(), [0.5], [0.0])


class _StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, view: FitView, step: int) -> None:
        if step == self.step:
            raise StopTraining


def _net() -> nn.Module:
    torch.manual_seed(0)
    return CifarResNet(3, 3, depth=8, width=4)


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.rand(48, 3, 8, 8, generator=g), torch.arange(48) % 3)


@pytest.mark.parametrize("stop", [3, 7])
def test_augmented_training_is_deterministic_and_resumes_exactly(tmp_path: Path, stop: int) -> None:
    sched = PRESETS["smoke"].with_overrides({"augment": True})
    opts = dict(epochs=2, lr=0.05, seed=5, progress=False)
    full = []
    for _ in range(2):
        net = _net()
        train_classifier(net, _train_loader(_data(), 8, 5, sched), **opts)  # type: ignore[arg-type]
        full.append({k: v.clone() for k, v in net.state_dict().items()})
    assert all(torch.equal(full[0][k], full[1][k]) for k in full[0])
    plain = _net()
    train_classifier(plain, _train_loader(_data(), 8, 5, PRESETS["smoke"]), **opts)  # type: ignore[arg-type]
    assert not torch.equal(plain.state_dict()["fc.weight"], full[0]["fc.weight"])

    ckpt = dict(checkpoint_dir=tmp_path / "ck", checkpoint_every=1)
    net = _net()
    train_classifier(
        net, _train_loader(_data(), 8, 5, sched), callbacks=[_StopAt(stop)], **opts, **ckpt
    )  # type: ignore[arg-type]
    resumed = CifarResNet(3, 3, depth=8, width=4)
    train_classifier(resumed, _train_loader(_data(), 8, 5, sched), resume=True, **opts, **ckpt)  # type: ignore[arg-type]
    state = resumed.state_dict()
    assert all(torch.equal(state[k], full[0][k]) for k in state)


def test_seeded_shuffle_matches_a_seeded_loader_and_replays_epochs() -> None:
    from torch.utils.data import DataLoader

    from rejectnet.bench.augment import SeededShuffle
    from rejectnet.finetune.rng import seeded_generator

    ds = list(range(23))
    ref = DataLoader(ds, batch_size=5, shuffle=True, generator=seeded_generator(4))
    order = SeededShuffle(23, 4)
    ours = DataLoader(ds, batch_size=5, sampler=order, generator=order.generator)
    epochs = [[b.tolist() for b in ref] for _ in range(3)]
    assert [[b.tolist() for b in ours] for _ in range(3)] == epochs  # the old numbers
    order = SeededShuffle(23, 4)
    fresh = DataLoader(ds, batch_size=5, sampler=order, generator=order.generator)
    order.set_epoch(2)
    assert [b.tolist() for b in fresh] == epochs[2]  # a resume in epoch 2
