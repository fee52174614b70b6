"""`bench cifar10`, near/far tags, the EMNIST pool, and presets that scale to small data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rejectnet.bench import BenchError, config_from_dict
from rejectnet.bench.cifar10 import cifar10_config
from rejectnet.bench.mnist import mnist_config
from rejectnet.cli import main
from tests.bench.conftest import write_tiny_npz


def _cifar_dir(root: Path, n: int = 120) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = rng.integers(0, 40, (n, 8, 8, 3)).astype(np.uint8)
    for c in range(3):
        x[y == c, :, :, c] = 230
    np.savez(root / "cifar10.npz", x_train=x, y_train=y, x_test=x[:30], y_test=y[:30])
    np.savez(root / "tin_pool.npz", x_train=rng.integers(0, 256, (90, 8, 8, 3), dtype=np.uint8))
    np.savez(root / "tin_near_dev.npz", x_test=rng.integers(0, 120, (40, 8, 8, 3), dtype=np.uint8))
    np.savez(root / "mnist.npz", x_test=rng.integers(0, 256, (40, 6, 6), dtype=np.uint8))
    return root


def test_cifar10_runs_with_near_far_tags(tmp_path: Path) -> None:
    root = _cifar_dir(tmp_path)
    extra = tmp_path / "extra.npz"
    np.savez(extra, x_test=np.full((30, 8, 8, 3), 9, np.uint8))
    out = tmp_path / "out"
    code = main(["bench", "cifar10", "--data-dir", str(root), "--preset", "smoke", "--out",
                 str(out), "--quiet", "--no-plots", "--methods", "msp,oe",
                 "--ood", f"near:extra={extra}"])  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    meta = results["_meta"]
    assert meta["ood_groups"] == {"tin_near_dev": "near", "mnist": "far", "extra": "near"}
    assert meta["schedule"]["augment"] is True and meta["model"] == "cifar_resnet"
    assert meta["channels"] == 3 and meta["image_size"] == 8
    assert "id_acc_drop" in results["oe"] and "id_acc_drop" not in results["msp"]
    drop = results["msp"]["id_accuracy"] - results["oe"]["id_accuracy"]
    assert results["oe"]["id_acc_drop"] == pytest.approx(drop, abs=1e-6)


def test_missing_cifar10_names_the_unpack_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "cifar10.npz" in err and "python ../shared/data/unpack.py" in err
    (tmp_path / "cifar10.npz").write_bytes(b"")
    with pytest.raises(BenchError, match="tin_pool.npz.*unpack.py"):
        cifar10_config(tmp_path)
    cfg = cifar10_config(tmp_path, outliers="none", ood={"x": str(tmp_path / "cifar10.npz")})
    assert cfg["data"]["outliers"] == "none"


def test_cifar_presets_set_what_natural_images_need(tmp_path: Path) -> None:
    root = _cifar_dir(tmp_path)
    quick = config_from_dict(cifar10_config(root), root)
    assert quick.model.name == "cifar_resnet" and quick.model.normalize
    s = quick.schedule
    assert s.augment and s.crop_padding == 4 and s.weight_decay == 5e-4
    assert s.stage_one_batch_size == 128 and s.stage_one_lr == 0.1
    paper = config_from_dict(cifar10_config(root, preset="paper"), root)
    assert paper.model.name == "wide_resnet"
    assert paper.model.kwargs == {"depth": 40, "widen_factor": 2, "dropout": 0.3}
    assert paper.data.group("tin_near_dev") == "near" and paper.data.group("mnist") == "far"


def test_ood_groups_in_a_config_and_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_tiny_npz(tmp_path)
    raw = {"data": {"id": str(paths["id"]), "ood": {
        "a": str(paths["far"]), "b": {"path": str(paths["near"]), "group": "near"}}}}  # fmt: skip
    cfg = config_from_dict(raw, tmp_path)
    assert cfg.data.ood_groups == {"a": "far", "b": "near"}
    raw["data"]["ood"]["b"]["group"] = "middle"
    with pytest.raises(BenchError, match=r"\[data.ood\] b.group must be \"near\" or \"far\""):
        config_from_dict(raw, tmp_path)
    with pytest.raises(SystemExit):
        main(["bench", "run", "--id", str(paths["id"]), "--ood", "near:x", "--out", "o"])
    assert "[near:|far:]NAME=PATH" in capsys.readouterr().err


def test_mnist_emnist_pool(tmp_path: Path) -> None:
    for name in ("mnist.npz", "fashion_mnist.npz"):
        np.savez(tmp_path / name, x_test=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(BenchError, match="emnist_letters.npz"):
        mnist_config(tmp_path, outliers="emnist")
    np.savez(tmp_path / "emnist_letters.npz", x_train=np.zeros((2, 4, 4), np.uint8))
    cfg = mnist_config(tmp_path, outliers="emnist")
    assert cfg["data"]["outliers"] == str(tmp_path.resolve() / "emnist_letters.npz")


def test_quick_preset_scales_val_size_to_small_data(tmp_path: Path) -> None:
    from rejectnet.bench.runner import scaled_schedule

    paths = write_tiny_npz(tmp_path)  # 160 training images
    raw = {"data": {"id": str(paths["id"]), "ood": {"far": str(paths["far"])}}}
    cfg = config_from_dict(raw, tmp_path)
    assert cfg.schedule.val_size == 5000 and scaled_schedule(cfg, 160).val_size == 16
    assert scaled_schedule(cfg, 2000).val_size == 200
    assert scaled_schedule(cfg, 100_000).val_size == 5000
    raw["train"] = {"val_size": 40}
    assert scaled_schedule(config_from_dict(raw, tmp_path), 160).val_size == 40  # as set
    raw["train"] = {"val_size": 80}
    with pytest.raises(BenchError, match="val_size = 80 must be below half the 160"):
        scaled_schedule(config_from_dict(raw, tmp_path), 160)


def test_val_size_flag_and_drop_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_tiny_npz(tmp_path)
    out = tmp_path / "out"
    code = main(["bench", "run", "--id", str(paths["id"]), "--ood", f"far={paths['far']}",
                 "--outliers", str(paths["pool"]), "--preset", "smoke", "--val-size", "20",
                 "--methods", "msp,rejectnet-paper", "--out", str(out), "--quiet",
                 "--no-plots"])  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["_meta"]["schedule"]["val_size"] == 20
    drop = results["rejectnet-paper"]["id_acc_drop"]
    warned = "warning: rejectnet-paper lost" in capsys.readouterr().err
    assert warned == (drop > 0.01)


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_config_files_match_the_command(preset: str) -> None:
    from rejectnet.bench import read_toml
    from rejectnet.bench.cifar10 import CIFAR_MODELS, CIFAR_SCHEDULES

    root = Path(__file__).resolve().parents[2] / "benchmarks" / "configs"
    raw = read_toml(root / f"cifar10-{preset}.toml")
    assert raw["model"] == CIFAR_MODELS[preset]
    train = {k: v for k, v in raw["train"].items() if k not in ("seeds", "k")}
    assert train == CIFAR_SCHEDULES[preset]
    groups = {n: e["group"] for n, e in raw["data"]["ood"].items()}
    assert groups == {"tin_near_dev": "near", "mnist": "far", "fashion": "far"}
