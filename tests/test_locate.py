"""Head discovery and bit-exact class logits on real timm and torchvision architectures."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import timm
import torch
import torchvision
from torch import nn
from torchvision.models import VisionTransformer
from torchvision.models.maxvit import MaxVit
from torchvision.models.swin_transformer import SwinTransformer

from rejectnet import RejectHead
from rejectnet._locate import HeadNotFoundError, find_head

tv = torchvision.models

ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "tv_resnet18": (lambda: tv.resnet18(num_classes=10), "fc"),
    "tv_regnet": (lambda: tv.regnet_y_400mf(num_classes=10), "fc"),
    "tv_vgg11": (lambda: tv.vgg11(num_classes=10), "classifier.6"),
    "tv_efficientnet_b0": (lambda: tv.efficientnet_b0(num_classes=10), "classifier.1"),
    "tv_mobilenet_v3": (lambda: tv.mobilenet_v3_small(num_classes=10), "classifier.3"),
    "tv_convnext": (lambda: tv.convnext_tiny(num_classes=10), "classifier.2"),
    "tv_vit": (
        lambda: VisionTransformer(
            image_size=32,
            patch_size=8,
            num_layers=1,
            num_heads=2,
            hidden_dim=16,
            mlp_dim=32,
            num_classes=10,
        ),
        "heads.head",
    ),
    "tv_swin": (
        lambda: SwinTransformer(
            patch_size=[4, 4],
            embed_dim=16,
            depths=[1, 1],
            num_heads=[2, 2],
            window_size=[2, 2],
            num_classes=10,
        ),
        "head",
    ),
    "tv_maxvit": (
        lambda: MaxVit(
            input_size=(32, 32),
            stem_channels=8,
            partition_size=2,
            block_channels=[8, 16],
            block_layers=[1, 1],
            head_dim=4,
            stochastic_depth_prob=0.0,
            num_classes=10,
        ),
        "classifier.5",
    ),
    "timm_resnet18": (lambda: timm.create_model("resnet18", num_classes=10), "fc"),
    "timm_vit": (
        lambda: timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=10),
        "head",
    ),
    "timm_convnext": (lambda: timm.create_model("convnext_atto", num_classes=10), "head.fc"),
    "timm_mobilenetv3": (
        lambda: timm.create_model("mobilenetv3_small_050", num_classes=10),
        "classifier",
    ),
    "timm_efficientnet": (
        lambda: timm.create_model("efficientnet_b0", num_classes=10),
        "classifier",
    ),
    "timm_swin": (
        lambda: timm.create_model(
            "swin_tiny_patch4_window7_224", img_size=32, window_size=2, num_classes=10
        ),
        "head.fc",
    ),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_real_architectures_exact_logits(name: str) -> None:
    build, expected_path = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        net = RejectHead.wrap(model, k=5)
        out = net(x)
    assert net.head_path == expected_path
    assert (net.num_classes, net.k) == (10, 5)
    assert out.shape == (3, 15)
    assert out.dtype == ref.dtype and out.device == ref.device
    assert torch.equal(out[:, :10], ref), "class logits must be bit-exact"
    with torch.no_grad():
        assert torch.equal(net.unwrap()(x), ref)


def test_timm_without_classifier_is_refused() -> None:
    model = timm.create_model("resnet18", num_classes=0)
    with pytest.raises(ValueError, match="num_classes=0"):
        RejectHead.wrap(model, k=5)


def test_head_override_and_errors() -> None:
    model = tv.resnet18(num_classes=10)
    path, layer = find_head(model, "fc")
    assert path == "fc" and layer is model.fc
    with pytest.raises(TypeError, match="not an nn.Linear"):
        find_head(model, "layer1")
    with pytest.raises(HeadNotFoundError, match="names no submodule"):
        find_head(model, "does.not.exist")
    with pytest.raises(TypeError, match="dotted module path"):
        find_head(model, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is a ResNet, not an nn.Linear"):
        find_head(model, "")


class Ambiguous(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.a(x) + self.b(x))


def test_ambiguous_model_lists_candidates() -> None:
    with pytest.raises(HeadNotFoundError, match=r"a \(4->3\), b \(4->3\).*head='dotted.path'"):
        RejectHead.wrap(Ambiguous(), k=2)


def test_no_linear_at_all() -> None:
    with pytest.raises(HeadNotFoundError, match="nn.Linear layers seen: none"):
        RejectHead.wrap(nn.Sequential(nn.Conv2d(1, 2, 3)), k=2)


def test_last_linear_fallback() -> None:
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Dropout(0.1), nn.Linear(6, 3))
    assert find_head(model)[0] == "3"
    single = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    assert find_head(single)[0] == "2"
