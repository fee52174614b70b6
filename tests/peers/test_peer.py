"""A built Peer (rejectnet.peers.peer): what it accepts as input."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "pytorch_ood", reason='the peers need pytorch-ood (pip install "rejectnet[peers]")'
)


from rejectnet import peers
from tests.peers.conftest import _tiny_bert, _token_batches


def test_input_gradient_peers_refuse_named_tensors_clearly() -> None:
    model = _tiny_bert()
    odin = peers.build("odin", model)
    batch = {k: v for k, v in _token_batches(4, 6, 1, 0)[0].items() if k != "labels"}
    with pytest.raises(TypeError, match="takes one input tensor, not named tensors"):
        odin(batch)
