"""Post-hoc OOD detectors ("peers") on a trained classifier, via pytorch-ood.

The methods the paper compares rejectnet with, and the ones a user could apply without
fine-tuning, on the same stage-one weights: ``energy``, ``max_logit``, ``odin``,
``mahalanobis``, ``knn`` (deep nearest neighbours) and ``vim``, each a
`pytorch-ood <https://github.com/kkirchheim/pytorch-ood>`_ detector (install with
``pip install "rejectnet[peers]"``). Features are the input of the classifier's final
``nn.Linear``, found as :meth:`rejectnet.RejectHead.wrap` finds it, so any model works.

Settings are chosen without OOD data (:data:`PEER_NAMES`): the papers' or pytorch-ood's
defaults, and fits on in-distribution training data only. The paper (its Figure 1)
also tunes ODIN and Mahalanobis on a small subsample of the named OOD sets; those
variants are :data:`TUNED_PEER_NAMES` (``odin-tuned``, ``mahalanobis-tuned``), built only
when OOD tuning samples are given, and labelled "tuned on OOD" in every report.

The modules: :mod:`~rejectnet.peers.registry` (the detectors by name, one builder each),
:mod:`~rejectnet.peers.factory` (:func:`build`, :func:`build_peers`),
:mod:`~rejectnet.peers.tuning` (the ``*-tuned`` grid searches),
:mod:`~rejectnet.peers.features` (penultimate features of any classifier),
:mod:`~rejectnet.peers.peer` (:class:`Peer`), :mod:`~rejectnet.peers.scoring`
(:func:`score_peers`, :func:`evaluate_peers`) and :mod:`~rejectnet.peers.backend` (the
optional pytorch-ood import).

A :class:`Peer` is a scorer ``x -> score`` (higher = more OOD), so
:func:`rejectnet.evaluate` takes it like any callable; :func:`evaluate_peers` evaluates
many at once with shared forward passes.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from rejectnet import evaluate, peers
    >>> torch.manual_seed(0) and None
    >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> train = [(torch.randn(120, 4), torch.arange(120) % 3)]
    >>> knn = peers.build("knn", model, fit_loader=train, k=5, normalize=False)
    >>> report = evaluate(knn, [torch.randn(40, 4)], {"far": [torch.randn(40, 4) * 5]})
    >>> report.name, report.score, report.ood["far"].mean["auroc"] > 0.9
    ('knn', 'knn(k=5, normalize=False)', True)
"""

from rejectnet.peers.backend import is_available
from rejectnet.peers.factory import build, build_peers
from rejectnet.peers.peer import Kind, Peer
from rejectnet.peers.registry import DEFAULT_SETTINGS, FIT_SAMPLES, PEER_NAMES, TUNED_PEER_NAMES
from rejectnet.peers.scoring import evaluate_peers, score_peers

__all__ = [
    "DEFAULT_SETTINGS",
    "FIT_SAMPLES",
    "PEER_NAMES",
    "TUNED_PEER_NAMES",
    "Kind",
    "Peer",
    "build",
    "build_peers",
    "evaluate_peers",
    "is_available",
    "score_peers",
]
