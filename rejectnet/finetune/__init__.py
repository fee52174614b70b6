"""Training: rejectnet's self-supervised stage two, Outlier Exposure, stage one, or your own.

:class:`Finetuner` runs any objective (see :mod:`rejectnet.finetune.objectives` and
:mod:`rejectnet.losses`) with the options of :class:`TrainOptions`; the presets
:class:`SelfSupervisedOODFinetuner`, :class:`OutlierExposureFinetuner` and
:func:`train_classifier` fix the objective. To train in your own loop instead, call the
losses of :mod:`rejectnet.losses` directly.
"""

from rejectnet.finetune.callbacks import Callback, FitView, StopTraining
from rejectnet.finetune.checkpoint import CheckpointError
from rejectnet.finetune.finetuner import Finetuner
from rejectnet.finetune.history import EpochStats, History
from rejectnet.finetune.objectives import Objective
from rejectnet.finetune.options import TrainOptions
from rejectnet.finetune.trainers import (
    OutlierExposureFinetuner,
    SelfSupervisedOODFinetuner,
    train_classifier,
)
from rejectnet.losses import pseudo_labels

__all__ = [
    "Callback",
    "CheckpointError",
    "EpochStats",
    "Finetuner",
    "FitView",
    "History",
    "Objective",
    "OutlierExposureFinetuner",
    "SelfSupervisedOODFinetuner",
    "StopTraining",
    "TrainOptions",
    "pseudo_labels",
    "train_classifier",
]
