"""The open fine-tuner: any objective, the options of :class:`TrainOptions`, one loop.

Every step draws a labeled in-distribution batch and (for objectives that use outliers)
an outlier batch ``outlier_ratio`` times larger, runs ONE forward pass over their
concatenation so that batch-norm statistics see both, and hands the split logits to the
objective (:mod:`rejectnet.finetune.step`). The parts around the step each have one job:
:mod:`~rejectnet.finetune.preflight` (checks before any weight changes),
:mod:`~rejectnet.finetune.optim` (optimizer, schedule, accumulation, clipping, scaling),
:mod:`~rejectnet.finetune.stats` (epoch statistics), :mod:`~rejectnet.finetune.run_state`
and :mod:`~rejectnet.finetune.checkpoint` (checkpoints and resume),
:mod:`~rejectnet.finetune.progress` and :mod:`~rejectnet.finetune.distributed`.

Distributed training: when a process group is initialised (or ``torchrun``'s
environment variables are set), the model trains through ``DistributedDataParallel``
(``finetuner.model`` stays the unwrapped module), each rank gets a disjoint share of the
in-distribution data and of the outliers, ranks are seeded ``seed + rank`` (dropout masks
and the random reject units of the pseudo-labels differ between ranks), epoch statistics
are all-reduced, and rank 0 alone logs, shows progress and writes checkpoints.

On CUDA the step has no host synchronisation: batches are copied from pinned memory with
``non_blocking=True``, and a non-finite loss is noticed on the device and read only at
checkpoint and epoch boundaries (:class:`~rejectnet.finetune.nonfinite.LossWatch`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rejectnet._batches import (
    BatchKeys,
    Inputs,
    batch_size,
    call_model,
    check_keys,
    inputs_to,
    split_inputs,
)
from rejectnet._inference import eval_mode, module_device
from rejectnet._outputs import extract_logits
from rejectnet.finetune import distributed as dist_utils
from rejectnet.finetune.batching import check_rows_fit, outlier_rows, pad_values_of
from rejectnet.finetune.callbacks import FitView, StopTraining
from rejectnet.finetune.checkpoint import (
    CheckpointError,
    check_writable,
    find_latest,
    write_checkpoint,
)
from rejectnet.finetune.collapse import CollapseWatch, Measure
from rejectnet.finetune.history import History
from rejectnet.finetune.nonfinite import LossWatch
from rejectnet.finetune.objectives import Objective
from rejectnet.finetune.optim import (
    OptimizerChoice,
    OptimizerStep,
    build_optimizer,
    choose_optimizer,
)
from rejectnet.finetune.options import TrainOptions
from rejectnet.finetune.preflight import Preflight, check_labels, preflight
from rejectnet.finetune.progress import EpochProgress, epoch_summary
from rejectnet.finetune.resume import object_fingerprint, run_identity, signal_fingerprint
from rejectnet.finetune.rng import seed_everything
from rejectnet.finetune.run_state import RunState, capture, check_restorable, restore
from rejectnet.finetune.stats import EpochAccumulator
from rejectnet.finetune.step import StepBatch, forward_and_loss
from rejectnet.finetune.streams import EpochStream, OutlierStream

__all__ = ["Finetuner"]

logger = logging.getLogger("rejectnet")


def _collapse_hint(choice: OptimizerChoice) -> str:
    if choice.name == "factory":
        return "lower the learning rate of your optimizer factory"
    return (
        f"{choice.name} at lr={choice.lr:g}; lower lr (AdamW 2e-5..1e-4 suits pretrained "
        "transformers, SGD 0.001..0.01 CNNs) or pass optimizer='adamw' / a factory"
    )


class Finetuner:
    """Train ``model`` on any objective with rejectnet's loop.

    The presets :class:`~rejectnet.SelfSupervisedOODFinetuner` (the paper's stage two),
    :class:`~rejectnet.OutlierExposureFinetuner` and :func:`~rejectnet.train_classifier`
    are this class with a fixed objective. Use it directly for your own objective: any
    ``(logits_in, targets, logits_out) -> loss`` callable (see
    :mod:`rejectnet.finetune.objectives`).

    Args:
        model: The module to train, in place (a :class:`~rejectnet.RejectHead` for
            reject-class objectives). It is put in train mode for the fit, whatever mode
            it was in, and left in train mode.
        objective: The loss, e.g. ``rejectnet.losses.SelfSupervisedRejectLoss(C)``.
        options: A :class:`TrainOptions`; keyword options override its fields.
        name: The run's name (in logs, progress and checkpoints).
        **kwargs: Any :class:`TrainOptions` field (``epochs=``, ``lr=``, ...).

    Attributes:
        model: The module being trained.
        objective: The objective.
        options: The checked options.
        device: The training device (set by ``fit``).
        train_loader: The in-distribution loader this rank iterates (re-created with a
            ``DistributedSampler`` under torch.distributed when needed; set by ``fit``).

    Raises:
        TypeError: If ``model`` is not a module, ``objective`` is not callable, or an
            option is unknown or of the wrong type.
        ValueError: If an option is out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead
        >>> from rejectnet.finetune import Finetuner
        >>> from rejectnet.losses import SelfSupervisedRejectLoss
        >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
        >>> x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
        >>> ft = Finetuner(net, SelfSupervisedRejectLoss(3, lam=5.0), epochs=2, progress=False)
        >>> len(ft.fit([(x, y)], [torch.randn(80, 8) * 3]))
        2
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        *,
        options: TrainOptions | None = None,
        name: str = "finetune",
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(objective):
            raise TypeError(
                "objective must be a callable (logits_in, targets, logits_out) -> loss, e.g. "
                f"rejectnet.losses.SelfSupervisedRejectLoss(C); got {type(objective).__name__}"
            )
        if options is not None and not isinstance(options, TrainOptions):
            raise TypeError(f"options must be a TrainOptions or None, got {type(options).__name__}")
        self.model = model
        self.objective = objective
        self.options = TrainOptions.from_kwargs(kwargs, base=options)
        self.name = name
        self._run = RunState(name, self.options.epochs, history=History())
        self._ctx = dist_utils.DistContext()
        self._ddp: DistributedDataParallel | None = None
        self._sampler_seed_value = 0
        self.device = torch.device("cpu")
        self.train_loader: Iterable[Any] | None = None
        self._identity: dict[str, Any] = {}
        self._collapse = CollapseWatch(name, "")
        self._keys: BatchKeys | None = self.options.keys
        self._pads: dict[str, int] = {}

    _NOT_IN_FINGERPRINT = frozenset(
        {
            "device",
            "checkpoint_dir",
            "checkpoint_every",
            "progress",
            "callbacks",
            "sync_batchnorm",
            "channels_last",
            "keys",
        }
    )

    def _run_identity(self, num_classes: int) -> dict[str, Any]:
        """num_classes, k and the run fingerprint, written into every checkpoint."""
        opts = {
            f.name: getattr(self.options, f.name)
            for f in dataclasses.fields(self.options)
            if f.name not in self._NOT_IN_FINGERPRINT
        }
        choice = choose_optimizer(self.model, self.options)
        if choice.name != "factory":  # the optimizer as it runs, defaults filled in
            opts.update(optimizer=choice.name, lr=choice.lr, weight_decay=choice.weight_decay)
        opts["outlier_signal"] = signal_fingerprint(self.options.outlier_signal)
        objective = object_fingerprint(self.objective)
        return run_identity(
            self.model,
            num_classes=num_classes,
            k=getattr(self.model, "k", None),
            objective=f"{self.name}:{type(self.objective).__qualname__}",
            options={"train": opts, "objective": objective},
            seed=self.options.seed,
        )

    # ------------------------------------------------------------------ views
    @property
    def rank(self) -> int:
        """This process's rank (0 when not distributed)."""
        return self._ctx.rank

    @property
    def world_size(self) -> int:
        """Number of training processes (1 when not distributed)."""
        return self._ctx.world_size

    @property
    def history(self) -> History:
        """Statistics of the epochs completed so far."""
        assert self._run.history is not None
        return self._run.history

    @property
    def step(self) -> int:
        """Optimizer steps taken so far in the whole run."""
        return self._run.step

    @property
    def epoch(self) -> int:
        """The current (0-based) epoch."""
        return self._run.epoch

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes checkpoints (rank 0)."""
        return self._ctx.is_main

    def _view(self, lr: float) -> FitView:
        return FitView(
            name=self.name,
            model=self.model,
            epoch=self.epoch,
            epochs=self.options.epochs,
            step=self.step,
            history=self.history,
            rank=self._ctx.rank,
            world_size=self._ctx.world_size,
            lr=lr,
        )

    def _log(self, msg: str, *args: Any) -> None:
        if self._ctx.is_main:
            logger.info(msg, *args)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        in_loader: Iterable[Any],
        outlier_loader: Iterable[Any] | None = None,
        val_loader: Iterable[Any] | None = None,
        *,
        resume: bool = False,
        keys: Any = None,
    ) -> History:
        """Train.

        Args:
            in_loader: Labeled in-distribution batches ``(x, y)`` (or dicts); its length
                defines an epoch.
            outlier_loader: Unlabeled outliers (a Tensor, ``(x,)``, ``(x, anything)`` or a
                dict per batch; labels ignored), read in its own order, restarted when
                exhausted, re-cut to ``outlier_ratio`` times the in-batch. ``None`` for
                objectives without outliers, or with an ``outlier_signal`` that
                synthesises them.
            val_loader: Optional labeled in-distribution data; accuracy is reported per
                epoch.
            resume: Continue from the latest valid checkpoint in ``checkpoint_dir``.
            keys: ``(input_key, label_key)`` for dict batches with other names (see
                :class:`TrainOptions`' ``keys``; this one wins), e.g.
                ``(("input_ids", "attention_mask"), "intent")``. Dict batches of named
                tensors (Hugging Face style) need no ``keys``: the label is under
                ``labels`` (or ``y``, ``label``, ``target``, ``targets``) and every
                other key goes to the model as a keyword argument.

        Returns:
            Per-epoch statistics.

        Raises:
            TypeError: Loaders of the wrong kind (a bare tensor, a one-shot iterator, no
                length).
            ValueError: Before any weight changes, for empty loaders, in- and outlier
                inputs of different shapes, labels outside ``[0, C)``, or a model whose
                logits do not fit the objective.
            CheckpointError: If ``resume`` finds a checkpoint that does not fit this run;
                the weights are then untouched.
            FloatingPointError: If the loss becomes NaN or infinite (with the step number).
        """
        opts = self.options
        if not isinstance(resume, bool):
            raise TypeError(f"resume must be True or False, got {resume!r}")
        self._keys = check_keys(keys) if keys is not None else opts.keys
        device = opts.device if opts.device is not None else module_device(self.model)
        assert isinstance(device, torch.device)
        self._ctx = dist_utils.context(device)
        ctx = self._ctx
        device = dist_utils.resolve_device(device, ctx, explicit=opts.device is not None)
        pre = preflight(
            self.model, self.objective, opts, device, in_loader, outlier_loader, keys=self._keys
        )
        self._pads = pad_values_of(self.model)
        ckpt_dir = opts.checkpoint_path
        if ckpt_dir is not None:
            check_writable(ckpt_dir)
        elif resume:
            raise ValueError("resume=True needs checkpoint_dir to be set")
        found = None
        if resume and ckpt_dir is not None:
            # rank 0 first: reading may move a corrupted file aside, which the others see
            error: CheckpointError | None = None
            if ctx.is_main:
                try:
                    found = find_latest(ckpt_dir)
                except CheckpointError as err:
                    error = err  # told to the other ranks first, so that none hangs
            if dist_utils.broadcast_int(int(error is not None), ctx, device):
                if error is not None:
                    raise error
                raise CheckpointError(
                    f"{ckpt_dir}: rank 0 could not use the checkpoints there (its error "
                    "says why); nothing was restored"
                )
            dist_utils.barrier(ctx, device)
            if not ctx.is_main:
                found = find_latest(ckpt_dir)
            dist_utils.agree(
                -1 if found is None else int(found.state.get("step", -1)),
                ctx,
                device,
                "the checkpoint to resume from (checkpoint_dir must be on a filesystem "
                "every rank can read)",
            )
        ckpt = found.state if found is not None else None
        self._identity = self._run_identity(pre.num_classes)
        if ckpt is not None:
            saved_world = int(ckpt.get("world_size", 1))
            if saved_world != ctx.world_size:
                raise ValueError(
                    f"the checkpoint in {ckpt_dir} was written by a run of {saved_world} "
                    f"process(es) but this run has {ctx.world_size}; resume with the same "
                    "number of processes (or use another checkpoint_dir)"
                )
        sampler_seed = self._sampler_seed(ckpt, device)
        self._sampler_seed_value, self.device = sampler_seed, device

        in_rank, out_rank = self._shard(in_loader, outlier_loader, pre, sampler_seed)
        self.train_loader = in_rank
        steps_per_epoch = len(in_rank)  # type: ignore[arg-type]
        dist_utils.agree(steps_per_epoch, ctx, device, "the number of steps per epoch")
        if steps_per_epoch == 0:
            raise ValueError(
                "this rank's share of in_loader is empty; use more data or fewer processes"
            )
        accumulate = opts.accumulate_grad_batches
        opt_steps_per_epoch = -(-steps_per_epoch // accumulate)
        swap = dist_utils.SyncBatchNormSwap()
        if opts.sync_batchnorm and ctx.enabled:
            n_bn = swap.convert(self.model)
            self._log("%s: %d batch-norm layer(s) synchronised across ranks", self.name, n_bn)
        signal = opts.outlier_signal if pre.uses_outliers else None
        try:
            if opts.channels_last:
                self.model.to(memory_format=torch.channels_last)
            optimizer, scheduler = build_optimizer(
                self.model, opts, opt_steps_per_epoch * opts.epochs
            )
            opt = OptimizerStep(
                self.model,
                optimizer,
                scheduler,
                accumulate=accumulate,
                grad_clip=opts.grad_clip,
                fp16=opts.amp == "fp16",
            )
            in_stream = EpochStream(in_rank)
            out_stream = (
                OutlierStream(out_rank, keys=self._keys, pad_values=self._pads)
                if out_rank is not None
                else None
            )
            run = RunState(self.name, opts.epochs, history=History())
            if ckpt is not None and found is not None:
                # every refusal comes before any weight, optimizer state or RNG is touched
                check_restorable(
                    ckpt,
                    found.path,
                    rank=ctx.rank,
                    run=run,
                    model=self.model,
                    opt=opt,
                    signal=signal,
                    fingerprint=self._identity["fingerprint"],
                    run_config=self._identity["run_config"],
                )
            self._run = run
            if opts.seed is not None:
                seed_everything(opts.seed + ctx.rank)
            if ckpt is not None and found is not None:
                restore(
                    ckpt,
                    found.path,
                    rank=ctx.rank,
                    run=run,
                    model=self.model,
                    opt=opt,
                    out_stream=out_stream,
                    signal=signal,
                    device=device,
                    checked=True,
                )
                self._log("%s: resumed at epoch %d, step %d", self.name, run.epoch + 1, run.step)
            elif resume:
                self._log("resume=True but no checkpoint in %s; starting from scratch", ckpt_dir)
            watch = LossWatch(
                self.name,
                device,
                deferred=self._defer_loss_check(device),
                reduce_min=lambda t: dist_utils.all_reduce(t, ctx, "min"),
                steps_per_epoch=opt_steps_per_epoch,
            )
            self._ddp = None
            if ctx.enabled:
                ids = [device.index] if device.type == "cuda" else None
                self._ddp = DistributedDataParallel(self.model, device_ids=ids)
            choice = choose_optimizer(self.model, opts)
            self._log(
                "%s: %d epochs x %d steps, in batch %s%s, outlier batch ratio %.2fx, "
                "optimizer %s (lr %s), device %s, amp %s",
                self.name,
                opts.epochs,
                steps_per_epoch,
                getattr(in_rank, "batch_size", "?"),
                f" per rank x {ctx.world_size} ranks" if ctx.enabled else "",
                opts.outlier_ratio if pre.uses_outliers else 0.0,
                choice.name,
                choice.lr if choice.lr is not None else "the factory's",
                device,
                opts.amp,
            )
            self._collapse = CollapseWatch(self.name, _collapse_hint(choice), pre.num_classes)
            saved_base = ckpt.get("collapse_baseline") if ckpt is not None else None
            if isinstance(saved_base, dict):
                self._collapse.start(Measure(**saved_base))
            elif val_loader is not None and ckpt is None:  # where the model starts
                self._collapse.start(self._measure(val_loader, pre, device))
            if signal is not None:
                signal.attach(self.model)
            try:
                for cb in opts.callbacks:
                    cb.on_fit_start(self._view(opt.lr))
                (self._ddp if self._ddp is not None else self.model).train()
                try:
                    while run.epoch < opts.epochs:
                        self._run_epoch(
                            run, pre, in_stream, out_stream, opt, watch, signal, device,
                            val_loader, steps_per_epoch, ckpt_dir,
                        )  # fmt: skip
                except StopTraining:
                    self._broadcast_buffers()
                    self._log("%s: stopped by a callback at step %d", self.name, run.step)
            finally:
                if signal is not None:
                    signal.detach()
        finally:
            self._ddp = None
            swap.revert()
        return self.history

    # ------------------------------------------------------------------ parts
    def _sampler_seed(self, ckpt: dict[str, Any] | None, device: torch.device) -> int:
        if ckpt is not None and "sampler_seed" in ckpt:
            return int(ckpt["sampler_seed"])
        if self.options.seed is not None:
            return self.options.seed
        if not self._ctx.enabled:
            return 0  # unused: no DistributedSampler is created
        draw = int(torch.randint(2**31, ()).item()) if self._ctx.is_main else 0
        return dist_utils.broadcast_int(draw, self._ctx, device)

    def _shard(
        self,
        in_loader: Iterable[Any],
        outlier_loader: Iterable[Any] | None,
        pre: Preflight,
        sampler_seed: int,
    ) -> tuple[Iterable[Any], Iterable[Any] | None]:
        in_rank, msg = dist_utils.shard_in_loader(in_loader, self._ctx, sampler_seed)
        if msg:
            self._log("%s: torch.distributed: %s", self.name, msg)
        if outlier_loader is None or not pre.uses_outliers:
            return in_rank, None
        out_rank, msg = dist_utils.shard_outlier_loader(outlier_loader, self._ctx, sampler_seed)
        if msg:
            self._log("%s: torch.distributed: %s", self.name, msg)
        return in_rank, out_rank

    def _defer_loss_check(self, device: torch.device) -> bool:
        """Whether the NaN check is read only at boundaries (CUDA or distributed)."""
        return device.type == "cuda" or self._ctx.enabled

    def _broadcast_buffers(self) -> None:
        """Give every rank rank 0's buffers (batch-norm statistics), as DDP does before
        each forward, so that all ranks hold the same model between epochs."""
        if self._ctx.enabled:
            for buf in self.model.buffers():
                torch.distributed.broadcast(buf, src=0)

    def _forward(self, x: Inputs) -> torch.Tensor:
        module: nn.Module = self._ddp if self._ddp is not None else self.model
        return extract_logits(call_model(module, x))

    def _run_epoch(
        self,
        run: RunState,
        pre: Preflight,
        in_stream: EpochStream,
        out_stream: OutlierStream | None,
        opt: OptimizerStep,
        watch: LossWatch,
        signal: Any,
        device: torch.device,
        val_loader: Iterable[Any] | None,
        steps_per_epoch: int,
        ckpt_dir: Any,
    ) -> None:
        opts = self.options
        t0 = time.perf_counter()
        acc = EpochAccumulator(device, pre.num_classes, pre.reject_model, run.acc)
        in_stream.start(skip=run.skip, start_rng=run.epoch_rng, epoch=run.epoch)
        run.skip, run.epoch_rng, run.acc = 0, None, None
        bar = EpochProgress(
            enabled=opts.progress and self._ctx.is_main,
            name=self.name,
            epoch=run.epoch,
            epochs=opts.epochs,
            total=steps_per_epoch,
            initial=in_stream.position,
        )
        stats = None
        try:
            for batch in in_stream:
                x_in, y = split_inputs(batch, "in_loader batch", keys=self._keys)
                if y is None:
                    raise ValueError("in_loader batches must carry labels")
                check_labels(y, pre.num_classes, f"in_loader batch at step {run.step + 1}")
                n_in = batch_size(x_in, "in_loader batch")
                m = outlier_rows(opts.outlier_ratio, n_in) if pre.uses_outliers else 0
                x_out = None
                if out_stream is not None:
                    x_out = out_stream.take(m)
                    check_rows_fit(x_in, x_out, f"step {run.step + 1}")
                step_batch = StepBatch(x_in, y.to(device), x_out, m, self._pads)
                out = forward_and_loss(
                    self._forward,
                    self.objective,
                    step_batch,
                    device=device,
                    amp=opts.amp,
                    signal=signal,
                    channels_last=opts.channels_last,
                )
                watch.note(out.terms.loss, run.step + 1, run.epoch)
                opt.backward(out.terms.loss)
                acc.add(out, step_batch.y)
                bar.update(acc.running_loss)
                last = in_stream.position >= steps_per_epoch
                if opt.group_complete or last:
                    if run.step == 0 and self._collapse.baseline is None:
                        # the first group's forward ran on the weights as they came in
                        self._collapse.start(acc.in_distribution("the training batches"))
                    opt.step()
                    acc.count_step()
                    run.step += 1
                    for cb in opts.callbacks:
                        cb.on_step_end(self._view(opt.lr), run.step)
                    if (
                        opts.checkpoint_every is not None
                        and run.step % opts.checkpoint_every == 0
                        and not last
                    ):
                        self._save(run, in_stream, out_stream, opt, watch, signal, acc, ckpt_dir)
        except StopTraining:
            if opt.pending == 0:
                self._save(run, in_stream, out_stream, opt, watch, signal, acc, ckpt_dir)
            bar.close()
            raise
        except BaseException:
            bar.close()
            raise
        self._broadcast_buffers()
        watch.raise_if_bad(run.step)
        val = self._measure(val_loader, pre, device) if val_loader is not None else None
        stats = acc.finish(
            lambda t: dist_utils.all_reduce(t, self._ctx),
            epoch=run.epoch + 1,
            lr=opt.lr,
            seconds=time.perf_counter() - t0,
            val_accuracy=val.accuracy if val is not None else None,
        )
        bar.close(stats)
        self._collapse.check(
            run.epoch + 1,
            val
            if val is not None
            else Measure(stats.in_accuracy, stats.in_loss, "the training batches", False, 0),
        )
        assert run.history is not None
        run.history.epochs.append(stats)
        run.epoch += 1
        self._log("%s", epoch_summary(self.name, opts.epochs, stats))
        self._save(run, in_stream, out_stream, opt, watch, signal, None, ckpt_dir)
        for cb in opts.callbacks:
            cb.on_epoch_end(self._view(opt.lr), stats)

    def evaluate_accuracy(
        self,
        loader: Iterable[Any],
        pre: Preflight | None = None,
        device: torch.device | None = None,
    ) -> float:
        """Accuracy over the C classes on a labeled loader, in eval mode.

        Under torch.distributed every rank evaluates the whole loader (the weights are
        the same on every rank, so the result is too).

        Args:
            loader: Labeled batches.
            pre: Preflight results of the fit (C); defaults to the model's own C.
            device: Where to evaluate (default: the model's device).

        Returns:
            The accuracy as a fraction.

        Raises:
            ValueError: If the batches carry no labels.
        """
        return self._measure(loader, pre, device).accuracy

    def _measure(
        self,
        loader: Iterable[Any],
        pre: Preflight | None = None,
        device: torch.device | None = None,
    ) -> Measure:
        """Accuracy and cross-entropy over the C classes on a labeled loader (eval mode).

        Torch's CPU RNG is forked, so that a shuffled loader leaves the run's random
        draws as they are.
        """
        dev = device if device is not None else module_device(self.model)
        outs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        with eval_mode(self.model), torch.random.fork_rng(devices=[]), torch.no_grad():
            for batch in loader:
                x, yb = split_inputs(batch, "val_loader batch", keys=self._keys)
                if yb is None:
                    raise ValueError("val_loader batches must carry labels")
                outs.append(extract_logits(call_model(self.model, inputs_to(x, dev))).cpu())
                ys.append(yb.cpu())
        if not outs:
            raise ValueError("val_loader yielded no batches; it needs at least one sample")
        logits, y = torch.cat(outs), torch.cat(ys)
        c = pre.num_classes if pre is not None else int(getattr(self.model, "num_classes", 0))
        c = c or int(logits.shape[1])
        logits_c = logits[:, :c].float()
        accuracy = float((logits_c.argmax(1) == y).double().mean())
        loss = float(torch.nn.functional.cross_entropy(logits_c, y.to(logits_c.device)))
        return Measure(accuracy, loss, "val_loader", rows=int(y.shape[0]))

    def _save(
        self,
        run: RunState,
        in_stream: EpochStream,
        out_stream: OutlierStream | None,
        opt: OptimizerStep,
        watch: LossWatch,
        signal: Any,
        acc: EpochAccumulator | None,
        ckpt_dir: Any,
    ) -> None:
        if ckpt_dir is None:
            return
        watch.raise_if_bad(run.step)
        shared, own = capture(
            run,
            model=self.model,
            opt=opt,
            in_stream=in_stream,
            out_stream=out_stream,
            acc=acc.state_dict() if acc is not None else None,
            signal=signal,
        )
        ranks = dist_utils.gather_to_main(own, self._ctx) if self._ctx.enabled else None
        if self._ctx.is_main:
            state = {
                **shared,
                **own,
                **self._identity,
                "world_size": self._ctx.world_size,
                "sampler_seed": self._sampler_seed_value,
            }
            if self._collapse.baseline is not None:
                state["collapse_baseline"] = dataclasses.asdict(self._collapse.baseline)
            if ranks is not None:
                state["rank_states"] = ranks
            write_checkpoint(ckpt_dir, state)
        dist_utils.barrier(self._ctx, self.device)
