"""Tiny synthetic data for the benchmark tests: .npz files and image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_tiny_npz(folder: Path, size: int = 8, n: int = 160) -> dict[str, Path]:
    """An easy 10-class ID set, an outlier pool and two OOD sets, as .npz files."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 30, (n, size, size)).astype(np.uint8)
    for c in range(10):  # class c brightens row c % size
        x[y == c, c % size, :] = 255
    paths = {
        "id": folder / "id.npz",
        "pool": folder / "pool.npz",
        "far": folder / "far.npz",
        "near": folder / "near.npz",
    }
    np.savez(paths["id"], x_train=x, y_train=y, x_test=x[:64], y_test=y[:64])
    np.savez(paths["pool"], x_train=rng.integers(0, 256, (200, size, size), dtype=np.uint8))
    np.savez(paths["far"], x_test=rng.integers(0, 256, (50, size, size), dtype=np.uint8))
    # an OOD set with x_train only: used when x_test is absent
    np.savez(paths["near"], x_train=rng.integers(0, 60, (40, size, size), dtype=np.uint8))
    return paths


def write_image_folder(root: Path, classes: int = 3, per_class: int = 12) -> Path:
    """ImageFolder layout with odd sizes, grayscale and RGB mixed."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for c in range(classes):
            d = root / split / f"class_{c}"
            d.mkdir(parents=True)
            for i in range(per_class if split == "train" else 4):
                h, w = (int(v) for v in rng.integers(5, 20, size=2))
                if i % 2:
                    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                    Image.fromarray(arr, "RGB").save(d / f"{i}.png")
                else:
                    arr = rng.integers(0, 256, (h, w), dtype=np.uint8)
                    Image.fromarray(arr, "L").save(d / f"{i}.jpg")
    return root


SMOKE_TOML = """\
[data]
id = "id.npz"
outliers = "pool.npz"
[data.ood]
far = "far.npz"
[train]
preset = "smoke"
"""


@pytest.fixture
def tiny(tmp_path: Path) -> dict[str, Path]:
    """Paths of the tiny .npz files plus ``config``: a smoke config next to them."""
    paths = write_tiny_npz(tmp_path)
    paths["config"] = tmp_path / "bench.toml"
    paths["config"].write_text(SMOKE_TOML)
    return paths
