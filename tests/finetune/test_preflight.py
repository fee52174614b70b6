"""Pre-flight checks: refused before any weight changes, naming the argument."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from rejectnet.finetune import Finetuner
from rejectnet.losses import SelfSupervisedRejectLoss
from tests.finetune.helpers import DropoutCNN, in_distribution, loaders


def _net(k: int = 3) -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(DropoutCNN(), k=k)


def _weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in m.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(_equal(a[n], b[n]) for n in a)


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality that treats NaN (the unset threshold) as equal to NaN."""
    if a.is_floating_point():
        return a.shape == b.shape and torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True)
    return torch.equal(a, b)


def test_bad_label_in_a_later_batch_is_refused_before_any_weight_change() -> None:
    net = _net()
    before = _weights(net)
    x = torch.randn(16, 1, 8, 8)
    good, bad = torch.zeros(16, dtype=torch.long), torch.full((16,), 7)
    ft = SelfSupervisedOODFinetuner(net, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"in_loader batch 1 has labels in \[7, 7\]"):
        ft.fit([(x, good), (x, bad)], [torch.randn(80, 1, 8, 8)])
    assert _same(before, _weights(net))


def test_objective_for_another_c_is_refused_before_training() -> None:
    net = _net()
    before = _weights(net)
    with pytest.raises(ValueError, match="num_classes=5 but the model has C=3"):
        Finetuner(net, SelfSupervisedRejectLoss(5), epochs=1, progress=False).fit(*loaders())
    assert _same(before, _weights(net))


# ---------------------------------------------------------------- bad input, nothing changed
def _bad_fit(
    net: RejectHead,
    in_loader: object,
    out_loader: object,
    match: str,
    exc: type[Exception] = ValueError,
) -> None:
    before = _weights(net)
    with pytest.raises(exc, match=match):
        SelfSupervisedOODFinetuner(net, epochs=1, progress=False).fit(in_loader, out_loader)  # type: ignore[arg-type]
    assert _same(before, _weights(net)), "weights must be unchanged after rejected input"


def test_empty_loaders() -> None:
    in_loader, out_loader = loaders()
    _bad_fit(_net(k=2), [], out_loader, "in_loader is empty")
    _bad_fit(_net(k=2), in_loader, [], "outlier_loader is empty")


def test_shape_mismatch_names_both() -> None:
    in_loader, _ = loaders()
    big = DataLoader(TensorDataset(torch.randn(20, 1, 10, 10)), batch_size=5)
    _bad_fit(_net(k=2), in_loader, big, r"\(1, 8, 8\).*\(1, 10, 10\)")


def test_labels_out_of_range() -> None:
    ds = in_distribution()
    bad = DataLoader(TensorDataset(ds.tensors[0], ds.tensors[1] + 5), batch_size=16)
    _bad_fit(_net(k=2), bad, loaders()[1], r"labels in \[5, 7\].*C=3")
    floats = DataLoader(TensorDataset(ds.tensors[0], ds.tensors[1].float()), batch_size=16)
    _bad_fit(_net(k=2), floats, loaders()[1], "integer tensor")
    unlabeled = DataLoader(TensorDataset(ds.tensors[0]), batch_size=16)
    _bad_fit(_net(k=2), unlabeled, loaders()[1], "must carry labels")


def test_model_whose_logits_are_not_c_plus_k_wide() -> None:
    class Sliced(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(72, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).flatten(1))[:, :2]

    net = RejectHead.wrap(Sliced(), k=2)
    _bad_fit(net, loaders()[0], loaders()[1], "C \\+ k", RuntimeError)
