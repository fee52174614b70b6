"""Ahead-of-time compiled deployment (``rejectnet.export_aoti``, ``load_aoti``).

The public path of :mod:`rejectnet.files.aoti_package`, where the code lives.
"""

from __future__ import annotations

from rejectnet.files.aoti_package import (
    MAX_PACKAGE_BYTES,
    AOTIDeployedModel,
    _find_compiler,  # noqa: F401  (tests/reliability import it from here)
    export_aoti,
    load_aoti,
)

__all__ = ["MAX_PACKAGE_BYTES", "AOTIDeployedModel", "export_aoti", "load_aoti"]
