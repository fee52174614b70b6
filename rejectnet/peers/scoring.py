"""Scoring and evaluating many peers with one forward pass per batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from rejectnet._batches import inputs_to, split_inputs
from rejectnet._inference import eval_mode
from rejectnet.peers.peer import Peer
from rejectnet.report import DatasetScores, Report, evaluate

__all__ = ["evaluate_peers", "score_peers"]


def score_peers(
    peers: Mapping[str, Peer], loader: Iterable[Any], *, name: str = "loader"
) -> dict[str, DatasetScores]:
    """Score a loader with several peers, sharing the forward pass where they can.

    Peers of kind ``"logits"`` and ``"features"`` on the same model share one forward
    pass per batch; peers of kind ``"inputs"`` (ODIN, Mahalanobis with ``eps > 0``) run
    their own passes. Every peer gets the class predictions of its model, so that
    :func:`rejectnet.evaluate` reports the accuracy and selective risk.

    Args:
        peers: Peer name -> :class:`Peer`.
        loader: Batches (tensor, ``(x, y)`` or dict; named tensors such as ``input_ids``
            and ``attention_mask`` go to the model as keyword arguments).
        name: What to call the loader in error messages.

    Returns:
        Peer name -> :class:`rejectnet.report.sources.DatasetScores`.

    Raises:
        ValueError: If ``peers`` is empty or the loader yields no batch.
    """
    if not peers:
        raise ValueError("peers is empty; build some with rejectnet.peers.build_peers")
    scores: dict[str, list[torch.Tensor]] = {k: [] for k in peers}
    preds: dict[int, list[torch.Tensor]] = {}
    labels: list[torch.Tensor] = []
    models = {id(p.model): p.model for p in peers.values()}
    n_batches = 0
    for batch in loader:
        x, y = split_inputs(batch, f"{name} batch")
        n_batches += 1
        outputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for key, model in models.items():
            tap = next(p._tap for p in peers.values() if id(p.model) == key)
            with eval_mode(model), torch.no_grad():
                f, z = tap(inputs_to(x, tap.device))
            outputs[key] = (f, z)
            preds.setdefault(key, []).append(z.argmax(1).to("cpu"))
        for peer_name, peer in peers.items():
            if peer.kind == "inputs":
                scores[peer_name].append(peer(x))
            else:
                scores[peer_name].append(peer.score_outputs(*outputs[id(peer.model)]))
        if y is not None:
            labels.append(y.detach().to("cpu"))
    if n_batches == 0:
        raise ValueError(f"{name} yielded no batches; it needs at least one sample")
    y_all = torch.cat(labels) if len(labels) == n_batches else None
    return {
        k: DatasetScores(torch.cat(v), y_all, torch.cat(preds[id(peers[k].model)]))
        for k, v in scores.items()
    }


def evaluate_peers(
    peers: Mapping[str, Peer],
    id_loader: Iterable[Any],
    ood_loaders: Mapping[str, Iterable[Any]],
    **kwargs: Any,
) -> list[Report]:
    """Evaluate several peers on the same samples, one report each.

    Same protocol and :class:`rejectnet.report.results.Report` schema as
    :func:`rejectnet.evaluate` (pass the same ``n_runs`` and ``seed`` as for the other
    methods to measure all on the same subsamples); the forward passes are shared (see
    :func:`score_peers`).

    Args:
        peers: Peer name -> :class:`Peer` (the names become the reports' names).
        id_loader: In-distribution test batches ``(x, y)``.
        ood_loaders: OOD set name -> loader.
        **kwargs: Passed to :func:`rejectnet.evaluate` (``n_runs``, ``seed``, ``mixed``,
            ``tpr``); not ``name`` or ``score``.

    Returns:
        One report per peer, in the order of ``peers``.

    Raises:
        ValueError: If ``peers`` or ``ood_loaders`` is empty, or ``kwargs`` holds
            ``name`` or ``score``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import peers
        >>> torch.manual_seed(0) and None
        >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> built = peers.build_peers(model, None, names=["energy", "max_logit"])
        >>> x_in = [(torch.randn(30, 4), torch.randint(0, 3, (30,)))]
        >>> reports = peers.evaluate_peers(built, x_in, {"far": [torch.randn(30, 4) * 4]})
        >>> [(r.name, r.score) for r in reports]
        [('energy', 'energy(temperature=1)'), ('max_logit', 'max_logit()')]
    """
    bad = sorted({"name", "score"} & set(kwargs))
    if bad:
        raise ValueError(f"evaluate_peers names each report after its peer; drop {bad}")
    if not isinstance(ood_loaders, Mapping) or not ood_loaders:
        raise ValueError("ood_loaders must be a non-empty mapping {name: loader}")
    id_scores = score_peers(peers, id_loader, name="id_loader")
    ood_scores = {
        k: score_peers(peers, v, name=f"ood_loaders[{k!r}]") for k, v in ood_loaders.items()
    }
    return [
        evaluate(peer, id_scores[k], {s: ood_scores[s][k] for s in ood_loaders}, name=k, **kwargs)
        for k, peer in peers.items()
    ]
