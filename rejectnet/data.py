"""Datasets for the demo, examples and benchmarks: offline only, never pickled.

* :func:`load_npz` reads the ``.npz`` layout of ``../shared/data`` (uint8 images
  ``x_train, y_train, x_test, y_test``) with ``allow_pickle=False``.
* :func:`demo_data` builds the demo's sets from what ships with the dependencies:
  scikit-learn's 8x8 digits (in-distribution), crops of scikit-learn's ``china.jpg``
  (training outliers), and disjoint OOD test sets: crops of ``flower.jpg``, letters
  rendered with Pillow's built-in font, and uniform noise.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

__all__ = [
    "DemoData",
    "demo_data",
    "images_to_tensor",
    "load_npz",
    "random_crops",
    "rendered_letters",
]


def load_npz(path: str | Path, *, keys: tuple[str, ...] = ()) -> dict[str, npt.NDArray[Any]]:
    """Load arrays from an ``.npz`` file without unpickling anything.

    Args:
        path: The ``.npz`` file.
        keys: Keys that must be present (e.g. ``("x_test",)``).

    Returns:
        Key -> array.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not an ``.npz`` of plain arrays, or a key is missing.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "tiny.npz")
        >>> np.savez(path, x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.array([3, 7]))
        >>> arrays = load_npz(path, keys=("x_test",))
        >>> arrays["x_test"].shape, arrays["y_test"].tolist()
        ((2, 28, 28), [3, 7])
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path {str(p)!r} does not exist")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as err:
        raise ValueError(
            f"{str(p)!r} is not an .npz of plain arrays ({err}); object arrays are refused "
            "because loading them would unpickle"
        ) from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{str(p)!r} lacks {missing}; it has {sorted(arrays)}")
    return arrays


def images_to_tensor(x: npt.NDArray[Any], scale: float | None = None) -> torch.Tensor:
    """``(N, H, W)`` or ``(N, C, H, W)`` images to float32 ``(N, C, H, W)`` in ``[0, 1]``.

    Args:
        x: Images; uint8 images are divided by 255 unless ``scale`` is given.
        scale: Divide by this instead.

    Returns:
        A new float32 tensor ``(N, C, H, W)``; ``(N, H, W)`` input gets ``C = 1``.

    Example:
        >>> import numpy as np
        >>> t = images_to_tensor(np.full((2, 28, 28), 255, dtype=np.uint8))
        >>> t.shape, t.dtype, float(t.max())
        (torch.Size([2, 1, 28, 28]), torch.float32, 1.0)
    """
    t = torch.from_numpy(np.array(x, dtype=np.float32))
    if scale is None:
        scale = 255.0 if x.dtype == np.uint8 else 1.0
    t = t / scale
    return t.unsqueeze(1) if t.ndim == 3 else t


def random_crops(
    image: npt.NDArray[Any],
    n: int,
    size: int,
    rng: np.random.Generator,
    *,
    min_side: int | None = None,
    max_side: int | None = None,
) -> torch.Tensor:
    """Random square crops of a grayscale image, resized to ``size`` x ``size``.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)`` image (any range; rescaled to ``[0, 1]``).
        n: Number of crops.
        size: Output side.
        rng: Random generator.
        min_side: Smallest crop side (default ``size``).
        max_side: Largest crop side (default a quarter of the image's smaller side).

    Returns:
        ``(n, 1, size, size)`` float32 crops in ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> photo = rng.integers(0, 256, size=(64, 64, 3))
        >>> random_crops(photo, n=5, size=8, rng=rng).shape
        torch.Size([5, 1, 8, 8])
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-8)
    h, w = img.shape
    lo = min_side or size
    hi = max(max_side or min(h, w) // 4, lo)
    src = torch.from_numpy(img)[None, None]
    out = torch.empty(n, 1, size, size)
    for i in range(n):
        side = int(rng.integers(lo, hi + 1))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = src[:, :, top : top + side, left : left + side]
        out[i] = F.interpolate(crop, size=(size, size), mode="area")[0]
    return out


def rendered_letters(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Letters A-Z / a-z drawn white on black with Pillow's built-in font (needs Pillow).

    Args:
        n: Number of images.
        size: Output side.
        rng: Random generator (picks the letters and small shifts).

    Returns:
        ``(n, 1, size, size)`` float32 images in ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> x = rendered_letters(3, 28, np.random.default_rng(0))
        >>> x.shape, float(x.max())
        (torch.Size([3, 1, 28, 28]), 1.0)
    """
    from PIL import Image, ImageDraw, ImageFont

    canvas = 4 * size
    font = ImageFont.load_default(size=int(canvas * 1.1))
    out = torch.empty(n, 1, size, size)
    letters = string.ascii_letters
    for i in range(n):
        im = Image.new("L", (canvas, canvas), 0)
        draw = ImageDraw.Draw(im)
        ch = letters[int(rng.integers(len(letters)))]
        dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
        draw.text((canvas / 2 + dx, canvas / 2 + dy), ch, fill=255, font=font, anchor="mm")
        t = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None, None]
        small = F.interpolate(t, size=(size, size), mode="area")[0]
        out[i] = small / small.max().clamp_min(1e-8)
    return out


@dataclass
class DemoData:
    """The demo's datasets (all tensors ``(N, 1, 8, 8)`` in ``[0, 1]``).

    Attributes:
        train: Labeled digits for stage one and fine-tuning.
        val: Held-out labeled digits, for calibration.
        test: Labeled digits for the evaluation.
        outliers: Unlabeled training outliers.
        ood_test: OOD test set name -> images, never used in training.

    Example:
        >>> data = demo_data(n_outliers=10, n_ood=5)
        >>> len(data.train), data.outliers.shape, sorted(data.ood_test)
        (1078, torch.Size([10, 1, 8, 8]), ['letters', 'noise', 'photo'])
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    outliers: torch.Tensor
    ood_test: dict[str, torch.Tensor]


def demo_data(seed: int = 0, n_outliers: int = 6000, n_ood: int = 600) -> DemoData:
    """Build the demo's data from files that ship with scikit-learn and Pillow.

    In-distribution: scikit-learn's 1,797 8x8 digits, split 60/15/25 into train, val
    (for calibration) and test, stratified. Training outliers: crops of ``china.jpg``.
    OOD test sets, disjoint from the training outliers: crops of ``flower.jpg``
    (``"photo"``), rendered letters (``"letters"``) and uniform noise (``"noise"``).

    Args:
        seed: Seed of the split and of the crops, letters and noise.
        n_outliers: Number of training outliers.
        n_ood: Size of each OOD test set.

    Returns:
        The datasets; see :class:`DemoData`.

    Example:
        >>> data = demo_data(seed=0, n_outliers=20, n_ood=10)
        >>> len(data.train), len(data.val), len(data.test)
        (1078, 269, 450)
        >>> {name: len(x) for name, x in data.ood_test.items()}
        {'photo': 10, 'letters': 10, 'noise': 10}
    """
    from sklearn.datasets import load_digits, load_sample_images
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    digits = load_digits()
    x = images_to_tensor(digits.images.astype(np.float32), scale=16.0)
    y = torch.from_numpy(digits.target.astype(np.int64))
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, train_size=0.6, stratify=digits.target, random_state=seed)
    va, te = train_test_split(
        rest, train_size=0.375, stratify=digits.target[rest], random_state=seed
    )
    photos = load_sample_images()
    names = [Path(f).name for f in photos.filenames]
    china = photos.images[names.index("china.jpg")]
    flower = photos.images[names.index("flower.jpg")]
    return DemoData(
        train=TensorDataset(x[tr], y[tr]),
        val=TensorDataset(x[va], y[va]),
        test=TensorDataset(x[te], y[te]),
        outliers=random_crops(china, n_outliers, 8, rng),
        ood_test={
            "photo": random_crops(flower, n_ood, 8, rng),
            "letters": rendered_letters(n_ood, 8, rng),
            "noise": torch.from_numpy(rng.random((n_ood, 1, 8, 8), dtype=np.float32)),
        },
    )
