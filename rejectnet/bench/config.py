"""The benchmark's configuration: a small TOML file, or the same fields as a dict.

Every table and key is checked: an unknown key is named together with the valid ones,
a wrong type or value names the field and what would be valid. Relative paths in a
config file are resolved against the folder of that file (so a config works from any
working directory); paths given on the command line are resolved against the working
directory.
"""

from __future__ import annotations

import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rejectnet.bench.errors import BenchError
from rejectnet.bench.methods import METHODS, SCORE_ALIASES
from rejectnet.bench.presets import PRESETS, TrainPreset
from rejectnet.bench.sources import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "FIELDS",
    "BenchConfig",
    "DataConfig",
    "ModelConfig",
    "check_device",
    "config_from_dict",
    "load_config",
    "merge",
    "read_toml",
]

FIELDS: dict[str, dict[str, str]] = {
    "data": {
        "id": "in-distribution data: an .npz with x_train, y_train, x_test, y_test, or a "
        "folder with train/ and test/ holding one sub-folder of images per class",
        "outliers": "the unlabeled training outlier pool: an .npz (x_train, else x_test), a "
        'folder of images (searched recursively), or "none" (default)',
        "ood": "table of OOD test sets, name = path: an .npz (x_test, else x_train), a "
        "folder of images (searched recursively) or a torchvision MNIST-style IDX folder; "
        'or name = {path = "...", group = "near"} to tag a near-OOD set (default "far"); '
        "results add the mean over each group",
        "image_size": "side every image is resized to (default: that of the in-distribution "
        "data; for a folder, of its first training image)",
        "channels": "1 (grayscale) or 3 (RGB); images are converted (default: from the "
        "in-distribution data; for a folder, 3 if any training image is in colour)",
    },
    "model": {
        "name": 'a built-in name ("small_cnn", "cifar_resnet": CIFAR ResNet-20, "wide_resnet"), '
        '"timm:NAME" (random init), or "package.module:function" returning an nn.Module '
        "(your own model). A module:function is imported and CALLED with the kwargs: a "
        "config file is code; run only configs you trust",
        "weights": "a .safetensors state dict loaded into the model (then stage one is "
        "skipped unless [train] stage_one_epochs says otherwise)",
        "kwargs": "table of keyword arguments for the model constructor or your function "
        "(small_cnn: channels = [c1, c2], hidden, dropout; cifar_resnet: depth, width; "
        "wide_resnet: depth, widen_factor, dropout); classes, image channels and size come "
        "from the data, never from kwargs",
        "normalize": "normalise every input per channel inside the model, with the mean and "
        "std of the training images (saved with the weights; default false; true in the "
        "cifar presets)",
    },
    "train": {
        "preset": f"training schedule: {', '.join(sorted(PRESETS))} (default quick)",
        "seeds": "independent runs with seeds 0..seeds-1, averaged (default 1, at most 100)",
        "k": "reject classes of rejectnet (default 5, at most 1000)",
        "device": '"cpu", "cuda", "cuda:1"... (default: cuda if available, else cpu)',
        # the fields of rejectnet.bench.TrainPreset: each overrides the preset's value
        "stage_one_epochs": "supervised epochs of stage one (0: use the model as it is)",
        "stage_one_lr": "learning rate of stage one (SGD, Nesterov momentum, cosine)",
        "stage_one_batch_size": "batch size of stage one",
        "finetune_epochs": "fine-tuning epochs of every fine-tuned method",
        "finetune_subset": "fine-tuning epochs run over this many random training images",
        "lr": "learning rate of fine-tuning (SGD, Nesterov momentum, cosine)",
        "batch_size": "in-distribution batch size of fine-tuning (outlier batches are 5x)",
        "val_size": "training images held out for calibration, fitted scores, tuned peers; "
        "unless set, the preset's value scales down to a tenth of the training images "
        "(at least 10) on small data",
        "outlier_pool": "use at most this many images of the outlier pool",
        "n_runs": "equal-size subsamples per OOD set in the evaluation (at most 1000)",
        "weight_decay": "SGD weight decay of stage one and fine-tuning (default 5e-4)",
        "augment": "random crops and horizontal flips of the training images, in stage one "
        "and on both sides of stage two (default false; true in the cifar presets)",
        "crop_padding": "zero padding of the random crops (default 4; 0: flips only)",
    },
    "eval": {
        "methods": f"methods to run (default all): {', '.join(METHODS)}",
        "ks": "extra reject-class counts: ablation rows rejectnet-k<k> (and rejectnet-paper-k<k>)",
        "scores": "reject scores of rejectnet and rejectnet-paper; sum gives the main row, "
        f"others add <method>-<score> rows: {', '.join(SCORE_ALIASES)} (weighted is fitted "
        "on held-out ID images and training outliers)",
    },
    "output": {
        "plots": "write PNG plots and the HTML report's figures (default true)",
        "save_models": "save every fine-tuned rejectnet model under models/ (default false)",
    },
}
"""Table -> key -> meaning: every valid field of a config file (``--help`` prints it)."""


@dataclass(frozen=True)
class DataConfig:
    """Where the data come from.

    Attributes:
        id: In-distribution ``.npz`` or folder (``train/`` and ``test/``).
        outliers: Training outlier pool, or ``None`` for none.
        ood: OOD test set name -> path.
        image_size: Target side, or ``None`` for that of the in-distribution data.
        channels: 1 or 3, or ``None`` for that of the in-distribution data.
        ood_groups: OOD test set name -> ``"near"`` or ``"far"`` (default ``"far"``).
    """

    id: Path
    outliers: Path | None
    ood: dict[str, Path]
    image_size: int | None = None
    channels: int | None = None
    ood_groups: dict[str, str] = field(default_factory=dict)

    def group(self, name: str) -> str:
        """The group of the OOD set ``name``: ``"near"`` or ``"far"``."""
        return self.ood_groups.get(name, "far")


@dataclass(frozen=True)
class ModelConfig:
    """Which network stage one trains (or which trained network is loaded).

    Attributes:
        name: ``small_cnn``, ``wide_resnet``, ``timm:NAME`` or ``module:function``.
        weights: Optional ``.safetensors`` state dict.
        kwargs: Keyword arguments of the constructor.
        normalize: Normalise inputs per channel inside the model (training-set statistics).
    """

    name: str = "small_cnn"
    weights: Path | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    normalize: bool = False

    @property
    def is_entry_point(self) -> bool:
        """Whether ``name`` is a user's ``module:function``."""
        return ":" in self.name and not self.name.startswith("timm:")


@dataclass(frozen=True)
class BenchConfig:
    """A whole benchmark run, validated.

    Attributes:
        data: The data sources.
        model: The network.
        preset: Name of the schedule the run started from.
        schedule: The schedule, with the ``[train]`` overrides applied.
        seeds: Independent runs.
        k: Reject classes of rejectnet.
        device: Where to train and evaluate (``None``: cuda if available, else cpu).
        methods: Methods to run, in registry order.
        ks: Extra reject-class counts (ablation rows).
        scores: Reject scores (``sum`` first is the main row).
        plots: Write plots.
        save_models: Save the fine-tuned rejectnet models.
        base_dir: Folder relative paths were resolved against.
        explicit: The ``[train]`` schedule fields the config set (the others come from
            the preset and may scale to the data, e.g. ``val_size``).
    """

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    preset: str = "quick"
    schedule: TrainPreset = PRESETS["quick"]
    seeds: int = 1
    k: int = 5
    device: str | None = None
    methods: tuple[str, ...] = tuple(METHODS)
    ks: tuple[int, ...] = ()
    scores: tuple[str, ...] = ("sum",)
    plots: bool = True
    save_models: bool = False
    base_dir: Path = Path(".")
    explicit: frozenset[str] = frozenset()


MAX_SEEDS = 100
MAX_K = 1000
MAX_N_RUNS = 1000
OOD_GROUPS = ("near", "far")

_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "stage_one_epochs": (0, 10_000),
    "finetune_epochs": (1, 10_000),
    "finetune_subset": (1, 10**8),
    "batch_size": (1, 65_536),
    "stage_one_batch_size": (1, 65_536),
    "val_size": (1, 10**7),
    "outlier_pool": (1, 10**8),
    "n_runs": (1, MAX_N_RUNS),
    "crop_padding": (0, 64),
}
"""``[train]`` integer fields -> (lowest, highest) valid value."""


def _where(table: str, key: str) -> str:
    return f"[{table}] {key}"


def _int(value: Any, where: str, low: int, high: int = 10**9, *, none: bool = False) -> int | None:
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BenchError(f"{where} must be an integer >= {low} and <= {high}, got {value!r}")
    return int(value)


def _float(value: Any, where: str, high: float = 10.0, *, zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not ((value >= 0 if zero else value > 0) and value <= high):
        low = ">= 0" if zero else "> 0"
        raise BenchError(f"{where} must be a number {low} and <= {high:g}, got {value!r}")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BenchError(f"{where} must be true or false, got {value!r}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BenchError(f"{where} must be a non-empty string, got {value!r}")
    return value.strip()


def _path(value: Any, where: str, base: Path) -> Path:
    p = Path(_str(value, where)).expanduser()
    try:
        p = (p if p.is_absolute() else base / p).resolve()
        found = p.exists()
    except (OSError, RuntimeError) as err:  # a symlink loop, a name too long
        raise BenchError(f"{where}: path {str(p)!r} cannot be resolved ({err})") from None
    if not found:
        raise BenchError(
            f"{where}: path {str(p)!r} does not exist (relative paths are resolved against "
            f"{str(base)!r})"
        )
    return p


def _regular_file(value: Any, where: str, base: Path) -> Path:
    p = _path(value, where, base)
    mode = p.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO or device?)"
        raise BenchError(f"{where}: {str(p)!r} is {kind}; give a .safetensors file")
    return p


def check_device(text: Any, where: str = "[train] device") -> str | None:
    """Validate a device name against this machine (``None``: cuda if available, else cpu).

    Args:
        text: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``... or ``None``.
        where: The field, for messages.

    Returns:
        The name, or ``None``.

    Raises:
        BenchError: For a name torch does not know, or a device this machine lacks.

    Example:
        >>> check_device("cpu")
        'cpu'
        >>> check_device("tpu")
        Traceback (most recent call last):
        ...
        rejectnet.bench.errors.BenchError: [train] device: 'tpu' is not a torch device; use "cpu", "cuda", "cuda:N" or "mps"
    """  # noqa: E501
    if text is None:
        return None
    name = _str(text, where)
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise BenchError(
            f'{where}: {name!r} is not a torch device; use "cpu", "cuda", "cuda:N" or "mps"'
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BenchError(f'{where}: {name!r}, but CUDA is not available here; use "cpu"')
        if dev.index is not None and dev.index >= count:
            raise BenchError(f"{where}: {name!r}, but this machine has {count} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise BenchError(f'{where}: {name!r}, but MPS is not available here; use "cpu"')
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise BenchError(f'{where}: {name!r} is not supported; use "cpu", "cuda" or "mps"')
    return name


def _table(raw: Any, name: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise BenchError(f"[{name}] must be a table, got {type(raw).__name__}")
    valid = sorted(FIELDS[name])
    unknown = sorted(str(k) for k in raw if k not in FIELDS[name])
    if unknown:
        raise BenchError(f"unknown key {unknown[0]!r} in [{name}]; valid keys: {', '.join(valid)}")
    return dict(raw)


def _names(value: Any, where: str, valid: Mapping[str, Any] | list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BenchError(f"{where} must be a non-empty list of names, got {value!r}")
    names = [v.strip() for v in value]
    bad = [v for v in names if v not in valid]
    if bad:
        raise BenchError(f"{where}: unknown {bad[0]!r}; valid: {', '.join(valid)}")
    return tuple(dict.fromkeys(names))


def _ood_entry(name: str, value: Any, base: Path) -> tuple[Path, str]:
    where = f"[data.ood] {name}"
    if name == "mixed":
        raise BenchError("[data.ood] 'mixed' is reserved for the mix of all sets; rename it")
    group = "far"
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in ("path", "group"))
        if unknown or "path" not in value:
            raise BenchError(f'{where} must be a path or {{path = "...", group = "near"}}')
        group = _str(value.get("group", "far"), where + ".group")
        if group not in OOD_GROUPS:
            raise BenchError(f'{where}.group must be "near" or "far", got {group!r}')
        value = value["path"]
    return _path(value, where, base), group


def _read_data(data: dict[str, Any], base: Path) -> DataConfig:
    if "id" not in data:
        raise BenchError("[data] id is required: an .npz or a folder with train/ and test/")
    ood_raw = data.get("ood")
    if not isinstance(ood_raw, Mapping) or not ood_raw:
        raise BenchError("[data.ood] needs at least one OOD test set: name = path")
    entries = {str(n): _ood_entry(str(n), v, base) for n, v in ood_raw.items()}
    outliers_raw = data.get("outliers", "none")
    none = isinstance(outliers_raw, str) and outliers_raw.strip().lower() == "none"
    where = _where("data", "image_size")
    image_size = _int(data.get("image_size"), where, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, none=True)
    channels = _int(data.get("channels"), _where("data", "channels"), 1, 3, none=True)
    if channels not in (None, 1, 3):
        raise BenchError(f"[data] channels must be 1 or 3, got {channels}")
    return DataConfig(
        id=_path(data["id"], _where("data", "id"), base),
        outliers=None if none else _path(outliers_raw, _where("data", "outliers"), base),
        ood={n: p for n, (p, _) in entries.items()},
        image_size=image_size,
        channels=channels,
        ood_groups={n: g for n, (_, g) in entries.items()},
    )


def _read_model(model: dict[str, Any], base: Path) -> ModelConfig:
    kwargs = model.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise BenchError(f"[model] kwargs must be a table, got {kwargs!r}")
    weights = model.get("weights")
    return ModelConfig(
        name=_str(model.get("name", "small_cnn"), _where("model", "name")),
        weights=None if weights is None else _regular_file(weights, "[model] weights", base),
        kwargs=dict(kwargs),
        normalize=_bool(model.get("normalize", False), "[model] normalize"),
    )


def _int_reader(low: int, high: int, none: bool) -> Callable[[Any, str], Any]:
    return lambda value, where: _int(value, where, low, high, none=none)


_TRAIN_READERS: dict[str, Callable[[Any, str], Any]] = {
    "lr": lambda value, where: _float(value, where),
    "stage_one_lr": lambda value, where: _float(value, where),
    "weight_decay": lambda value, where: _float(value, where, 1.0, zero=True),
    "augment": _bool,
    **{
        key: _int_reader(low, high, key in ("finetune_subset", "outlier_pool"))
        for key, (low, high) in _INT_BOUNDS.items()
    },
}
"""``[train]`` field of :class:`TrainPreset` -> its reader ``(value, where) -> value``."""


def _read_train(train: dict[str, Any], model: ModelConfig) -> tuple[str, dict[str, Any]]:
    preset = _str(train.get("preset", "quick"), _where("train", "preset"))
    if preset not in PRESETS:
        raise BenchError(
            f"[train] preset must be one of {', '.join(sorted(PRESETS))}, got {preset!r}"
        )
    overrides = {
        k: _TRAIN_READERS[k](train[k], _where("train", k))
        for k in TrainPreset.field_names()
        if k in train
    }
    if "stage_one_epochs" not in train and (model.weights or model.is_entry_point):
        overrides["stage_one_epochs"] = 0  # a trained model: no stage one unless asked
    return preset, overrides


def config_from_dict(raw: Mapping[str, Any], base_dir: str | Path = ".") -> BenchConfig:
    """Validate a config given as nested dicts (the shape of the TOML file).

    Every field is read by its own reader (type, range, path) before any data are read.

    Args:
        raw: ``{"data": {...}, "model": {...}, "train": {...}, "eval": {...},
            "output": {...}}``; only ``data.id`` and at least one ``data.ood`` set are
            required.
        base_dir: Folder relative paths are resolved against.

    Returns:
        The validated configuration.

    Raises:
        BenchError: For an unknown table or key, a wrong type or value, or a path that
            does not exist (one line, naming the field).

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> d = tempfile.mkdtemp()
        >>> for f in ("id.npz", "far.npz"):
        ...     np.savez(os.path.join(d, f), x_test=np.zeros((2, 8, 8), np.uint8))
        >>> cfg = config_from_dict({"data": {"id": "id.npz", "ood": {"far": "far.npz"}}}, d)
        >>> cfg.preset, cfg.k, cfg.data.outliers, sorted(cfg.data.ood)
        ('quick', 5, None, ['far'])
        >>> config_from_dict({"data": {"idd": "x"}}, d)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        rejectnet.bench.errors.BenchError: unknown key 'idd' in [data]; valid keys: ...
    """
    base = Path(base_dir).resolve()
    t = _tables(raw)
    data_cfg = _read_data(t["data"], base)
    model_cfg = _read_model(t["model"], base)
    preset, overrides = _read_train(t["train"], model_cfg)
    ks_raw = t["eval"].get("ks", [])
    if not isinstance(ks_raw, list):
        raise BenchError(f"[eval] ks must be a list of integers in 1..{MAX_K}, got {ks_raw!r}")
    seeds, k, device = _read_run(t["train"])
    methods, ks, scores = _read_eval(t["eval"], ks_raw)  # checked in this order
    return BenchConfig(
        data=data_cfg,
        model=model_cfg,
        preset=preset,
        schedule=PRESETS[preset].with_overrides(overrides),
        seeds=seeds,
        k=k,
        device=device,
        methods=methods,
        ks=ks,
        scores=scores,
        plots=_bool(t["output"].get("plots", True), "[output] plots"),
        save_models=_bool(t["output"].get("save_models", False), "[output] save_models"),
        base_dir=base,
        explicit=frozenset(overrides),
    )


def _tables(raw: Any) -> dict[str, dict[str, Any]]:
    """The five tables of a config (a missing one is empty); an unknown table is refused."""
    if not isinstance(raw, Mapping):
        raise BenchError(f"the config must be a table, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise BenchError(f"unknown table [{unknown[0]}]; valid tables: {', '.join(FIELDS)}")
    return {name: _table(raw.get(name), name) for name in FIELDS}


def _read_run(train: dict[str, Any]) -> tuple[int, int, str | None]:
    """The ``[train]`` fields outside the schedule: seeds, main ``k`` and device."""
    seeds = int(_int(train.get("seeds", 1), _where("train", "seeds"), 1, MAX_SEEDS) or 1)
    k = int(_int(train.get("k", 5), _where("train", "k"), 1, MAX_K) or 1)
    return seeds, k, check_device(train.get("device"))


def _read_eval(
    evals: dict[str, Any], ks_raw: list[Any]
) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
    """The ``[eval]`` table: methods, extra reject-class counts and scores."""
    methods = _names(evals.get("methods", list(METHODS)), "[eval] methods", METHODS)
    ks = tuple(int(_int(v, "[eval] ks", 1, MAX_K) or 1) for v in ks_raw)
    scores = _names(evals.get("scores", ["sum"]), "[eval] scores", SCORE_ALIASES)
    return methods, ks, scores


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dict merge: values of ``extra`` win, tables are merged key by key.

    Args:
        base: A config dict.
        extra: Values that override it (e.g. from command-line flags).

    Returns:
        A new dict.

    Example:
        >>> merge({"data": {"id": "a", "ood": {"x": "1"}}}, {"data": {"ood": {"y": "2"}}})
        {'data': {'id': 'a', 'ood': {'x': '1', 'y': '2'}}}
    """
    out: dict[str, Any] = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into nested dicts.

    Args:
        path: The ``.toml`` file.

    Returns:
        Its content.

    Raises:
        BenchError: If the file does not exist or is not valid TOML.
    """
    p = Path(path)
    if not p.is_file():
        raise BenchError(f"config file {str(p)!r} does not exist")
    try:
        with p.open("rb") as f:
            return dict(tomllib.load(f))
    except tomllib.TOMLDecodeError as err:
        raise BenchError(f"config file {str(p)!r} is not valid TOML: {err}") from None


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> BenchConfig:
    """Read and validate a TOML config file.

    Args:
        path: The ``.toml`` file; its relative paths are resolved against its folder.
        overrides: Values that replace the file's (same nested shape).

    Returns:
        The validated configuration.

    Raises:
        BenchError: If the file is missing, not TOML, or any field is invalid.
    """
    p = Path(path)
    raw = merge(read_toml(p), overrides or {})
    return config_from_dict(raw, p.resolve().parent)
