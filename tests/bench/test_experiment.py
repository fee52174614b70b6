"""What the presets share (rejectnet.bench.experiment): the config dict, the pool, the sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from rejectnet.bench import BenchError, config_from_dict
from rejectnet.bench.experiment import ood_sets, outlier_pool, preset_config


def test_preset_config_main_k_ablation_rows_and_options() -> None:
    cfg = preset_config({"id": "/d/id.npz"}, {"name": "small_cnn"}, {"preset": "smoke"},
                        seeds=3, ks=(2, 7), scores=("sum", "max"), methods=("msp",),
                        plots=False, val_size=12)  # fmt: skip
    assert cfg["train"] == {"preset": "smoke", "seeds": 3, "k": 2, "val_size": 12}
    assert cfg["eval"] == {"ks": [7], "scores": ["sum", "max"], "methods": ["msp"]}
    assert cfg["output"] == {"plots": False} and cfg["model"] == {"name": "small_cnn"}
    five = preset_config({}, {}, {"preset": "quick"}, ks=(1, 5, 10))
    assert five["train"]["k"] == 5 and five["eval"]["ks"] == [1, 10]
    assert "methods" not in five["eval"] and "val_size" not in five["train"]


def test_preset_config_leaves_the_preset_tables_alone() -> None:
    train = {"preset": "quick", "augment": True}
    preset_config({}, {}, train, seeds=2)
    assert train == {"preset": "quick", "augment": True}


def test_preset_config_refuses_unknown_options() -> None:
    with pytest.raises(TypeError, match="seed"):
        preset_config({}, {}, {"preset": "quick"}, seed=1)  # type: ignore[call-arg]


def test_outlier_pool_names_none_and_paths(tmp_path: Path) -> None:
    named = {"pool": lambda: tmp_path / "pool.npz"}
    assert outlier_pool("pool", named) == str(tmp_path / "pool.npz")
    assert outlier_pool(" POOL ", named) == str(tmp_path / "pool.npz")
    assert outlier_pool("None", named) == "none"
    assert outlier_pool(tmp_path / "x.npz", named) == str((tmp_path / "x.npz").resolve())

    def missing() -> Path:
        raise BenchError("--outliers pool: missing")

    with pytest.raises(BenchError, match="missing"):
        outlier_pool("pool", {"pool": missing})


def test_ood_sets_user_sets_win_and_none_at_all_is_refused() -> None:
    found = {"far": "/d/far.npz", "near": {"path": "/d/near.npz", "group": "near"}}
    sets = ood_sets(found, {"far": "/mine.npz", "extra": "/e.npz"}, "unused")
    assert sets == {"far": "/mine.npz", "near": found["near"], "extra": "/e.npz"}
    with pytest.raises(BenchError, match="no OOD test set: nothing here and no --ood"):
        ood_sets({}, None, "nothing here")


def test_both_presets_give_configs_that_validate(tmp_path: Path) -> None:
    import numpy as np

    from rejectnet.bench.cifar10 import cifar10_config
    from rejectnet.bench.mnist import mnist_config

    for name in ("mnist.npz", "fashion_mnist.npz", "photo_patches.npz", "cifar10.npz",
                 "tin_pool.npz", "mnist.npz"):  # fmt: skip
        np.savez(tmp_path / name, x_train=np.zeros((4, 8, 8), np.uint8))
    for make in (mnist_config, cifar10_config):
        cfg = config_from_dict(make(tmp_path, seeds=2, ks=(5, 3), preset="smoke"), tmp_path)
        assert cfg.seeds == 2 and cfg.k == 5 and cfg.ks == (3,) and cfg.preset == "smoke"
