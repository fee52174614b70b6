"""Score registry: names, aliases, user scores and the compute() dispatcher."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from rejectnet import scores
from rejectnet.scores import registry

BUILTIN_REJECT = ["entropy_diff", "entropy_reject", "max_reject", "sum_reject", "weighted_reject"]
BUILTIN_BASELINE = ["energy", "max_logit", "msp"]


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    saved = dict(registry._USER)
    registry._USER.clear()
    yield
    registry._USER.clear()
    registry._USER.update(saved)


def test_available() -> None:
    assert scores.available() == sorted(BUILTIN_REJECT + BUILTIN_BASELINE)
    assert scores.available("reject") == BUILTIN_REJECT
    assert scores.available("baseline") == BUILTIN_BASELINE
    with pytest.raises(ValueError, match=r"kind"):
        scores.available("other")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("alias", "fn"),
    [
        ("max", scores.max_reject),
        ("sum", scores.sum_reject),
        ("weighted", scores.weighted_reject),
        ("entropy", scores.entropy_reject),
        ("max_reject", scores.max_reject),
        ("sum_reject", scores.sum_reject),
        ("weighted_reject", scores.weighted_reject),
        ("entropy_reject", scores.entropy_reject),
        ("entropy_diff", scores.entropy_diff),
        ("msp", scores.msp),
        ("energy", scores.energy),
        ("max_logit", scores.max_logit),
    ],
)
def test_get_and_aliases(alias: str, fn: object) -> None:
    assert scores.get(alias) is fn
    s = scores.spec(alias)
    assert s.fn is fn
    assert s.name == fn.__name__  # type: ignore[attr-defined]
    assert s.kind == ("baseline" if s.name in BUILTIN_BASELINE else "reject")
    assert s.description


def test_spec_is_frozen() -> None:
    s = scores.spec("sum")
    with pytest.raises(AttributeError):
        s.name = "x"  # type: ignore[misc]


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match=r"unknown score 'summ'") as info:
        scores.get("summ")
    assert not isinstance(info.value, KeyError)
    for name in BUILTIN_REJECT + BUILTIN_BASELINE + ["'sum'", "'max'"]:
        assert name in str(info.value)
    with pytest.raises(TypeError):
        scores.get(3)  # type: ignore[arg-type]


def test_register_and_overwrite() -> None:
    def first(z: torch.Tensor) -> torch.Tensor:
        return -z[:, 0]

    def second(z: torch.Tensor) -> torch.Tensor:
        return z[:, 0]

    s = scores.register("first_logit", first, "baseline", "minus the first logit")
    assert s == scores.ScoreSpec("first_logit", first, "baseline", "minus the first logit")
    assert scores.get("first_logit") is first
    assert "first_logit" in scores.available() and "first_logit" in scores.available("baseline")
    assert "first_logit" not in scores.available("reject")
    with pytest.raises(ValueError, match=r"already exists.*overwrite=True"):
        scores.register("first_logit", second, "baseline")
    scores.register("first_logit", second, "baseline", overwrite=True)
    assert scores.get("first_logit") is second
    scores.unregister("first_logit")
    assert "first_logit" not in scores.available()
    with pytest.raises(ValueError, match=r"unknown score"):
        scores.get("first_logit")


@pytest.mark.parametrize("name", ["sum", "sum_reject", "msp"])
def test_builtin_and_alias_names_are_protected(name: str) -> None:
    with pytest.raises(ValueError, match=r"already exists"):
        scores.register(name, lambda z, c: z[:, 0], "reject")


def test_overwriting_a_builtin_and_restoring_it() -> None:
    def mine(z: torch.Tensor, c: int) -> torch.Tensor:
        return z[:, c]

    scores.register("sum_reject", mine, "reject", overwrite=True)
    assert scores.get("sum_reject") is mine
    assert scores.get("sum") is mine  # the alias follows the canonical name
    scores.unregister("sum_reject")
    assert scores.get("sum") is scores.sum_reject
    with pytest.raises(ValueError, match=r"built-in"):
        scores.unregister("msp")


@pytest.mark.parametrize(
    "name", ["", "x" * 33, "naïve", "has space", "tab\tname", "nul\x00", "é" * 10]
)
def test_register_rejects_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"32"):
        scores.register(name, lambda z: z[:, 0], "baseline")


def test_register_accepts_32_bytes() -> None:
    name = "a" * 32
    scores.register(name, lambda z: z[:, 0], "baseline")
    assert name in scores.available()


def test_register_other_errors() -> None:
    with pytest.raises(TypeError, match=r"name"):
        scores.register(1, lambda z: z, "baseline")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"callable"):
        scores.register("x", 3, "baseline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"kind"):
        scores.register("x", lambda z: z, "other")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"description"):
        scores.register("x", lambda z: z, "baseline", 5)  # type: ignore[arg-type]
    assert "x" not in scores.available()


def test_compute_dispatch() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 7, generator=g)  # C = 4 classes + k = 3 reject units
    torch.testing.assert_close(scores.compute("sum", z, num_classes=4), scores.sum_reject(z, 4))
    torch.testing.assert_close(
        scores.compute("weighted", z, 4, weights=[1.0, 0.0, 2.0]),
        scores.weighted_reject(z, 4, [1.0, 0.0, 2.0]),
    )
    # baselines on the first C columns of wrapped logits
    torch.testing.assert_close(scores.compute("msp", z, num_classes=4), scores.msp(z[:, :4]))
    assert not torch.allclose(scores.compute("msp", z, num_classes=4), scores.msp(z))
    torch.testing.assert_close(
        scores.compute("energy", z, num_classes=4, temperature=2.0),
        scores.energy(z[:, :4], temperature=2.0),
    )
    # without num_classes a baseline sees all columns; num_classes == width is fine too
    torch.testing.assert_close(scores.compute("max_logit", z), scores.max_logit(z))
    torch.testing.assert_close(scores.compute("msp", z, num_classes=7), scores.msp(z))
    out = scores.compute("msp", z.numpy(), num_classes=4)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, scores.msp(z[:, :4]).numpy())


def test_compute_errors() -> None:
    z = torch.zeros(2, 5)
    with pytest.raises(ValueError, match=r"num_classes"):
        scores.compute("sum", z)
    with pytest.raises(ValueError, match=r"num_classes.*width \(5\)"):
        scores.compute("msp", z, num_classes=6)
    with pytest.raises(ValueError, match=r"unknown score"):
        scores.compute("nope", z, 2)
    with pytest.raises(ValueError, match=r"logits"):
        scores.compute("msp", torch.zeros(5), num_classes=2)


def test_compute_user_reject_score() -> None:
    def first_reject(z: torch.Tensor, c: int, *, scale: float = 1.0) -> torch.Tensor:
        return scale * z[:, c]

    scores.register("first_reject", first_reject, "reject")
    z = torch.arange(6.0).reshape(2, 3)
    torch.testing.assert_close(
        scores.compute("first_reject", z, 2, scale=2.0), torch.tensor([4.0, 10.0])
    )
