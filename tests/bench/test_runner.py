"""The runner end to end on tiny data (smoke preset): results, reproducibility, sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rejectnet.bench import BenchError, config_from_dict, load_config, run_bench
from rejectnet.models import SmallCNN
from tests.bench.conftest import write_image_folder

FINETUNED = ("oe", "oe+synthesis", "rejectnet-paper", "rejectnet")


def test_smoke_run_writes_results_in_the_schema(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    results = run_bench(load_config(tiny["config"]), out, progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    methods = set(saved) - {"_meta"}
    peers = {"energy", "max_logit", "odin", "mahalanobis", "knn", "vim"}
    assert {"msp", *peers, "odin-tuned", "mahalanobis-tuned", *FINETUNED} == methods
    for name in methods:
        r = saved[name]
        assert 0.0 <= r["id_accuracy"] <= 1.0
        assert set(r["ood"]) == {"far"}  # one OOD set: no "mixed" row
        for metrics in r["ood"].values():
            assert set(metrics) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
            assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert saved["rejectnet-paper"]["score"] == "sum_reject"
    assert saved["energy"]["score"].startswith("energy")
    meta = saved["_meta"]
    assert meta["preset"] == "smoke" and meta["ood_sets"] == ["far"]
    assert set(meta["method_seconds"]) >= set(FINETUNED)
    md = (out / "results.md").read_text()
    assert "| rejectnet-paper |" in md and "| msp |" in md
    # 5 of the 50 far images chose the tuned peers' settings: held out for every method
    assert "far: 45 images" in md
    assert "tuned on OOD" in saved["odin-tuned"]["score"]
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "roc.png").exists()


def _weights(out: Path, name: str = "rejectnet-seed0") -> dict[str, torch.Tensor]:
    return load_file(str(out / "models" / f"{name}.safetensors"))


def test_rejectnet_weights_do_not_depend_on_the_ood_sets(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 10: evaluation must not consume the RNG that initialises the reject units."""
    base = {
        "data": {"id": "id.npz", "outliers": "pool.npz", "ood": {"far": "far.npz"}},
        "train": {"preset": "smoke"},
        "output": {"plots": False, "save_models": True},
    }
    more = {**base, "data": {**base["data"], "ood": {"near": "near.npz", "far": "far.npz"}}}
    fewer_methods = {**base, "eval": {"methods": ["rejectnet"]}}
    outs, results = [], []
    for i, raw in enumerate((base, more, fewer_methods)):
        outs.append(tmp_path / f"run{i}")
        cfg = config_from_dict(raw, tiny["id"].parent)
        results.append(run_bench(cfg, outs[-1], progress=False))
    # the same numbers too, whichever methods ran before (each is evaluated on its own
    # model's logits, never on another's)
    assert results[0]["rejectnet"]["ood"] == results[2]["rejectnet"]["ood"]
    assert results[0]["rejectnet"]["id_accuracy"] == results[2]["rejectnet"]["id_accuracy"]
    a, b, c = (_weights(o) for o in outs)
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
        assert torch.equal(a[key], c[key]), key
    # and the paper recipe, run before rejectnet in the first two, too
    pa, pb = (_weights(o, "rejectnet-paper-seed0") for o in outs[:2])
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_image_folder_run_and_no_outliers(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", classes=3, per_class=40)
    ood = write_image_folder(tmp_path / "ood", classes=2, per_class=5)
    raw = {
        "data": {"id": str(root), "outliers": "none", "ood": {"other": str(ood)},
                 "image_size": 8, "channels": 1},
        "train": {"preset": "smoke", "val_size": 10},
        "output": {"plots": False},
    }  # fmt: skip
    results = run_bench(config_from_dict(raw), tmp_path / "out", progress=False)
    assert results["_meta"]["image_size"] == 8 and results["_meta"]["channels"] == 1
    assert "msp" in results and results["msp"]["ood"]["other"]["auroc"] >= 0.0
    notes = results["_meta"]["notes"]
    for name in FINETUNED:  # no pool: every outlier-using method runs on synthesis alone
        assert name in results and "synthesised from in-distribution images" in notes[name]


def test_own_model_entry_point_with_safetensors_weights(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    trained = SmallCNN(num_classes=10, image_size=8)
    save_file(trained.state_dict(), str(tmp_path / "mine.safetensors"))
    (tmp_path / "my_models.py").write_text(
        "from rejectnet.models import SmallCNN\n"
        "def make(num_classes, image_size):\n"
        "    return SmallCNN(num_classes=num_classes, image_size=image_size)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "own.toml").write_text(
        tiny["config"].read_text().replace(str(tiny["id"].name), str(tiny["id"]))
        + '[model]\nname = "my_models:make"\nweights = "mine.safetensors"\n'
        + '[eval]\nmethods = ["msp"]\n[output]\nplots = false\n'
    )
    cfg = load_config(tmp_path / "own.toml")
    assert cfg.schedule.stage_one_epochs == 0
    results = run_bench(cfg, tmp_path / "out", progress=False)
    # no stage one: msp evaluates the user's weights as they are
    data = np.load(tiny["id"])
    x = torch.from_numpy(data["x_test"]).float().div(255).unsqueeze(1)
    with torch.no_grad():
        acc = (trained.eval()(x).argmax(1).numpy() == data["y_test"]).mean()
    assert results["msp"]["id_accuracy"] == pytest.approx(float(acc))
    assert results["_meta"]["model"] == "my_models:make"

    bad = tmp_path / "bad.safetensors"
    save_file({"nope": torch.zeros(1)}, str(bad))
    cfg = config_from_dict(
        {"data": {"id": str(tiny["id"]), "ood": {"far": str(tiny["far"])}},
         "model": {"name": "small_cnn", "weights": str(bad)}, "train": {"preset": "smoke"}}
    )  # fmt: skip
    with pytest.raises(BenchError, match="weights do not fit 'small_cnn'"):
        run_bench(cfg, tmp_path / "out2", progress=False)


def test_progress_prints_one_line_per_stage(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(
        tiny["config"], {"eval": {"methods": ["msp", "oe"]}, "output": {"plots": False}}
    )
    run_bench(cfg, tmp_path / "out", progress=True)
    err = capsys.readouterr().err.splitlines()
    starts = [line for line in err if line.startswith("[")]
    assert [s.split("]")[0] for s in starts] == ["[1/3", "[2/3", "[3/3"]
    assert all("ETA" in line for line in err if "done in" in line)
    assert "\r" not in "".join(err)  # not a terminal: no progress bars


def test_results_md_escapes_hostile_set_names_in_every_table(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    from tests.report.markdown_rows import markdown_rows

    name = "odd|set\nname\\"
    raw = {
        "data": {"id": str(tiny["id"]), "ood": {name: str(tiny["far"]), "b": str(tiny["near"])}},
        "train": {"preset": "smoke", "seeds": 2},
        "eval": {"methods": ["msp", "oe"]},
        "output": {"plots": False},
    }
    run_bench(config_from_dict(raw, tmp_path), tmp_path / "o", progress=False)
    md = (tmp_path / "o" / "results.md").read_text()
    tables = [t for t in md.split("\n\n") if t.startswith("|")]
    assert len(tables) == 2  # the last seed's table and the table over seeds
    for table in tables:
        rows = markdown_rows(table)
        assert len(rows) == len(table.splitlines())
        assert all(len(r) == len(rows[0]) for r in rows), table
    assert "odd\\|set\\nname\\\\" in tables[0] and "odd\\|set\\nname\\\\" in tables[1]
    notes = md.split("Notes:\n\n")[1].splitlines()
    assert notes and all(line.startswith("- `") for line in notes)
    assert md.splitlines()[2].startswith("In-distribution: id.npz test")  # the header: one line
    assert "odd\\|set name\\\\: " in md.splitlines()[2]
