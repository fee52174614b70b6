"""fit_reject_weights: greedy coordinate ascent on AUROC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from rejectnet.scores import fit_reject_weights, sum_reject, weighted_reject

C = 3


def _synthetic(seed: int, n_in: int = 300, n_out: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Reject unit 0 is informative, unit 1 is pure noise (large, same for in and out)."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int, informative_mean: float) -> torch.Tensor:
        cls = torch.randn(n, C, generator=g)
        informative = informative_mean + torch.randn(n, 1, generator=g)
        noise = 1.0 + 2.0 * torch.randn(n, 1, generator=g)
        return torch.cat([cls, informative, noise], dim=1)

    return make(n_in, -1.0), make(n_out, 1.0)


def _auroc(z_in: torch.Tensor, z_out: torch.Tensor, w: torch.Tensor) -> float:
    s = torch.cat([weighted_reject(z_in, C, w), weighted_reject(z_out, C, w)])
    y = np.r_[np.zeros(len(z_in)), np.ones(len(z_out))]
    return float(roc_auc_score(y, s.numpy()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitted_weights_beat_uniform_and_downweight_noise(seed: int) -> None:
    z_in, z_out = _synthetic(seed)
    w = fit_reject_weights(z_in, z_out, C)
    assert w.shape == (2,) and w.dtype == torch.float32
    assert torch.all(w >= 0)
    assert float(w.sum()) == pytest.approx(2.0, abs=1e-6)
    uniform = _auroc(z_in, z_out, torch.ones(2))
    fitted = _auroc(z_in, z_out, w)
    assert fitted >= uniform
    assert fitted > uniform + 0.02  # the noise unit really hurts sum_reject here
    assert w[0] > w[1]


def test_deterministic_and_inputs_unchanged() -> None:
    z_in, z_out = _synthetic(5)
    a, b = z_in.clone(), z_out.clone()
    w1 = fit_reject_weights(z_in, z_out, C)
    w2 = fit_reject_weights(z_in.numpy(), z_out.numpy(), C)
    torch.testing.assert_close(w1, w2, rtol=0, atol=0)
    torch.testing.assert_close(z_in, a, rtol=0, atol=0)
    torch.testing.assert_close(z_out, b, rtol=0, atol=0)


def test_rounds_zero_and_no_improvement_give_ones() -> None:
    z_in, z_out = _synthetic(3)
    torch.testing.assert_close(fit_reject_weights(z_in, z_out, C, rounds=0), torch.ones(2))
    # a single reject unit: every rescaling has the same AUROC, so it stays at k = 1
    torch.testing.assert_close(fit_reject_weights(z_in[:, :4], z_out[:, :4], C), torch.ones(1))
    # a grid of only 1.0 cannot change anything
    torch.testing.assert_close(
        fit_reject_weights(z_in, z_out, C, grid=(1.0,)), torch.ones(2), rtol=0, atol=0
    )


def test_uniform_weights_equal_sum_reject_start() -> None:
    z_in, _ = _synthetic(4)
    torch.testing.assert_close(weighted_reject(z_in, C, torch.ones(2)), sum_reject(z_in, C))


def test_validation() -> None:
    z_in, z_out = _synthetic(0, 10, 10)
    with pytest.raises(ValueError, match=r"same width"):
        fit_reject_weights(z_in, z_out[:, :4], C)
    with pytest.raises(ValueError, match=r"logits_in is empty"):
        fit_reject_weights(z_in[:0], z_out, C)
    with pytest.raises(ValueError, match=r"logits_out is empty"):
        fit_reject_weights(z_in, z_out[:0], C)
    with pytest.raises(ValueError, match=r"logits_out"):
        fit_reject_weights(z_in, z_out[0], C)
    with pytest.raises(ValueError, match=r"logits_in.*NaN"):
        fit_reject_weights(torch.full_like(z_in, float("nan")), z_out, C)
    with pytest.raises(ValueError, match=r"num_classes"):
        fit_reject_weights(z_in, z_out, 5)
    with pytest.raises(ValueError, match=r"rounds"):
        fit_reject_weights(z_in, z_out, C, rounds=-1)
    with pytest.raises(TypeError, match=r"rounds"):
        fit_reject_weights(z_in, z_out, C, rounds=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"grid"):
        fit_reject_weights(z_in, z_out, C, grid=())
    with pytest.raises(ValueError, match=r"grid"):
        fit_reject_weights(z_in, z_out, C, grid=(0.5, -1.0))
    with pytest.raises(TypeError, match=r"grid"):
        fit_reject_weights(z_in, z_out, C, grid=0.5)  # type: ignore[arg-type]
