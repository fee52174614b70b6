"""The config file: defaults, overrides, relative paths, and every bad-config case."""

from __future__ import annotations

from pathlib import Path

import pytest

from rejectnet.bench import (
    FIELDS,
    METHODS,
    PRESETS,
    BenchError,
    config_from_dict,
    load_config,
    merge,
)


def test_defaults_and_relative_paths(tiny: dict[str, Path]) -> None:
    cfg = load_config(tiny["config"])
    assert cfg.data.id == tiny["id"].resolve()
    assert cfg.data.ood == {"far": tiny["far"].resolve()}
    assert cfg.preset == "smoke" and cfg.schedule == PRESETS["smoke"]
    assert cfg.methods == tuple(METHODS) and cfg.k == 5 and cfg.seeds == 1
    assert cfg.model.name == "small_cnn" and cfg.model.weights is None


def test_paths_resolve_against_the_config_folder_not_the_cwd(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_config(tiny["config"]).data.id == tiny["id"].resolve()


def test_the_issue_example_works_as_written(tmp_path: Path) -> None:
    """The config of issue 14, verbatim, with ../shared/data next to the repo root."""
    from tests.bench.conftest import write_tiny_npz

    data = tmp_path / "shared" / "data"
    data.mkdir(parents=True)
    paths = write_tiny_npz(data)
    for name in ("fashion_mnist", "photo_patches", "mnist"):
        src = {"fashion_mnist": "id", "photo_patches": "pool", "mnist": "far"}[name]
        paths[src].rename(data / f"{name}.npz")
    repo = tmp_path / "main"
    repo.mkdir()
    (repo / "fashion.toml").write_text(
        "[data]\n"
        'id = "../shared/data/fashion_mnist.npz"\n'
        'outliers = "../shared/data/photo_patches.npz"\n'
        "[data.ood]\n"
        'mnist = "../shared/data/mnist.npz"\n'
        "[model]\n"
        'name = "small_cnn"\n'
        "[train]\n"
        'preset = "quick"\n'
    )
    cfg = load_config(repo / "fashion.toml")
    assert cfg.data.outliers == (data / "photo_patches.npz").resolve()
    assert list(cfg.data.ood) == ["mnist"] and cfg.preset == "quick"


def test_overrides_win_and_train_fields_override_the_preset(tiny: dict[str, Path]) -> None:
    cfg = load_config(
        tiny["config"],
        {"train": {"finetune_epochs": 3, "lr": 0.05, "k": 2}, "eval": {"methods": ["msp"]}},
    )
    assert cfg.schedule.finetune_epochs == 3 and cfg.schedule.lr == 0.05
    assert cfg.schedule.stage_one_epochs == PRESETS["smoke"].stage_one_epochs
    assert cfg.k == 2 and cfg.methods == ("msp",)
    assert merge({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}


def test_outliers_none_and_weights_skip_stage_one(tiny: dict[str, Path], tmp_path: Path) -> None:
    raw = {"data": {"id": "id.npz", "outliers": "none", "ood": {"far": "far.npz"}}}
    assert config_from_dict(raw, tiny["id"].parent).data.outliers is None
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    cfg = config_from_dict({**raw, "model": {"weights": str(weights)}}, tiny["id"].parent)
    assert cfg.schedule.stage_one_epochs == 0


def test_every_field_is_documented() -> None:
    assert set(FIELDS) == {"data", "model", "train", "eval", "output"}
    assert all(text.strip() for keys in FIELDS.values() for text in keys.values())
    assert set(PRESETS["quick"].field_names()) <= set(FIELDS["train"])


OK = {"data": {"id": "id.npz", "ood": {"far": "far.npz"}}}
BAD = [
    ({"data": {"idd": 1}}, "unknown key 'idd' in [data]; valid keys: channels, id,"),
    ({"trian": {}}, "unknown table [trian]"),
    ({"train": {"epochs": 3}}, "unknown key 'epochs' in [train]"),
    ({"data": {"id": None}}, "[data] id must be a non-empty string"),
    ({"data": {"ood": "far.npz"}}, "[data.ood] needs at least one OOD test set"),
    ({"data": {"id": "nope.npz"}}, "[data] id: path"),
    ({"data": {"ood": {"far": "gone.npz"}}}, "[data.ood] far: path"),
    ({"data": {"ood": {"mixed": "far.npz"}}}, "'mixed' is reserved"),
    ({"data": {"channels": 2}}, "channels must be 1 or 3"),
    ({"train": {"preset": "fast"}}, "preset must be one of paper, quick, smoke"),
    ({"train": {"seeds": 0}}, "[train] seeds must be an integer >= 1"),
    ({"train": {"lr": -1}}, "[train] lr must be a number > 0"),
    ({"eval": {"methods": ["msp", "best"]}}, "[eval] methods: unknown 'best'; valid: msp"),
    ({"eval": {"scores": ["top"]}}, "[eval] scores: unknown 'top'"),
    ({"output": {"plots": "yes"}}, "[output] plots must be true or false"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_configs_raise_one_clear_line(
    tiny: dict[str, Path], change: dict[str, object], message: str
) -> None:
    raw = merge(OK, change)
    with pytest.raises(BenchError) as info:
        config_from_dict(raw, tiny["id"].parent)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_missing_id(tiny: dict[str, Path]) -> None:
    with pytest.raises(BenchError, match=r"\[data\] id is required"):
        config_from_dict({"data": {"ood": {"far": "far.npz"}}}, tiny["id"].parent)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nid = 1")
    with pytest.raises(BenchError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[2] / "benchmarks" / "configs").glob("*.toml"))
)
def test_example_configs_use_valid_keys(path: Path) -> None:
    from rejectnet.bench import read_toml

    raw = read_toml(path)
    for table, keys in raw.items():
        assert table in FIELDS, table
        assert set(keys) <= set(FIELDS[table]), (table, set(keys) - set(FIELDS[table]))


def test_every_schedule_field_has_a_reader_with_bounds() -> None:
    from rejectnet.bench.config import _TRAIN_READERS
    from rejectnet.bench.presets import TrainPreset

    assert set(_TRAIN_READERS) == set(TrainPreset.field_names())
    for key, read in _TRAIN_READERS.items():
        with pytest.raises(BenchError, match=rf"\[train\] {key} must be"):
            read(10**12 if key != "augment" else "yes", f"[train] {key}")
