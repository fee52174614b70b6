"""Reject scores against plain float64 references, plus their invariants."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rejectnet.scores import (
    entropy_diff,
    entropy_reject,
    max_reject,
    sum_reject,
    weighted_reject,
)

SHAPES = [(1, 1), (3, 1), (10, 5), (100, 10), (2, 50)]  # (C, k)


def _p(z: torch.Tensor) -> torch.Tensor:
    return torch.softmax(z.to(torch.float64), dim=1)


def ref_max(z: torch.Tensor, c: int) -> torch.Tensor:
    return _p(z)[:, c:].max(dim=1).values


def ref_sum(z: torch.Tensor, c: int) -> torch.Tensor:
    return _p(z)[:, c:].sum(dim=1)


def ref_weighted(z: torch.Tensor, c: int, w: torch.Tensor) -> torch.Tensor:
    return (_p(z)[:, c:] * w.to(torch.float64)).sum(dim=1)


def _plogp(p: torch.Tensor) -> torch.Tensor:
    return torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(dim=1)


def ref_entropy(z: torch.Tensor, c: int) -> torch.Tensor:
    return -_plogp(_p(z)[:, c:])


def ref_entropy_diff(z: torch.Tensor, c: int) -> torch.Tensor:
    p = _p(z)
    return -_plogp(p[:, c:]) + _plogp(p[:, :c])


UNWEIGHTED: list[tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = [
    (max_reject, ref_max),
    (sum_reject, ref_sum),
    (entropy_reject, ref_entropy),
    (entropy_diff, ref_entropy_diff),
]


def _logits(n: int, c: int, k: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c + k, generator=g, dtype=torch.float64) * scale


@pytest.mark.parametrize(("c", "k"), SHAPES)
@pytest.mark.parametrize(("fn", "ref"), UNWEIGHTED, ids=lambda f: getattr(f, "__name__", ""))
@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
def test_matches_reference(fn, ref, c: int, k: int, scale: float) -> None:
    z = _logits(64, c, k, scale, seed=c * 100 + k)
    got = fn(z, c)
    assert got.dtype == torch.float64 and got.shape == (64,)
    torch.testing.assert_close(got, ref(z, c), rtol=1e-10, atol=1e-12)
    got32 = fn(z.float(), c)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), ref(z, c), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("c", "k"), SHAPES)
def test_weighted_matches_reference(c: int, k: int) -> None:
    z = _logits(40, c, k, 2.0, seed=7 + k)
    w = torch.rand(k, generator=torch.Generator().manual_seed(k)) + 0.01
    torch.testing.assert_close(weighted_reject(z, c, w), ref_weighted(z, c, w))
    torch.testing.assert_close(weighted_reject(z, c, w.tolist()), ref_weighted(z, c, w))
    torch.testing.assert_close(weighted_reject(z, c, w.numpy()), ref_weighted(z, c, w))


@settings(max_examples=60, deadline=None)
@given(
    c=st.integers(1, 6),
    k=st.integers(1, 5),
    n=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([1e-3, 1.0, 20.0, 1e3]),
)
def test_reference_property(c: int, k: int, n: int, seed: int, scale: float) -> None:
    z = _logits(n, c, k, scale, seed)
    for fn, ref in UNWEIGHTED:
        torch.testing.assert_close(fn(z, c), ref(z, c), rtol=1e-9, atol=1e-10)


def test_extreme_logits_are_finite_and_correct() -> None:
    # +-1e4 overflows exp() in float32 and float64: a naive softmax gives NaN.
    z = torch.tensor(
        [
            [1e4, -1e4, 0.0, -1e4],  # all mass on class 0
            [-1e4, 0.0, 1e4, -1e4],  # all mass on reject unit 0
            [-1e4, -1e4, 1e4, 1e4],  # split evenly between the reject units
            [1e4, -1e4, 1e4, -1e4],  # split between class 0 and reject unit 0
        ]
    )
    assert torch.isnan(torch.exp(z.double()) / torch.exp(z.double()).sum(1, keepdim=True)).any()
    expected = {
        max_reject: [0.0, 1.0, 0.5, 0.5],
        sum_reject: [0.0, 1.0, 1.0, 0.5],
        entropy_reject: [0.0, 0.0, np.log(2.0), 0.5 * np.log(2.0)],
        entropy_diff: [0.0, 0.0, np.log(2.0), 0.0],
    }
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        zz = z.to(dtype)
        for fn, want in expected.items():
            got = fn(zz, 2)
            assert torch.isfinite(got).all(), (fn.__name__, dtype)
            torch.testing.assert_close(
                got.double(), torch.tensor(want, dtype=torch.float64), atol=1e-6, rtol=0
            )
        w = weighted_reject(zz, 2, [1.0, 3.0])
        torch.testing.assert_close(w.double(), torch.tensor([0.0, 1.0, 2.0, 0.5]).double())


@settings(max_examples=50, deadline=None)
@given(
    c=st.integers(1, 5),
    k=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    shift=st.floats(-1e3, 1e3),
)
def test_invariants(c: int, k: int, seed: int, shift: float) -> None:
    z = _logits(16, c, k, 5.0, seed)
    s = sum_reject(z, c)
    m = max_reject(z, c)
    torch.testing.assert_close(weighted_reject(z, c, torch.ones(k)), s)
    assert torch.all(m <= s + 1e-12)
    for fn in (max_reject, sum_reject):
        out = fn(z, c)
        assert torch.all((out >= 0) & (out <= 1))
    assert torch.all(entropy_reject(z, c) >= 0)
    for fn, _ in UNWEIGHTED:
        torch.testing.assert_close(fn(z + shift, c), fn(z, c), rtol=1e-8, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 5),
    k=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    delta=st.floats(0.1, 5.0),
    data=st.data(),
)
def test_raising_a_reject_logit_increases_sum(
    c: int, k: int, seed: int, delta: float, data: st.DataObject
) -> None:
    z = _logits(8, c, k, 2.0, seed)
    j = data.draw(st.integers(c, c + k - 1))
    z2 = z.clone()
    z2[:, j] += delta
    assert torch.all(sum_reject(z2, c) > sum_reject(z, c))
    # and raising a class logit decreases it
    z3 = z.clone()
    z3[:, 0] += delta
    assert torch.all(sum_reject(z3, c) < sum_reject(z, c))


@pytest.mark.parametrize("fn", [f for f, _ in UNWEIGHTED], ids=lambda f: f.__name__)
def test_numpy_in_numpy_out_and_inputs_unchanged(fn) -> None:
    z = _logits(5, 3, 2, 2.0, seed=1)
    arr = z.numpy().copy()
    arr_before = arr.copy()
    out = fn(arr, 3)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (5,)
    np.testing.assert_array_equal(arr, arr_before)
    out32 = fn(arr.astype(np.float32), 3)
    assert isinstance(out32, np.ndarray) and out32.dtype == np.float32
    np.testing.assert_allclose(out, fn(z, 3).numpy())

    t = z.float().requires_grad_(False)
    before = t.clone()
    res = fn(t, 3)
    assert isinstance(res, torch.Tensor) and res.device == t.device
    torch.testing.assert_close(t, before, rtol=0, atol=0)


def test_weighted_numpy_and_grad_input_unchanged() -> None:
    z = torch.randn(4, 5, requires_grad=True)
    before = z.detach().clone()
    out = weighted_reject(z, 3, np.array([0.5, 2.0]))
    assert not out.requires_grad
    torch.testing.assert_close(z.detach(), before, rtol=0, atol=0)
    out_np = weighted_reject(before.numpy(), 3, (0.5, 2.0))
    assert isinstance(out_np, np.ndarray)
    np.testing.assert_allclose(out_np, out.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fn", [f for f, _ in UNWEIGHTED], ids=lambda f: f.__name__)
def test_half_precision_accepted(fn, dtype: torch.dtype) -> None:
    z = _logits(20, 4, 3, 2.0, seed=3).to(dtype)
    out = fn(z, 4)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, fn(z.float(), 4), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        out.double(), fn(_logits(20, 4, 3, 2.0, seed=3), 4), atol=0.03, rtol=0
    )


def test_integer_logits_are_accepted() -> None:
    z = torch.tensor([[2, 0, 0], [0, 0, 5]])
    torch.testing.assert_close(sum_reject(z, 2), ref_sum(z, 2).float())


def test_empty_batch() -> None:
    out = sum_reject(torch.zeros(0, 4), 2)
    assert out.shape == (0,)


@pytest.mark.parametrize("fn", [f for f, _ in UNWEIGHTED], ids=lambda f: f.__name__)
@pytest.mark.parametrize("c", [0, -1, 4, 5])
def test_num_classes_out_of_range(fn, c: int) -> None:
    with pytest.raises(ValueError, match=r"num_classes.*width \(4\).*k = width - num_classes"):
        fn(torch.zeros(2, 4), c)


@pytest.mark.parametrize("c", [2.0, "2", None, True])
def test_num_classes_wrong_type(c: object) -> None:
    with pytest.raises(TypeError, match=r"num_classes"):
        sum_reject(torch.zeros(2, 4), c)  # type: ignore[arg-type]


def test_num_classes_numpy_integer_ok() -> None:
    torch.testing.assert_close(sum_reject(torch.zeros(1, 4), np.int64(2)), torch.tensor([0.5]))


def test_bad_logits() -> None:
    with pytest.raises(ValueError, match=r"logits"):
        sum_reject(torch.zeros(4), 2)
    with pytest.raises(ValueError, match=r"NaN"):
        sum_reject(torch.tensor([[0.0, float("nan"), 1.0]]), 1)
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        max_reject(np.array([[0.0, np.inf, 1.0]]), 1)
    with pytest.raises(TypeError, match=r"logits"):
        sum_reject([[0.0, 1.0]], 1)  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1.0], r"weights.*k = 2"),
        ([1.0, 1.0, 1.0], r"weights.*k = 2"),
        ([[1.0, 1.0]], r"weights.*k = 2"),
        ([1.0, -0.5], "weights.*non-negative"),
        ([1.0, float("nan")], "weights.*finite"),
        ([1.0, float("inf")], "weights.*finite"),
        ([0.0, 0.0], "weights.*zero"),
        (torch.zeros(2), "weights.*zero"),
    ],
)
def test_bad_weights(weights: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        weighted_reject(torch.zeros(3, 5), 3, weights)


def test_weights_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"weights"):
        weighted_reject(torch.zeros(3, 5), 3, ["a", "b"])


def test_weights_tensor_not_modified_and_on_other_dtype() -> None:
    w = torch.tensor([1.0, 2.0], dtype=torch.float16)
    before = w.clone()
    out = weighted_reject(torch.zeros(2, 4, dtype=torch.float64), 2, w)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.full((2,), 0.75, dtype=torch.float64))
    torch.testing.assert_close(w, before, rtol=0, atol=0)
