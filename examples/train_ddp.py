"""Stage one and stage two on several processes with torch.distributed (DDP).

The same script runs on one process or many: launched by ``torchrun``, the trainers find
its environment variables, join (or create) the process group, wrap the model in
``DistributedDataParallel``, give every rank a disjoint share of the in-distribution
data (the loaders here are re-created with a ``DistributedSampler``) and of the
outliers, average the epoch statistics over the ranks, and log and checkpoint on rank 0
only. Every rank ends with the same weights; rank 0 calibrates, evaluates and saves.

    python examples/train_ddp.py --smoke                                   # one process
    torchrun --nproc_per_node=2 examples/train_ddp.py --smoke              # 2 CPU processes
    torchrun --nproc_per_node=4 examples/train_ddp.py --device cuda --amp  # 4 GPUs, bf16

``--smoke`` trains a tiny network on tiny synthetic data for a few seconds; drop it for
a larger synthetic problem. With ``--checkpoint-dir`` (on a filesystem every rank can
read) an interrupted run continues with ``--resume``, with the same number of processes.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset

import rejectnet
from rejectnet import RejectHead, SelfSupervisedOODFinetuner, metrics, train_classifier
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and network")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:LOCAL_RANK per rank)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--sync-batchnorm", action="store_true", help="SyncBatchNorm (CUDA)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="folder for the saved model")
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(message)s")

    side, n, epochs = (8, 512, 2) if args.smoke else (16, 4096, 5)
    epochs = args.epochs or epochs
    train, outliers = synthetic(n, seed=0, side=side)
    val, _ = synthetic(n // 4, seed=1, side=side)
    test_in, test_out = synthetic(n // 4, seed=2, side=side)
    # Plain DataLoaders: under torchrun each is re-created with a DistributedSampler
    # (batch_size stays per rank, so the global batch grows with the number of ranks).
    in_loader = DataLoader(train, batch_size=32, shuffle=True)
    out_loader = DataLoader(outliers, batch_size=64, shuffle=True)
    common = dict(
        device=args.device,
        amp=args.amp,
        sync_batchnorm=args.sync_batchnorm,
        progress=False,
        seed=0,
    )

    torch.manual_seed(0)
    model = SmallCNN(num_classes=4, image_size=side, channels=(8, 16), hidden=32, dropout=0.1)
    # the global batch is `world` times larger: scale the learning rate with it
    train_classifier(model, in_loader, epochs=epochs, lr=0.1 * world, **common)  # type: ignore[arg-type]
    net = RejectHead.wrap(model, k=2)
    ft = SelfSupervisedOODFinetuner(
        net,
        epochs=epochs,
        lr=0.02 * world,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=20 if args.checkpoint_dir else None,
        **common,  # type: ignore[arg-type]
    )
    history = ft.fit(in_loader, out_loader, resume=args.resume)
    if ft.is_main:
        last = history[-1]
        print(
            f"{ft.world_size} process(es), {last.steps} steps per epoch: loss "
            f"{last.loss:.4f}, in-accuracy {100 * last.in_accuracy:.2f}%, outliers on a "
            f"reject unit {100 * (last.out_on_reject or 0.0):.1f}%"
        )
        net.eval()
        net.calibrate(DataLoader(val, batch_size=128), coverage=0.95)
        s_in = net.ood_score(test_in.tensors[0].to(net.device))
        s_out = net.ood_score(test_out.tensors[0].to(net.device))
        print(
            f"AUROC (synthetic stripes vs in-distribution): {100 * metrics.auroc(s_in, s_out):.2f}%"
        )
        out_dir = args.out or Path(tempfile.mkdtemp())
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "ddp-reject.safetensors"
        rejectnet.save(net, path)
        print(f"saved {path}")
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
