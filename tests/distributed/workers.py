"""Process bodies for the distributed tests (run by ``torch.multiprocessing.spawn``).

Each worker joins a gloo group through a file store, trains, and saves what the test
compares (weights, history, sharding facts) to ``out_dir / f"rank{rank}.pt"``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from rejectnet import (
    OutlierExposureFinetuner,
    RejectHead,
    SelfSupervisedOODFinetuner,
    train_classifier,
)
from rejectnet.finetune import Callback, FitView, StopTraining
from tests.finetune.helpers import DropoutCNN, in_distribution, outliers

IN_SAMPLES = 64
OUT_SAMPLES = 400
GLOBAL_BATCH = 16
OPTS: dict[str, Any] = dict(epochs=2, lr=0.05, progress=False, seed=0)


class PlainCNN(nn.Module):
    """No batch norm, no dropout: a DDP step then equals one step on the union batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 2).flatten(1))


def plain_model() -> PlainCNN:
    torch.manual_seed(123)
    return PlainCNN()


def weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in m.state_dict().items()}


def equivalence_runs(in_batch: int) -> dict[str, Any]:
    """The three trainers on unshuffled data; in a group each rank sees ``in_batch``."""
    in_loader = DataLoader(in_distribution(IN_SAMPLES), batch_size=in_batch, shuffle=False)
    out_loader = DataLoader(outliers(OUT_SAMPLES), batch_size=13, shuffle=False)
    res: dict[str, Any] = {}
    # k=1: the pseudo-label is always the one reject unit, independent of any RNG
    ssl = SelfSupervisedOODFinetuner(RejectHead.wrap(plain_model(), k=1), **OPTS)
    res["ssl_history"] = ssl.fit(in_loader, out_loader).to_dict()
    res["ssl"] = weights(ssl.model)
    loader = ssl.train_loader
    res["in_sampler"] = type(getattr(loader, "sampler", None)).__name__
    res["in_indices"] = list(getattr(loader, "sampler", []))
    model = plain_model()
    OutlierExposureFinetuner(model, **OPTS).fit(in_loader, out_loader)
    res["oe"] = weights(model)
    model = plain_model()
    train_classifier(model, in_loader, **OPTS)
    res["stage_one"] = weights(model)
    return res


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, view: FitView, step: int) -> None:
        if step == self.step:
            raise StopTraining


def _dropout_net() -> RejectHead:
    torch.manual_seed(7)
    return RejectHead.wrap(DropoutCNN(), k=2)


def _shuffled() -> tuple[DataLoader[Any], DataLoader[Any]]:
    return (
        DataLoader(in_distribution(96), batch_size=8, shuffle=True),
        DataLoader(outliers(300), batch_size=7, shuffle=True),
    )


def resume_runs(ckpt_dir: Path, stop_step: int, device: str = "cpu") -> dict[str, Any]:
    """Uninterrupted vs stopped-and-resumed, batch norm, dropout, shuffling, k=2."""
    opts: dict[str, Any] = dict(epochs=2, progress=False, seed=3, device=device)
    full = SelfSupervisedOODFinetuner(_dropout_net(), **opts)
    full_hist = full.fit(*_shuffled())
    ckpt = dict(checkpoint_dir=ckpt_dir, checkpoint_every=2)
    stopped = SelfSupervisedOODFinetuner(
        _dropout_net(), callbacks=[StopAt(stop_step)], **opts, **ckpt
    )
    stopped.fit(*_shuffled())
    torch.manual_seed(99)  # different initial weights: everything must come from the file
    resumed_net = RejectHead.wrap(DropoutCNN(), k=2)
    resumed = SelfSupervisedOODFinetuner(resumed_net, **opts, **ckpt)
    resumed_hist = resumed.fit(*_shuffled(), resume=True)
    return {
        "full": {n: t.cpu() for n, t in weights(full.model).items()},
        "resumed": {n: t.cpu() for n, t in weights(resumed_net).items()},
        "device": str(full.device),
        "stopped_step": stopped.step,
        "full_history": full_hist.to_dict(),
        "resumed_history": resumed_hist.to_dict(),
        "pseudo_seed": torch.initial_seed(),  # seed + rank: random reject units differ
        "sampler_is_distributed": isinstance(
            getattr(full.train_loader, "sampler", None), DistributedSampler
        ),
    }


def run(rank: int, world: int, init: str, out_dir: str, scenario: str) -> None:
    """``torch.multiprocessing.spawn`` entry point.

    ``scenario == "equivalence"`` joins a gloo group through the file store ``init``;
    ``"resume"`` sets torchrun's environment variables (``init`` is the port) and lets
    the trainers create the process group themselves; ``"cuda"`` runs the resume
    scenario on the GPU(s) in a gloo group (which lets two ranks share one GPU).
    """
    torch.set_num_threads(1)
    if scenario in ("equivalence", "cuda"):
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    else:
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=init,
            WORLD_SIZE=str(world),
            RANK=str(rank),
            LOCAL_RANK=str(rank),
        )
    try:
        if scenario == "equivalence":
            res = equivalence_runs(GLOBAL_BATCH // world)
        elif scenario == "cuda":
            os.environ["LOCAL_RANK"] = str(rank)
            res = resume_runs(Path(out_dir) / "ckpt", stop_step=9, device="cuda")
        else:
            res = resume_runs(Path(out_dir) / "ckpt", stop_step=9)
            res["backend"] = dist.get_backend() if dist.is_initialized() else None
        torch.save(res, Path(out_dir) / f"rank{rank}.pt")
        if dist.is_initialized():
            dist.barrier()  # no rank tears down while the other still talks to it
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    # The results are on disk. Leave without interpreter finalization: gloo's worker threads
    # can still hold work objects then and abort the process ("terminate called without an
    # active exception", seen once in CI), which would fail a run whose results are complete.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
