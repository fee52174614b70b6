"""evaluate(): the paper's protocol, logits computed once, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet.evaluation import DatasetLogits, DatasetScores, compute_logits, evaluate
from rejectnet.metrics import ood_metrics
from rejectnet.scores import sum_reject


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc(x)


def _data(
    seed: int = 0,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], dict[str, list[torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    x_in = torch.randn(60, 4, generator=g)
    y_in = torch.randint(0, 3, (60,), generator=g)
    id_loader = [(x_in[:30], y_in[:30]), (x_in[30:], y_in[30:])]
    ood = {
        "far": [torch.randn(40, 4, generator=g) * 3 + 4],
        "near": [torch.randn(25, 4, generator=g) + 0.5, torch.randn(25, 4, generator=g) + 0.5],
    }
    return id_loader, ood


def test_logits_computed_once_per_dataset() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(Counting(), k=2, inplace=True)
    id_loader, ood = _data()
    evaluate(net, id_loader, ood, n_runs=7)
    assert net.model.calls == 2 + 1 + 2  # one forward per batch, whatever n_runs


def test_equal_sizes_and_agreement_with_metrics() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    rep = evaluate(net, id_loader, ood, n_runs=4, seed=3)
    assert rep.ood["far"].n == 40 and rep.ood["near"].n == 50 and rep.ood["far"].n_ood == 40
    assert rep.ood["mixed"].n == 60 and rep.ood["mixed"].n_ood == 80  # 40 from each set
    with torch.no_grad():
        x_in = torch.cat([b[0] for b in id_loader])
        s_in = sum_reject(net(x_in), 3).double().numpy()
        s_near = sum_reject(net(torch.cat(ood["near"])), 3).double().numpy()
    # 'near' has 50 < 60 samples: the in-side is subsampled; with one run per subsample
    # the mean must lie within the range of metrics over subsamples of s_in
    rng = np.random.default_rng(0)
    aurocs = [ood_metrics(rng.choice(s_in, 50, replace=False), s_near)["auroc"] for _ in range(300)]
    assert min(aurocs) - 1e-12 <= rep.ood["near"].mean["auroc"] <= max(aurocs) + 1e-12
    assert rep.ood["near"].std["auroc"] > 0
    # equal sizes -> no subsampling -> exact metrics, zero std
    same = evaluate(net, [x_in[:40]], {"far": ood["far"]}, n_runs=3, mixed=False)
    exact = ood_metrics(
        s_in[:40], sum_reject(net(torch.cat(ood["far"])), 3).detach().double().numpy()
    )
    assert same.ood["far"].mean["auroc"] == pytest.approx(exact["auroc"], abs=1e-12)
    assert same.ood["far"].std["fpr95"] == 0.0
    assert same.ood["far"].runs == 1 and rep.ood["near"].runs == 4
    assert "mixed" not in same.ood and same.id_accuracy is None


def test_accuracy_and_selective() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    with torch.no_grad():  # reject units that fire on large inputs: 'far' is detectable
        net.head.reject.weight.copy_(torch.tensor([[2.0, 2.0, 2.0, 2.0]] * 2))
        net.head.reject.bias.fill_(-12.0)
    id_loader, ood = _data()
    rep = evaluate(net, id_loader, {"far": ood["far"]}, mixed=False)
    with torch.no_grad():
        logits = torch.cat([net(b[0]) for b in id_loader])
    y = torch.cat([b[1] for b in id_loader])
    assert rep.id_accuracy == pytest.approx(float((logits[:, :3].argmax(1) == y).double().mean()))
    sel = rep.selective
    accepted = rep.scores_in <= sel["threshold"]
    assert sel["coverage"] == pytest.approx(accepted.mean()) and sel["coverage"] > 0.5
    assert rep.correct is not None
    assert sel["risk"] == pytest.approx((~rep.correct[accepted]).mean())
    assert sel["risk_without_rejection"] == pytest.approx(1 - rep.id_accuracy)
    assert float((rep.scores_out["far"] > sel["threshold"]).mean()) >= 0.95
    n_out_accepted = int((rep.scores_out["far"] <= sel["threshold"]).sum())
    errors = int((~rep.correct[accepted]).sum())
    assert sel["total_misclassification"] == pytest.approx((errors + n_out_accepted) / 60)


def test_plain_model_and_precomputed_logits() -> None:
    torch.manual_seed(0)
    model = Counting()
    id_loader, ood = _data()
    id_logits = compute_logits(model, id_loader)
    ood_logits = {k: compute_logits(model, v) for k, v in ood.items()}
    calls = model.calls
    rep = evaluate(model, id_logits, ood_logits, "energy", name="energy-baseline")
    assert model.calls == calls and rep.name == "energy-baseline" and rep.score == "energy"
    assert evaluate(model, id_logits, ood_logits).score == "msp"
    with pytest.raises(ValueError, match="needs reject units"):
        evaluate(model, id_logits, ood_logits, "sum")
    assert isinstance(id_logits, DatasetLogits)


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


def test_plots_written(tmp_path: object) -> None:
    from pathlib import Path

    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    a = evaluate(net, id_loader, ood, n_runs=1, name="a")
    b = evaluate(net, id_loader, ood, "max", n_runs=1, name="b")
    paths = a.plot(Path(str(tmp_path)) / "plots", others=[b])
    names = sorted(p.name for p in paths)
    assert names == ["error_vs_tpr.png", "risk_coverage.png", "roc.png", "score_histograms.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_one_ood_set_has_no_mixed_row() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    rep = evaluate(net, id_loader, {"far": ood["far"]}, n_runs=3)
    assert list(rep.ood) == ["far"] and "mixed" not in rep.scores_out
    assert "one OOD set, so no mixed row" in rep.notes
    assert "selective threshold: 95% TPR on far" in rep.notes
    md = rep.to_markdown()
    assert "| mixed |" not in md and "- one OOD set, so no mixed row" in md
    two = evaluate(net, id_loader, ood, n_runs=3)
    assert list(two.ood) == ["far", "near", "mixed"]
    assert any(n.startswith("mixed: 40 samples from each of the 2 OOD sets") for n in two.notes)


def test_equal_sizes_are_not_subsampled_nor_given_a_fake_spread() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    x = torch.randn(40, 4)
    rep = evaluate(net, [x], {"far": [torch.randn(40, 4) + 2]}, n_runs=10)
    res = rep.ood["far"]
    assert res.runs == 1 and not res.subsampled and res.n == res.n_in == res.n_ood == 40
    assert rep.notes[0] == "far: 40 in-distribution vs 40 OOD samples, no subsampling (equal sizes)"
    row = next(line for line in rep.to_markdown().splitlines() if "| far |" in line)
    assert "±" not in row  # a single exact run is printed as a bare number
    # with unequal sizes every metric is mean ± std over the requested runs
    rep2 = evaluate(net, [x], {"far": [torch.randn(30, 4) + 2]}, n_runs=10)
    assert rep2.ood["far"].runs == 10 and rep2.ood["far"].subsampled
    assert rep2.notes[0] == (
        "far: in-distribution side subsampled to 30 of 40 samples, "
        "mean ± std over 10 random subsamples"
    )
    row2 = next(line for line in rep2.to_markdown().splitlines() if "| far |" in line)
    assert row2.count("±") == 5


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


def test_any_callable_scorer_matches_the_metrics_on_its_scores() -> None:
    id_loader, ood = _data()
    calls: list[int] = []

    def norm_score(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return x.norm(dim=1)

    rep = evaluate(norm_score, id_loader, {"far": ood["far"]}, mixed=False)
    s_in = torch.cat([b[0] for b in id_loader]).norm(dim=1).double().numpy()
    s_far = torch.cat(ood["far"]).norm(dim=1).double().numpy()
    np.testing.assert_allclose(rep.scores_in, s_in)
    rng = np.random.default_rng(0)  # the same subsampling as evaluate's first set
    aurocs = []
    for _ in range(10):
        aurocs.append(ood_metrics(rng.choice(s_in, 40, replace=False), s_far)["auroc"])
    assert rep.ood["far"].mean["auroc"] == pytest.approx(float(np.mean(aurocs)), abs=1e-12)
    assert calls == [30, 30, 40] and rep.id_accuracy is None and "risk" not in rep.selective


def test_precomputed_scores_with_predictions_give_accuracy_and_risk() -> None:
    g = torch.Generator().manual_seed(1)
    s_in = torch.rand(50, generator=g)
    labels = torch.randint(0, 3, (50,), generator=g)
    predictions = labels.clone()
    predictions[:10] = (labels[:10] + 1) % 3
    ood = {"a": DatasetScores(torch.rand(50, generator=g) + 0.5)}
    rep = evaluate(lambda x: x, DatasetScores(s_in, labels, predictions), ood, name="pre")
    assert rep.id_accuracy == pytest.approx(0.8)
    assert rep.selective["risk_without_rejection"] == pytest.approx(0.2)
    exact = ood_metrics(s_in, ood["a"].scores)
    assert rep.ood["a"].mean["fpr95"] == pytest.approx(exact["fpr95"])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: evaluate(
                lambda x: x.sum(1), [torch.ones(3, 2)], {"a": [torch.ones(2, 2)]}, "msp"
            ),
            ValueError,
            "leave score=None",
        ),
        (
            lambda: evaluate(lambda x: x.sum(), [torch.ones(3, 2)], {"a": [torch.ones(2, 2)]}),
            ValueError,
            r"scores returned for a batch of id_loader must be 1-D",
        ),
        (
            lambda: evaluate(lambda x: x.sum(1)[:1], [torch.ones(3, 2)], {"a": [torch.ones(2, 2)]}),
            ValueError,
            "one score per input",
        ),
        (
            lambda: evaluate(42, [torch.ones(3, 2)], {"a": [torch.ones(2, 2)]}),  # type: ignore[arg-type]
            TypeError,
            "model must be an nn.Module",
        ),
        (
            lambda: evaluate(
                lambda x: x.sum(1), DatasetLogits(torch.ones(3, 2), None), {"a": [torch.ones(2, 2)]}
            ),
            TypeError,
            "scorer, which needs inputs",
        ),
        (
            lambda: evaluate(
                lambda x: x.sum(1) * float("nan"), [torch.ones(3, 2)], {"a": [torch.ones(2, 2)]}
            ),
            ValueError,
            "NaN",
        ),
    ],
)
def test_scorer_errors(call: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]


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


def test_a_sets_subsamples_do_not_depend_on_the_other_sets_or_their_order() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    alone = evaluate(net, id_loader, {"near": ood["near"]}, n_runs=5, seed=3)
    both = evaluate(net, id_loader, {"far": ood["far"], "near": ood["near"]}, n_runs=5, seed=3)
    swapped = evaluate(net, id_loader, {"near": ood["near"], "far": ood["far"]}, n_runs=5, seed=3)
    assert alone.ood["near"].runs == 5  # 60 in vs 50 out: really subsampled
    assert alone.ood["near"].mean == both.ood["near"].mean == swapped.ood["near"].mean
    assert both.ood["far"].mean == swapped.ood["far"].mean
    assert both.ood["mixed"].mean == swapped.ood["mixed"].mean
    other = evaluate(net, id_loader, {"near": ood["near"]}, n_runs=5, seed=4)
    assert other.ood["near"].mean != alone.ood["near"].mean  # the seed still matters


def _scored(shift: float, n: int = 30, seed: int = 0) -> DatasetScores:
    g = torch.Generator().manual_seed(seed)
    return DatasetScores(torch.randn(n, generator=g, dtype=torch.float64) + shift)


def _id_scores(acc_wrong: int = 0) -> DatasetScores:
    labels = torch.arange(40) % 4
    predictions = labels.clone()
    predictions[:acc_wrong] = (predictions[:acc_wrong] + 1) % 4
    g = torch.Generator().manual_seed(1)
    return DatasetScores(torch.randn(40, generator=g, dtype=torch.float64), labels, predictions)


def test_groups_tag_each_set_and_give_openood_near_far_means() -> None:
    ood = {"cifar100": _scored(0.5), "tin": _scored(1.0, seed=1), "svhn": _scored(3.0, seed=2)}
    rep = evaluate(lambda x: x, _id_scores(), ood, groups={"cifar100": "near", "tin": "near"})
    assert rep.groups == {"cifar100": "near", "tin": "near", "svhn": "far"}
    near = rep.means["near"]
    assert near["sets"] == ["cifar100", "tin"] and rep.means["far"]["sets"] == ["svhn"]
    for m in ("auroc", "aupr_in", "aupr_out", "fpr95", "detection_error"):
        expected = (rep.ood["cifar100"].mean[m] + rep.ood["tin"].mean[m]) / 2
        assert near[m] == pytest.approx(expected, abs=1e-15)
        assert rep.means["far"][m] == rep.ood["svhn"].mean[m]
    d = json.loads(rep.to_json())
    assert d["means"] == json.loads(json.dumps(rep.means))
    assert [d["ood"][s]["group"] for s in d["ood"]] == ["near", "near", "far", None]
    md = rep.to_markdown()
    assert "Near / far means" in md
    means_rows = [line for line in md.splitlines() if line.startswith("| RejectHead") is False]
    assert any(line.startswith("| scorer | near | 2 |") for line in means_rows)
    # without groups every set is far, and the table has no near / far means section
    plain = evaluate(lambda x: x, _id_scores(), ood)
    assert set(plain.groups.values()) == {"far"} and list(plain.means) == ["far"]
    assert "Near / far means" not in plain.to_markdown()


@pytest.mark.parametrize(
    ("groups", "error", "match"),
    [
        ({"nope": "near"}, ValueError, "groups names 'nope', which is not an OOD set"),
        ({"a": "middle"}, ValueError, r"groups\['a'\] must be one of \['near', 'far'\]"),
        ({"a": 1}, TypeError, "groups must map set names"),
        (["a"], TypeError, "groups must be a mapping"),
        ({"mixed": "near"}, ValueError, "not an OOD set"),
    ],
)
def test_bad_groups_are_refused(groups: object, error: type[Exception], match: str) -> None:
    ood = {"a": _scored(1.0), "b": _scored(2.0)}
    with pytest.raises(error, match=match):
        evaluate(lambda x: x, _id_scores(), ood, groups=groups)  # type: ignore[arg-type]


def test_markdown_marks_the_best_value_and_says_the_direction() -> None:
    ood = {"a": _scored(2.0), "b": _scored(0.2, seed=3)}
    good = evaluate(lambda x: x, _id_scores(), ood, name="good")
    worse = {"a": _scored(0.5), "b": _scored(0.1, seed=3)}  # closer to the ID scores
    bad = evaluate(lambda x: x, _id_scores(5), worse, name="bad")
    from rejectnet.evaluation import reports_to_markdown

    md = reports_to_markdown([good, bad])
    header = md.splitlines()[0]
    assert "AUROC ↑" in header and "FPR@95%TPR ↓" in header and "det. err ↓" in header
    assert "↑ higher is better, ↓ lower is better. **Bold**: the best of the methods." in md
    row = next(line for line in md.splitlines() if line.startswith("| good |") and "| a |" in line)
    assert row.count("**") == 2 * 6  # ID acc and the five metrics
    row = next(line for line in md.splitlines() if line.startswith("| bad |") and "| a |" in line)
    assert "**" not in row


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


def test_dict_batches_of_named_tensors_go_to_the_model_as_keyword_arguments() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
        num_labels=3,
    )
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(config).eval()
    g = torch.Generator().manual_seed(0)

    def batches(n: int, length: int, low: int, labelled: bool) -> list[dict[str, torch.Tensor]]:
        ids = torch.randint(low, low + 40, (n, length), generator=g)
        mask = torch.ones(n, length, dtype=torch.long)
        mask[::2, -2:] = 0
        out = {"input_ids": ids, "attention_mask": mask}
        if labelled:
            out["labels"] = torch.arange(n) % 3
        return [out]

    id_test = batches(20, 9, 1, True) + batches(12, 5, 1, True)  # two sequence lengths
    ood = {"far": batches(16, 9, 55, False)}
    report = evaluate(bert, id_test, ood, n_runs=2)
    with torch.no_grad():
        logits = [
            bert(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            for b in id_test
        ]
        out_logits = bert(**ood["far"][0]).logits
    msp = torch.cat([-torch.softmax(z, 1).amax(1) for z in logits])
    assert np.allclose(report.scores_in, msp.double().numpy(), atol=1e-6)
    assert np.allclose(report.scores_out["far"], -torch.softmax(out_logits, 1).amax(1), atol=1e-6)
    labels = torch.cat([b["labels"] for b in id_test])
    acc = (torch.cat(logits).argmax(1) == labels).double().mean().item()
    assert report.id_accuracy == pytest.approx(acc)
    # a scorer gets the named tensors as they come
    seen: list[list[str]] = []

    def mean_id(x: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(sorted(x))
        return x["input_ids"].float().mean(1)

    scored = evaluate(mean_id, id_test, ood, n_runs=2)
    assert seen[0] == ["attention_mask", "input_ids"]
    assert scored.ood["far"].mean["auroc"] > 0.99
