"""evaluate(): arguments, names, logits computed once (rejectnet.report.evaluation)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet.evaluation import evaluate
from tests.report.conftest import Counting, _data


def test_logits_computed_once_per_dataset() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(Counting(), k=2, inplace=True)
    id_loader, ood = _data()
    evaluate(net, id_loader, ood, n_runs=7)
    assert net.model.calls == 2 + 1 + 2  # one forward per batch, whatever n_runs


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_runs": 0}, "n_runs"),
        ({"ood_loaders": {}}, "non-empty"),
        ({"score": "bogus"}, "sum_reject"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    args: dict[str, object] = {"ood_loaders": ood, **kwargs}
    with pytest.raises(ValueError, match=match):
        evaluate(net, id_loader, **args)  # type: ignore[arg-type]


def test_unnamed_methods_are_not_labelled_by_their_score() -> None:
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    assert evaluate(net, id_loader, ood, n_runs=1).name == "RejectHead"
    assert evaluate(Counting(), id_loader, ood, n_runs=1).name == "Counting"

    def norm_score(x: torch.Tensor) -> torch.Tensor:
        return x.norm(dim=1)

    rep = evaluate(norm_score, id_loader, ood, n_runs=1)
    assert (rep.name, rep.score) == ("norm_score", "custom")
    assert evaluate(lambda x: x.sum(1), id_loader, ood, n_runs=1).name == "scorer"
