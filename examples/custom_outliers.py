"""Bring your own outliers: a folder of images, plus outliers synthesized from your data.

Stage two needs unlabeled images that are *not* any of your classes. Two sources:

* a folder of images you already have (photos, rejected uploads, other datasets), read
  with Pillow, converted to the model's input format and stacked into one tensor;
* outliers made from your own training data: blends of two in-distribution images of
  different classes, which look almost right and teach the reject units a tight boundary.

    python examples/custom_outliers.py --smoke                     # synthetic data, seconds
    python examples/custom_outliers.py --data-dir ../shared/data   # MNIST, a few minutes
    python examples/custom_outliers.py --data-dir ../shared/data --outlier-dir my_images/

Without ``--outlier-dir`` the full run writes some of ``photo_patches.npz`` into a
temporary folder of PNGs and reads them back, standing in for your folder; the smoke run
draws random shapes into one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, TensorDataset

import rejectnet
from rejectnet.data import images_to_tensor, load_npz
from rejectnet.models import SmallCNN

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


# --8<-- [start:folder]
def load_image_folder(folder: Path, size: int = 28, limit: int | None = None) -> torch.Tensor:
    """Every image under ``folder`` as a float tensor ``(N, 1, size, size)`` in [0, 1].

    Convert the outliers exactly as your in-distribution inputs (here: grayscale,
    ``size`` x ``size``, white on black like MNIST); stage two refuses outliers whose
    shape or dtype differ from the labeled batches.
    """
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images found under {folder}")
    images = []
    for path in files[:limit]:
        with Image.open(path) as im:
            gray = im.convert("L").resize((size, size), Image.Resampling.BILINEAR)
            images.append(np.asarray(gray, dtype=np.uint8))
    return images_to_tensor(np.stack(images))  # uint8 -> float32 / 255, adds the channel


# --8<-- [end:folder]


# --8<-- [start:synthesize]
def blend_pairs(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` blends ``a * x_i + (1 - a) * x_j`` of two images of different classes.

    ``a`` is drawn from [0.35, 0.65]: neither image dominates, so the blend is no class.
    """
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, len(x), (4 * n,), generator=g)
    j = torch.randint(0, len(x), (4 * n,), generator=g)
    keep = y[i] != y[j]  # only pairs from different classes
    i, j = i[keep][:n], j[keep][:n]
    a = 0.35 + 0.3 * torch.rand(len(i), 1, 1, 1, generator=g)
    return a * x[i] + (1 - a) * x[j]


def blend_with_inputs(outliers: torch.Tensor, x: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    """Outliers with a little of an in-distribution image mixed in (the paper, alpha 0.1).

    Moves a far-away outlier pool (e.g. natural photos) closer to your data.
    """
    idx = torch.randint(0, len(x), (len(outliers),))
    return (1 - alpha) * outliers + alpha * x[idx]


# --8<-- [end:synthesize]


def write_random_shapes(folder: Path, n: int, seed: int) -> None:
    """Smoke-run stand-in for your folder: PNGs of random ellipses and rectangles."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        im = Image.new("L", (40, 40), 0)
        draw = ImageDraw.Draw(im)
        for _ in range(3):
            box = sorted(rng.integers(0, 40, 2).tolist()), sorted(rng.integers(0, 40, 2).tolist())
            xy = (box[0][0], box[1][0], box[0][1] + 1, box[1][1] + 1)
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape(xy, fill=int(rng.integers(80, 256)))
        im.save(folder / f"shape_{k:04d}.png")


def write_photo_patches(data_dir: Path, folder: Path, n: int) -> None:
    """Full-run stand-in for your folder: some of photo_patches.npz as PNG files."""
    patches = load_npz(data_dir / "photo_patches.npz", keys=("x_train",))["x_train"][:n]
    folder.mkdir(parents=True, exist_ok=True)
    for k, patch in enumerate(patches):
        Image.fromarray(patch).save(folder / f"patch_{k:05d}.png")


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tiny in-distribution stand-in: 10 classes of bright horizontal bands, and an OOD set."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.2 * torch.rand(n, 1, 28, 28, generator=g)
    for c in range(10):
        x[y == c, :, 2 + 2 * c : 5 + 2 * c, 4:24] += 0.8
    ood = 0.2 * torch.rand(n, 1, 28, 28, generator=g)
    ood[:, :, 4:24, 10:16] += 0.8
    return x.clamp(0, 1), y, ood.clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data, seconds")
    parser.add_argument("--data-dir", type=Path, help="folder with mnist.npz etc.")
    parser.add_argument("--outlier-dir", type=Path, help="your folder of outlier images")
    parser.add_argument("--out", type=Path, help="output folder (default: a temp folder)")
    parser.add_argument("--n", type=int, default=6000, help="training digits (full run)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each stage")
    parser.add_argument("--no-blend", action="store_true", help="folder outliers only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.smoke and args.data_dir is None:
        parser.error("pass --data-dir (e.g. ../shared/data) or --smoke")
    out = args.out or Path(tempfile.mkdtemp(prefix="rejectnet-outliers-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()

    if args.smoke:
        x, y, ood_test = synthetic(96, args.seed)
        x_test, y_test, _ = synthetic(64, args.seed + 1)
        model = SmallCNN(num_classes=10, image_size=28, channels=(8, 16), hidden=32)
        batch, epochs, n_folder = 16, 1, 200
    else:
        rng = np.random.default_rng(args.seed)
        mnist = load_npz(args.data_dir / "mnist.npz", keys=("x_train", "y_train", "x_test"))
        idx = rng.choice(len(mnist["x_train"]), size=args.n, replace=False)
        x, y = images_to_tensor(mnist["x_train"][idx]), torch.from_numpy(mnist["y_train"][idx])
        x_test = images_to_tensor(mnist["x_test"][:2000])
        y_test = torch.from_numpy(mnist["y_test"][:2000])
        fashion = load_npz(args.data_dir / "fashion_mnist.npz", keys=("x_test",))["x_test"]
        ood_test = images_to_tensor(fashion[:2000])
        model = SmallCNN(num_classes=10, image_size=28)
        batch, epochs, n_folder = 64, args.epochs, 3000
    y, y_test = y.long(), y_test.long()

    folder = args.outlier_dir
    if folder is None:
        folder = out / "outlier_images"
        if args.smoke:
            write_random_shapes(folder, n_folder, args.seed)
        else:
            write_photo_patches(args.data_dir, folder, n_folder)
        print(f"wrote {n_folder} stand-in outlier images to {folder}")

    # --8<-- [start:combine]
    from_folder = load_image_folder(folder, size=28)
    parts = [from_folder]
    if not args.no_blend:
        parts.append(blend_pairs(x, y, n=len(x), seed=args.seed))  # near outliers
        parts.append(blend_with_inputs(from_folder, x, alpha=0.1))  # far ones, moved closer
    outliers = torch.cat(parts)
    out_loader = DataLoader(TensorDataset(outliers), batch_size=5 * batch, shuffle=True)
    # --8<-- [end:combine]
    sizes = ", ".join(str(len(p)) for p in parts)
    print(f"outliers: {len(outliers)} ({sizes}: folder, blended pairs, blended folder)")

    n_val = len(x) // 6
    in_loader = DataLoader(TensorDataset(x[n_val:], y[n_val:]), batch_size=batch, shuffle=True)
    rejectnet.train_classifier(model, in_loader, epochs=epochs, lr=0.05, progress=False)
    net = rejectnet.RejectHead.wrap(model, k=5)
    ft = rejectnet.SelfSupervisedOODFinetuner(net, epochs=epochs, lr=0.01, progress=False)
    history = ft.fit(in_loader, out_loader)
    print(f"outliers already on a reject unit in the last epoch: {history[-1].out_on_reject:.1%}")
    net.eval().calibrate([x[:n_val]], coverage=0.95)

    report = rejectnet.evaluate(
        net, [(x_test, y_test)], {"ood_test": [ood_test]}, n_runs=3, name="rejectnet"
    )
    note = " (smoke data: the numbers mean nothing)" if args.smoke else ""
    print(f"test accuracy: {100 * report.id_accuracy:.2f}%{note}")
    print(f"AUROC (OOD test set): {100 * report.ood['ood_test'].mean['auroc']:.2f}%")
    path = rejectnet.save(net, out / "custom-outliers.safetensors")
    print(f"saved {path} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
