"""`Peer`: one post-hoc OOD detector on a fixed classifier, ``x -> score``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch

from rejectnet._batches import Inputs, inputs_to
from rejectnet._inference import eval_mode
from rejectnet.peers.features import ClassifierTap

__all__ = ["Kind", "Peer"]

Kind = Literal["logits", "features", "inputs"]
"""What a peer scores: the logits, the penultimate features (and logits), or the inputs
themselves (ODIN and Mahalanobis with input preprocessing need input gradients)."""


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Peer:
    """A post-hoc OOD detector: ``peer(x)`` returns one score per input, higher = more OOD.

    Built by :func:`rejectnet.peers.build` or :func:`rejectnet.peers.build_peers`; wraps a
    `pytorch-ood <https://github.com/kkirchheim/pytorch-ood>`_ detector on the stage-one
    classifier. The model is put in eval mode while it scores and restored after.

    Attributes:
        name: The method's name in reports (``"odin"``, ``"odin-tuned"``, ...).
        kind: ``"logits"``, ``"features"`` or ``"inputs"`` (see :data:`Kind`).
        settings: The settings used (after tuning, the values chosen).
        tuned_on: Names of the OOD sets whose samples chose the settings; empty for a
            peer that saw in-distribution data only.
        fit_samples: In-distribution training samples the detector was fitted on (0 for
            detectors without a fit).
        reference: The pytorch-ood class used.
        tuning: For a tuned peer, every candidate of the grid with its ``fpr95`` and
            ``auroc`` on the tuning samples (fractions); empty otherwise.
    """

    def __init__(
        self,
        name: str,
        *,
        kind: Kind,
        tap: ClassifierTap,
        settings: Mapping[str, Any],
        reference: str,
        score_outputs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        score_inputs: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tuned_on: tuple[str, ...] = (),
        fit_samples: int = 0,
        tuning: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        wants_inputs = kind == "inputs"
        if wants_inputs != (score_inputs is not None) or (not wants_inputs and not score_outputs):
            raise ValueError(f"kind={kind!r} does not match the scoring function given")
        self.name = name
        self.kind: Kind = kind
        self.settings = dict(settings)
        self.reference = reference
        self.tuned_on = tuple(tuned_on)
        self.fit_samples = fit_samples
        self.tuning = [dict(row) for row in tuning]
        self._tap = tap
        self._score_outputs = score_outputs
        self._score_inputs = score_inputs

    @property
    def tuned_on_ood(self) -> bool:
        """Whether OOD samples chose the settings (the paper's Figure 1 protocol)."""
        return bool(self.tuned_on)

    @property
    def model(self) -> torch.nn.Module:
        """The classifier the peer scores with."""
        return self._tap.model

    @property
    def score(self) -> str:
        """A short description for the "score" column of reports.

        Example: ``"odin(temperature=1000, eps=0.0014)"``, with ``"; tuned on OOD: a, b"``
        appended for an OOD-tuned peer.
        """
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.settings.items())
        base = self.name.removesuffix("-tuned")
        text = f"{base}({args})"
        if self.tuned_on:
            text += "; tuned on OOD: " + ", ".join(self.tuned_on)
        return text

    def renamed(
        self, name: str, *, tuned_on: tuple[str, ...], tuning: Sequence[Mapping[str, Any]]
    ) -> Peer:
        """The same detector under another name, with where its settings came from.

        Args:
            name: The new name (e.g. ``"odin-tuned"``).
            tuned_on: Names of the OOD sets that chose the settings.
            tuning: The grid with its tuning numbers.

        Returns:
            A new :class:`Peer` sharing this one's detector.
        """
        return Peer(
            name,
            kind=self.kind,
            tap=self._tap,
            settings=self.settings,
            reference=self.reference,
            score_outputs=self._score_outputs,
            score_inputs=self._score_inputs,
            tuned_on=tuned_on,
            fit_samples=self.fit_samples,
            tuning=tuning,
        )

    def __repr__(self) -> str:
        return f"Peer({self.score})"

    def score_outputs(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Scores from precomputed features and logits (one forward shared by many peers).

        Args:
            features: ``(N, D)`` penultimate features.
            logits: ``(N, C)`` logits.

        Returns:
            ``(N,)`` float64 scores on the CPU.

        Raises:
            TypeError: For a peer of kind ``"inputs"``, which needs the inputs.
        """
        if self._score_outputs is None:
            raise TypeError(f"peer {self.name!r} scores inputs (kind 'inputs'), not outputs")
        with torch.no_grad():
            s = self._score_outputs(features, logits)
        return s.detach().to("cpu", torch.float64).reshape(-1)

    def __call__(self, x: Inputs) -> torch.Tensor:
        """Score a batch of inputs.

        Args:
            x: A batch of inputs (moved to the model's device): one tensor, or a dict of
                named tensors passed as keyword arguments (``input_ids``,
                ``attention_mask``, ...). Peers of kind ``"inputs"`` perturb the input
                tensor and take one tensor only.

        Returns:
            ``(N,)`` float64 scores on the CPU, higher = more OOD.

        Raises:
            TypeError: If ``x`` is neither a tensor nor a dict of tensors, or a dict is
                given to a peer of kind ``"inputs"``.
        """
        if not isinstance(x, (torch.Tensor, dict)):
            raise TypeError(
                f"x must be a torch.Tensor batch or a dict of named tensors, got {type(x).__name__}"
            )
        if isinstance(x, dict) and self._score_inputs is not None:
            raise TypeError(
                f"peer {self.name!r} perturbs the input tensor along its gradient, so it takes "
                "one input tensor, not named tensors such as token ids; use a logits or "
                "feature peer (energy, max_logit, mahalanobis with eps=0, knn, vim)"
            )
        x = inputs_to(x, self._tap.device)
        with eval_mode(self._tap.model):
            if self._score_inputs is not None:
                assert isinstance(x, torch.Tensor)
                s = self._score_inputs(x)
            else:
                assert self._score_outputs is not None  # checked in __init__
                with torch.no_grad():
                    f, z = self._tap(x)
                    s = self._score_outputs(f, z)
        return s.detach().to("cpu", torch.float64).reshape(-1)
