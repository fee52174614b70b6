"""TrainOptions: wrong types are TypeErrors, wrong values ValueErrors, naming the option."""

from __future__ import annotations

import pytest
import torch

from rejectnet import (
    RejectHead,
    SelfSupervisedOODFinetuner,
)
from tests.finetune.helpers import DropoutCNN


def _net(seed: int = 0, k: int = 2) -> RejectHead:
    torch.manual_seed(seed)
    return RejectHead.wrap(DropoutCNN(), k=k)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": -1.0}, "lam must be a finite number >= 0"),
        ({"epochs": 0}, "epochs must be a positive int"),
        ({"outlier_ratio": 0}, "outlier_ratio must be a finite number > 0"),
        ({"lr": -0.1}, "lr must be a finite number > 0"),
        ({"amp": "fp8"}, "amp must be"),
        ({"grad_clip": 0.0}, "grad_clip must be a finite number > 0"),
        ({"accumulate_grad_batches": 0}, "accumulate_grad_batches must be a positive int"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SelfSupervisedOODFinetuner(_net(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": "3"}, "epochs must be a positive int"),
        ({"lr": "x"}, "lr must be a number"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"progress": 1}, "progress must be True or False"),
        ({"epoch": 3}, r"unexpected keyword argument\(s\) \['epoch'\]; valid options"),
    ],
)
def test_wrong_types_are_type_errors(kwargs: dict[str, object], match: str) -> None:
    """One rule: a wrong type is a TypeError, a wrong value of the right type a ValueError."""
    with pytest.raises(TypeError, match=match):
        SelfSupervisedOODFinetuner(_net(), **kwargs)  # type: ignore[arg-type]
