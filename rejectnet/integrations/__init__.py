"""Running rejectnet's stage two inside other training frameworks.

* :class:`OutlierPairs` (no extra dependency): pairs each in-distribution batch with an
  outlier batch from an independently restarting outlier stream, for any loop.
* :mod:`rejectnet.integrations.lightning`: ``RejectNetModule``, a ``LightningModule``
  that fine-tunes a wrapped model inside a user's ``lightning.Trainer``
  (``pip install "rejectnet[lightning]"``). Import it explicitly; importing
  ``rejectnet.integrations`` does not import Lightning.

Hugging Face ``accelerate`` needs no wrapper: see ``examples/accelerate_finetune.py`` and
the how-to "Use rejectnet in your own training loop".
"""

from rejectnet.integrations.pairs import OutlierPairs

__all__ = ["OutlierPairs"]
