"""The run fingerprint: one fingerprint of objects (outliers.signal.fingerprint), by value."""

from __future__ import annotations

import json

import torch
from torch import nn

from rejectnet.finetune.fingerprint import (
    describe_changes,
    object_fingerprint,
    run_document,
    run_identity,
    signal_fingerprint,
)
from rejectnet.losses import SelfSupervisedRejectLoss
from rejectnet.outliers import Blend, ClusterLabeler, ComposedSignal, Jigsaw
from rejectnet.outliers.signal import fingerprint


def _identity(objective: object, **train: object) -> dict[str, object]:
    return run_identity(
        nn.Linear(4, 5),
        num_classes=3,
        k=2,
        objective="rejectnet",
        options={"train": {"lam": 5.0, **train}, "objective": object_fingerprint(objective)},
        seed=0,
    )


def test_objects_enter_through_the_one_fingerprint() -> None:
    loss = SelfSupervisedRejectLoss(3, lam=2.0, pseudo_labels=ClusterLabeler(temperature=4.0))
    assert object_fingerprint(loss) == fingerprint(loss)
    signal = ComposedSignal([(Jigsaw(2), 1.0)])
    assert signal_fingerprint(signal) == fingerprint(signal) and signal_fingerprint(None) is None
    opts = object_fingerprint(loss)["options"]
    assert opts["lam"] == 2.0 and opts["num_classes"] == 3
    assert opts["labeler"]["options"]["temperature"] == 4.0  # an attribute, not a parameter


def test_plain_values_and_containers_stay_as_they_are() -> None:
    assert object_fingerprint({"lr": 0.1, "amp": False, "sizes": (1, 2)}) == {
        "lr": 0.1,
        "amp": False,
        "sizes": [1, 2],
    }
    assert object_fingerprint(float("nan")) == {"float": "nan"}
    doc = run_document(
        nn.Linear(2, 2), num_classes=2, k=None, objective="x", options={"b": 1, "a": 2}, seed=1
    )
    assert list(doc["options"]) == ["b", "a"]  # the constructors' order, for messages
    json.dumps(doc, allow_nan=False)


def test_a_changed_value_anywhere_changes_the_fingerprint_and_is_named() -> None:
    base = _identity(SelfSupervisedRejectLoss(3))
    same = _identity(SelfSupervisedRejectLoss(3))
    assert base == same
    cases = [
        (_identity(SelfSupervisedRejectLoss(3, lam=1.0)), "objective lam: checkpoint 5.0"),
        (_identity(SelfSupervisedRejectLoss(3), lam=1.0), "lam: checkpoint 5.0, this run 1.0"),
        (
            _identity(SelfSupervisedRejectLoss(3), signal=fingerprint(Blend(0.45))),
            "signal: checkpoint None, this run Blend(alpha=0.45)",
        ),
        (
            _identity(SelfSupervisedRejectLoss(3, pseudo_labels=ClusterLabeler(temperature=2.0))),
            "objective labeler: checkpoint None, this run ClusterLabeler(temperature=2.0",
        ),
    ]
    for other, needle in cases:
        assert other["fingerprint"] != base["fingerprint"]
        assert needle in describe_changes(base["run_config"], str(other["run_config"]))


def test_a_generator_enters_by_device_and_seed_not_by_its_state() -> None:
    g = torch.Generator().manual_seed(1)
    before = object_fingerprint(SelfSupervisedRejectLoss(3, generator=g))
    torch.rand(3, generator=g)
    assert object_fingerprint(SelfSupervisedRejectLoss(3, generator=g)) == before
