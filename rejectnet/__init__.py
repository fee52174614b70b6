"""rejectnet: make any trained PyTorch classifier say "I don't know".

An implementation of Mohseni et al., *Self-Supervised Learning for Generalizable
Out-of-Distribution Detection* (AAAI 2020): widen a classifier's last layer with k reject
classes (:class:`RejectHead`), fine-tune it with unlabeled outliers and self-assigned
pseudo-labels, and reject inputs whose reject-class probability is high.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import rejectnet
    >>> net = rejectnet.RejectHead.wrap(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), k=2)
    >>> _ = net.calibrate([torch.randn(64, 1, 4, 4)], coverage=0.95)
    >>> net.predict(torch.randn(5, 1, 4, 4)).labels.shape
    torch.Size([5])
"""

from rejectnet import finetune, losses, metrics, scores
from rejectnet._version import __version__
from rejectnet.aoti import AOTIDeployedModel, export_aoti, load_aoti
from rejectnet.evaluation import Report, evaluate
from rejectnet.export import DeployedModel, export_onnx
from rejectnet.finetune import (
    OutlierExposureFinetuner,
    SelfSupervisedOODFinetuner,
    train_classifier,
)
from rejectnet.head import RejectHead, RejectLinear
from rejectnet.prediction import REJECTED, Prediction
from rejectnet.scores import ThresholdResult
from rejectnet.serialization import ModelFileError, load, read_metadata, save

__all__ = [
    "REJECTED",
    "AOTIDeployedModel",
    "DeployedModel",
    "ModelFileError",
    "OutlierExposureFinetuner",
    "SelfSupervisedOODFinetuner",
    "Prediction",
    "RejectHead",
    "RejectLinear",
    "Report",
    "ThresholdResult",
    "__version__",
    "evaluate",
    "export_aoti",
    "export_onnx",
    "load",
    "load_aoti",
    "losses",
    "metrics",
    "read_metadata",
    "save",
    "scores",
    "train_classifier",
    "finetune",
]
