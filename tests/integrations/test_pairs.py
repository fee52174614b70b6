"""OutlierPairs: in-distribution epochs, an independent outlier stream, exact ratios."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from rejectnet.integrations import OutlierPairs


def _in(n_batches: int = 5, size: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (torch.full((size, 2), float(i)), torch.zeros(size, dtype=torch.long))
        for i in range(n_batches)
    ]


def _numbered(n: int, batch: int) -> list[torch.Tensor]:
    """Outliers whose first feature is their index 0..n-1, in batches of ``batch``."""
    rows = torch.stack([torch.arange(n, dtype=torch.float32), torch.zeros(n)], dim=1)
    return list(rows.split(batch))


def test_ratio_recuts_the_stream_exactly_and_keeps_leftovers() -> None:
    pairs = OutlierPairs(_in(5, size=4), _numbered(30, batch=7), ratio=2.5)
    steps = list(pairs)
    assert len(steps) == len(pairs) == 5
    ids = torch.cat([x_out[:, 0] for _, _, x_out in steps])
    assert [x_out.shape[0] for _, _, x_out in steps] == [10] * 5
    # one pass over the 30 outliers in order, then the restarted stream: no row skipped
    assert ids.tolist() == [float(i % 30) for i in range(50)]


def test_outlier_stream_is_independent_of_the_epochs() -> None:
    # more outliers than one epoch needs: the next epoch continues, it does not restart
    pairs = OutlierPairs(_in(2, size=2), _numbered(12, batch=4), ratio=None)
    first = torch.cat([x[:, 0] for _, _, x in pairs])
    second = torch.cat([x[:, 0] for _, _, x in pairs])
    assert first.tolist() == list(map(float, range(8)))
    assert second.tolist() == [8.0, 9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 3.0]
    assert pairs.epoch == 2 and pairs.passes == 2


def test_in_distribution_batches_pass_through_unchanged() -> None:
    batches = _in(3)
    outs = _numbered(40, batch=40)
    copies = [(x.clone(), y.clone()) for x, y in batches]
    for (x_in, y, _), (x0, y0) in zip(OutlierPairs(batches, outs), copies, strict=True):
        assert torch.equal(x_in, x0) and torch.equal(y, y0)
    assert all(torch.equal(a, b[0]) for (a, _), b in zip(batches, copies, strict=True))
    assert torch.equal(outs[0][:, 0], torch.arange(40.0))  # the caller's outliers untouched


def test_dict_batches_and_dataloaders_with_labels() -> None:
    x = torch.randn(16, 3)
    in_loader = [{"image": x[:8], "label": torch.zeros(8, dtype=torch.long)}]
    out_loader = DataLoader(TensorDataset(torch.randn(10, 3), torch.ones(10)), batch_size=3)
    ((x_in, y, x_out),) = list(OutlierPairs(in_loader, out_loader, ratio=1))
    assert torch.equal(x_in, x[:8]) and y.shape == (8,) and x_out.shape == (8, 3)


def test_outlier_labels_of_any_type_are_ignored() -> None:
    outliers = [(torch.randn(10, 2), ["not", "a", "label"] * 3 + ["!"])]
    ((_, _, x_out),) = list(OutlierPairs(_in(1, size=2), outliers, ratio=5))
    assert torch.equal(x_out, outliers[0][0])


def test_set_epoch_on_distributed_samplers() -> None:
    data = TensorDataset(torch.arange(8.0).unsqueeze(1), torch.zeros(8, dtype=torch.long))
    outs = TensorDataset(torch.arange(6.0).unsqueeze(1))
    in_s = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    out_s = DistributedSampler(outs, num_replicas=1, rank=0, shuffle=True, seed=0)
    pairs = OutlierPairs(
        DataLoader(data, batch_size=4, sampler=in_s),
        DataLoader(outs, batch_size=6, sampler=out_s),
        ratio=None,
    )
    for expected_epoch in range(3):
        list(pairs)
        assert in_s.epoch == expected_epoch
    assert out_s.epoch == pairs.passes - 1 == 5  # one outlier batch per pass, two per epoch


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((torch.randn(4, 2), []), TypeError, "in_loader must be an iterable"),
        (([], 3), TypeError, "outlier_loader must be an iterable"),
        (([], [], "5"), TypeError, "ratio must be a number"),
        (([], [], True), TypeError, "ratio must be a number"),
        (([], [], 0.0), ValueError, "ratio must be a finite number > 0"),
        (([], [], float("nan")), ValueError, "ratio must be a finite number > 0"),
    ],
)
def test_bad_arguments(args: tuple[Any, ...], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        OutlierPairs(*args)


def test_bad_batches_are_named() -> None:
    with pytest.raises(ValueError, match="in_loader batches must carry labels"):
        list(OutlierPairs([torch.randn(4, 2)], [torch.randn(20, 2)]))
    with pytest.raises(ValueError, match=r"outlier_loader inputs have \(3,\)"):
        list(OutlierPairs(_in(1), [torch.randn(20, 3)]))
    with pytest.raises(ValueError, match="outlier_loader yielded no outliers"):
        list(OutlierPairs(_in(1), [torch.randn(0, 2)]))
    with pytest.raises(ValueError, match="outlier_loader yielded no outliers"):
        list(OutlierPairs(_in(1), []))
    with pytest.raises(TypeError, match="outlier_loader batch"):
        list(OutlierPairs(_in(1), ["not a batch"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, results: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        data = TensorDataset(torch.arange(16.0).unsqueeze(1), torch.zeros(16, dtype=torch.long))
        outs = TensorDataset(torch.arange(100.0, 140.0).unsqueeze(1))
        try:
            list(OutlierPairs(DataLoader(data, batch_size=4, shuffle=True), [outs.tensors[0]]))
            results.put((rank, "no error"))
        except ValueError as exc:
            results.put((rank, str(exc)))
        pairs = OutlierPairs(
            DataLoader(data, batch_size=4, sampler=DistributedSampler(data)),
            DataLoader(outs, batch_size=8, sampler=DistributedSampler(outs)),
            ratio=2,
        )
        seen = [(x_in[:, 0].tolist(), x_out[:, 0].tolist()) for x_in, _, x_out in pairs]
        results.put((rank, seen))
    finally:
        dist.destroy_process_group()


def test_under_torch_distributed_each_rank_gets_its_own_share() -> None:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    mp.start_processes(_worker, args=(_free_port(), results), nprocs=2, start_method="spawn")
    got: dict[int, list[Any]] = {0: [], 1: []}
    for _ in range(4):
        rank, value = results.get(timeout=60)
        got[rank].append(value)
    for rank in (0, 1):
        message, seen = got[rank]
        assert "in_loader has no DistributedSampler" in message
        assert len(seen) == 2  # 16 samples / 2 ranks / batches of 4
    ins = [sorted(v for x_in, _ in got[r][1] for v in x_in) for r in (0, 1)]
    outs = [sorted(v for _, x_out in got[r][1] for v in x_out) for r in (0, 1)]
    assert not set(ins[0]) & set(ins[1]) and len(ins[0]) + len(ins[1]) == 16
    assert not set(outs[0]) & set(outs[1]) and len(outs[0]) == len(outs[1]) == 16
