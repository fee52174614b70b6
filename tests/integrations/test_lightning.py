"""RejectNetModule: rejectnet's stage two inside a real lightning.Trainer (CPU)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("lightning")

import lightning

from rejectnet import RejectHead, metrics
from rejectnet.finetune.step import StepBatch, forward_and_loss
from rejectnet.integrations import OutlierPairs
from rejectnet.integrations.lightning import RejectNetModule
from rejectnet.losses import SelfSupervisedRejectLoss

D, C = 6, 3


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, C)
    )


def _data(
    seed: int = 0, n: int = 96
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Three Gaussian blobs as 12 labeled batches, and outliers far from all of them."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n,), generator=g)
    centers = 3.0 * torch.eye(C, D)
    x = centers[y] + 0.3 * torch.randn(n, D, generator=g)
    outliers = -3.0 + 0.3 * torch.randn(5 * n, D, generator=g)
    return [(x[i : i + 8], y[i : i + 8]) for i in range(0, n, 8)], outliers


def _trainer(**kw: Any) -> lightning.Trainer:
    opts: dict[str, Any] = dict(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    opts.update(kw)
    return lightning.Trainer(**opts)


def _fit(module: RejectNetModule, pairs: OutlierPairs, **kw: Any) -> lightning.Trainer:
    trainer = _trainer(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and loggers
        trainer.fit(module, pairs)
    return trainer


def test_one_epoch_learns_to_reject_outliers() -> None:
    lightning.seed_everything(0, verbose=False)
    batches, outliers = _data()
    test_in = torch.cat([x for x, _ in _data(seed=1)[0]])
    test_out = _data(seed=1)[1][:96]
    module = RejectNetModule(_model(), k=2, lr=0.05)
    net = module.net
    net.eval()
    before = metrics.auroc(net.ood_score(test_in), net.ood_score(test_out))
    trainer = _fit(module, OutlierPairs(batches, [outliers[i : i + 40] for i in range(0, 480, 40)]))
    assert trainer.global_step == len(batches)  # one optimizer step per in-distribution batch
    net.eval()
    after = metrics.auroc(net.ood_score(test_in), net.ood_score(test_out))
    assert after > 0.95 and after > before + 0.2, (before, after)


def test_training_step_is_one_forward_and_the_public_loss() -> None:
    batches, outliers = _data()
    module = RejectNetModule(_model(), k=2, lam=3.0)
    x_in, y = batches[0]
    x_out = outliers[:40]
    module.net.train()
    torch.manual_seed(7)
    got = module.step_terms((x_in, y, x_out))
    torch.manual_seed(7)
    logits = module.net(torch.cat([x_in, x_out]))
    want = SelfSupervisedRejectLoss(C, lam=3.0)(logits[:8], y, logits[8:])
    # BatchNorm in train mode: one forward over the concatenation is not the same as two
    torch.manual_seed(7)
    separate = SelfSupervisedRejectLoss(C, lam=3.0)(module.net(x_in), y, module.net(x_out))
    assert torch.allclose(got.loss, want, atol=1e-6)
    assert not torch.allclose(got.loss, separate, atol=1e-3)


def test_step_terms_is_the_finetuners_step_function() -> None:
    """Lightning and the fine-tuner share one step: forward_and_loss, bit for bit."""
    batches, outliers = _data()
    module = RejectNetModule(_model(), k=2, lam=3.0)
    module.net.train()
    x_in, y = batches[0]
    batch = StepBatch(x_in, y, outliers[:40], 40)
    torch.manual_seed(7)
    got = module.step_terms((x_in, y, outliers[:40]))
    torch.manual_seed(7)
    want = forward_and_loss(module, module.loss, batch, device=torch.device("cpu"), amp=False)
    assert torch.equal(got.loss, want.terms.loss) and torch.equal(got.in_loss, want.terms.in_loss)


class _LightningModesOnly(RejectNetModule):
    """The same module without its train-mode hooks: what Lightning 2.x alone does."""

    def on_fit_start(self) -> None:
        pass

    def on_train_epoch_start(self) -> None:
        pass


@pytest.mark.parametrize("fix", [True, False])
def test_trains_in_train_mode_even_if_the_model_was_evaluated_first(fix: bool) -> None:
    lightning.seed_everything(0, verbose=False)
    batches, outliers = _data()
    model = _model().eval()  # the user evaluated stage one first
    net = RejectHead.wrap(model, k=2)
    assert not net.training  # wrap keeps the mode: the trap
    bn = net.model[1]
    seen: list[bool] = []
    net.model[3].register_forward_pre_hook(lambda m, args: seen.append(m.training))
    stats = bn.running_mean.clone()
    module = (RejectNetModule if fix else _LightningModesOnly)(net, lr=0.05)
    _fit(module, OutlierPairs(batches, [outliers]))
    assert seen
    if fix:
        assert all(seen)  # dropout was active at every training step
        assert not torch.equal(bn.running_mean, stats)  # batch-norm statistics were updated
        assert not any(m.training for m in net.modules())  # the user's modes are back
    else:  # documents the trap this module exists for, in the installed Lightning
        assert not any(seen)
        assert torch.equal(bn.running_mean, stats)


def test_mixed_modes_are_restored_per_module() -> None:
    batches, outliers = _data()
    net = RejectHead.wrap(_model(), k=2)
    net.train()
    net.model[1].eval()  # e.g. a user's frozen batch norm
    modes = {name: m.training for name, m in net.named_modules()}
    _fit(RejectNetModule(net), OutlierPairs(batches, [outliers]))
    assert {name: m.training for name, m in net.named_modules()} == modes


def test_calibrates_at_the_end_of_fit() -> None:
    lightning.seed_everything(0, verbose=False)
    batches, outliers = _data()
    val = [x for x, _ in _data(seed=3)[0]]
    module = RejectNetModule(_model(), k=2, calibration_loader=val, coverage=0.9)
    assert not module.net.is_calibrated
    _fit(module, OutlierPairs(batches, [outliers]))
    assert module.net.is_calibrated
    threshold = float(module.net.threshold)
    s = module.net.eval().ood_score(torch.cat(val))
    assert float((s <= threshold).float().mean()) >= 0.9
    assert module.net.calibrate(val, coverage=0.9).value == threshold


def test_precision_and_accumulation_and_validation() -> None:
    lightning.seed_everything(0, verbose=False)
    batches, outliers = _data()
    module = RejectNetModule(_model(), k=2)
    trainer = _fit(
        module,
        OutlierPairs(batches, [outliers]),
        precision="bf16-mixed",
        accumulate_grad_batches=2,
        max_epochs=2,
    )
    assert trainer.global_step == 2 * len(batches) // 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    for p in module.net.parameters():
        assert p.dtype == torch.float32


def test_validation_step_logs_accuracy() -> None:
    lightning.seed_everything(0, verbose=False)
    batches, outliers = _data()
    module = RejectNetModule(_model(), k=2, lr=0.05)
    trainer = _trainer(max_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = (torch.cat(t) for t in zip(*_data(seed=4)[0], strict=True))
        val = DataLoader(TensorDataset(x, y), batch_size=32)
        trainer.fit(module, OutlierPairs(batches, [outliers]), val_dataloaders=val)
    assert float(trainer.callback_metrics["val/acc"]) > 0.9


def test_custom_optimizer_factory() -> None:
    batches, outliers = _data()
    made: list[torch.optim.Optimizer] = []

    def factory(params: Any) -> torch.optim.Optimizer:
        made.append(torch.optim.AdamW(params, lr=1e-3))
        return made[-1]

    module = RejectNetModule(_model(), k=2, optimizer=factory)
    _fit(module, OutlierPairs(batches, [outliers]))
    assert len(made) == 1 and made[0].state  # the factory's optimizer took the steps


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(net="model"), TypeError, "net must be a torch.nn.Module"),
        (dict(net=None), TypeError, "net must be"),
        (dict(), TypeError, "pass k="),
        (dict(k=2, lam=-1.0), ValueError, "lam"),
        (dict(k=2, lr=0.0), ValueError, "lr must be"),
        (dict(k=2, lr="0.1"), TypeError, "lr must be"),
        (dict(k=2, optimizer="adam"), TypeError, "optimizer must be"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    net = kwargs.pop("net", _model())
    with pytest.raises(error, match=match):
        RejectNetModule(net, **kwargs)


def test_k_for_a_wrapped_net_must_agree() -> None:
    net = RejectHead.wrap(_model(), k=2)
    assert RejectNetModule(net, k=2).net is net
    with pytest.raises(ValueError, match="already wrapped with k=2"):
        RejectNetModule(net, k=3)
