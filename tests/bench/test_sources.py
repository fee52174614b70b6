"""Data sources: .npz files and image folders converted to the configured size/channels."""

from __future__ import annotations

import gzip
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from rejectnet.bench import BenchError, convert, load_images, load_in_distribution, load_unlabeled
from tests.bench.conftest import write_image_folder


def test_folder_with_odd_sizes_and_mixed_modes_is_converted(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs")
    data = load_in_distribution(root, image_size=12, channels=1)
    assert data.x_train.shape == (36, 1, 12, 12) and data.x_test.shape == (12, 1, 12, 12)
    assert data.classes == ("class_0", "class_1", "class_2")
    assert data.y_train.tolist() == [0] * 12 + [1] * 12 + [2] * 12
    assert data.x_train.dtype == torch.float32
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
    rgb = load_in_distribution(root, image_size=7, channels=3)
    assert rgb.x_train.shape == (36, 3, 7, 7)
    # a grayscale image becomes three equal channels
    assert torch.equal(rgb.x_train[0, 0], rgb.x_train[0, 1])


def test_folder_defaults_come_from_the_training_images(tmp_path: Path) -> None:
    from PIL import Image

    root = write_image_folder(tmp_path / "imgs")
    first = sorted((root / "train" / "class_0").iterdir())[0]
    data = load_in_distribution(root)
    assert data.channels == 3  # some training images are RGB
    assert data.image_size == Image.open(first).size[0]


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs")
    (root / "train" / "class_9").mkdir()
    with pytest.raises(BenchError) as info:
        load_in_distribution(root, 8, 1)
    assert "class_9" in str(info.value) and "is empty" in str(info.value)


def _no_test(root: Path) -> None:
    shutil.rmtree(root / "test")


def _unknown_test_class(root: Path) -> None:
    (root / "test" / "class_7").mkdir()
    shutil.copy(root / "train" / "class_0" / "1.png", root / "test" / "class_7" / "a.png")


def _broken_image(root: Path) -> None:
    (root / "train" / "class_0" / "0.jpg").write_bytes(b"not an image")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_no_test, "test' is missing"),
        (_unknown_test_class, "class_7' has no train/"),
        (_broken_image, "cannot read the image"),
    ],
)
def test_broken_folders_raise_one_line(
    tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    root = write_image_folder(tmp_path / "imgs")
    damage(root)
    with pytest.raises(BenchError, match=message):
        load_in_distribution(root, 8, 1)


def test_npz_in_distribution_checks_keys_and_labels(tiny: dict[str, Path], tmp_path: Path) -> None:
    data = load_in_distribution(tiny["id"])
    assert data.image_size == 8 and data.channels == 1 and data.num_classes == 10
    with pytest.raises(BenchError, match=r"\[data\] id: .* lacks \['y_test'\]"):
        bad = tmp_path / "bad.npz"
        np.savez(bad, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, int),
                 x_test=np.zeros((2, 8, 8), np.uint8))  # fmt: skip
        load_in_distribution(bad)
    floats = tmp_path / "floats.npz"
    np.savez(floats, x_train=np.zeros((4, 8, 8)), y_train=np.full(4, 0.5),
             x_test=np.zeros((2, 8, 8)), y_test=np.zeros(2, int))  # fmt: skip
    with pytest.raises(BenchError, match="integer class indices"):
        load_in_distribution(floats)


def test_unlabeled_sources(tiny: dict[str, Path], tmp_path: Path) -> None:
    assert load_unlabeled(tiny["far"], 8, 1, "[data.ood] far").shape == (50, 1, 8, 8)
    # x_test missing: x_train is used
    assert load_unlabeled(tiny["near"], 4, 3, "[data.ood] near").shape == (40, 3, 4, 4)
    root = write_image_folder(tmp_path / "imgs")
    assert load_unlabeled(root, 6, 1, "x").shape == (48, 1, 6, 6)  # recursive
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BenchError, match="holds no image files"):
        load_unlabeled(empty, 8, 1, "[data.ood] empty")
    other = tmp_path / "other.npz"
    np.savez(other, images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(BenchError, match="neither x_test nor x_train; it has"):
        load_unlabeled(other, 8, 1, "[data.ood] other")


def test_idx_folders_are_read(tmp_path: Path) -> None:
    raw = tmp_path / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8)).astype(np.uint8)
    header = b"\x00\x00\x08\x03" + struct.pack(">3I", *x.shape)
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + x.tobytes())
    assert np.array_equal(load_images(tmp_path / "KMNIST"), x)
    assert load_unlabeled(tmp_path / "KMNIST", 8, 1, "k").shape == (5, 1, 8, 8)
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_images(tmp_path / "KMNIST", "train")


def test_convert_layouts_do_not_edit_the_input() -> None:
    hwc = np.random.default_rng(0).integers(0, 256, (2, 6, 6, 3)).astype(np.uint8)
    before = hwc.copy()
    gray = convert(hwc, 6, 1)
    assert gray.shape == (2, 1, 6, 6) and np.array_equal(hwc, before)
    expected = (hwc / 255.0) @ np.array([0.299, 0.587, 0.114])
    assert np.allclose(gray[:, 0].numpy(), expected, atol=1e-6)
    chw = torch.rand(2, 3, 10, 10)
    assert convert(chw, 5, 3).shape == (2, 3, 5, 5)
    with pytest.raises(BenchError, match="C = 1 or 3"):
        convert(np.zeros((2, 5, 6, 6)), 6, 1)
