"""Scale features on one CPU process: data sharding rules, SyncBatchNorm swapping,
channels_last, the sync-free non-finite check and ``set_epoch``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset, WeightedRandomSampler

from rejectnet import RejectHead, SelfSupervisedOODFinetuner, train_classifier
from rejectnet.finetune.checkpoint import CURRENT, read_checkpoint
from rejectnet.finetune.distributed import (
    BatchShard,
    DistContext,
    RowShard,
    SyncBatchNormSwap,
    shard_in_loader,
    shard_outlier_loader,
)
from rejectnet.finetune.run import Run
from rejectnet.finetune.streams import OutlierStream
from tests.finetune.helpers import DropoutCNN, in_distribution, loaders, outliers

RANK1 = DistContext(rank=1, world_size=2)


def _net() -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(DropoutCNN(), k=2)


def _collate(batch: list[Any]) -> Any:
    return torch.utils.data.default_collate(batch)


# ---------------------------------------------------------------- sharding rules
def test_default_dataloader_is_recreated_with_a_distributed_sampler() -> None:
    ds = in_distribution(20)
    for shuffle in (True, False):
        user = DataLoader(ds, batch_size=3, shuffle=shuffle, collate_fn=_collate, drop_last=True)
        mine, msg = shard_in_loader(user, RANK1, seed=7)
        assert isinstance(mine, DataLoader) and mine is not user
        sampler = mine.sampler
        assert isinstance(sampler, DistributedSampler)
        assert (sampler.shuffle, sampler.seed, sampler.rank, sampler.num_replicas) == (
            shuffle,
            7,
            1,
            2,
        )
        assert mine.batch_size == 3 and mine.drop_last and mine.collate_fn is _collate
        assert "DistributedSampler" in msg and f"shuffle={shuffle}" in msg
        assert len(mine) == 10 // 3
    ordered, _ = shard_in_loader(DataLoader(ds, batch_size=4), RANK1, seed=0)
    assert list(ordered.sampler) == list(range(1, 20, 2))  # type: ignore[attr-defined]


def test_loaders_that_cannot_be_split_or_are_split_already() -> None:
    ds = in_distribution(20)
    own = DataLoader(ds, batch_size=4, sampler=DistributedSampler(ds, num_replicas=2, rank=1))
    assert shard_in_loader(own, RANK1, seed=0)[0] is own
    weighted = DataLoader(ds, batch_size=4, sampler=WeightedRandomSampler([1.0] * 20, 20))
    with pytest.raises(ValueError, match="DistributedSampler"):
        shard_in_loader(weighted, RANK1, seed=0)
    # outliers are unlabeled: such a loader is split row-wise instead
    rows, msg = shard_outlier_loader(weighted, RANK1, seed=0)
    assert isinstance(rows, RowShard) and "row-wise" in msg
    single = DistContext()
    assert shard_in_loader(weighted, single, seed=0) == (weighted, "")


def test_lists_are_split_batch_wise_and_outliers_row_wise() -> None:
    batches = [(torch.full((4, 1), float(i)), torch.zeros(4, dtype=torch.long)) for i in range(5)]
    mine, msg = shard_in_loader(batches, RANK1, seed=0)
    assert isinstance(mine, BatchShard) and len(mine) == 2 and "last 1 dropped" in msg
    assert [float(b[0][0, 0]) for b in mine] == [1.0, 3.0]
    with pytest.raises(ValueError, match="at least one batch"):
        shard_in_loader(batches[:1], RANK1, seed=0)
    out, _ = shard_outlier_loader([torch.arange(6.0).view(6, 1)], RANK1, seed=0)
    assert [x.flatten().tolist() for x in out] == [[1.0, 3.0, 5.0]]
    default, msg = shard_outlier_loader(DataLoader(outliers(10), batch_size=3), RANK1, seed=0)
    assert isinstance(default.sampler, DistributedSampler) and "disjoint" in msg  # type: ignore[attr-defined]


def test_outlier_stream_of_empty_batches_fails_instead_of_looping() -> None:
    stream = OutlierStream(RowShard([torch.zeros(1, 2)], rank=1, world_size=2))
    with pytest.raises(ValueError, match="only empty batches"):
        stream.take(3)


def test_set_epoch_is_called_every_epoch_and_outlier_pass() -> None:
    calls: dict[str, list[int]] = {"in": [], "out": []}

    class Spy(DistributedSampler[Any]):
        def __init__(self, ds: Any, key: str) -> None:
            super().__init__(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
            self.key = key

        def set_epoch(self, epoch: int) -> None:
            calls[self.key].append(epoch)
            super().set_epoch(epoch)

    ds_in, ds_out = in_distribution(32), outliers(100)
    in_loader = DataLoader(ds_in, batch_size=16, sampler=Spy(ds_in, "in"))
    out_loader = DataLoader(ds_out, batch_size=20, sampler=Spy(ds_out, "out"))
    SelfSupervisedOODFinetuner(_net(), epochs=3, progress=False).fit(in_loader, out_loader)
    assert calls["in"] == [0, 1, 2]
    # 3 epochs x 2 steps x 80 outliers = 480 = 4.8 passes over 100 outliers
    assert calls["out"] == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- SyncBatchNorm
def test_sync_batchnorm_swap_shares_tensors_and_reverts() -> None:
    model = DropoutCNN()
    bn = model.bn
    swap = SyncBatchNormSwap()
    assert swap.convert(model) == 1
    assert isinstance(model.bn, nn.SyncBatchNorm) and model.bn.weight is bn.weight
    model.bn.running_mean.add_(1.0)
    swap.revert()
    assert model.bn is bn and type(bn) is nn.BatchNorm2d
    assert torch.equal(bn.running_mean, torch.ones(4))


def test_sync_batchnorm_is_a_no_op_in_one_process() -> None:
    net = _net()
    SelfSupervisedOODFinetuner(net, epochs=1, progress=False, sync_batchnorm=True).fit(*loaders())
    assert type(net.model.bn) is nn.BatchNorm2d
    with pytest.raises(TypeError, match="sync_batchnorm"):
        SelfSupervisedOODFinetuner(_net(), sync_batchnorm="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- channels_last
def test_channels_last_converts_model_and_inputs() -> None:
    net = _net()
    reference = SelfSupervisedOODFinetuner(copy.deepcopy(net), epochs=1, progress=False)
    ref_loss = reference.fit(*loaders())[0].loss
    seen: list[bool] = []
    net.model.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    hist = SelfSupervisedOODFinetuner(net, epochs=1, progress=False, channels_last=True).fit(
        *loaders()
    )
    assert net.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(seen[1:]) and len(seen) == 7  # the validation probe, then 6 steps
    # the same training in another memory format: the same loss up to float reassociation
    assert hist[0].loss == pytest.approx(ref_loss, rel=1e-4)


# ---------------------------------------------------------------- non-finite loss
def _nan_loader() -> DataLoader[Any]:
    ds = in_distribution()
    x = ds.tensors[0].clone()
    x[40] = float("nan")  # in batch 3 (samples 32..47), unshuffled
    return DataLoader(TensorDataset(x, ds.tensors[1]), batch_size=16)


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the sync-free check of CUDA and distributed runs on the CPU."""
    monkeypatch.setattr(Run, "defers_loss_check", lambda self: True)


@pytest.mark.usefixtures("deferred")
def test_deferred_nan_check_stops_at_the_next_checkpoint(tmp_path: Path) -> None:
    ft = SelfSupervisedOODFinetuner(
        _net(), epochs=1, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1
    )
    with pytest.raises(FloatingPointError, match=r"at step 3 \(epoch 1\); noticed at step 3"):
        ft.fit(_nan_loader(), loaders()[1])
    state = read_checkpoint(tmp_path / CURRENT)
    assert state["step"] == 2
    weights = {n: t for n, t in state["model"].items() if n != "threshold"}
    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())


@pytest.mark.usefixtures("deferred")
def test_deferred_nan_check_stops_at_the_epoch_end() -> None:
    with pytest.raises(FloatingPointError, match="at step 3 .*noticed at step 6"):
        train_classifier(DropoutCNN(), _nan_loader(), epochs=2, progress=False)


def test_inferred_cuda_device_maps_to_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model on cuda:0 on every rank must not make all ranks share cuda:0."""
    from rejectnet.finetune import distributed as dist_utils

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    ctx = dist_utils.DistContext(rank=1, world_size=2, local_rank=1, backend="gloo")
    cuda0 = torch.device("cuda", 0)
    assert dist_utils.resolve_device(cuda0, ctx, explicit=False) == torch.device("cuda", 1)
    assert dist_utils.resolve_device(cuda0, ctx, explicit=True) == cuda0
    assert dist_utils.resolve_device(torch.device("cuda"), ctx) == torch.device("cuda", 1)
