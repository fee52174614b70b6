"""Wrap a timm ResNet-18 with k reject classes, fine-tune it on outliers, and score inputs.

The model is created with random weights (``pretrained=False``: nothing is downloaded),
``num_classes=10`` and 32x32 RGB inputs. Stage one trains it as a plain classifier; then
``RejectHead.wrap`` widens its ``fc`` layer (found through timm's ``get_classifier()``)
from 10 to 10 + k outputs, and the self-supervised stage two teaches the k reject units
to catch outliers.

    python examples/wrap_timm.py --smoke                       # synthetic data, seconds
    python examples/wrap_timm.py --data-dir ../shared/data     # MNIST, a few minutes

The full run pads MNIST digits to 32x32 and repeats them over three channels, uses
``photo_patches.npz`` as the unlabeled outliers and Fashion-MNIST as the OOD test set.
Needs ``pip install "rejectnet[timm]"``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import rejectnet
from rejectnet.data import images_to_tensor, load_npz


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tiny stand-in data: 10 classes of horizontal bands, noise outliers, vertical bands."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.2 * torch.rand(n, 3, 32, 32, generator=g)
    for c in range(10):
        x[y == c, :, 3 * c : 3 * c + 3, :] += 0.8
    outliers = torch.rand(5 * n, 3, 32, 32, generator=g)
    ood = 0.2 * torch.rand(n, 3, 32, 32, generator=g)
    ood[:, :, :, 8:14] += 0.8
    return x, y, outliers, ood


def to_rgb32(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) digits -> float (N, 3, 32, 32) in [0, 1]."""
    return F.pad(images_to_tensor(x), (2, 2, 2, 2)).repeat(1, 3, 1, 1)


def real(data_dir: Path, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    mnist = load_npz(data_dir / "mnist.npz", keys=("x_train", "y_train", "x_test", "y_test"))
    photos = load_npz(data_dir / "photo_patches.npz", keys=("x_train",))["x_train"]
    fashion = load_npz(data_dir / "fashion_mnist.npz", keys=("x_test",))["x_test"]
    idx = rng.choice(len(mnist["x_train"]), size=n, replace=False)
    x, y = to_rgb32(mnist["x_train"][idx]), torch.from_numpy(mnist["y_train"][idx]).long()
    outliers = to_rgb32(photos[rng.choice(len(photos), size=2 * n, replace=False)])
    x_test, y_test = (
        to_rgb32(mnist["x_test"][: n // 2]),
        torch.from_numpy(mnist["y_test"][: n // 2]),
    )
    ood = to_rgb32(fashion[: n // 2])
    return x, y, outliers, x_test, y_test.long(), ood


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data, seconds")
    parser.add_argument("--data-dir", type=Path, help="folder with mnist.npz etc.")
    parser.add_argument("--out", type=Path, help="output folder (default: a temp folder)")
    parser.add_argument("--n", type=int, default=4000, help="training digits (full run)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each stage")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.smoke and args.data_dir is None:
        parser.error("pass --data-dir (e.g. ../shared/data) or --smoke")
    out = args.out or Path(tempfile.mkdtemp(prefix="rejectnet-timm-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()

    if args.smoke:
        x, y, outliers, ood = synthetic(64, args.seed)
        x_test, y_test = synthetic(64, args.seed + 1)[:2]
        ood_test = ood
        batch, epochs = 16, 2
    else:
        x, y, outliers, x_test, y_test, ood_test = real(args.data_dir, args.n, args.seed)
        batch, epochs = 64, args.epochs
    n_val = len(x) // 5  # held-out in-distribution data for the threshold
    train = TensorDataset(x[n_val:], y[n_val:])
    in_loader = DataLoader(train, batch_size=batch, shuffle=True)
    out_loader = DataLoader(TensorDataset(outliers), batch_size=5 * batch, shuffle=True)

    # --8<-- [start:wrap]
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)  # 32x32 RGB works
    rejectnet.train_classifier(model, in_loader, epochs=epochs, lr=0.05, progress=False)

    net = rejectnet.RejectHead.wrap(model, k=5)  # timm's get_classifier() names the head
    print(f"head: {net.head_path!r}, C={net.num_classes}, k={net.k}")
    ft = rejectnet.SelfSupervisedOODFinetuner(net, lam=5.0, epochs=epochs, lr=0.01, progress=False)
    ft.fit(in_loader, out_loader)
    net.eval().calibrate([x[:n_val]], coverage=0.95)
    # --8<-- [end:wrap]

    s_in = net.ood_score(x_test)
    s_out = net.ood_score(ood_test)
    auroc = rejectnet.metrics.auroc(s_in, s_out)
    rejected = float(net.predict(ood_test).is_ood.float().mean())
    accuracy = float((net.predict(x_test).classes == y_test).float().mean())
    note = " (smoke data: the numbers mean nothing)" if args.smoke else ""
    print(f"test accuracy: {100 * accuracy:.2f}%{note}")
    print(f"AUROC (OOD test set): {100 * auroc:.2f}%")
    print(f"OOD test inputs rejected at 95% coverage: {100 * rejected:.1f}%")
    path = rejectnet.save(net, out / "resnet18-reject.safetensors")
    print(f"saved {path} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
