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


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("truncated", "truncated copy or download"),
        ("npy", "a single .npy array"),
        ("text", "does not start like a zip archive"),
    ],
)
def test_load_npz_says_why_a_file_is_not_an_archive(tmp_path: Path, kind: str, says: str) -> None:
    whole = tmp_path / "whole.npz"
    np.savez(whole, x_test=np.zeros((50, 8, 8), np.uint8))
    path = tmp_path / f"{kind}.npz"
    if kind == "truncated":
        path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    elif kind == "npy":
        with path.open("wb") as f:
            np.save(f, np.zeros(3))
    else:
        path.write_text("x_test,y_test\n")
    before = path.read_bytes()
    with pytest.raises(ValueError, match=f"{kind}.npz.*not a readable .npz.*{says}"):
        load_npz(path)
    assert path.read_bytes() == before


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


def test_rendered_letters_variants() -> None:
    from rejectnet.data import CLEAN_LETTERS, DIGIT_LIKE_LETTERS

    assert not set(CLEAN_LETTERS) & set(DIGIT_LIKE_LETTERS) and len(CLEAN_LETTERS) == 40
    one = rendered_letters(3, 28, np.random.default_rng(0), letters="A")
    assert torch.equal(one[0], rendered_letters(1, 28, np.random.default_rng(0), letters="A")[0])
    thin = rendered_letters(20, 28, np.random.default_rng(0), stroke=(0, 0))
    thick = rendered_letters(20, 28, np.random.default_rng(0), stroke=(8, 8))
    assert float(thick.sum()) > 1.3 * float(thin.sum())


def test_fit_box_frames_like_mnist() -> None:
    x = rendered_letters(30, 28, np.random.default_rng(1), fit_box=20)
    for img in x[:, 0]:
        rows = torch.nonzero(img.amax(dim=1) > 0).flatten()
        cols = torch.nonzero(img.amax(dim=0) > 0).flatten()
        side = max(int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1)
        assert 19 <= side <= 20
        mass = img.sum()
        cy = float((img.sum(1) * torch.arange(28)).sum() / mass)
        cx = float((img.sum(0) * torch.arange(28)).sum() / mass)
        assert abs(cy - 13.5) <= 1.5 and abs(cx - 13.5) <= 1.5


def test_rendered_letters_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="letters"):
        rendered_letters(1, 8, rng, letters="")
    with pytest.raises(ValueError, match="stroke"):
        rendered_letters(1, 8, rng, stroke=(3, 1))
    with pytest.raises(ValueError, match="fit_box"):
        rendered_letters(1, 8, rng, fit_box=9)
    with pytest.raises(ValueError, match="fonts"):
        rendered_letters(1, 8, rng, fonts=[])


def test_letter_dev_sets_and_fonts() -> None:
    from rejectnet.data import find_fonts, letter_dev_sets

    fonts = find_fonts("DejaVu")
    assert all(f.suffix == ".ttf" and "dejavu" in f.name.lower() for f in fonts)
    sets = letter_dev_sets(6, 28, seed=5)
    expected = {"letters", "letters-clean", "letters-thick"} | (
        {"letters-fonts"} if fonts else set()
    )
    assert set(sets) == expected
    assert all(x.shape == (6, 1, 28, 28) for x in sets.values())
    again = letter_dev_sets(6, 28, seed=5)
    assert all(torch.equal(sets[k], again[k]) for k in sets)
    assert not torch.equal(sets["letters"], sets["letters-clean"])
