"""The outlier signal: what rejectnet (or Outlier Exposure) learns "outlier" from.

Beyond the paper's pool of unlabeled outliers, these pieces make outliers that sit
closer to the training data, which is what teaches a detector to reject *near*
out-of-distribution inputs (see the how-to "When your outliers are not like your data"):

* pool rows as they are (:class:`PoolRows`) or blended with in-distribution images
  (:class:`Blend`, the paper's ``alpha``);
* in-distribution images made into outliers in input space (:class:`Jigsaw`,
  :class:`Stitch`, :class:`Overlay`, :class:`Rotate`, :class:`Warp`), which also work with no pool;
* virtual outliers in feature space at the head's input (:class:`VirtualOutliers`);
* clustering pseudo-labels for the reject units (:class:`ClusterLabeler`);
* for text, utterances made into outliers at the token level (:class:`SpanShuffle`,
  :class:`MixUtterances`, :class:`RandomTokens`, :class:`MaskTokens`, in
  :mod:`rejectnet.outliers.text`), on token batches of named tensors.

:class:`ComposedSignal` mixes them behind the :class:`OutlierSignal` protocol the
fine-tuners accept (``outlier_signal=``); :func:`recommended` returns the dev-chosen
recipe for images, :func:`text_recipe` the one for text (chosen on CLINC150 dev);
:func:`fingerprint` describes any of them by every option's value. Everything runs on
the data's device, in the step's one forward pass, draws from torch's RNG (or a given
generator), and leaves the caller's tensors alone.
"""

from rejectnet.outliers._base import OutlierSource
from rejectnet.outliers.blend import Blend, PoolRows, blend
from rejectnet.outliers.labels import ClusterLabeler, sinkhorn_assign
from rejectnet.outliers.recipes import Recipe, recommended, text_recipe
from rejectnet.outliers.signal import ComposedSignal, OutlierSignal, fingerprint, split_counts
from rejectnet.outliers.synthesis import (
    Jigsaw,
    Overlay,
    Rotate,
    Stitch,
    Warp,
    jigsaw,
    overlay,
    rotate,
    stitch,
    warp,
)
from rejectnet.outliers.text import (
    MaskTokens,
    MixUtterances,
    RandomTokens,
    SpanShuffle,
    mask_tokens,
    mix_utterances,
    random_tokens,
    span_shuffle,
)
from rejectnet.outliers.virtual import VirtualOutliers, head_of

__all__ = [
    "Blend",
    "ClusterLabeler",
    "ComposedSignal",
    "Jigsaw",
    "MaskTokens",
    "MixUtterances",
    "OutlierSignal",
    "OutlierSource",
    "Overlay",
    "PoolRows",
    "RandomTokens",
    "Recipe",
    "Rotate",
    "SpanShuffle",
    "Stitch",
    "VirtualOutliers",
    "Warp",
    "blend",
    "fingerprint",
    "head_of",
    "jigsaw",
    "mask_tokens",
    "mix_utterances",
    "overlay",
    "random_tokens",
    "recommended",
    "rotate",
    "sinkhorn_assign",
    "span_shuffle",
    "split_counts",
    "stitch",
    "text_recipe",
    "warp",
]
