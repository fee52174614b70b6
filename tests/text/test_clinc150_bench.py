"""rejectnet.bench.clinc150: data preparation, the dataset's metric, the CLI parser, and
(where the library takes dict batches) the whole run on a tiny synthetic CLINC150."""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
import pytest
import torch

from rejectnet.bench import BenchError
from rejectnet.bench.clinc150 import (
    CLINC150_METHODS,
    TextRecipe,
    add_clinc150_parser,
    clinc150_metric,
    prepare_data,
    run_clinc150,
    run_clinc150_command,
)
from tests.text._support import NEEDS_DICTS, dict_batches_supported

INTENTS = {
    "play_music": ["play", "song", "music", "jazz", "rock"],
    "weather": ["weather", "rain", "sunny", "forecast", "cold"],
    "alarm": ["alarm", "wake", "morning", "set", "clock"],
}
FILL = ["please", "can", "you", "the", "me", "a", "for", "now", "today", "my"]
OOS = ["giraffe", "tall", "history", "paint", "mountain", "river", "poem", "physics"]
TINY = TextRecipe(
    vocab_size=100,
    max_length=16,
    hidden_size=32,
    num_layers=1,
    stage_one_epochs=2,
    finetune_epochs=1,
    finetune_subset=None,
    n_runs=2,
)


@pytest.fixture
def clinc_dir(tmp_path):
    rnd = random.Random(0)

    def utt(words):
        return " ".join(rnd.sample(words, 3) + rnd.sample(FILL, 3))

    def split(n):
        return [[utt(w), k] for k, w in INTENTS.items() for _ in range(n)]

    data = {
        "train": split(20),
        "val": split(8),
        "test": split(8),
        "oos_train": [[utt(OOS), "oos"] for _ in range(20)],
        "oos_val": [[utt(OOS), "oos"] for _ in range(12)],
    }
    (tmp_path / "clinc150.json").write_text(json.dumps(data))
    (tmp_path / "wiki_sentences.txt").write_text(
        "\n".join(" ".join(rnd.sample(OOS + FILL, 6)) for _ in range(60))
    )
    return tmp_path


def test_metric_counts_rejected_in_scope_as_errors():
    s_val = np.linspace(0, 1, 101)  # threshold at 95% coverage: 0.95
    m = clinc150_metric(s_val, [0.1, 0.5, 0.99, 0.2], [True, False, True, True], {"a": [0.96, 0.5]})
    assert m["threshold"] == pytest.approx(0.95)
    assert m["in_scope_accuracy"] == pytest.approx(2 / 4)  # 0.99 rejected, 0.5 wrong
    assert m["oos_recall"] == {"a": 0.5}
    with pytest.raises(ValueError, match="correct has shape"):
        clinc150_metric(s_val, [0.1, 0.2], [True], {"a": [0.5]})


def test_prepare_data(clinc_dir, tmp_path):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(["what is a giraffe", "paint a river"]))
    data = prepare_data(clinc_dir, TINY, ood={"extra": extra})
    assert data.clinc.num_classes == 3 and len(data.train) == 60
    assert list(data.ood) == ["oos_val", "oos_train", "extra"] and len(data.ood["extra"]) == 2
    assert data.pool is not None and data.pool.labels is None
    batch = data.train.collate([data.train[0], data.train[1]])
    assert sorted(batch) == ["attention_mask", "input_ids", "labels"]
    assert prepare_data(clinc_dir, TINY, outliers="none").pool is None


def test_prepare_data_errors_name_the_file(clinc_dir, tmp_path):
    with pytest.raises(BenchError, match="clinc150.json"):
        prepare_data(tmp_path / "nowhere", TINY)
    (clinc_dir / "wiki_sentences.txt").unlink()
    with pytest.raises(BenchError, match="outlier pool .*wiki_sentences.txt"):
        prepare_data(clinc_dir, TINY)
    assert prepare_data(clinc_dir, TINY, outliers="none").pool is None
    with pytest.raises(BenchError, match="taken"):
        prepare_data(clinc_dir, TINY, outliers="none", ood={"oos_val": clinc_dir / "x.txt"})
    with pytest.raises(BenchError, match="outliers must be 'pool' or 'none'"):
        prepare_data(clinc_dir, TINY, outliers="wiki")  # type: ignore[arg-type]


def test_bad_arguments(clinc_dir, tmp_path):
    with pytest.raises(ValueError, match="seeds must be an int >= 1"):
        run_clinc150(clinc_dir, tmp_path / "o", seeds=0)
    with pytest.raises(ValueError, match="unknown: \\['odin'\\]"):
        run_clinc150(clinc_dir, tmp_path / "o", methods=["msp", "odin"])


def test_cli_parser_and_bad_ood(tmp_path, capsys):
    p = argparse.ArgumentParser()
    add_clinc150_parser(p.add_subparsers(dest="benchmark"))
    args = p.parse_args(["clinc150", "--data-dir", str(tmp_path), "--out", "o", "--ood", "bad"])
    assert args.outliers == "pool" and args.seeds == 1
    assert args.clinc150_handler(args) == 2
    assert "--ood wants NAME=PATH, got 'bad'" in capsys.readouterr().err
    args = p.parse_args(["clinc150", "--data-dir", str(tmp_path / "no"), "--out", "o"])
    assert run_clinc150_command(args) == 2
    assert "clinc150.json" in capsys.readouterr().err


@pytest.mark.skipif(not dict_batches_supported(), reason=NEEDS_DICTS)
def test_whole_run_on_tiny_data(clinc_dir, tmp_path):
    torch.manual_seed(0)
    res = run_clinc150(clinc_dir, tmp_path / "out", recipe=TINY, progress=False)
    ran = [m for m in CLINC150_METHODS if m in res]
    assert {"msp", "oe", "rejectnet-paper"} <= set(ran)
    for m in ran:
        entry = res[m]
        assert set(entry["ood"]) == {"oos_val", "oos_train", "mixed"}
        assert 0.0 <= entry["ood"]["oos_val"]["auroc"] <= 1.0
        assert "clinc150_in_scope_accuracy" in entry["selective"]
        assert "clinc150_oos_recall_oos_val" in entry["selective"]
    for f in ("results.json", "results.md", "report.html"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["_meta"]["seeds"] == 1


def test_outputs_have_bench_run_schema_and_the_dataset_metric(tmp_path):
    from torch import nn

    from rejectnet import evaluate
    from rejectnet.bench.clinc150 import _Context, _with_metric, _write

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    id_test = [(torch.randn(60, 4), torch.randint(0, 3, (60,)))]
    ood = {"oos_val": [torch.randn(20, 4) * 4], "oos_train": [torch.randn(30, 4) * 4]}
    ctx = _Context(model, None, TINY, 0, torch.device("cpu"), False, {})  # type: ignore[arg-type]
    report = evaluate(model, id_test, ood, "msp", name="msp", n_runs=2)
    s_val = torch.rand(50).numpy()
    report = _with_metric(ctx, report, s_val)
    meta = {"seeds": 1, "ood_sets": ["oos_val", "oos_train"], "outliers": "pool", "notes": {}}
    res = _write(tmp_path, {"msp": [report]}, [report], {**meta, "seconds": 1.0}, False)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["msp"]["ood"]["oos_val"]["auroc"] == res["msp"]["ood"]["oos_val"]["auroc"]
    sel = on_disk["msp"]["selective"]
    expected = clinc150_metric(
        s_val, report.scores_in, report.correct, {k: report.scores_out[k] for k in ood}
    )
    assert sel["clinc150_in_scope_accuracy"] == pytest.approx(expected["in_scope_accuracy"])
    assert sel["clinc150_oos_recall_oos_train"] == pytest.approx(
        expected["oos_recall"]["oos_train"]
    )
    md = (tmp_path / "results.md").read_text()
    assert "out-of-scope recall" in md and "| msp |" in md
    assert "<html" in (tmp_path / "report.html").read_text().lower()
