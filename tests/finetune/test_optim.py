"""The default optimizer per model family: SGD for CNN-style models, AdamW for transformers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from rejectnet.finetune import TrainOptions
from rejectnet.finetune.optim import DEFAULTS, build_optimizer, choose_optimizer, model_family
from tests.finetune.helpers import DropoutCNN


def _bert() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=3,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def _vit() -> nn.Module:
    timm = pytest.importorskip("timm")
    from timm.models.vision_transformer import VisionTransformer

    assert timm is not None
    return VisionTransformer(
        img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=3
    )


class _LayerNormMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(4, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 8), nn.LayerNorm(8)
        )
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


@pytest.mark.parametrize(
    ("make", "family"),
    [
        (DropoutCNN, "cnn"),
        (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), "cnn"),
        (lambda: nn.TransformerEncoderLayer(16, 2), "transformer"),
        (_LayerNormMLP, "transformer"),
        (_bert, "transformer"),
        (_vit, "transformer"),
    ],
    ids=["cnn", "mlp", "torch_transformer", "layernorm_net", "hf_bert", "timm_vit"],
)
def test_model_family(make: object, family: str) -> None:
    model = make()  # type: ignore[operator]
    assert model_family(model) == family
    # wrapping keeps the family (RejectHead holds the model)
    if family == "cnn" or isinstance(model, _LayerNormMLP):
        assert model_family(RejectHead.wrap(model, k=2)) == family


def test_the_default_optimizer_follows_the_family() -> None:
    cnn_opt, _ = build_optimizer(DropoutCNN(), TrainOptions(), 10)
    assert isinstance(cnn_opt, torch.optim.SGD)
    group = cnn_opt.param_groups[0]
    assert group["lr"] == 0.01 and group["weight_decay"] == 5e-4 and group["nesterov"]
    tf_opt, _ = build_optimizer(_LayerNormMLP(), TrainOptions(), 10)
    assert isinstance(tf_opt, torch.optim.AdamW)
    assert tf_opt.param_groups[0]["lr"] == DEFAULTS["adamw"]["lr"] == 1e-4
    assert tf_opt.param_groups[0]["weight_decay"] == 0.01
    # the user's choices win
    forced, _ = build_optimizer(_LayerNormMLP(), TrainOptions(optimizer="sgd", lr=0.2), 10)
    assert isinstance(forced, torch.optim.SGD) and forced.param_groups[0]["lr"] == 0.2
    adam, _ = build_optimizer(DropoutCNN(), TrainOptions(optimizer="adamw", weight_decay=0.0), 1)
    assert isinstance(adam, torch.optim.AdamW) and adam.param_groups[0]["weight_decay"] == 0.0
    assert choose_optimizer(DropoutCNN(), TrainOptions(optimizer=torch.optim.Adam)).name == (
        "factory"
    )


def test_bad_optimizer_names() -> None:
    # another name is not a kind of optimizer argument: TypeError, as before the names
    with pytest.raises(TypeError, match="optimizer must be None .*'sgd', 'adamw' or a factory"):
        TrainOptions(optimizer="adam")
    with pytest.raises(TypeError, match="optimizer must be None"):
        TrainOptions(optimizer=3)
    with pytest.raises(TypeError, match="lr must be a number"):
        TrainOptions(lr="0.1")


def test_the_fingerprint_holds_the_optimizer_as_it_runs() -> None:
    """Two runs that differ only in what the default resolves to are different runs."""
    a = SelfSupervisedOODFinetuner(_LayerNormMLP(), k=2)._run_identity(3)
    b = SelfSupervisedOODFinetuner(_LayerNormMLP(), k=2, optimizer="sgd")._run_identity(3)
    c = SelfSupervisedOODFinetuner(_LayerNormMLP(), k=2, lr=1e-4)._run_identity(3)
    assert a["fingerprint"] != b["fingerprint"]
    assert a["fingerprint"] == c["fingerprint"]  # lr=None resolved to AdamW's 1e-4
