"""Deploying a calibrated model: :class:`DeployedModel` and ONNX (``rejectnet.export_onnx``).

The public path of :mod:`rejectnet.deployed` (the module with the threshold baked in)
and :mod:`rejectnet.files.onnx_file` (the ONNX file), where the code lives.
"""

from __future__ import annotations

from rejectnet.deployed import Calibrated, DeployedModel, dynamic_shapes_for, named_program
from rejectnet.files.onnx_file import export_onnx

__all__ = ["Calibrated", "DeployedModel", "dynamic_shapes_for", "export_onnx", "named_program"]
