"""Offline datasets: npz loading without pickle, crops, rendered letters, demo data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rejectnet.data import images_to_tensor, load_npz, random_crops, rendered_letters


def test_load_npz_plain_arrays(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    x = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.savez(path, x_test=x, y_test=np.array([0, 1]))
    arrays = load_npz(path, keys=("x_test",))
    assert np.array_equal(arrays["x_test"], x)
    with pytest.raises(ValueError, match=r"lacks \['x_train'\]"):
        load_npz(path, keys=("x_train",))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_npz(tmp_path / "missing.npz")


def test_load_npz_refuses_object_arrays(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, x_test=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match="unpickle"):
        load_npz(path)


def test_images_to_tensor() -> None:
    x = np.full((2, 4, 4), 255, dtype=np.uint8)
    t = images_to_tensor(x)
    assert t.shape == (2, 1, 4, 4) and t.dtype == torch.float32 and float(t.max()) == 1.0
    assert float(images_to_tensor(np.full((1, 2, 2), 8.0), scale=16.0).max()) == 0.5


def test_random_crops_and_letters() -> None:
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).random((64, 80, 3))
    crops = random_crops(img, 10, 8, rng)
    assert crops.shape == (10, 1, 8, 8) and 0 <= float(crops.min()) and float(crops.max()) <= 1
    assert not torch.equal(crops[0], crops[1])
    letters = rendered_letters(5, 8, rng)
    assert letters.shape == (5, 1, 8, 8)
    assert torch.allclose(letters.amax(dim=(1, 2, 3)), torch.ones(5))
    assert float(letters[:, :, 0, :].sum() + letters[:, :, -1, :].sum()) < float(letters.sum())
