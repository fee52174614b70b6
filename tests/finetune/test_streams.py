"""The outlier and in-distribution streams: re-cut, restarted, resumable."""

from __future__ import annotations

import pytest
import torch

from rejectnet.finetune.distributed import (
    RowShard,
)
from rejectnet.finetune.streams import OutlierStream


def test_outlier_stream_of_empty_batches_fails_instead_of_looping() -> None:
    stream = OutlierStream(RowShard([torch.zeros(1, 2)], rank=1, world_size=2))
    with pytest.raises(ValueError, match="only empty batches"):
        stream.take(3)
