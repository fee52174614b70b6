"""rejectnet.bench.clinc150.run: argument checks, the CLI parser, the outputs, and the
whole run on a tiny synthetic CLINC150."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from rejectnet.bench.clinc150 import (
    CLINC150_METHODS,
    add_clinc150_parser,
    clinc150_metric,
    run_clinc150,
    run_clinc150_command,
)
from tests.text._support import NEEDS_DICTS, dict_batches_supported, tiny_recipe

TINY = tiny_recipe()


def test_bad_arguments(clinc_dir, tmp_path):
    with pytest.raises(ValueError, match="seeds must be an int >= 1"):
        run_clinc150(clinc_dir, tmp_path / "o", seeds=0)
    with pytest.raises(ValueError, match="unknown: \\['odin'\\]"):
        run_clinc150(clinc_dir, tmp_path / "o", methods=["msp", "odin"])
    with pytest.raises(TypeError, match="not one str"):
        run_clinc150(clinc_dir, tmp_path / "o", methods="msp")
    assert not (tmp_path / "o").exists()  # checked before anything is written


def test_cli_parser_and_bad_ood(tmp_path, capsys):
    p = argparse.ArgumentParser()
    add_clinc150_parser(p.add_subparsers(dest="benchmark"))
    args = p.parse_args(
        ["clinc150", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--ood", "bad"]
    )
    assert args.outliers == "pool" and args.seeds == 1
    assert args.clinc150_handler(args) == 2
    assert "--ood wants NAME=PATH, got 'bad'" in capsys.readouterr().err
    args = p.parse_args(
        ["clinc150", "--data-dir", str(tmp_path / "no"), "--out", str(tmp_path / "o")]
    )
    assert run_clinc150_command(args) == 2
    assert "clinc150.json" in capsys.readouterr().err


@pytest.mark.skipif(not dict_batches_supported(), reason=NEEDS_DICTS)
def test_whole_run_on_tiny_data(clinc_dir, tmp_path):
    torch.manual_seed(0)
    res = run_clinc150(clinc_dir, tmp_path / "out", recipe=TINY, progress=False)
    ran = [m for m in CLINC150_METHODS if m in res]
    assert {"msp", "oe", "rejectnet-paper", "rejectnet"} <= set(ran)
    for m in ran:
        entry = res[m]
        assert set(entry["ood"]) == {"oos_val", "oos_train", "mixed"}
        assert 0.0 <= entry["ood"]["oos_val"]["auroc"] <= 1.0
        assert "clinc150_in_scope_accuracy" in entry["selective"]
        assert "clinc150_oos_recall_oos_val" in entry["selective"]
    drop = res["msp"]["id_accuracy"] - res["rejectnet"]["id_accuracy"]
    assert res["rejectnet"]["id_acc_drop"] == pytest.approx(drop, abs=1e-6)
    assert "id_acc_drop" not in res["msp"]  # stage one itself
    # the recipe's score on its fine-tuned model; rejectnet-paper keeps Algorithm 1's
    assert res["rejectnet"]["score"] == TINY.rejectnet_score == "energy"
    assert res["rejectnet-paper"]["score"] == "sum_reject"
    for f in ("results.json", "results.md", "report.html"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["_meta"]["seeds"] == 1 and on_disk["_meta"]["output_errors"] == []


@pytest.mark.skipif(not dict_batches_supported(), reason=NEEDS_DICTS)
def test_without_a_pool_only_the_synthesis_runs(clinc_dir, tmp_path):
    res = run_clinc150(
        clinc_dir, tmp_path / "out", recipe=TINY, outliers="none", progress=False,
        methods=["msp", "oe", "rejectnet"],
    )  # fmt: skip
    assert "oe" not in res and {"msp", "rejectnet"} <= set(res)
    notes = res["_meta"]["notes"]
    assert "needs an outlier pool" in notes["oe"] and "synthesised" in notes["rejectnet"]


def test_outputs_have_bench_run_schema_and_the_dataset_metric(tmp_path):
    from torch import nn

    from rejectnet import evaluate
    from rejectnet.bench.clinc150.data import Context
    from rejectnet.bench.clinc150.metric import with_metric
    from rejectnet.bench.clinc150.run import _write

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    id_test = [(torch.randn(60, 4), torch.randint(0, 3, (60,)))]
    ood = {"oos_val": [torch.randn(20, 4) * 4], "oos_train": [torch.randn(30, 4) * 4]}
    ctx = Context(model, None, TINY, 0, torch.device("cpu"), False, {})  # type: ignore[arg-type]
    report = evaluate(model, id_test, ood, "msp", name="msp", n_runs=2)
    s_val = torch.rand(50).numpy()
    report = with_metric(ctx, report, s_val)
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
