"""rejectnet's stage two with Hugging Face ``accelerate``.

The loop is the plain-PyTorch one of ``examples/own_training_loop.py`` with accelerate's
four changes: ``accelerator.prepare`` (devices, DDP, mixed precision),
``accelerator.accumulate`` (gradient accumulation: every micro-batch brings its own
outlier batch, 5x larger), ``accelerator.backward``, and ``accelerator.autocast``. The
loss is ``rejectnet.losses.SelfSupervisedRejectLoss`` and the batches come from
``rejectnet.integrations.OutlierPairs``, which pairs each in-distribution batch with an
outlier batch from a stream that restarts on its own.

    python examples/accelerate_finetune.py --smoke                            # CPU, seconds
    python examples/accelerate_finetune.py --smoke --precision bf16 --accumulate 2
    accelerate launch --num_processes 4 examples/accelerate_finetune.py --precision bf16

Needs ``pip install "rejectnet[accelerate]"``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

import rejectnet
from rejectnet import metrics
from rejectnet.integrations import OutlierPairs
from rejectnet.losses import SelfSupervisedRejectLoss
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
    """Your existing supervised training (any trained classifier will do)."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for x, y in DataLoader(train, batch_size=32, shuffle=True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and network")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    parser.add_argument("--precision", default="no", help="no, bf16 or fp16 (accelerate's)")
    parser.add_argument("--accumulate", type=int, default=2, help="micro-batches per step")
    parser.add_argument("--out", type=Path, default=None, help="folder for the saved model")
    args = parser.parse_args()
    side, n, epochs = (8, 512, 2) if args.smoke else (16, 4096, 5)

    accelerator = Accelerator(
        cpu=args.cpu or args.smoke,
        mixed_precision=args.precision,
        gradient_accumulation_steps=args.accumulate,
    )
    torch.manual_seed(0)
    train_set, outlier_set = synthetic(n, seed=0, side=side)
    val_set, _ = synthetic(n // 4, seed=1, side=side)
    test_in, stripes = (d.tensors[0] for d in synthetic(n // 4, seed=2, side=side))
    test_out = stripes.transpose(-1, -2)  # held-out OOD: horizontal stripes, never trained on
    model = SmallCNN(num_classes=4, image_size=side, channels=(8, 16), hidden=32, dropout=0.1)
    stage_one(model, train_set, epochs)
    model.eval()  # as after evaluating it: wrap keeps this mode, so train() it below

    # --8<-- [start:loop]
    net = rejectnet.RejectHead.wrap(model, k=2)
    loss_fn = SelfSupervisedRejectLoss(num_classes=net.num_classes, lam=5.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)
    in_loader = DataLoader(train_set, batch_size=32, shuffle=True)
    out_loader = DataLoader(outlier_set, batch_size=5 * 32, shuffle=True)
    # prepare: device placement, DDP and a share of each loader per process
    net, opt, in_loader, out_loader = accelerator.prepare(net, opt, in_loader, out_loader)
    pairs = OutlierPairs(in_loader, out_loader, ratio=5)  # x_out: 5x the in-batch
    micro_batches = optimizer_steps = 0
    for _epoch in range(epochs):
        net.train()  # the WHOLE net: batch norm and dropout in train mode
        for x_in, y, x_out in pairs:
            with accelerator.accumulate(net):  # the outlier batch follows each micro-batch
                with accelerator.autocast():
                    logits = net(torch.cat([x_in, x_out]))  # ONE forward over both
                n_in = len(x_in)
                loss = loss_fn(logits[:n_in], y, logits[n_in:])  # float32
                accelerator.backward(loss)
                opt.step()  # a no-op until `accumulate` micro-batches are in
                opt.zero_grad()
            micro_batches += 1
            optimizer_steps += int(accelerator.sync_gradients)
    net = accelerator.unwrap_model(net)
    # --8<-- [end:loop]

    if accelerator.is_main_process:
        net.eval()
        net.calibrate(DataLoader(val_set, batch_size=256), coverage=0.95)
        device = next(net.parameters()).device
        s_in, s_out = net.ood_score(test_in.to(device)), net.ood_score(test_out.to(device))
        rejected_out = net.predict(test_out.to(device)).is_ood.float().mean()
        rejected_in = net.predict(test_in.to(device)).is_ood.float().mean()
        print(
            f"{accelerator.num_processes} process(es), precision {args.precision}: "
            f"{micro_batches} micro-batches, {optimizer_steps} optimizer steps, "
            f"last loss {float(loss.detach()):.4f}"
        )
        print(
            "AUROC (held-out horizontal stripes vs in-distribution): "
            f"{100 * metrics.auroc(s_in, s_out):.2f}%"
        )
        print(
            "rejected at the threshold for 95% coverage: "
            f"outliers {100 * float(rejected_out):.1f}%, "
            f"in-distribution {100 * float(rejected_in):.1f}%"
        )
        out_dir = args.out or Path(tempfile.mkdtemp())
        out_dir.mkdir(parents=True, exist_ok=True)
        rejectnet.save(net, out_dir / "accelerate-reject.safetensors")
        print(f"saved {out_dir / 'accelerate-reject.safetensors'}")


if __name__ == "__main__":
    main()
