"""The method registry: one entry per method, derived seeds, what every method reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from rejectnet.bench import METHODS, Method, MethodContext, config_from_dict, method_seed, run_bench
from rejectnet.evaluation import Report


def test_registry_names_and_summaries() -> None:
    for required in ("msp", "energy", "max_logit", "oe", "rejectnet-paper", "rejectnet"):
        assert required in METHODS
    for name, m in METHODS.items():
        assert m.name == name and m.summary and callable(m.run)
    assert METHODS["oe"].uses_outliers and not METHODS["msp"].uses_outliers


def test_method_seeds_are_stable_and_distinct() -> None:
    seeds = {method_seed(0, name) for name in METHODS}
    assert len(seeds) == len(METHODS)
    assert method_seed(3, "rejectnet") == method_seed(3, "rejectnet")
    assert all(0 <= method_seed(s, "x") < 2**31 for s in range(5))


def test_a_new_method_is_one_registry_entry(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    def run(ctx: MethodContext) -> list[Report]:
        seen.append(ctx.seed)
        return [ctx.evaluate(ctx.model, "energy-again", "energy")]

    monkeypatch.setitem(METHODS, "energy-again", Method("energy-again", "test", False, run))
    raw = {
        "data": {"id": "id.npz", "outliers": "pool.npz", "ood": {"far": "far.npz"}},
        "train": {"preset": "smoke", "seeds": 2},
        "eval": {"methods": ["energy", "energy-again"]},
        "output": {"plots": False},
    }
    results = run_bench(config_from_dict(raw, tiny["id"].parent), tmp_path / "o", progress=False)
    assert seen == [0, 1]
    assert results["energy-again"]["ood"] == results["energy"]["ood"]
    assert results["energy"]["seeds"] == 2 and "ood_std" in results["energy"]
    md = (tmp_path / "o" / "results.md").read_text()
    assert "## Mean ± std over the 2 seeds" in md and "| energy-again | `energy` |" in md


def test_ablation_rows_for_k_and_scores(tiny: dict[str, Path], tmp_path: Path) -> None:
    raw = {
        "data": {"id": "id.npz", "outliers": "pool.npz", "ood": {"far": "far.npz"}},
        "train": {"preset": "smoke"},
        "eval": {"methods": ["rejectnet"], "ks": [1], "scores": ["sum", "max", "weighted"]},
        "output": {"plots": False},
    }
    results = run_bench(config_from_dict(raw, tiny["id"].parent), tmp_path / "o", progress=False)
    rows = set(results) - {"_meta"}
    assert rows == {
        "rejectnet", "rejectnet-max", "rejectnet-weighted",
        "rejectnet-k1", "rejectnet-k1-max", "rejectnet-k1-weighted",
    }  # fmt: skip
    assert results["rejectnet-weighted"]["score"] == "weighted_reject"


def test_peers_without_pytorch_ood_are_skipped_with_a_note(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rejectnet import peers

    monkeypatch.setattr(peers, "is_available", lambda: False)
    raw = {
        "data": {"id": "id.npz", "ood": {"far": "far.npz"}},
        "train": {"preset": "smoke"},
        "eval": {"methods": ["msp", "energy", "odin", "knn"]},
        "output": {"plots": False},
    }
    results = run_bench(config_from_dict(raw, tiny["id"].parent), tmp_path / "o", progress=False)
    assert set(results) - {"_meta"} == {"msp", "energy"}
    notes = results["_meta"]["notes"]
    assert "pytorch-ood is not installed" in notes["odin"] and "rejectnet[peers]" in notes["knn"]
    assert results["energy"]["score"] == "energy"  # the built-in score


def test_peers_scored_together_equal_each_peer_run_alone(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("pytorch_ood", reason='the peers need pytorch-ood ("rejectnet[peers]")')
    together_names = ["energy", "knn", "vim", "mahalanobis", "odin-tuned", "mahalanobis-tuned"]

    def run(methods: list[str], out: str) -> dict[str, object]:
        raw = {
            "data": {"id": "id.npz", "ood": {"far": "far.npz", "near": "near.npz"}},
            "train": {"preset": "smoke"},
            "eval": {"methods": methods},
            "output": {"plots": False},
        }
        return run_bench(config_from_dict(raw, tiny["id"].parent), tmp_path / out, progress=False)

    together = run(together_names, "together")
    assert "built and scored together when energy ran" in together["_meta"]["notes"]["peers"]
    for name in together_names:
        alone = run([name], name)
        assert alone[name]["ood"] == together[name]["ood"], name
        assert alone[name]["id_accuracy"] == together[name]["id_accuracy"]
