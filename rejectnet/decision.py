"""The decision path: OOD scores from logits in a handful of fused ops, and the threshold test.

One implementation serves :meth:`rejectnet.RejectHead.predict`,
:meth:`~rejectnet.RejectHead.ood_score`, :meth:`~rejectnet.RejectHead.calibrate`,
:class:`rejectnet.deployed.DeployedModel` and the ONNX graph, so that the three paths give
the same scores and decisions by construction. The functions here do no argument checks
and no host synchronisation (the callers check once), so they trace into
``torch.compile`` / ``torch.export`` / ONNX graphs and cost a few microseconds at batch 1.

Scores: the kernels below are the one copy of every built-in score's formula; the
functions of :mod:`rejectnet.scores` check their arguments and call them, so both give
the same values bit for bit:

* ``sum_reject`` and ``weighted_reject``: one softmax over all C + k logits, then a
  row-wise weighted sum with a column-weight vector (0 for the C classes, 1 or the score
  weight ``w_j`` for the k reject units). A row-wise product and sum rather than a
  matrix-vector product, whose BLAS rounding of a row depends on the batch size: the same
  input gets the same score in any batch. A sum of probabilities can exceed 1 by a
  rounding error; it is not clamped.
* ``max_reject``: the largest reject-unit probability of the same softmax.
* ``entropy_reject`` / ``entropy_diff``: partial entropies of one log-softmax.
* ``msp``, ``energy``, ``max_logit``: on the first C logits.

Any other (user-registered) score runs its registered function.

The decision rule is ``is_ood = not (score <= threshold)``: ``score > threshold``, and a
NaN score (from NaN or infinite inputs or logits) is OOD. The threshold is stored in
float64; the comparison runs in the score's dtype against :func:`threshold_for`, the
largest value of that dtype that is ``<= threshold``, which gives exactly the decisions
of the float64 comparison ``float64(score) > threshold`` for every score value (a
float32 ``s`` is ``> t`` iff it is ``> round_down_f32(t)``), without converting scores
to float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from rejectnet._validation import all_finite, check_reject_weights, is_tracing
from rejectnet.prediction import REJECTED

__all__ = [
    "FUSED_SCORES",
    "Decision",
    "class_of",
    "column_weights",
    "compute_score",
    "decide",
    "is_tracing",
    "labels_for",
    "nan_if_nonfinite",
    "propagates_nonfinite",
    "ScoreFn",
    "energy_kernel",
    "entropy_diff_kernel",
    "entropy_reject_kernel",
    "max_logit_kernel",
    "max_reject_kernel",
    "msp_kernel",
    "partial_entropy",
    "weighted_sum",
    "score_dtype",
    "score_function",
    "threshold_for",
]

FUSED_SCORES = frozenset(
    {
        "sum_reject",
        "weighted_reject",
        "max_reject",
        "entropy_reject",
        "entropy_diff",
        "msp",
        "energy",
        "max_logit",
    }
)
"""Scores computed here in fused form (when not overridden by a user registration)."""

_SOFTMAX_BASED = frozenset(
    {"sum_reject", "weighted_reject", "max_reject", "entropy_reject", "entropy_diff"}
)


_REGISTRY: Any = None


def use_registry(registry: Any) -> None:
    """Register :mod:`rejectnet.scores.registry` (it calls this when imported).

    The scores are built on this module's kernels, so this module never imports them
    (no import cycle); the registry hands itself down instead. Importing ``rejectnet``
    always imports the registry first.
    """
    global _REGISTRY
    _REGISTRY = registry


def _registry() -> Any:
    """:mod:`rejectnet.scores.registry`, as registered by :func:`use_registry`."""
    if _REGISTRY is None:  # pragma: no cover - importing rejectnet registers it
        raise RuntimeError("rejectnet.scores.registry is not imported; import rejectnet first")
    return _REGISTRY


def _is_builtin(name: str) -> bool:
    """Whether ``name`` is served by the built-in function (no user override)."""
    if name not in FUSED_SCORES:
        return False
    fn = _registry().spec(name).fn
    return bool(getattr(fn, "__module__", "").startswith("rejectnet.scores."))


def score_dtype(logits_dtype: torch.dtype) -> torch.dtype:
    """The dtype of scores computed from logits of ``logits_dtype`` (float64 or float32).

    Example:
        >>> import torch
        >>> score_dtype(torch.bfloat16), score_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    return torch.float64 if logits_dtype == torch.float64 else torch.float32


def propagates_nonfinite(name: str) -> bool:
    """Whether NaN or infinite logits always give a NaN score for this score.

    True for the built-in reject scores (one softmax over all C + k logits: an infinite
    logit makes ``inf - inf``); false for the baselines (they see the first C logits
    only, and ``energy`` / ``max_logit`` turn ``inf`` into ``-inf``) and user scores,
    whose graphs need an explicit guard.
    """
    return name in _SOFTMAX_BASED and _is_builtin(name)


def column_weights(
    name: str,
    num_classes: int,
    k: int,
    score_weights: torch.Tensor,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor | None:
    """The ``(C + k,)`` weight vector of ``sum_reject`` / ``weighted_reject``, else ``None``.

    Args:
        name: Canonical score name.
        num_classes: C.
        k: Number of reject units.
        score_weights: The k weights of ``weighted_reject`` (validated here for it).
        dtype: The score dtype.
        device: The logits' device.

    Returns:
        Zeros for the C classes, then ones (``sum_reject``) or the weights.

    Raises:
        ValueError: If ``weighted_reject``'s weights are invalid (wrong length,
            negative, not finite, all zero).

    Example:
        >>> import torch
        >>> column_weights("sum_reject", 2, 3, torch.ones(3), torch.float32, torch.device("cpu"))
        tensor([0., 0., 1., 1., 1.])
    """
    if name not in ("sum_reject", "weighted_reject") or not _is_builtin(name):
        return None
    w = torch.zeros(num_classes + k, dtype=torch.float64)
    if name == "sum_reject":
        w[num_classes:] = 1.0
    else:
        checked = check_reject_weights(score_weights, k, num_classes + k, num_classes)
        w[num_classes:] = torch.from_numpy(checked)
    return w.to(device=device, dtype=dtype)


def partial_entropy(log_p: torch.Tensor) -> torch.Tensor:
    """``-sum_j p_j log p_j`` over the columns of ``log_p`` (finite, no NaN).

    A probability of exactly 0 has ``log_p = -inf`` (finite logits more than the float
    range apart, e.g. ``3e38`` and ``-3e38`` in float32); its term is 0, not ``0 * -inf``.

    Example:
        >>> import torch
        >>> partial_entropy(torch.tensor([[0.0, float("-inf")]]))
        tensor([-0.])
    """
    terms = log_p.exp() * log_p
    return -torch.where(torch.isneginf(log_p), torch.zeros_like(terms), terms).sum(dim=1)


# ---------------------------------------------------------------- the score kernels
# The one copy of every built-in score's formula. No checks (callers validate: the
# functions of rejectnet.scores at the edge, RejectHead once per batch).


def weighted_sum(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sum_j w_j p_j`` with ``p = softmax(z)`` over all ``C + k`` columns.

    ``sum_reject`` (``w`` = 0 for the classes, 1 for the reject units) and
    ``weighted_reject``. A row-wise product and sum, NOT a matrix-vector product: BLAS
    gemv rounds a row differently depending on how many rows the batch has, and a
    decision must not depend on the rest of the batch.
    """
    return (torch.softmax(z, 1, dtype=score_dtype(z.dtype)) * w).sum(1)


def max_reject_kernel(z: torch.Tensor, c: int) -> torch.Tensor:
    """``max_{j >= C} p_j``: the largest reject-unit probability."""
    return torch.softmax(z, 1, dtype=score_dtype(z.dtype)).narrow(1, c, z.shape[1] - c).amax(1)


def entropy_reject_kernel(z: torch.Tensor, c: int) -> torch.Tensor:
    """The partial entropy of the reject units under the softmax over all columns."""
    log_p = torch.log_softmax(z, 1, dtype=score_dtype(z.dtype))
    return partial_entropy(log_p.narrow(1, c, z.shape[1] - c))


def entropy_diff_kernel(z: torch.Tensor, c: int) -> torch.Tensor:
    """Entropy of the reject units minus entropy of the classes (one log-softmax)."""
    log_p = torch.log_softmax(z, 1, dtype=score_dtype(z.dtype))
    return partial_entropy(log_p.narrow(1, c, z.shape[1] - c)) - partial_entropy(
        log_p.narrow(1, 0, c)
    )


def msp_kernel(z: torch.Tensor, c: int) -> torch.Tensor:
    """``-max_{j < C} softmax(z_{:C})_j``."""
    return -torch.softmax(z.narrow(1, 0, c), 1, dtype=score_dtype(z.dtype)).amax(1)


def energy_kernel(z: torch.Tensor, c: int) -> torch.Tensor:
    """``-logsumexp(z_{:C})`` (temperature 1)."""
    return -torch.logsumexp(z.narrow(1, 0, c).to(score_dtype(z.dtype)), 1)


def max_logit_kernel(z: torch.Tensor, c: int) -> torch.Tensor:
    """``-max_{j < C} z_j``."""
    return -z.narrow(1, 0, c).amax(1).to(score_dtype(z.dtype))


_KERNELS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "max_reject": max_reject_kernel,
    "entropy_reject": entropy_reject_kernel,
    "entropy_diff": entropy_diff_kernel,
    "msp": msp_kernel,
    "energy": energy_kernel,
    "max_logit": max_logit_kernel,
}

ScoreFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""``fn(logits, column_weights) -> (N,) scores``, as :func:`score_function` returns."""


def score_function(name: str, num_classes: int) -> ScoreFn:
    """The fused kernel of score ``name``, resolved once (for callers on a hot path).

    Args:
        name: Canonical score name.
        num_classes: C.

    Returns:
        ``fn(logits, weights)`` computing what :func:`compute_score` computes.

    Example:
        >>> import torch
        >>> fn = score_function("max_logit", 2)
        >>> fn(torch.tensor([[1.0, 3.0, 0.0]]), None)
        tensor([-3.])
    """
    c = num_classes
    if not _is_builtin(name):

        def user(z: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
            out: torch.Tensor = _registry().compute(name, z, num_classes=c)
            return out

        return user
    if name in ("sum_reject", "weighted_reject"):

        def weighted(z: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
            assert w is not None, "pass column_weights(...) for sum_reject / weighted_reject"
            return weighted_sum(z, w)

        return weighted
    kernel = _KERNELS[name]
    return lambda z, w: kernel(z, c)


def compute_score(
    logits: torch.Tensor,
    name: str,
    num_classes: int,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """An OOD score from ``(N, C + k)`` logits, higher = more likely OOD.

    No checks and no host synchronisation for the built-in scores: the caller has
    validated ``logits`` (2-D, ``C + k`` columns). Apply a temperature before calling
    (``logits / T``).

    Args:
        logits: ``(N, C + k)`` logits.
        name: Canonical score name (see :func:`rejectnet.scores.available`).
        num_classes: C.
        weights: :func:`column_weights` for ``sum_reject`` / ``weighted_reject``.

    Returns:
        ``(N,)`` scores in :func:`score_dtype` of the logits' dtype.

    Example:
        >>> import torch
        >>> z = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
        >>> w = torch.tensor([0.0, 0.0, 1.0, 1.0])
        >>> compute_score(z, "sum_reject", 2, w).round(decimals=4)
        tensor([0.0347, 0.9194])
        >>> compute_score(z, "max_reject", 2).round(decimals=4)
        tensor([0.0174, 0.8098])
    """
    return score_function(name, num_classes)(logits, weights)


def threshold_for(value: float, dtype: torch.dtype) -> float:
    """The largest value of ``dtype`` that is ``<= value`` (as a Python float).

    Comparing a score of that dtype with it (``score <= t``) decides exactly like the
    float64 comparison with ``value``.

    Example:
        >>> import torch
        >>> t = threshold_for(0.1, torch.float32)
        >>> t <= 0.1, torch.tensor(0.1, dtype=torch.float64).float().item() > 0.1
        (True, True)
    """
    if dtype == torch.float64 or math.isnan(value):
        return value
    t = torch.tensor(value, dtype=torch.float64).to(dtype)
    if float(t) > value:
        t = torch.nextafter(t, torch.tensor(-math.inf, dtype=dtype))
    return float(t)


def decide(score: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``is_ood = not (score <= threshold)``: above the threshold, or NaN.

    Args:
        score: ``(N,)`` scores.
        threshold: A 0-d tensor of the score's dtype from :func:`threshold_for`.

    Example:
        >>> import torch
        >>> decide(torch.tensor([0.2, 0.5, 0.7, float("nan")]), torch.tensor(0.5))
        tensor([False, False,  True,  True])
    """
    return torch.le(score, threshold).logical_not_()


def class_of(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The arg-max over the first C logits (the first index among ties).

    Example:
        >>> import torch
        >>> class_of(torch.tensor([[0.0, 2.0, 9.0], [3.0, 1.0, 0.0]]), 2)
        tensor([1, 0])
    """
    return logits.narrow(1, 0, num_classes).argmax(1)


def labels_for(classes: torch.Tensor, is_ood: torch.Tensor) -> torch.Tensor:
    """The predicted labels: ``classes``, with ``-1`` (``REJECTED``) where ``is_ood``.

    Example:
        >>> import torch
        >>> labels_for(torch.tensor([2, 0]), torch.tensor([True, False]))
        tensor([-1,  0])
    """
    return classes.masked_fill(is_ood, REJECTED)


def nan_if_nonfinite(score: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
    """``score`` plus 0 for rows whose tensors are all finite, NaN for the other rows.

    ``(t * 0).sum(dims)`` is exactly 0 for a finite row and NaN otherwise (no overflow:
    every term is 0 or NaN), so adding it marks the row OOD under :func:`decide` and
    leaves every other score unchanged. Non-floating tensors are skipped.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 2.0], [float("inf"), 0.0]])
        >>> nan_if_nonfinite(torch.tensor([0.25, 0.5]), x)
        tensor([0.2500,    nan])
    """
    for t in tensors:
        if t.is_floating_point():
            dims = tuple(range(1, t.ndim))
            guard = (t * 0).sum(dim=dims) if dims else t * 0
            score = score + guard.to(score.dtype)
    return score


class Decision(nn.Module):
    """The decision's constants and kernels in one object: score, threshold test, labels.

    The one implementation of the decision. :meth:`rejectnet.RejectHead.predict` and
    :meth:`~rejectnet.RejectHead.ood_score` score and decide with the head's current
    :class:`Decision`; :class:`rejectnet.deployed.DeployedModel` holds a frozen one and
    calls :meth:`forward` (eager and traced), and so do :func:`rejectnet.export_onnx` and
    :func:`rejectnet.export_aoti`, which trace that module. The constants are buffers:
    the threshold in float64 and rounded down to float32 (:func:`threshold_for`), the
    column weights of ``sum_reject`` / ``weighted_reject`` in both dtypes, and the
    temperature; they keep their dtypes through ``.half()`` / ``.to(dtype)``.

    Args:
        score: Canonical score name.
        num_classes: C.
        k: Number of reject units.
        score_weights: The k weights of ``weighted_reject`` (validated for it).
        threshold: The decision threshold (NaN before calibration).
        temperature: The temperature T; scores use ``logits / T``.
        device: Where the constants live (the model's device).

    Example:
        >>> import torch
        >>> d = Decision("sum_reject", 2, 2, torch.ones(2), 0.5, 1.0, torch.device("cpu"))
        >>> z = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
        >>> labels, score, is_ood = d(torch.zeros(2, 1), z)
        >>> labels.tolist(), is_ood.tolist()
        ([0, -1], [False, True])
    """

    threshold: torch.Tensor
    thr32: torch.Tensor
    temperature: torch.Tensor
    weights: torch.Tensor
    weights32: torch.Tensor

    def __init__(
        self,
        score: str,
        num_classes: int,
        k: int,
        score_weights: torch.Tensor,
        threshold: float,
        temperature: float,
        device: torch.device,
    ) -> None:
        super().__init__()
        self.score = score
        self.num_classes = int(num_classes)
        f64 = torch.float64
        self.register_buffer("threshold", torch.tensor(threshold, dtype=f64, device=device))
        thr32 = threshold_for(threshold, torch.float32)
        self.register_buffer("thr32", torch.tensor(thr32, dtype=torch.float32, device=device))
        temp = torch.tensor(temperature, dtype=torch.float32, device=device)
        self.register_buffer("temperature", temp)
        w = column_weights(score, self.num_classes, int(k), score_weights, f64, device)
        empty = torch.empty(0, dtype=f64, device=device)
        self.register_buffer("weights", w if w is not None else empty)
        self.register_buffer("weights32", (w if w is not None else empty).float())
        self._t = float(temp)  # the same value as a Python float: no tensor per call
        self._unit_temperature = self._t == 1.0
        self._guard_logits = not propagates_nonfinite(score)
        self._has_weights = w is not None
        self._score_fn = score_function(score, self.num_classes)  # no registry lookup per call

    def _apply(self, fn: Any, recurse: bool = True) -> Decision:
        # the decision constants keep their dtypes through .half() / .to(dtype)
        names = ("threshold", "thr32", "temperature", "weights", "weights32")
        kept = {n: getattr(self, n).detach().clone() for n in names}
        super()._apply(fn, recurse)
        for n, t in kept.items():
            setattr(self, n, t.to(getattr(self, n).device))
        return self

    def scaled(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits / temperature``, or ``logits`` itself (bit for bit) at 1.0."""
        return logits if self._unit_temperature else logits / self._t

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """The ``(N,)`` scores of temperature-scaled logits ``z`` (no checks, no guard)."""
        w = None
        if self._has_weights:
            w = self._buffers["weights" if z.dtype is torch.float64 else "weights32"]
        return self._score_fn(z, w)

    def decide(self, score: torch.Tensor, threshold: torch.Tensor | None = None) -> torch.Tensor:
        """``is_ood = not (score <= threshold)`` against the threshold of the score's dtype."""
        if threshold is None:
            threshold = self._buffers["threshold" if score.dtype is torch.float64 else "thr32"]
        return torch.le(score, threshold).logical_not_()  # type: ignore[arg-type]

    def forward(
        self,
        x: torch.Tensor | Mapping[str, torch.Tensor],
        logits: torch.Tensor,
        threshold: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(labels, ood_score, is_ood)`` of inputs ``x`` with model logits ``logits``.

        Never raises on bad values: a row whose input (or logits, for scores that do
        not propagate NaN) hold NaN or infinity gets a NaN score and is rejected. In
        eager mode, the guard of ``sum_reject`` / ``weighted_reject`` is one ``addmv``
        (``x_flat @ 0`` is exactly 0 for a finite row and NaN otherwise); for the other
        scores, one reduction over the batch, and only when it is not finite the per-row
        guard (:func:`nan_if_nonfinite`), which a traced graph always contains.

        Args:
            x: The model's input batch: a tensor or a dict of named tensors (every
                floating one is guarded; integer token ids are always finite).
            logits: The model's ``(N, C + k)`` logits on ``x``.
            threshold: Another threshold tensor of the score's dtype (what
                :func:`rejectnet.export_aoti` passes); the stored one when ``None``.
        """
        z = self.scaled(logits)
        xs = (x,) if isinstance(x, torch.Tensor) else _floating(x)
        if is_tracing():
            score = self._traced_score(xs, logits, z)
        else:
            score = self._eager_score(xs, logits, z)
        is_ood = self.decide(score, threshold)
        labels = logits.narrow(1, 0, self.num_classes).argmax(1).masked_fill_(is_ood, REJECTED)
        return labels, score, is_ood

    def _eager_score(
        self, xs: tuple[torch.Tensor, ...], logits: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """The guarded score in the fewest tensor ops (a few microseconds each at batch 1)."""
        if not self._has_weights:
            score = self._score_fn(z, None)
            tensors = (*xs, logits) if self._guard_logits else xs
            if not all(all_finite(t) for t in tensors):
                score = nan_if_nonfinite(score, *tensors)
            return score
        f64 = logits.dtype is torch.float64
        w = self._buffers["weights" if f64 else "weights32"]
        p = torch.softmax(z, 1) if f64 or z.dtype is torch.float32 else _softmax32(z)
        score = (p * w).sum(1)  # type: ignore[operator]  # exactly score_function's ops
        for x in xs:
            if not x.is_floating_point():
                continue
            # the input guard: x_flat @ 0 is exactly 0 for a finite row (s + 0 == s,
            # s >= +0) and NaN otherwise; addmv adds it in the same op
            flat = x if x.ndim == 2 else (x.flatten(1) if x.ndim > 2 else x.unsqueeze(1))
            zeros = self._zero_row(flat)
            if flat.dtype is score.dtype:
                score = torch.addmv(score, flat, zeros)
            else:
                score = score.add_(torch.mv(flat, zeros).to(score.dtype))
        return score

    def _traced_score(
        self, xs: tuple[torch.Tensor, ...], logits: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """The guarded score as torch.compile, torch.export and ONNX trace it (branch-free)."""
        f64 = z.dtype == torch.float64
        sdt = torch.float64 if f64 else torch.float32
        w = (self.weights if f64 else self.weights32) if self._has_weights else None
        if w is None or len(xs) != 1 or not xs[0].is_floating_point():
            score = self._score_fn(z, w)
            tensors = (*xs, logits) if self._guard_logits else xs
            return nan_if_nonfinite(score, *tensors)
        x = xs[0]
        # sum / weighted_reject with the input guard added: x_flat @ 0 is exactly 0 for
        # a finite row and NaN otherwise, and s + 0 == s, so the score has the bits of
        # predict()'s row-wise sum, without host synchronisation
        flat = x.reshape(x.shape[0], math.prod(int(d) for d in x.shape[1:]))
        zeros = torch.zeros(int(flat.shape[1]), dtype=flat.dtype, device=flat.device)
        guard = torch.mv(flat, zeros)
        p = torch.softmax(z, 1, dtype=sdt)
        guard = guard if guard.dtype == sdt else guard.to(sdt)
        if torch.onnx.is_in_onnx_export():
            # in the ONNX graph one MatMul + Add is fewer nodes; onnxruntime's rounding
            # is its own anyway (matched to predict() within 1e-5 in tests)
            return torch.addmv(guard, p, w)
        return (p * w).sum(1).add_(guard)

    def _zero_row(self, flat: torch.Tensor) -> torch.Tensor:
        """A zero vector as long as one flattened input row (kept; eager mode only)."""
        key = (flat.shape[1], flat.dtype, flat.device)
        cache: dict[Any, torch.Tensor] | None = self.__dict__.get("_zeros")
        if cache is None:
            cache = self.__dict__["_zeros"] = {}
        found = cache.get(key)
        if found is None:
            if len(cache) > 8:
                cache.clear()
            found = cache[key] = torch.zeros(key[0], dtype=key[1], device=key[2])
        return found

    def extra_repr(self) -> str:
        """The score, threshold and temperature, for ``repr()``."""
        return f"score={self.score!r}, threshold={float(self.threshold):.6g}" + (
            f", temperature={self._t:.6g}" if not self._unit_temperature else ""
        )


def _floating(x: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The floating tensors among named inputs (the ones that can hold NaN)."""
    return tuple(t for t in x.values() if t.is_floating_point())


def _softmax32(z: torch.Tensor) -> torch.Tensor:
    """``softmax(z, 1)`` in float32 (for half / bfloat16 logits), as predict() computes it."""
    return torch.softmax(z, 1, dtype=torch.float32)
