"""Report and OODResult: dicts, strict JSON (rejectnet.report.results)."""

from __future__ import annotations

import json

import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet.evaluation import evaluate
from tests.report.conftest import _data


def test_reports_serialise() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    rep = evaluate(net, *_data(), n_runs=2)
    d = json.loads(rep.to_json())
    assert set(d["ood"]) == {"far", "near", "mixed"}
    assert set(d["ood"]["far"]) >= {"auroc", "aupr_in", "aupr_out", "fpr95", "detection_error"}
    assert 0 <= d["ood"]["mixed"]["auroc"] <= 1
    md = rep.to_markdown()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3 and "| RejectHead | sum_reject |" in md
    assert d["ood"]["far"]["runs"] == 2 and d["notes"] == rep.notes
