"""rejectnet.report.html_page: one self-contained page that says what it shows."""

from __future__ import annotations

import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet.evaluation import evaluate
from tests.report.conftest import _data, _id_scores, _scored


def test_html_report_is_self_contained(tmp_path: object) -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    a = evaluate(net, id_loader, ood, n_runs=2, name="a<b>")
    b = evaluate(net, id_loader, ood, "max", n_runs=2, name="b")
    page = a.to_html(others=[b], title="demo")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count('<img alt="') == 4 and page.count("data:image/png;base64,") == 4
    assert "a&lt;b&gt;" in page and "<b>" not in page  # names are escaped
    assert page.count("<td>mixed</td>") == 2
    assert 'src="http' not in page and "href=" not in page  # nothing to fetch
    for note in a.notes:
        assert note.replace("±", "±") in page


def test_html_says_what_it_shows() -> None:
    from rejectnet.report import reports_to_html, reports_to_markdown

    ood = {"near_set": _scored(0.8), "far_set": _scored(3.0, seed=2)}
    groups = {"near_set": "near"}
    msp = evaluate(lambda x: x, _id_scores(), ood, name="msp", groups=groups)
    tuned = evaluate(lambda x: x, _id_scores(3), ood, name="tuned", groups=groups)
    page = reports_to_html(
        [msp, tuned],
        plots=False,
        method_notes={"knn": 'skipped: pytorch-ood is not installed (pip install "x")'},
    )
    # skipped methods, and why
    assert "Not shown" in page
    assert "<strong>knn</strong>: skipped: pytorch-ood is not installed" in page
    # the sizes evaluated, per set, with its group
    assert "<td>near_set</td><td>near</td><td>30</td><td>40</td>" in page
    # each metric's direction, the best value highlighted
    assert "<th>AUROC ↑</th>" in page and "<th>FPR@95%TPR ↓</th>" in page
    assert 'class="best"' in page
    # the near / far means, and the selective table explained
    assert "Near / far means (%)" in page and "<td>near</td><td>1</td>" in page
    assert "coverage is the share still accepted" in page
    # 3 of 40 wrong: 7.5 points below msp's accuracy, flagged on every row of that method
    assert page.count('<td class="flag">92.50 (\u22127.50)</td>') == 3
    assert "more than 1 point below stage one" in page
    md = reports_to_markdown([msp, tuned])
    assert md.count("| 92.50 (\u22127.50) |") == 3 and "Flagged: ID accuracy more than 1" in md
    # a drop given by the caller (e.g. results.json's id_acc_drop) wins over the computed one
    assert "Flagged" not in reports_to_markdown([msp, tuned], id_acc_drops={"tuned": 0.005})
    page = reports_to_html([msp, tuned], plots=False, id_acc_drops={"tuned": 0.005})
    assert 'class="flag"' not in page and "92.50</td>" in page
