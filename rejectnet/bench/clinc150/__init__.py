"""``rejectnet bench clinc150``: out-of-scope detection for intent classification.

CLINC150 (Larson et al., EMNLP 2019): 150 in-scope intents of a task-oriented assistant
and out-of-scope queries. A small Hugging Face ``BertForSequenceClassification`` (built
from a config, random weights) is trained from scratch on the training utterances with a
WordPiece tokenizer trained on the same utterances (nothing is downloaded). Every method
then starts from those weights: ``msp``; the post-hoc peers on the pooled ``[CLS]``
features (``energy``, ``max_logit``, ``mahalanobis``, ``knn``, ``vim``, via
:mod:`rejectnet.peers`); ``oe`` (Outlier Exposure) and ``rejectnet-paper`` (Algorithm 1
exactly: k = 5 reject classes, lam 5, outlier batches 5x, random pseudo-labels) on the
Wikipedia sentence pool; and ``rejectnet``, the recipe for text (the pool plus token-level
outliers synthesised from the training utterances, :mod:`rejectnet.outliers.text`).
With ``outliers="none"`` there is no pool: the methods that need one are skipped and
``rejectnet`` trains on the synthesised outliers alone.

Batches are the Hugging Face dicts ``{"input_ids", "attention_mask", "labels"}``,
right-padded per batch; the model is called with named inputs.

Reported, on the in-scope ``test`` split against every out-of-scope set (``oos_val``,
``oos_train``, ``oos_test`` when the file has it, and any ``ood`` file): in-scope
accuracy, AUROC / FPR@95%TPR / AUPR (:func:`rejectnet.evaluate`, out-of-scope positive),
and the dataset's own metric at the threshold calibrated on the in-scope ``val`` split
only (95% of it accepted): out-of-scope recall and in-scope accuracy (a rejected
in-scope query counts as an error). Every setting was chosen on ``val`` and the dev
out-of-scope splits, never on ``test``.

The package: :mod:`~rejectnet.bench.clinc150.data` (settings, reading and tokenizing),
:mod:`~rejectnet.bench.clinc150.training` (stage one and the shared stage-two settings),
:mod:`~rejectnet.bench.clinc150.metric` (the dataset's metric, one model's evaluation),
:mod:`~rejectnet.bench.clinc150.methods` (one runner per method) and
:mod:`~rejectnet.bench.clinc150.run` (the run, its outputs and the CLI).
"""

from __future__ import annotations

from rejectnet.bench.clinc150.data import RECIPE, TextData, TextRecipe, prepare_data
from rejectnet.bench.clinc150.methods import CLINC150_METHODS, text_outlier_signal
from rejectnet.bench.clinc150.metric import clinc150_metric
from rejectnet.bench.clinc150.run import add_clinc150_parser, run_clinc150, run_clinc150_command
from rejectnet.bench.clinc150.training import train_stage_one

__all__ = [
    "CLINC150_METHODS",
    "RECIPE",
    "TextData",
    "TextRecipe",
    "add_clinc150_parser",
    "clinc150_metric",
    "prepare_data",
    "run_clinc150",
    "run_clinc150_command",
    "text_outlier_signal",
    "train_stage_one",
]
