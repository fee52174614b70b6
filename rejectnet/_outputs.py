"""Private shim: the old path of :func:`rejectnet._batches.extract_logits` (beside
:func:`~rejectnet._batches.call_model`), until every importer is switched (then deleted)."""

from __future__ import annotations

from rejectnet._batches import extract_logits

__all__ = ["extract_logits"]
