"""The outlier signal: what rejectnet (or Outlier Exposure) learns "outlier" from.

Beyond the paper's pool of unlabeled outliers, these pieces make outliers that sit
closer to the training data, which is what teaches a detector to reject *near*
out-of-distribution inputs (see the how-to "When your outliers are not like your data"):

* pool rows as they are (:class:`PoolRows`) or blended with in-distribution images
  (:class:`Blend`, the paper's ``alpha``);
* in-distribution images made into outliers in input space (:class:`Jigsaw`,
  :class:`Stitch`, :class:`Overlay`, :class:`Rotate`, :class:`Warp`), which also work with no pool;
* virtual outliers in feature space at the head's input (:class:`VirtualOutliers`);
* clustering pseudo-labels for the reject units (:class:`ClusterLabeler`).

:class:`ComposedSignal` mixes them behind the :class:`OutlierSignal` protocol the
fine-tuners accept (``outlier_signal=``); :func:`recommended` returns the dev-chosen
recipe. Everything runs on the data's device, in the step's one forward pass, draws from
torch's RNG (or a given generator), and leaves the caller's tensors alone.
"""

from rejectnet.outliers._base import OutlierSource
from rejectnet.outliers.blend import Blend, PoolRows, blend
from rejectnet.outliers.labels import ClusterLabeler, sinkhorn_assign
from rejectnet.outliers.recipes import Recipe, recommended
from rejectnet.outliers.signal import ComposedSignal, OutlierSignal, split_counts
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
from rejectnet.outliers.virtual import VirtualOutliers, head_of

__all__ = [
    "Blend",
    "ClusterLabeler",
    "ComposedSignal",
    "Jigsaw",
    "OutlierSignal",
    "OutlierSource",
    "Overlay",
    "PoolRows",
    "Recipe",
    "Rotate",
    "Stitch",
    "VirtualOutliers",
    "Warp",
    "blend",
    "head_of",
    "jigsaw",
    "overlay",
    "recommended",
    "rotate",
    "sinkhorn_assign",
    "split_counts",
    "stitch",
    "warp",
]
