"""Building the benchmark's network: built-in names, timm names, a user's entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rejectnet.bench import BenchError, ModelConfig, build_model


def test_builtin_models_fit_the_data() -> None:
    net = build_model(ModelConfig("small_cnn"), 7, 3, 16, Path("."))
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 7)
    wrn = build_model(ModelConfig("wide_resnet", kwargs={"depth": 10, "widen_factor": 1}),
                      4, 1, 8, Path("."))  # fmt: skip
    assert wrn(torch.zeros(2, 1, 8, 8)).shape == (2, 4)


def test_small_cnn_widths_come_from_kwargs() -> None:
    net = build_model(ModelConfig("small_cnn", kwargs={"channels": [4, 6]}), 3, 1, 8, Path("."))
    assert [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)] == [4, 6]
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    for bad, says in (([4], "two convolutions' widths"), ([4, 0], r"channels\[1\]")):
        with pytest.raises(BenchError, match=f"cannot build 'small_cnn'.*{says}"):
            build_model(ModelConfig("small_cnn", kwargs={"channels": bad}), 3, 1, 8, Path("."))


@pytest.mark.parametrize("key", ["num_classes", "in_channels", "image_size"])
def test_kwargs_never_override_what_the_data_decide(key: str) -> None:
    with pytest.raises(BenchError, match=f"\\[model\\] kwargs: {key} comes from the data"):
        build_model(ModelConfig("small_cnn", kwargs={key: 5}), 3, 1, 8, Path("."))


def test_timm_model_by_name_random_init() -> None:
    pytest.importorskip("timm")
    net = build_model(ModelConfig("timm:resnet18"), 5, 1, 32, Path("."))
    assert net.eval()(torch.zeros(1, 1, 32, 32)).shape == (1, 5)
    with pytest.raises(BenchError, match="timm has no model 'resnet_nope'"):
        build_model(ModelConfig("timm:resnet_nope"), 5, 1, 32, Path("."))


def test_entry_point_is_found_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "c2_user_models.py").write_text(
        "import torch\n"
        "def make(num_classes, width=4):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))\n"
        "def not_a_model():\n"
        "    return 3\n"
    )
    net = build_model(ModelConfig("c2_user_models:make", kwargs={"width": 2}), 3, 1, 8, tmp_path)
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(BenchError, match="returned int, not a torch.nn.Module"):
        build_model(ModelConfig("c2_user_models:not_a_model"), 3, 1, 8, tmp_path)
    with pytest.raises(BenchError, match="has no function 'missing'"):
        build_model(ModelConfig("c2_user_models:missing"), 3, 1, 8, tmp_path)
    with pytest.raises(BenchError, match="unknown model 'resnet'"):
        build_model(ModelConfig("resnet"), 3, 1, 8, tmp_path)


def test_weights_that_are_not_safetensors_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x80\x04pickle")
    with pytest.raises(BenchError, match="is not a .safetensors file"):
        build_model(ModelConfig("small_cnn", weights=bad), 10, 1, 28, tmp_path)
