"""``rejectnet bench``: the paper's comparisons in one run, on anyone's data.

One config (a small TOML file, or the same fields as command-line flags) names the
in-distribution data, an optional outlier pool, any number of OOD test sets and a
network; :func:`run_bench` trains stage one once per seed, runs every method of
:data:`METHODS` from the same weights on the same batches, evaluates them on the same
samples with :func:`rejectnet.evaluate`, and writes ``results.json``, ``results.md``,
plots and an HTML report. ``rejectnet bench mnist`` (:func:`run_mnist`) is the paper's
MNIST row as a preset of the same runner.

Example:
    >>> from rejectnet.bench import FIELDS, METHODS, PRESETS
    >>> sorted(FIELDS)
    ['data', 'eval', 'model', 'output', 'train']
    >>> list(METHODS)[:3], sorted(PRESETS)
    (['msp', 'energy', 'max_logit'], ['paper', 'quick', 'smoke'])
"""

from __future__ import annotations

from rejectnet.bench.config import (
    FIELDS,
    BenchConfig,
    DataConfig,
    ModelConfig,
    config_from_dict,
    load_config,
    merge,
    read_toml,
)
from rejectnet.bench.errors import BenchError
from rejectnet.bench.methods import METHODS, SCORE_ALIASES, Method, MethodContext, method_seed
from rejectnet.bench.mnist import mnist_config, run_mnist
from rejectnet.bench.networks import BUILTIN_MODELS, build_model
from rejectnet.bench.presets import PRESETS, TrainPreset
from rejectnet.bench.runner import load_data, run_bench
from rejectnet.bench.sources import (
    IMAGE_EXTENSIONS,
    InDistribution,
    convert,
    load_images,
    load_in_distribution,
    load_unlabeled,
)
from rejectnet.bench.tables import seeds_markdown, summary_table

__all__ = [
    "BUILTIN_MODELS",
    "FIELDS",
    "IMAGE_EXTENSIONS",
    "METHODS",
    "PRESETS",
    "SCORE_ALIASES",
    "BenchConfig",
    "BenchError",
    "DataConfig",
    "InDistribution",
    "Method",
    "MethodContext",
    "ModelConfig",
    "TrainPreset",
    "build_model",
    "config_from_dict",
    "convert",
    "load_config",
    "load_data",
    "load_images",
    "load_in_distribution",
    "load_unlabeled",
    "merge",
    "method_seed",
    "mnist_config",
    "read_toml",
    "run_bench",
    "run_mnist",
    "seeds_markdown",
    "summary_table",
]
