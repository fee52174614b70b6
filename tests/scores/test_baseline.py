"""Baseline scores (msp, energy, max_logit) against plain references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rejectnet.scores import energy, max_logit, msp


def _logits(n: int, c: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * scale


def ref_msp(z: torch.Tensor) -> torch.Tensor:
    return -torch.softmax(z.double(), dim=1).max(dim=1).values


def ref_energy(z: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    z = z.double()
    m = z.max(dim=1, keepdim=True).values
    return -t * (m.squeeze(1) / t + torch.log(torch.exp((z - m) / t).sum(dim=1)))


def ref_max_logit(z: torch.Tensor) -> torch.Tensor:
    return -z.double().max(dim=1).values


@settings(max_examples=60, deadline=None)
@given(
    c=st.integers(1, 20),
    n=st.integers(1, 10),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([1e-3, 1.0, 10.0, 1e3]),
    t=st.sampled_from([0.1, 1.0, 2.5, 1000.0]),
)
def test_matches_reference(c: int, n: int, seed: int, scale: float, t: float) -> None:
    z = _logits(n, c, scale, seed)
    torch.testing.assert_close(msp(z), ref_msp(z))
    torch.testing.assert_close(max_logit(z), ref_max_logit(z))
    torch.testing.assert_close(energy(z, temperature=t), ref_energy(z, t))
    torch.testing.assert_close(energy(z), ref_energy(z, 1.0))


def test_known_values() -> None:
    z = torch.tensor([[0.0, 0.0], [np.log(3.0), 0.0]], dtype=torch.float64)
    torch.testing.assert_close(msp(z), torch.tensor([-0.5, -0.75], dtype=torch.float64))
    torch.testing.assert_close(
        energy(z), -torch.tensor([np.log(2.0), np.log(4.0)], dtype=torch.float64)
    )
    torch.testing.assert_close(
        energy(z, temperature=2.0),
        -2.0 * torch.log(torch.tensor([2.0, 1.0 + np.sqrt(3.0)], dtype=torch.float64)),
    )
    torch.testing.assert_close(max_logit(z), -torch.tensor([0.0, np.log(3.0)]).double())


def test_energy_temperature_limits() -> None:
    z = _logits(6, 5, 3.0, seed=0)
    # T -> 0: energy -> -max logit; large T: -T log C - mean(z)
    torch.testing.assert_close(energy(z, temperature=1e-4), max_logit(z), atol=1e-3, rtol=0)
    big = 1e6
    torch.testing.assert_close(
        energy(z, temperature=big), -big * np.log(5.0) - z.mean(dim=1), atol=1e-3, rtol=0
    )


def test_extreme_logits() -> None:
    z = torch.tensor([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4]])
    torch.testing.assert_close(msp(z), torch.tensor([-1.0, -0.5]))
    torch.testing.assert_close(energy(z), torch.tensor([-1e4, -1e4 - np.log(2.0)]).float())
    torch.testing.assert_close(max_logit(z), torch.tensor([-1e4, -1e4]))
    for f in (msp, energy, max_logit):
        assert torch.isfinite(f(z)).all()


def test_msp_is_higher_for_flatter_predictions() -> None:
    z = torch.tensor([[5.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    s = msp(z)
    assert s[0] < s[1] < s[2]
    torch.testing.assert_close(s[2], torch.tensor(-1 / 3))


@pytest.mark.parametrize("fn", [msp, energy, max_logit])
def test_io_types_and_inputs_unchanged(fn) -> None:
    z = _logits(4, 3, 2.0, seed=9)
    arr = z.numpy().copy()
    out = fn(arr)
    assert isinstance(out, np.ndarray) and out.shape == (4,) and out.dtype == np.float64
    np.testing.assert_array_equal(arr, z.numpy())
    t32 = z.float()
    before = t32.clone()
    out32 = fn(t32)
    assert isinstance(out32, torch.Tensor) and out32.dtype == torch.float32
    torch.testing.assert_close(t32, before, rtol=0, atol=0)
    np.testing.assert_allclose(out32.numpy(), out, rtol=1e-5, atol=1e-6)
    out_np32 = fn(arr.astype(np.float32))
    assert out_np32.dtype == np.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fn", [msp, energy, max_logit])
def test_half_precision(fn, dtype: torch.dtype) -> None:
    z = _logits(10, 4, 2.0, seed=2)
    out = fn(z.to(dtype))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), fn(z), atol=0.05, rtol=0.02)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(t: float) -> None:
    with pytest.raises(ValueError, match=r"temperature"):
        energy(torch.zeros(2, 3), temperature=t)


@pytest.mark.parametrize("t", ["1.0", None, True])
def test_temperature_type(t: object) -> None:
    with pytest.raises(TypeError, match=r"temperature"):
        energy(torch.zeros(2, 3), temperature=t)  # type: ignore[arg-type]


def test_temperature_numpy_scalar_ok() -> None:
    torch.testing.assert_close(
        energy(torch.zeros(1, 2), temperature=np.float32(2.0)),
        torch.tensor([-2.0 * np.log(2.0)]).float(),
    )


@pytest.mark.parametrize("fn", [msp, energy, max_logit])
def test_bad_logits(fn) -> None:
    with pytest.raises(ValueError, match=r"logits"):
        fn(torch.zeros(3))
    with pytest.raises(ValueError, match=r"at least one class"):
        fn(torch.zeros(3, 0))
    with pytest.raises(ValueError, match=r"NaN"):
        fn(np.array([[0.0, np.nan]]))
