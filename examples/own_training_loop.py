"""rejectnet's stage two in your own plain-PyTorch training loop.

``rejectnet.losses.SelfSupervisedRejectLoss`` is the loss rejectnet's fine-tuner
optimises; this script calls it from a loop of about 30 lines: one forward pass over
``torch.cat([x_in, x_out])`` (outlier batches 5x larger), the whole net in train mode,
optional bfloat16 autocast, then calibration on held-out in-distribution data.

    python examples/own_training_loop.py --smoke          # synthetic data, seconds
    python examples/own_training_loop.py --smoke --amp    # bfloat16 autocast
    python examples/own_training_loop.py --device cuda --amp

It prints, before and after the fine-tuning, the AUROC of the reject score on held-out
synthetic outliers and how many of them the network assigns to a reject unit, then the
fraction rejected at the calibrated threshold, and saves the calibrated model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

import rejectnet
from rejectnet import metrics
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


def measure(net: rejectnet.RejectHead, x_in: torch.Tensor, x_out: torch.Tensor) -> str:
    """AUROC of the reject score, and how many outliers land on a reject unit (argmax)."""
    net.eval()
    auroc = metrics.auroc(net.ood_score(x_in), net.ood_score(x_out))
    with torch.no_grad():
        on_reject = (net(x_out).argmax(dim=-1) >= net.num_classes).float().mean()
    return f"AUROC {100 * auroc:.2f}%, outliers on a reject unit {100 * float(on_reject):.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and network")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--out", type=Path, default=None, help="folder for the saved model")
    args = parser.parse_args()
    side, n, epochs = (8, 512, 2) if args.smoke else (16, 4096, 5)
    device, amp = torch.device(args.device), args.amp
    torch.manual_seed(0)
    train_set, outlier_set = synthetic(n, seed=0, side=side)
    val_set, _ = synthetic(n // 4, seed=1, side=side)
    test_in, stripes = (d.tensors[0].to(device) for d in synthetic(n // 4, seed=2, side=side))
    test_out = stripes.transpose(-1, -2)  # held-out OOD: horizontal stripes, never trained on
    model = SmallCNN(num_classes=4, image_size=side, channels=(8, 16), hidden=32, dropout=0.1)
    stage_one(model, train_set, epochs)
    model = model.to(device).eval()  # as after evaluating it: wrap keeps this mode

    # --8<-- [start:loop]
    from rejectnet.losses import SelfSupervisedRejectLoss

    net = rejectnet.RejectHead.wrap(model, k=2)  # C class logits kept, k reject units
    before = measure(net, test_in, test_out)
    loss_fn = SelfSupervisedRejectLoss(num_classes=net.num_classes, lam=5.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)
    in_loader = DataLoader(train_set, batch_size=32, shuffle=True)
    out_loader = DataLoader(outlier_set, batch_size=5 * 32, shuffle=True)  # 5x the in-batch

    def endless(loader):  # the outliers restart (and reshuffle) on their own
        while True:
            for (x_out,) in loader:
                yield x_out

    outliers = endless(out_loader)
    for _epoch in range(epochs):
        net.train()  # the WHOLE net: batch norm and dropout in train mode
        for x_in, y in in_loader:
            x_out = next(outliers)[: 5 * len(x_in)]
            x = torch.cat([x_in, x_out]).to(device)  # ONE forward over both
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = net(x)
            n_in = len(x_in)
            loss = loss_fn(logits[:n_in], y.to(device), logits[n_in:])  # float32
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    net.calibrate(DataLoader(val_set, batch_size=256), coverage=0.95)
    # --8<-- [end:loop]

    print(f"last loss {float(loss.detach()):.4f}")
    print(f"before fine-tuning (fresh reject units): {before}")
    print(f"after fine-tuning (held-out horizontal stripes): {measure(net, test_in, test_out)}")
    rejected_out = net.predict(test_out).is_ood.float().mean()
    rejected_in = net.predict(test_in).is_ood.float().mean()
    print(
        f"rejected at the threshold for 95% coverage: outliers {100 * float(rejected_out):.1f}%, "
        f"in-distribution {100 * float(rejected_in):.1f}%"
    )
    out_dir = args.out or Path(tempfile.mkdtemp())
    out_dir.mkdir(parents=True, exist_ok=True)
    rejectnet.save(net, out_dir / "own-loop.safetensors")
    print(f"saved {out_dir / 'own-loop.safetensors'}")


if __name__ == "__main__":
    main()
