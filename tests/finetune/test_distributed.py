"""Sharding data across ranks, SyncBatchNorm swapping, set_epoch, a rank's device (one process)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from rejectnet.finetune.distributed import (
    BatchShard,
    DistContext,
    RowShard,
    SyncBatchNormSwap,
    shard_in_loader,
    shard_outlier_loader,
)
from tests.finetune.helpers import DropoutCNN, in_distribution, loaders, outliers

RANK1 = DistContext(rank=1, world_size=2)


def _net(k: int = 2) -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(DropoutCNN(), k=k)


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


def test_world_size_without_rank_trains_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A launcher's main process (WORLD_SIZE set, no RANK yet) must not try to join a group."""
    from rejectnet.finetune import distributed as dist_utils

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29599")
    monkeypatch.delenv("RANK", raising=False)
    ctx = dist_utils.context(torch.device("cpu"))
    assert (ctx.rank, ctx.world_size, ctx.enabled) == (0, 1, False)
    hist = SelfSupervisedOODFinetuner(_net(k=3), epochs=1, progress=False).fit(*loaders())
    assert hist[0].steps == 6
