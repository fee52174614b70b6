"""`RejectHead`: a classifier widened with k reject classes.

``RejectHead.wrap(model, k)`` finds the model's final ``nn.Linear`` (C outputs) and
replaces it with a :class:`RejectLinear` that keeps the original layer untouched and adds
a separate k-unit reject layer beside it; the two outputs are concatenated to C+k logits.
Keeping the original layer (rather than copying its weights into one wider layer) makes
the first C logits of the wrapped model equal the original model's logits bit for bit:
the same kernel runs on the same weights.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rejectnet import decision
from rejectnet._batches import BatchKeys, Inputs, check_keys, logits_of
from rejectnet._inference import checked_logits, collect_logits, eval_mode, module_device
from rejectnet._locate import find_head, replace_module
from rejectnet._validation import (
    all_finite,
    check_finite_logits,
    check_finite_rows,
    check_fraction,
    check_logits_width,
    check_real,
    nonfinite_rows,
)
from rejectnet.deployed import DeployedModel
from rejectnet.input_spec import AnySpec, InputSpec, ModelInput, NamedInputSpec, spec_of
from rejectnet.prediction import Prediction
from rejectnet.scores import registry
from rejectnet.scores.thresholds import ThresholdResult, threshold_for_coverage
from rejectnet.temperature import fit_temperature_to

__all__ = ["RejectHead", "RejectLinear"]

_NAME_BYTES = 32
DEFAULT_SCORE = "sum_reject"


class RejectLinear(nn.Module):
    """The original classification layer plus a k-unit reject layer.

    Attributes:
        base: The model's original ``nn.Linear`` (C outputs), the very same object.
        reject: A new ``nn.Linear`` with k outputs, on the same device and dtype as
            ``base``, initialised like any fresh ``nn.Linear`` (PyTorch's default
            Kaiming-uniform weights and uniform bias, drawn from the global RNG, so
            ``torch.manual_seed`` makes it reproducible).

    Args:
        base: The layer to widen; kept as is, not copied.
        k: Number of reject units.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> base = nn.Linear(8, 3)
        >>> layer = RejectLinear(base, k=2)
        >>> layer.base is base, layer(torch.randn(4, 8)).shape
        (True, torch.Size([4, 5]))
    """

    def __init__(self, base: nn.Linear, k: int) -> None:
        super().__init__()
        self.base = base
        self.reject = nn.Linear(
            base.in_features,
            k,
            bias=True,
            device=base.weight.device,
            dtype=base.weight.dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the C class logits and the k reject logits.

        Args:
            x: Features ``(..., in_features)``, the input of the original layer.

        Returns:
            ``(..., C + k)`` logits: ``base(x)`` followed by ``reject(x)``.
        """
        modules = self._modules
        base, reject = modules["base"], modules["reject"]
        assert base is not None and reject is not None
        if _plain_linear(base) and _plain_linear(reject) and not _global_module_hooks():
            # nn.Linear.forward is exactly F.linear on the same tensors, so the class
            # logits stay bit-exact; calling it directly saves two module calls (a few
            # microseconds, which matter at batch size 1).
            pb, pr = base._parameters, reject._parameters
            return torch.cat(
                [
                    F.linear(x, pb["weight"], pb["bias"]),  # type: ignore[arg-type]
                    F.linear(x, pr["weight"], pr["bias"]),  # type: ignore[arg-type]
                ],
                dim=-1,
            )
        return torch.cat([base(x), reject(x)], dim=-1)


def _plain_linear(m: nn.Module) -> bool:
    """Whether calling ``m`` is the same as ``F.linear(x, m.weight, m.bias)``, global
    module hooks aside (see :func:`_global_module_hooks`): an exact ``nn.Linear`` (not a
    subclass, so not parametrized either: parametrization swaps the class) with no hooks
    of its own."""
    params = m._parameters
    return (
        type(m) is nn.Linear
        and "weight" in params  # not e.g. FSDP's plain tensors in place of parameters
        and "bias" in params
        and not (
            m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        )
    )


_module_state = nn.modules.module


def _global_module_hooks() -> bool:
    """Whether any global module hook (``nn.modules.module.register_module_*_hook``) is set."""
    h = _module_state
    return bool(
        h._global_forward_hooks
        or h._global_forward_pre_hooks
        or h._global_backward_hooks
        or h._global_backward_pre_hooks
    )


def _expected_input_ndim(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return len(m.kernel_size) + 2
    return None


def _first_conv_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return int(m.in_channels)
    return None


def _float_dtype(model: nn.Module) -> torch.dtype | None:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def _encode_name(name: str) -> torch.Tensor:
    raw = name.encode("ascii")
    buf = torch.zeros(_NAME_BYTES, dtype=torch.uint8)
    buf[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    return buf


def _decode_name(buf: torch.Tensor) -> str:
    raw = bytes(int(b) for b in buf.tolist() if b != 0)
    return raw.decode("ascii")


class RejectHead(nn.Module):
    """A classifier with k extra reject classes, an OOD score and a calibrated threshold.

    Create one with :meth:`wrap`. The wrapped model returns ``(N, C + k)`` logits; the
    first C are exactly the original model's logits. State that travels with the model
    lives in buffers, so it is part of ``state_dict()``: ``threshold`` (float64 scalar,
    NaN until calibrated), ``threshold_score`` (the score's name, as 32 ASCII bytes),
    ``score_weights`` (the k weights used by the ``"weighted_reject"`` score, float32)
    and ``temperature`` (float32 scalar, 1.0 unless fitted: scores and probabilities are
    computed on ``logits / temperature``). ``.half()`` and ``.to(dtype)`` leave the dtypes
    of these buffers alone. ``input_spec`` (the shape and dtype of the calibration
    inputs) is a plain attribute, not in ``state_dict()``.

    Inference (:meth:`predict`, :meth:`ood_score`, :meth:`calibrate`,
    :meth:`fit_temperature`) always runs every submodule in eval mode, whatever mode the
    model is in, and puts each submodule's own mode back afterwards: batch-norm running
    statistics are never updated by inference, dropout is off, and the decision for one
    input never depends on the rest of the batch. Call ``net(x)`` directly to run the
    model in its current mode (as a training loop does).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> net = RejectHead.wrap(model, k=2)
        >>> net.num_classes, net.k
        (3, 2)
        >>> x = torch.randn(4, 1, 4, 4)
        >>> torch.equal(net(x)[:, :3], model(x))
        True
    """

    threshold: torch.Tensor
    threshold_score: torch.Tensor
    score_weights: torch.Tensor
    temperature: torch.Tensor

    def __init__(self, model: nn.Module, head_path: str, k: int) -> None:
        super().__init__()
        layer = model.get_submodule(head_path)
        if not isinstance(layer, RejectLinear):
            raise TypeError(
                "RejectHead(...) expects a model whose head is already a RejectLinear; "
                "use RejectHead.wrap(model, k) instead"
            )
        self.model = model
        self.head_path = head_path
        self.num_classes = int(layer.base.out_features)
        self.k = int(k)
        self.expected_input_ndim = _expected_input_ndim(model)
        self._in_channels = _first_conv_channels(model)
        self._takes_integers = any(
            isinstance(m, nn.Embedding | nn.EmbeddingBag) for m in model.modules()
        )
        self._param_dtype = _float_dtype(model)
        self._input_spec: AnySpec | None = None
        # the Decision of the current constants (rebuilt when one of them changes)
        self.__dict__["_decision"] = None
        self.register_buffer("threshold", torch.tensor(math.nan, dtype=torch.float64))
        self.register_buffer("threshold_score", torch.zeros(_NAME_BYTES, dtype=torch.uint8))
        self.register_buffer("score_weights", torch.ones(self.k, dtype=torch.float32))
        self.register_buffer("temperature", torch.tensor(1.0, dtype=torch.float32))

    # ------------------------------------------------------------------ construction
    @classmethod
    def wrap(
        cls, model: nn.Module, k: int = 5, *, head: str | None = None, inplace: bool = False
    ) -> RejectHead:
        """Widen ``model``'s final ``nn.Linear`` from C to C + k outputs.

        Args:
            model: A trained classifier (timm, torchvision, Hugging Face or hand-written)
                whose forward returns ``(N, C)`` logits, a dict with ``"logits"``, or an
                object with ``.logits``.
            k: Number of reject classes (at least 1). The paper uses 5 for 10-class
                problems and 10 for 100 classes.
            head: Dotted path of the final layer, e.g. ``"fc"`` or ``"heads.head"``.
                Found automatically when omitted (see :func:`rejectnet._locate.find_head`).
            inplace: When ``False`` (the default) the model is deep-copied first, so the
                caller's model object is left exactly as it was. When ``True`` the
                caller's model is modified in place (its head is replaced by a
                :class:`RejectLinear`) and shares all weights with the result, which
                saves memory for large models.

        Returns:
            The wrapped model, on the same device and dtype as ``model``, in the same
            train/eval mode.

        Raises:
            TypeError: If ``model`` is not an ``nn.Module``, ``k`` is not an int, or the
                named head is not an ``nn.Linear``.
            ValueError: If ``k < 1``, the model is already wrapped, no final layer can be
                found (the message lists the ``nn.Linear`` layers seen), or the model is a
                timm model created with ``num_classes=0``.

        Example:
            >>> import torchvision
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(torchvision.models.resnet18(num_classes=10), k=5)
            >>> net.head_path, net.num_classes, net.k
            ('fc', 10, 5)
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"k must be an int >= 1 (number of reject classes), got {k!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1 (number of reject classes), got {k}")
        if isinstance(model, RejectHead) or any(
            isinstance(m, RejectLinear) for m in model.modules()
        ):
            raise ValueError(
                "model is already wrapped by RejectHead; wrap the original model, or call "
                "net.unwrap() first to get the plain C-class model back"
            )
        path, _ = find_head(model, head)
        target = model if inplace else copy.deepcopy(model)
        base = target.get_submodule(path)
        assert isinstance(base, nn.Linear)
        target = replace_module(target, path, RejectLinear(base, k))
        net = cls(target, path, k)
        net.to(device=base.weight.device)
        net.train(model.training)
        return net

    def unwrap(self) -> nn.Module:
        """Return a plain C-class copy of the model, with the current weights.

        The reject units are dropped; whatever fine-tuning did to the rest of the
        network is kept. The returned model shares no tensors with ``self``.

        Returns:
            A deep copy of the wrapped model whose head is the original C-output
            ``nn.Linear`` again.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), k=2)
            >>> plain = net.unwrap()
            >>> x = torch.randn(4, 1, 4, 4)
            >>> plain(x).shape, torch.equal(plain(x), net(x)[:, :3])
            (torch.Size([4, 3]), True)
        """
        plain = copy.deepcopy(self.model)
        layer = plain.get_submodule(self.head_path)
        assert isinstance(layer, RejectLinear)
        return replace_module(plain, self.head_path, layer.base)

    @property
    def head(self) -> RejectLinear:
        """The widened final layer."""
        layer = self.model.get_submodule(self.head_path)
        assert isinstance(layer, RejectLinear)
        return layer

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return module_device(self.model)

    # ------------------------------------------------------------------ input spec
    @property
    def input_spec(self) -> AnySpec | None:
        """The shape (after the batch dimension) and dtype of the calibration inputs.

        Set by :meth:`calibrate` (dimensions that differ between calibration batches are
        recorded as ``None``, any size); :meth:`predict` and :meth:`ood_score` then refuse
        batches of another shape or dtype with an error naming ``x``, the shape received
        and the shape expected. Assign an :class:`~rejectnet.input_spec.InputSpec` to set
        it by hand, or ``None`` to clear it (then only the number of dimensions and the
        dtype are checked). It is not part of ``state_dict()``: :func:`rejectnet.save`
        stores it in the file's metadata. Its floating dtype follows the model through
        ``.half()`` / ``.to(dtype)``. For a model calibrated on dict batches (named
        inputs, ``model(**x)``) it is a :class:`~rejectnet.input_spec.NamedInputSpec`:
        every input's name, dtype and shape (sequence lengths any size).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> from rejectnet.input_spec import InputSpec
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
            >>> net.input_spec is None
            True
            >>> _ = net.calibrate([torch.randn(32, 8)])
            >>> net.input_spec.describe()
            '(N, 8) float32'
            >>> net.input_spec = None  # accept any shape again
        """
        return self._input_spec

    @input_spec.setter
    def input_spec(self, spec: AnySpec | None) -> None:
        if spec is not None and not isinstance(spec, (InputSpec, NamedInputSpec)):
            raise TypeError(
                "input_spec must be a rejectnet.input_spec.InputSpec, a NamedInputSpec or "
                "None, got "
                f"{type(spec).__name__}; build one with InputSpec(shape, dtype) or "
                "InputSpec.from_dict(...)"
            )
        self._input_spec = spec

    # ------------------------------------------------------------------ forward
    def _input_rule(self) -> ModelInput:
        """The :class:`~rejectnet.input_spec.ModelInput` every batch is checked against
        (built again when the recorded spec or the model's dtype changed)."""
        rule: ModelInput | None = self.__dict__.get("_rule")
        if (
            rule is None
            or rule.spec is not self._input_spec
            or rule.dtype is not self._param_dtype
            or rule.ndim != self.expected_input_ndim
        ):
            rule = self.__dict__["_rule"] = ModelInput(
                self._input_spec,
                self.expected_input_ndim,
                self._in_channels,
                self._param_dtype,
                self._takes_integers,
            )
        return rule

    def forward(self, x: Inputs | None = None, /, **inputs: torch.Tensor) -> torch.Tensor:
        """Return the ``(N, C + k)`` logits: C class logits, then k reject logits.

        Args:
            x: A batch of inputs, shaped as the wrapped model expects: one tensor
                (``model(x)``), or a dict of named tensors passed to the model as keyword
                arguments (``model(**x)``, e.g. ``input_ids`` and ``attention_mask``).
            **inputs: The named tensors as keyword arguments instead of a dict
                (``net(input_ids=ids, attention_mask=mask)``).

        Returns:
            ``(N, C + k)`` logits; the first C equal the original model's logits.

        Raises:
            TypeError: If ``x`` is not a tensor, or its dtype is not the model's (a
                floating ``x`` of another precision, or an integer ``x`` for a model
                without an embedding layer; under autocast any floating ``x`` passes).
            ValueError: If ``x`` has the wrong number of dimensions (e.g. a single
                image without its batch dimension; the message says which
                ``x.unsqueeze(d)`` fixes it where that is clear).
            RuntimeError: If the wrapped model does not return ``(N, C + k)`` logits,
                i.e. the widened layer is not the model's final layer.
        """
        x = _one_input(x, inputs)
        self._input_rule().check(x, match_spec=False)
        return self._logits(x)

    def _logits(self, x: Inputs) -> torch.Tensor:
        logits = logits_of(self.model, x)
        check_logits_width(logits, self.num_classes + self.k, self.head_path)
        return logits

    def _apply(self, fn: Any, recurse: bool = True) -> RejectHead:
        # Keep the threshold in float64 and the score weights and temperature in float32
        # through .half()/.to(dtype), so decisions don't drift and save/load keeps every
        # dtype. The input spec's floating dtype follows the model's.
        saved = self.threshold.detach().clone()
        weights = self.score_weights.detach().clone()
        temp = self.temperature.detach().clone()
        old_dtype = self._param_dtype
        super()._apply(fn, recurse)
        self.threshold = saved.to(self.threshold.device)
        self.score_weights = weights.to(self.score_weights.device)
        self.temperature = temp.to(self.temperature.device)
        self._param_dtype = _float_dtype(self.model)
        spec = self._input_spec
        new_dtype = self._param_dtype
        if new_dtype is not None and isinstance(spec, InputSpec) and spec.dtype == old_dtype:
            self._input_spec = InputSpec(spec.shape, new_dtype)
        elif new_dtype is not None and isinstance(spec, NamedInputSpec):
            self._input_spec = NamedInputSpec(
                tuple(
                    (n, InputSpec(s.shape, new_dtype) if s.dtype == old_dtype else s)
                    for n, s in spec.inputs
                )
            )
        self.__dict__["_decision"] = None
        return self

    # ------------------------------------------------------------------ scores
    def _resolve_score(self, score: str | None) -> str:
        if score is None:
            score = self.calibrated_score or DEFAULT_SCORE
        return registry.spec(score).name

    def _decision_for(self, name: str) -> decision.Decision:
        """The :class:`~rejectnet.decision.Decision` of score ``name`` and the current
        threshold, temperature and score weights (built again when one changed)."""
        w = self.score_weights
        thr = float(self.threshold)
        key = (
            name,
            thr if thr == thr else None,  # NaN before calibration
            float(self.temperature),
            id(w),
            w._version if not w.is_inference() else 0,
            self.threshold.device,
        )
        found = self.__dict__["_decision"]
        if found is None or found[0] != key:
            made = decision.Decision(
                name, self.num_classes, self.k, w, thr, key[2], self.threshold.device
            )
            found = self.__dict__["_decision"] = (key, made)
        return found[1]  # type: ignore[no-any-return]

    def _score(self, logits: torch.Tensor, name: str) -> torch.Tensor:
        d = self._decision_for(name)
        return d.scores(d.scaled(logits))

    def score_logits(self, logits: torch.Tensor, score: str | None = None) -> torch.Tensor:
        """Compute an OOD score from ``(N, C + k)`` logits already produced by this model.

        The score is computed on ``logits / temperature`` (see :meth:`fit_temperature`),
        by the same function :meth:`predict` and :meth:`deployable` use
        (:func:`rejectnet.decision.compute_score`); at temperature 1 it equals the
        functions of :mod:`rejectnet.scores` bit for bit (they call the same kernels).

        Args:
            logits: Output of ``self(x)``.
            score: A score name from :func:`rejectnet.scores.available` (reject scores and
                baselines alike; baselines see the first C logits). Defaults to the
                calibrated score, or ``"sum_reject"`` before calibration.

        Returns:
            ``(N,)`` scores, higher = more likely OOD.

        Raises:
            TypeError: If ``logits`` is not a tensor.
            ValueError: If the score name is unknown, the logits are not ``(N, C + k)``
                or hold NaN or infinite values.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
            >>> logits = net(torch.randn(5, 8))
            >>> net.score_logits(logits, "max_reject").shape, net.score_logits(logits, "msp").shape
            (torch.Size([5]), torch.Size([5]))
        """
        name = self._resolve_score(score)
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
        width = self.num_classes + self.k
        if logits.ndim != 2 or logits.shape[1] != width or not logits.is_floating_point():
            raise ValueError(
                f"logits must be floating (N, C + k) = (N, {width}) outputs of this model, "
                f"got {str(logits.dtype).removeprefix('torch.')} of shape {tuple(logits.shape)}"
            )
        if not all_finite(logits):
            check_finite_rows(nonfinite_rows(logits), "logits")
        return self._score(logits.detach(), name)

    def _infer(self, x: Any) -> torch.Tensor:
        """Logits of ``x`` in eval mode, after checking the input and its finiteness."""
        width = self.num_classes + self.k
        return checked_logits(self, self.model, x, self._input_rule(), width, self.head_path)

    def ood_score(
        self, x: Inputs | None = None, /, score: str | None = None, **inputs: torch.Tensor
    ) -> torch.Tensor:
        """Return ``(N,)`` OOD scores for a batch (higher = more likely OOD).

        Runs without gradients, in eval mode whatever the model's mode (each
        submodule's own mode is restored afterwards; batch-norm statistics are not
        touched), on ``logits / temperature``.

        Args:
            x: A batch of inputs: a tensor or a dict of named tensors (see
                :meth:`forward`).
            score: Score name (see :meth:`score_logits`).
            **inputs: Named tensors as keyword arguments instead of ``x``.

        Returns:
            ``(N,)`` scores; higher = more likely OOD.

        Raises:
            TypeError: If ``x`` is not a tensor or has the wrong dtype.
            ValueError: If the score name is unknown, ``x`` has the wrong shape (see
                :attr:`input_spec`), or ``x`` or the model's logits on it hold NaN or
                infinite values (the message lists the rows).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
            >>> net.ood_score(torch.randn(5, 8), score="sum").shape
            torch.Size([5])
        """
        name = self._resolve_score(score)
        x = _one_input(x, inputs)
        with torch.no_grad():
            return self._score(self._infer(x), name)

    # ------------------------------------------------------------------ threshold
    @property
    def calibrated_score(self) -> str | None:
        """The name of the score the threshold belongs to, or ``None`` if unset."""
        name = _decode_name(self.threshold_score)
        return name or None

    @property
    def is_calibrated(self) -> bool:
        """Whether a threshold has been set."""
        return not math.isnan(float(self.threshold))

    def set_threshold(self, value: float, score: str = DEFAULT_SCORE) -> None:
        """Set the decision threshold by hand: inputs with ``score > value`` are rejected.

        Args:
            value: A finite threshold (or a :class:`~rejectnet.scores.ThresholdResult`).
            score: The score the threshold applies to.

        Raises:
            TypeError: If ``value`` is not a real number.
            ValueError: If ``value`` is not finite (also an integer beyond the float
                range, e.g. ``10**400``) or ``score`` is unknown.

        Example:
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
            >>> net.is_calibrated
            False
            >>> net.set_threshold(0.5, score="max_reject")
            >>> net.is_calibrated, net.calibrated_score
            (True, 'max_reject')
        """
        v = check_real(value, "value", "threshold")
        name = registry.spec(score).name
        self.threshold.fill_(v)
        self.threshold_score.copy_(_encode_name(name))

    def calibrate(
        self,
        loader: Iterable[Any],
        coverage: float = 0.95,
        score: str = DEFAULT_SCORE,
        *,
        keys: BatchKeys | None = None,
    ) -> ThresholdResult:
        """Set the threshold from held-out in-distribution data only.

        The threshold is the smallest score that keeps at least ``coverage`` of the
        loader's samples (they score at or below it); no OOD data is needed. The model
        runs in eval mode for the pass (each submodule's mode is restored afterwards).
        The scores are computed at the current ``temperature``: fit the temperature
        first (:meth:`fit_temperature`), then calibrate. The shape and dtype of the
        inputs are recorded in :attr:`input_spec`.

        Args:
            loader: Held-out in-distribution batches (a tensor, ``(x, y)`` or dict per
                batch; labels are ignored, whatever their type). Never use the test set.
            coverage: Fraction of in-distribution inputs to keep, in ``(0, 1]``.
            score: The score to threshold (see :func:`rejectnet.scores.available`).
            keys: ``(input_key, label_key)`` for dict batches whose keys are not among
                the accepted ones (e.g. ``("img", "cls")``).

        Returns:
            The threshold and what it achieves on the calibration data.

        Raises:
            TypeError: If ``loader`` is not an iterable of batches or ``keys`` is not a
                pair of keys.
            ValueError: If the loader is empty or yields only empty batches,
                ``coverage`` is not in ``(0, 1]``, the score is unknown, the batches
                differ in dtype or number of dimensions, or the inputs or the model's
                outputs on them are NaN or infinite. The threshold (and the input spec)
                is then left as it was.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
            >>> val = [torch.randn(100, 8), torch.randn(100, 8)]  # held-out in-distribution
            >>> result = net.calibrate(val, coverage=0.95)
            >>> result.coverage, float(net.threshold) == result.value
            (0.95, True)
        """
        name = registry.spec(score).name
        check_fraction(coverage, "coverage")
        keys = check_keys(keys)
        _check_loader(loader)
        logits, merged = self._calibration_logits(loader, keys)
        scores = self._score(logits, name)
        result = threshold_for_coverage(scores, coverage=coverage)
        self.set_threshold(result.value, name)
        self._input_spec = merged
        return result

    def _calibration_logits(
        self, loader: Iterable[Any], keys: BatchKeys | None
    ) -> tuple[torch.Tensor, AnySpec]:
        """The finite logits of every calibration sample, and the spec of their inputs."""
        specs: list[AnySpec] = []
        bad_inputs: list[torch.Tensor] = []

        def seen(x: Inputs) -> None:
            specs.append(spec_of(x))
            bad_inputs.append(_bad_rows(x))

        logits, _ = self._loader_logits(loader, keys, labels=False, seen=seen)
        if logits.shape[0] == 0:
            raise ValueError(
                "loader yielded only empty batches (0 samples); it needs at least one "
                "held-out in-distribution sample"
            )
        check_finite_rows(torch.cat(bad_inputs), "loader")
        check_finite_logits(logits, "loader")
        return logits, _merged(specs)

    def _loader_logits(
        self,
        loader: Iterable[Any],
        keys: BatchKeys | None,
        *,
        labels: bool = True,
        seen: Callable[[Inputs], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (and labels) of every batch of ``loader``, in eval mode.

        Each batch is checked by type, rank and dtype, ignoring the recorded input spec
        (calibration records a new one), and shown to ``seen`` first when given.
        """
        rule = self._input_rule().without_spec()

        def forward(x: Inputs) -> torch.Tensor:
            if seen is not None:
                seen(x)
            rule.check(x, match_spec=False)
            return self._logits(x)

        with eval_mode(self):
            return collect_logits(
                forward, loader, self.device, name="loader", keys=keys, labels=labels
            )

    def predict(self, x: Inputs | None = None, /, **inputs: torch.Tensor) -> Prediction:
        """Classify a batch, rejecting inputs whose OOD score exceeds the threshold.

        Runs in eval mode whatever the model's mode (see the class docs), computes the
        calibrated score on ``logits / temperature`` and decides
        ``is_ood = ood_score > threshold`` exactly as the float64 comparison would
        (see :mod:`rejectnet.decision`). Class probabilities are computed only when
        ``.probs`` is read.

        Args:
            x: A batch of inputs: a tensor or a dict of named tensors (see
                :meth:`forward`).
            **inputs: Named tensors as keyword arguments instead of ``x``.

        Returns:
            A :class:`~rejectnet.prediction.Prediction`; ``labels`` is ``-1`` for rejected
            inputs.

        Raises:
            RuntimeError: If no threshold has been set (call :meth:`calibrate` or
                :meth:`set_threshold` first).
            TypeError: If ``x`` is not a tensor or has the wrong dtype (the message
                names ``x``, its dtype and the expected one).
            ValueError: If ``x`` has the wrong shape (the message gives the shape
                received and the one expected, see :attr:`input_spec`), or ``x`` or
                the model's logits on it hold NaN or infinite values (the message lists
                the rows).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
            >>> net.set_threshold(0.0)  # every input has sum_reject > 0: all rejected
            >>> pred = net.predict(torch.randn(4, 8))
            >>> pred.labels.tolist(), pred.probs.shape
            ([-1, -1, -1, -1], torch.Size([4, 3]))
        """
        thr = self._threshold_value()
        name = self.calibrated_score or DEFAULT_SCORE
        x = _one_input(x, inputs)
        with torch.no_grad():
            logits = self._infer(x)
            d = self._decision_for(name)
            score = d.scores(d.scaled(logits))
            is_ood = d.decide(score)
            classes = decision.class_of(logits, self.num_classes)
            labels = decision.labels_for(classes, is_ood)
        return Prediction(
            labels,
            classes,
            score,
            is_ood,
            thr,
            name,
            class_logits=logits.narrow(1, 0, self.num_classes),
            temperature=float(self.temperature),
        )

    def _threshold_value(self) -> float:
        """The threshold as a float (RuntimeError before one is set)."""
        thr = float(self.threshold)
        if math.isnan(thr):
            raise RuntimeError(
                "no threshold set: call net.calibrate(id_val_loader, coverage=0.95) on "
                "held-out in-distribution data, or net.set_threshold(value, score) first"
            )
        return thr

    # ------------------------------------------------------------------ temperature
    def set_temperature(self, value: float) -> None:
        """Set the temperature T by hand: scores and probabilities use ``logits / T``.

        A threshold belongs to the scores at one temperature: changing the temperature
        of a calibrated model clears its threshold (with a ``UserWarning``), so that
        :meth:`predict` asks for a new :meth:`calibrate` instead of deciding with a
        stale threshold. Setting the same value again changes nothing.

        Args:
            value: A finite temperature ``> 0``; 1.0 is the plain softmax.

        Raises:
            TypeError: If ``value`` is not a real number.
            ValueError: If ``value`` is not finite and positive.

        Example:
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
            >>> net.set_temperature(2.0)
            >>> float(net.temperature)
            2.0
        """
        v = check_real(value, "temperature", "temperature > 0")
        if v <= 0.0:
            raise ValueError(f"temperature must be a finite temperature > 0, got {v!r}")
        new = torch.tensor(v, dtype=torch.float32)
        if float(new) == float(self.temperature):
            return
        if self.is_calibrated:
            warnings.warn(
                f"the temperature changed from {float(self.temperature):.6g} to "
                f"{float(new):.6g}: the threshold calibrated at the old temperature is "
                "cleared; call net.calibrate(id_val_loader) again",
                UserWarning,
                stacklevel=2,
            )
            self.threshold.fill_(math.nan)
            self.threshold_score.zero_()
        self.temperature.fill_(float(new))

    def fit_temperature(self, loader: Iterable[Any], *, keys: BatchKeys | None = None) -> float:
        """Fit the temperature T on held-out, labeled in-distribution data.

        Temperature scaling (Guo et al. 2017; the paper's future work): the single
        scalar T minimising the negative log-likelihood of the labels under the softmax
        over **all C + k logits divided by T** (the softmax every reject score is
        computed from; the labels are class indices in ``[0, C)``). The problem is
        convex in ``1 / T`` and is solved to machine precision by bisection on its
        derivative, with T kept in ``[0.01, 100]``. The result is stored in the
        ``temperature`` buffer (and so in ``state_dict()``) and used by
        :meth:`predict`, :meth:`ood_score`, :meth:`deployable` and ONNX. Fit it
        before :meth:`calibrate`: a threshold calibrated at another temperature is
        cleared (see :meth:`set_temperature`).

        Args:
            loader: Held-out in-distribution ``(x, y)`` batches (or dicts) with integer
                labels in ``[0, C)``. Not the test set, and not the calibration batches
                of the threshold if you can spare separate ones.
            keys: ``(input_key, label_key)`` for dict batches with other key names.

        Returns:
            The fitted temperature.

        Raises:
            TypeError: If ``loader`` is not an iterable of batches.
            ValueError: If the batches carry no labels, labels are out of range, the
                loader is empty, or the logits are not finite. Nothing is changed then.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
            <torch._C.Generator object at ...>
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
            >>> x = torch.randn(200, 8)
            >>> y = net(x)[:, :3].argmax(1)  # labels the model gets right
            >>> t = net.fit_temperature([(x, y)])
            >>> t < 1.0  # confident and right: a sharper softmax fits better
            True
        """
        keys = check_keys(keys)
        _check_loader(loader)
        logits, y = self._loader_logits(loader, keys)
        if y is None:
            raise ValueError(
                "loader batches carry no labels; fit_temperature needs (x, y) batches of "
                "held-out in-distribution data with class indices y in [0, C)"
            )
        check_finite_logits(logits, "loader")
        t = fit_temperature_to(logits, y, self.num_classes)
        self.set_temperature(t)
        return float(self.temperature)

    # ------------------------------------------------------------------ deployment
    def deployable(self) -> DeployedModel:
        """A frozen, calibrated copy for deployment: images in, decisions out.

        The returned plain ``nn.Module`` maps a batch ``x`` to ``(labels, ood_score,
        is_ood)``, computing what :meth:`predict` computes (the same forward, the same
        score function on ``logits / temperature``, the same threshold test, label
        ``-1`` for rejected inputs), with the threshold baked in as a buffer. It holds
        a deep copy of the network in eval mode, has no Python-side state, and works
        under ``torch.inference_mode()``, ``torch.compile`` and ``torch.export.export``;
        write it as ONNX with :func:`rejectnet.export_onnx`. It never raises on NaN or
        infinite inputs: those rows get a NaN score and are rejected.

        Returns:
            A :class:`rejectnet.deployed.DeployedModel`.

        Raises:
            RuntimeError: If no threshold has been set (call :meth:`calibrate` first).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
            >>> _ = net.calibrate([torch.randn(64, 8)], coverage=0.95)
            >>> x = torch.randn(5, 8)
            >>> labels, score, is_ood = net.deployable()(x)
            >>> torch.equal(labels, net.predict(x).labels)
            True
        """
        return DeployedModel(self)

    def extra_repr(self) -> str:
        """C, k, the head path, the threshold and its score, for ``repr(net)``."""
        thr = f"{float(self.threshold):.6g}" if self.is_calibrated else "unset"
        temp = float(self.temperature)
        return (
            f"num_classes={self.num_classes}, k={self.k}, head={self.head_path!r}, "
            f"threshold={thr}, score={self.calibrated_score}"
            + (f", temperature={temp:.6g}" if temp != 1.0 else "")
        )

    def named_reject_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The parameters of the k reject units (for separate learning rates).

        Returns:
            An iterator of ``(name, parameter)`` pairs, named as in ``named_parameters()``.

        Example:
            >>> from torch import nn
            >>> from rejectnet import RejectHead
            >>> net = RejectHead.wrap(nn.Sequential(nn.Linear(8, 3)), k=2)
            >>> [name for name, _ in net.named_reject_parameters()]
            ['model.0.reject.weight', 'model.0.reject.bias']
        """
        prefix = f"model.{self.head_path}.reject"
        for name, p in self.head.reject.named_parameters():
            yield f"{prefix}.{name}", p


def _one_input(x: Inputs | None, inputs: dict[str, torch.Tensor]) -> Inputs:
    """``x``, or the keyword inputs as a dict of named tensors (exactly one of the two).

    ``x=`` alone, as a keyword, is ``x`` (as before named inputs existed).
    """
    if x is None and len(inputs) == 1 and "x" in inputs:
        return inputs["x"]
    if inputs:
        if x is not None:
            raise TypeError(
                "pass the inputs either as x (a tensor or a dict) or as keyword arguments, "
                f"not both (got x and {sorted(inputs)})"
            )
        return dict(inputs)
    if x is None:
        raise TypeError(
            "no inputs: pass a batch x (a tensor or a dict of named tensors) or keyword "
            "arguments such as input_ids=..., attention_mask=..."
        )
    if isinstance(x, Mapping) and type(x) is not dict:
        return dict(x)
    return x


def _bad_rows(x: Inputs) -> torch.Tensor:
    """``(N,)`` bool: rows holding NaN or infinity in any (floating) input."""
    ts = list(x.values()) if isinstance(x, dict) else [x]
    bad = torch.zeros(ts[0].shape[0] if ts[0].ndim else 0, dtype=torch.bool)
    for t in ts:
        if isinstance(t, torch.Tensor) and not all_finite(t):
            bad = bad | nonfinite_rows(t).to("cpu")
    return bad


def _merged(specs: list[AnySpec]) -> AnySpec:
    """One spec accepting every batch's (ValueError if the batches cannot be mixed)."""
    merged = specs[0]
    for s in specs[1:]:
        if type(s) is not type(merged):
            raise ValueError(
                "loader batches mix single tensors and dicts of named tensors; every batch "
                "must have the same form"
            )
        merged = merged.merge(s)  # type: ignore[arg-type]
    return merged


def _check_loader(loader: Any) -> None:
    if isinstance(loader, (torch.Tensor, str, bytes)) or not hasattr(loader, "__iter__"):
        raise TypeError(
            "loader must be an iterable of batches (a DataLoader or a list of tensors, "
            f"(x, y) tuples or dicts; wrap a single tensor as [x]), got "
            f"{type(loader).__name__}"
        )
