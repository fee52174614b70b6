"""The one checks module: wrong type -> TypeError, wrong value -> ValueError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rejectnet import _validation as v


def test_is_tracing_covers_every_tracer() -> None:
    seen: list[bool] = []

    class M(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(v.is_tracing())
            return x * 2

    assert not v.is_tracing()
    torch.fx.symbolic_trace(M())
    assert seen[-1] is True
    torch.export.export(M(), (torch.ones(2),))
    assert seen[-1] is True
    torch.compile(M(), backend="eager")(torch.ones(2))
    assert seen[-1] is True
    with pytest.warns(FutureWarning):
        torch.jit.trace(M(), torch.ones(2), check_trace=False)
    assert seen[-1] is True
    M()(torch.ones(2))
    assert seen[-1] is False


def test_one_exception_policy() -> None:
    # wrong type -> TypeError
    for call in (
        lambda: v.check_int(1.5, "k"),
        lambda: v.check_int(True, "k"),
        lambda: v.check_num_classes(2.0, 5),
        lambda: v.check_real("0.5", "value"),
        lambda: v.check_number("1", "t"),
        lambda: v.as_device(0, "device"),
        lambda: v.check_dtype("float32", "dtype"),
    ):
        with pytest.raises(TypeError):
            call()
    # wrong value -> ValueError
    for call in (
        lambda: v.check_int(0, "k"),
        lambda: v.check_num_classes(5, 5),
        lambda: v.check_real(float("nan"), "value"),
        lambda: v.check_real(10**400, "value"),
        lambda: v.check_number(-1.0, "t"),
        lambda: v.as_device("tpu-x", "device"),
        lambda: v.check_dtype(torch.int64, "dtype", floating=True),
        lambda: v.check_finite_rows(torch.tensor([False, True]), "x"),
        lambda: v.check_finite_logits(torch.tensor([[0.0, float("inf")]]), "x"),
    ):
        with pytest.raises(ValueError):
            call()
    assert v.check_int(np.int64(3), "k") == 3 and v.check_number(np.float32(2.0), "t") == 2.0


def test_finiteness_is_exact_past_float_overflow() -> None:
    big = torch.full((3, 4), 3e38)  # the sum overflows, every value is finite
    assert v.all_finite(big)
    big[1, 2] = float("nan")
    assert not v.all_finite(big)
    assert v.nonfinite_rows(big).tolist() == [False, True, False]
    assert v.all_finite(torch.tensor([1, 2]))  # integers are always finite


def test_integer_or_none_accepts_ints_only() -> None:
    assert v.integer_or_none(3) == 3
    assert v.integer_or_none(np.int64(7)) == 7
    for bad in (True, 2.0, "3", None, torch.tensor([1, 2])):
        assert v.integer_or_none(bad) is None


def test_check_finite_inputs_names_the_input_and_rows() -> None:
    v.check_finite_inputs(torch.zeros(3, 2), "x")
    x = torch.zeros(3, 2)
    x[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x holds NaN or infinite values for 1 of 3 .*rows 1\)"):
        v.check_finite_inputs(x, "x")
    with pytest.raises(ValueError, match=r"x\['b'\] holds NaN"):
        v.check_finite_inputs({"a": torch.zeros(3, 2), "b": x}, "x")


def test_check_logits_width_names_the_head() -> None:
    v.check_logits_width(torch.zeros(2, 5), 5, "fc")
    with pytest.raises(RuntimeError, match=r"expected \(N, 5\).*head='fc'"):
        v.check_logits_width(torch.zeros(2, 4), 5, "fc")
    with pytest.raises(RuntimeError, match="shape \\(2, 5, 1\\)"):
        v.check_logits_width(torch.zeros(2, 5, 1), 5, "fc")
