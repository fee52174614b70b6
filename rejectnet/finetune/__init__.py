"""Training: rejectnet's self-supervised stage two, Outlier Exposure, and stage one.

The three share one loop (:mod:`rejectnet.finetune.loop`); only the objective differs.
"""

from rejectnet.finetune.checkpoint import CheckpointError
from rejectnet.finetune.history import Callback, EpochStats, History, StopTraining
from rejectnet.finetune.objectives import pseudo_labels
from rejectnet.finetune.trainers import (
    OutlierExposureFinetuner,
    SelfSupervisedOODFinetuner,
    train_classifier,
)

__all__ = [
    "Callback",
    "CheckpointError",
    "EpochStats",
    "History",
    "OutlierExposureFinetuner",
    "SelfSupervisedOODFinetuner",
    "StopTraining",
    "pseudo_labels",
    "train_classifier",
]
