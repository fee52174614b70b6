"""The format step: loaders, logits, scores and scorers turned into scores (report.sources)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rejectnet.evaluation import DatasetLogits, DatasetScores, compute_logits, evaluate
from rejectnet.metrics import ood_metrics
from tests.report.conftest import Counting, _data


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
