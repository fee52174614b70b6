"""rejectnet's stage two inside a PyTorch Lightning ``Trainer``.

Stage one trains a small CNN; the script then evaluates it (which leaves it in eval mode,
as in most notebooks), wraps it with k reject classes, and fine-tunes it with
``rejectnet.integrations.lightning.RejectNetModule`` in a plain ``lightning.Trainer``.
The data module pairs every in-distribution batch with an outlier batch 5x larger
(``OutlierPairs``); under DDP each loader gets a ``DistributedSampler``.

    python examples/lightning_finetune.py --smoke
    python examples/lightning_finetune.py --smoke --devices 2 --strategy ddp   # 2 CPU processes
    python examples/lightning_finetune.py --accelerator gpu --devices 4 --strategy ddp \\
        --precision bf16-mixed

Needs ``pip install "rejectnet[lightning]"``.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import rejectnet
from rejectnet import RejectHead, metrics
from rejectnet.integrations import OutlierPairs
from rejectnet.integrations.lightning import RejectNetModule
from rejectnet.models import SmallCNN


def synthetic(n: int, seed: int, side: int) -> tuple[TensorDataset, TensorDataset]:
    """4 classes, each lighting up one quadrant; outliers are vertical stripes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.2 * torch.rand(n, 1, side, side, generator=g)
    half = side // 2
    for c in range(4):
        r, q = divmod(c, 2)
        x[y == c, :, r * half : (r + 1) * half, q * half : (q + 1) * half] += 0.8
    out = 0.2 * torch.rand(3 * n, 1, side, side, generator=g)
    cols = torch.randint(0, side, (3 * n,), generator=g)
    out[torch.arange(3 * n), :, :, cols] += 1.0
    return TensorDataset(x, y), TensorDataset(out)


def stage_one(model: torch.nn.Module, train: TensorDataset, epochs: int) -> None:
    """Plain supervised training (your own stage one; any trained classifier will do).

    Not ``rejectnet.train_classifier``: under ``strategy="ddp"`` Lightning starts the
    script once per process with ``WORLD_SIZE`` set, and rejectnet's trainers would try
    to join a process group of their own before the ``Trainer`` creates one.
    """
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for x, y in DataLoader(train, batch_size=32, shuffle=True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()


class PairedData(lightning.LightningDataModule):
    """In-distribution batches of 32 paired with outlier batches of 160 (ratio 5)."""

    def __init__(self, train: TensorDataset, outliers: TensorDataset, val: TensorDataset) -> None:
        super().__init__()
        self.train, self.outliers, self.val = train, outliers, val

    def _loader(self, data: TensorDataset, batch_size: int) -> DataLoader[Any]:
        # Lightning's automatic DistributedSampler does not reach inside OutlierPairs:
        # create the samplers here, where the process group already exists
        if dist.is_available() and dist.is_initialized():
            return DataLoader(data, batch_size=batch_size, sampler=DistributedSampler(data))
        return DataLoader(data, batch_size=batch_size, shuffle=True)

    def train_dataloader(self) -> OutlierPairs:
        return OutlierPairs(self._loader(self.train, 32), self._loader(self.outliers, 64), ratio=5)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val, batch_size=128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and network")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn, ...")
    parser.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, ...")
    parser.add_argument("--accumulate", type=int, default=1, help="accumulate_grad_batches")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="folder for the saved model")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers.*")

    side, n, epochs = (8, 512, 2) if args.smoke else (16, 4096, 5)
    epochs = args.epochs or epochs
    train, outliers = synthetic(n, seed=0, side=side)
    val, _ = synthetic(n // 4, seed=1, side=side)
    test_in, test_out = synthetic(n // 4, seed=2, side=side)

    lightning.seed_everything(0, verbose=False)
    model = SmallCNN(num_classes=4, image_size=side, channels=(8, 16), hidden=32, dropout=0.1)
    stage_one(model, train, epochs)  # every process runs the same seeded stage one
    model.eval()  # evaluating stage one leaves the model in eval mode ...
    net = RejectHead.wrap(model, k=2)  # ... and wrap keeps it; RejectNetModule trains it anyway

    module = RejectNetModule(
        net, lam=5.0, lr=0.02, calibration_loader=DataLoader(val, batch_size=128), coverage=0.95
    )
    trainer = lightning.Trainer(
        max_epochs=epochs,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        precision=args.precision,
        accumulate_grad_batches=args.accumulate,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=PairedData(train, outliers, val))
    if trainer.is_global_zero:
        print(
            f"{trainer.world_size} process(es), {trainer.global_step} optimizer steps, "
            f"val accuracy {100 * float(trainer.callback_metrics['val/acc']):.2f}%, "
            f"net back in {'train' if net.training else 'eval'} mode"
        )
        print(f"threshold ({net.calibrated_score}, 95% coverage): {float(net.threshold):.4f}")
        device = next(net.parameters()).device
        s_in = net.ood_score(test_in.tensors[0].to(device))
        s_out = net.ood_score(test_out.tensors[0].to(device))
        print(
            f"AUROC (synthetic stripes vs in-distribution): {100 * metrics.auroc(s_in, s_out):.2f}%"
        )
        out_dir = args.out or Path(tempfile.mkdtemp())
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "lightning-reject.safetensors"
        rejectnet.save(net, path)
        print(f"saved {path}")


if __name__ == "__main__":
    main()
