"""Pool rows and blending with in-distribution images."""

from __future__ import annotations

import pytest
import torch

from rejectnet.outliers import Blend, PoolRows, blend


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_blend_is_the_convex_mix_with_a_row_of_x_in() -> None:
    x_out = torch.rand(20, 1, 4, 4, generator=_gen(1))
    x_in = torch.rand(6, 1, 4, 4, generator=_gen(2))
    out = blend(x_out, x_in, alpha=0.2, generator=_gen(3))
    assert out.shape == x_out.shape
    # every row is 0.8 * its outlier + 0.2 * SOME in-distribution row
    recovered = (out - 0.8 * x_out) / 0.2  # (20, ...) each must equal a row of x_in
    dist = (recovered[:, None] - x_in[None]).abs().flatten(2).amax(-1)
    assert bool((dist.amin(dim=1) < 1e-5).all())


def test_blend_alpha_range_and_determinism() -> None:
    x_out, x_in = torch.zeros(200, 1, 2, 2), torch.ones(10, 1, 2, 2)
    a = blend(x_out, x_in, alpha=(0.1, 0.4), generator=_gen(0))
    w = a[:, 0, 0, 0]
    assert float(w.min()) >= 0.1 and float(w.max()) <= 0.4 and float(w.std()) > 0.03
    assert torch.equal(a, blend(x_out, x_in, alpha=(0.1, 0.4), generator=_gen(0)))
    assert not torch.equal(a, blend(x_out, x_in, alpha=(0.1, 0.4), generator=_gen(1)))


def test_blend_leaves_inputs_alone() -> None:
    x_out, x_in = torch.rand(5, 1, 3, 3), torch.rand(4, 1, 3, 3)
    before = (x_out.clone(), x_in.clone())
    Blend(0.3)(x_in, torch.zeros(4, dtype=torch.long), x_out, 5)
    assert torch.equal(x_out, before[0]) and torch.equal(x_in, before[1])


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), (0.5, 0.2), (0.1,), "0.1", True])
def test_blend_rejects_bad_alpha(alpha: object) -> None:
    with pytest.raises((ValueError, TypeError), match="alpha"):
        Blend(alpha)  # type: ignore[arg-type]


def test_blend_rejects_mismatched_shapes_and_missing_pool() -> None:
    with pytest.raises(ValueError, match="same shape"):
        blend(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="pool rows"):
        Blend(0.1)(torch.zeros(2, 1, 3, 3), torch.zeros(2), None, 4)
    with pytest.raises(ValueError, match="pool rows"):
        PoolRows()(torch.zeros(2, 1, 3, 3), torch.zeros(2), torch.zeros(3, 1, 3, 3), 4)


def test_pool_rows_is_the_pool() -> None:
    pool = torch.rand(7, 1, 2, 2)
    assert PoolRows()(torch.zeros(1, 1, 2, 2), torch.zeros(1), pool, 7) is pool
    assert PoolRows.needs_pool and Blend.needs_pool
