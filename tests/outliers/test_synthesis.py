"""Input-space outliers synthesised from the in-distribution batch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rejectnet.outliers import (
    Jigsaw,
    Overlay,
    Rotate,
    Stitch,
    Warp,
    jigsaw,
    overlay,
    rotate,
    stitch,
    warp,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _patches(x: torch.Tensor, g: int) -> torch.Tensor:
    n, c, h, w = x.shape
    ph, pw = h // g, w // g
    p = x[:, :, : g * ph, : g * pw].reshape(n, c, g, ph, g, pw).permute(0, 2, 4, 1, 3, 5)
    return p.reshape(n, g * g, -1)


@settings(max_examples=25, deadline=None)
@given(grid=st.integers(2, 4), side=st.integers(4, 13), seed=st.integers(0, 2**16))
def test_jigsaw_permutes_patches_never_identity(grid: int, side: int, seed: int) -> None:
    if side < grid:
        side = grid
    x = torch.rand(6, 2, side, side + 1, generator=_gen(seed))  # distinct patches
    out = jigsaw(x, grid, generator=_gen(seed + 1))
    pin, pout = _patches(x, grid), _patches(out, grid)
    for i in range(6):
        a = sorted(map(tuple, pin[i].tolist()))
        b = sorted(map(tuple, pout[i].tolist()))
        assert a == b  # the same patches
        assert not torch.equal(pin[i], pout[i])  # in another order
    ph, pw = side // grid, (side + 1) // grid
    assert torch.equal(out[:, :, grid * ph :, :], x[:, :, grid * ph :, :])  # remainders stay
    assert torch.equal(out[:, :, :, grid * pw :], x[:, :, :, grid * pw :])


def _labelled(n: int = 12, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % classes
    x = y.float()[:, None, None, None].expand(n, 1, 6, 6).clone()  # pixel value = label
    return x, y


def test_stitch_joins_two_images_of_different_classes() -> None:
    x, y = _labelled()
    out = stitch(x, y, generator=_gen(0))
    for i in range(len(y)):
        values = set(out[i].unique().tolist())
        assert float(y[i]) in values and len(values) == 2  # own part + partner's part
        own = float((out[i] == float(y[i])).float().mean())
        assert 0.3 <= own <= 0.7  # the cut lies in (0.35, 0.65) of the side


def test_overlay_mixes_with_another_class_in_range() -> None:
    x, y = _labelled()
    out = overlay(x, y, weight=(0.4, 0.6), generator=_gen(0))
    for i in range(len(y)):
        v = float(out[i].flatten()[0])
        assert torch.allclose(out[i], torch.full_like(out[i], v))
        # v = w * y_i + (1 - w) * y_j with y_j != y_i and w in [0.4, 0.6]
        ok = [
            0.4 - 1e-6 <= (v - yj) / (float(y[i]) - yj) <= 0.6 + 1e-6
            for yj in range(3)
            if yj != int(y[i])
        ]
        assert any(ok)


def test_rotate_turns_by_the_drawn_angles_only() -> None:
    x = torch.rand(40, 1, 5, 5, generator=_gen(0))
    out = rotate(x, generator=_gen(1))
    r90, r270 = torch.rot90(x, 1, (2, 3)), torch.rot90(x, 3, (2, 3))
    is90 = (out == r90).flatten(1).all(1)
    is270 = (out == r270).flatten(1).all(1)
    assert bool((is90 | is270).all()) and bool(is90.any()) and bool(is270.any())
    assert torch.equal(rotate(x, angles=(180,)), torch.rot90(x, 2, (2, 3)))


@pytest.mark.parametrize("source", [Jigsaw(2), Stitch(), Overlay(), Rotate(), Warp()])
def test_sources_deterministic_shaped_and_leave_inputs_alone(source: object) -> None:
    x = torch.rand(8, 1, 8, 8, generator=_gen(0))
    y = torch.arange(8) % 4
    before = (x.clone(), y.clone())
    a = source(x, y, None, 13, _gen(5))  # type: ignore[operator]
    b = source(x, y, None, 13, _gen(5))  # type: ignore[operator]
    assert a.shape == (13, 1, 8, 8) and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert torch.equal(x, before[0]) and torch.equal(y, before[1])
    torch.manual_seed(3)
    c = source(x, y, None, 13)  # type: ignore[operator]
    torch.manual_seed(3)
    assert torch.equal(c, source(x, y, None, 13))  # type: ignore[operator]
    assert not source.needs_pool  # type: ignore[attr-defined]


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="grid"):
        Jigsaw(1)
    with pytest.raises(ValueError, match="larger than the image"):
        jigsaw(torch.zeros(1, 1, 2, 2), 3)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        jigsaw(torch.zeros(2, 4, 4), 2)
    with pytest.raises(ValueError, match="cut"):
        Stitch(cut=(0.0, 0.5))
    with pytest.raises(ValueError, match="weight"):
        Overlay(weight=(0.7, 0.3))
    with pytest.raises(ValueError, match="angles"):
        Rotate(angles=(45,))
    with pytest.raises(ValueError, match="square"):
        rotate(torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match="one label per image"):
        stitch(torch.zeros(3, 1, 4, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="floating-point"):
        Jigsaw()(torch.zeros(2, 1, 4, 4, dtype=torch.long), torch.zeros(2), None, 2)


def test_warp_moves_pixels_smoothly_and_zero_strength_is_identity() -> None:
    x = torch.rand(6, 1, 12, 12, generator=_gen(0))
    assert torch.allclose(warp(x, strength=0.0), x, atol=1e-5)
    out = warp(x, generator=_gen(1))
    assert out.shape == x.shape and float((out - x).abs().mean()) > 0.05
    # the same field for every channel: a 2-channel copy warps identically
    two = warp(torch.cat([x, x], dim=1), generator=_gen(1))
    assert torch.allclose(two[:, 0], two[:, 1]) and torch.allclose(two[:, :1], out)
    with pytest.raises(ValueError, match="knots"):
        Warp(knots=1)
    with pytest.raises(ValueError, match="strength"):
        Warp(strength=-0.1)
