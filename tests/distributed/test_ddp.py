"""Distributed fine-tuning on CPU: two gloo processes against one process."""

from __future__ import annotations

import math
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.distributed import workers

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)

WORLD = 2


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _spawn(tmp_path: Path, scenario: str) -> list[dict[str, Any]]:
    init = str(tmp_path / "store") if scenario != "resume" else _free_port()
    mp.spawn(
        workers.run,
        args=(WORLD, init, str(tmp_path), scenario),
        nprocs=WORLD,
        join=True,
    )
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> bool:
    assert a.keys() == b.keys()
    return all(
        torch.allclose(a[n].double(), b[n].double(), rtol=0.0, atol=atol, equal_nan=True) for n in a
    )


def test_ddp_equals_one_process_on_the_union_batch(tmp_path: Path) -> None:
    ranks = _spawn(tmp_path, "equivalence")
    single = workers.equivalence_runs(workers.GLOBAL_BATCH)
    # the user's unshuffled loader was re-created with a DistributedSampler: rank r reads
    # samples r, r + 2, ..., so each step the two ranks together see one single-process batch
    assert [r["in_sampler"] for r in ranks] == ["DistributedSampler"] * WORLD
    assert ranks[0]["in_indices"] == list(range(0, workers.IN_SAMPLES, 2))
    assert ranks[1]["in_indices"] == list(range(1, workers.IN_SAMPLES, 2))
    for key in ("ssl", "oe", "stage_one"):
        assert _close(ranks[0][key], ranks[1][key], atol=0.0), f"{key}: ranks differ"
        assert _close(ranks[0][key], single[key], atol=1e-5), f"{key}: DDP != one process"
    # epoch statistics are reduced over both ranks: they describe the global batch
    for name in ("loss", "in_accuracy", "out_loss", "out_on_reject"):
        for got, want in zip(
            ranks[0]["ssl_history"][name], single["ssl_history"][name], strict=True
        ):
            assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6), name
    assert ranks[0]["ssl_history"]["steps"] == single["ssl_history"]["steps"] == [4, 4]


def test_ddp_resume_equals_uninterrupted(tmp_path: Path) -> None:
    ranks = _spawn(tmp_path, "resume")
    # no process group was created by the workers: the trainers made one from the
    # torchrun-style environment variables
    assert [r["backend"] for r in ranks] == ["gloo"] * WORLD
    for r in ranks:
        assert r["stopped_step"] == 9
        assert r["sampler_is_distributed"]
        assert _close(r["resumed"], r["full"], atol=0.0), "resumed run differs"
        assert r["resumed_history"]["loss"] == pytest.approx(r["full_history"]["loss"], abs=1e-9)
    assert _close(ranks[0]["full"], ranks[1]["full"], atol=0.0), "ranks differ"
    # each rank draws its own random reject units
    assert ranks[0]["pseudo_seed"] != ranks[1]["pseudo_seed"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ddp_on_cuda(tmp_path: Path) -> None:
    ranks = _spawn(tmp_path, "cuda")
    n_gpus = torch.cuda.device_count()
    assert [r["device"] for r in ranks] == [f"cuda:{r % n_gpus}" for r in range(WORLD)]
    for r in ranks:
        assert r["stopped_step"] == 9
        # some CUDA kernels (e.g. adaptive pooling's backward) accumulate atomically
        assert _close(r["resumed"], r["full"], atol=1e-5), "resumed run differs"
    assert _close(ranks[0]["full"], ranks[1]["full"], atol=0.0), "ranks differ"
