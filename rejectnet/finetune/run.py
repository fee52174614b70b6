"""One fit in progress: the run object that :meth:`Finetuner.fit` drives.

:func:`~rejectnet.finetune.plan.plan_run` decides everything that can be decided before
any weight changes (device, distributed context, the pre-flight checks, the checkpoint
to resume from and the run's identity, the loaders each rank reads) and returns a
:class:`~rejectnet.finetune.plan.Plan`. :class:`Run` then holds the run's parts in one
place: its state (:class:`~rejectnet.finetune.resume.RunState`), the data streams, the
optimizer step, the loss watch, the outlier signal, the device and the checkpoint
directory. Its methods read in the order a fit calls them:

* :meth:`Run.check_resume` refuses a checkpoint that does not fit, touching nothing;
* :meth:`Run.resume` seeds the run and loads the checkpoint (when there is one);
* :meth:`Run.fit` runs :meth:`Run.epoch` until the last epoch or a
  :class:`~rejectnet.finetune.callbacks.StopTraining`;
* :meth:`Run.epoch` is one pass over the in-distribution data, one
  :meth:`Run.forward_backward` per batch and an optimizer
  step per accumulated group;
* :meth:`Run.save` writes a checkpoint (rank 0; every rank's RNG and stream state).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from rejectnet import RejectHead
    >>> from rejectnet.finetune import TrainOptions
    >>> from rejectnet.finetune.plan import RunSpec, plan_run
    >>> from rejectnet.losses import SelfSupervisedRejectLoss
    >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
    >>> spec = RunSpec("demo", net, SelfSupervisedRejectLoss(3),
    ...                TrainOptions(epochs=1, progress=False), keys=None)
    >>> xy = [(torch.randn(16, 8), torch.randint(0, 3, (16,)))]
    >>> run = Run(spec, plan_run(spec, xy, [torch.randn(80, 8)], resume=False))
    >>> run.resume()
    >>> run.fit()
    >>> run.state.epoch, run.state.step
    (1, 1)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rejectnet._batches import Inputs, call_model, extract_logits
from rejectnet.finetune import distributed as dist_utils
from rejectnet.finetune.callbacks import FitView, StopTraining
from rejectnet.finetune.checkpoint import write_checkpoint
from rejectnet.finetune.collapse import CollapseWatch, Measure, measure
from rejectnet.finetune.history import History
from rejectnet.finetune.nonfinite import LossWatch
from rejectnet.finetune.optim import (
    OptimizerChoice,
    OptimizerStep,
    build_optimizer,
    choose_optimizer,
)
from rejectnet.finetune.plan import Plan, RunSpec, log_main
from rejectnet.finetune.progress import EpochProgress, epoch_summary
from rejectnet.finetune.resume import RunState, capture, check_restorable, restore
from rejectnet.finetune.rng import seed_everything
from rejectnet.finetune.stats import EpochAccumulator
from rejectnet.finetune.step import forward_and_loss, step_batch
from rejectnet.finetune.streams import EpochStream, OutlierStream

__all__ = ["Run"]


def collapse_hint(choice: OptimizerChoice) -> str:
    """What to change when the classifier collapsed, for the warning."""
    if choice.name == "factory":
        return "lower the learning rate of your optimizer factory"
    return (
        f"{choice.name} at lr={choice.lr:g}; lower lr (AdamW 2e-5..1e-4 suits pretrained "
        "transformers, SGD 0.001..0.01 CNNs) or pass optimizer='adamw' / a factory"
    )


class Run:
    """One fit: its state, streams, optimizer step, loss watch, signal and checkpoints.

    Building it touches no weight (it builds the optimizer over the model's parameters,
    puts the model in ``channels_last`` when asked, and opens the streams).

    Args:
        spec: The run's name, model, objective, options and keys.
        plan: What :func:`plan_run` decided.
        val_loader: Optional labeled in-distribution data (accuracy per epoch, and the
            collapse watch).

    Attributes:
        state: Where the run stands (epoch, step, history, the mid-epoch position).
        opt: The optimizer side (backward, accumulation, clipping, scaling, schedule).
        in_stream: The in-distribution stream (resumable mid-epoch).
        out_stream: The outlier stream, or ``None``.
        watch: The non-finite loss watch.
        signal: The outlier signal, or ``None``.
        device: The training device.
        checkpoint_dir: Where checkpoints go, or ``None``.
    """

    def __init__(self, spec: RunSpec, plan: Plan, val_loader: Iterable[Any] | None = None) -> None:
        opts = spec.options
        self.spec, self.plan, self.val_loader = spec, plan, val_loader
        self.name, self.model, self.options = spec.name, spec.model, opts
        self.ctx, self.device, self.pre = plan.ctx, plan.device, plan.pre
        self.checkpoint_dir = plan.checkpoint_dir
        self.signal = opts.outlier_signal if plan.pre.uses_outliers else None
        if opts.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.opt_steps_per_epoch = -(-plan.steps_per_epoch // opts.accumulate_grad_batches)
        optimizer, scheduler = build_optimizer(
            self.model, opts, self.opt_steps_per_epoch * opts.epochs
        )
        self.opt = OptimizerStep(
            self.model,
            optimizer,
            scheduler,
            accumulate=opts.accumulate_grad_batches,
            grad_clip=opts.grad_clip,
            fp16=opts.amp == "fp16",
        )
        self.in_stream = EpochStream(plan.in_loader)
        self.out_stream = (
            OutlierStream(plan.outlier_loader, keys=spec.keys, pad_values=plan.pads)
            if plan.outlier_loader is not None
            else None
        )
        self.state = RunState(spec.name, opts.epochs, history=History())
        self.watch = LossWatch(
            spec.name,
            plan.device,
            deferred=self.defers_loss_check(),
            reduce_min=lambda t: dist_utils.all_reduce(t, plan.ctx, "min"),
            steps_per_epoch=self.opt_steps_per_epoch,
        )
        self.collapse = CollapseWatch(spec.name, "")
        self.ddp: DistributedDataParallel | None = None

    def defers_loss_check(self) -> bool:
        """Whether the NaN check is read only at boundaries (CUDA or distributed)."""
        return self.device.type == "cuda" or self.ctx.enabled

    # ------------------------------------------------------------------ views
    @property
    def history(self) -> History:
        """Statistics of the epochs completed so far."""
        assert self.state.history is not None
        return self.state.history

    def view(self) -> FitView:
        """What callbacks see of the run."""
        return FitView(
            name=self.name,
            model=self.model,
            epoch=self.state.epoch,
            epochs=self.options.epochs,
            step=self.state.step,
            history=self.history,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            lr=self.opt.lr,
        )

    def _forward(self, x: Inputs) -> torch.Tensor:
        module: nn.Module = self.ddp if self.ddp is not None else self.model
        return extract_logits(call_model(module, x))

    def _measure(self, loader: Iterable[Any]) -> Measure:
        return measure(
            self.model,
            loader,
            num_classes=self.pre.num_classes,
            device=self.device,
            keys=self.spec.keys,
        )

    # ------------------------------------------------------------------ resume
    def check_resume(self) -> None:
        """Refuse the planned checkpoint if it does not fit this run; touches nothing.

        Raises:
            CheckpointError: Naming the file and what does not fit.
        """
        found = self.plan.found
        if found is None:
            return
        identity = self.plan.identity
        check_restorable(
            found.state,
            found.path,
            **self._live_parts(),
            fingerprint=identity["fingerprint"],
            run_config=identity["run_config"],
        )

    def _live_parts(self) -> dict[str, Any]:
        """What a checkpoint is checked against and loaded into."""
        return {
            "rank": self.ctx.rank,
            "run": self.state,
            "model": self.model,
            "opt": self.opt,
            "signal": self.signal,
        }

    def resume(self) -> None:
        """Seed the run (``seed + rank``), then load the checkpoint when there is one.

        Call :meth:`check_resume` first: the load assumes the checkpoint fits.
        """
        if self.options.seed is not None:
            seed_everything(self.options.seed + self.ctx.rank)
        found = self.plan.found
        if found is not None:
            restore(
                found.state,
                found.path,
                **self._live_parts(),
                out_stream=self.out_stream,
                device=self.device,
                checked=True,
            )
            at = (self.state.epoch + 1, self.state.step)
            log_main(self.ctx, "%s: resumed at epoch %d, step %d", self.name, *at)
        elif self.plan.resume:
            where = self.checkpoint_dir
            log_main(self.ctx, "resume=True but no checkpoint in %s; starting from scratch", where)

    # ------------------------------------------------------------------ fit
    def fit(self) -> None:
        """Train until the last epoch, or until a callback raises ``StopTraining``."""
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        try:
            self._start_collapse_watch(self._log_start())
            if self.signal is not None:
                self.signal.attach(self.model)
            try:
                for cb in self.options.callbacks:
                    cb.on_fit_start(self.view())
                (self.ddp if self.ddp is not None else self.model).train()
                try:
                    while self.state.epoch < self.options.epochs:
                        self.epoch()
                except StopTraining:
                    self._broadcast_buffers()
                    at = self.state.step
                    log_main(self.ctx, "%s: stopped by a callback at step %d", self.name, at)
            finally:
                if self.signal is not None:
                    self.signal.detach()
        finally:
            self.ddp = None

    def _log_start(self) -> OptimizerChoice:
        opts, ctx = self.options, self.ctx
        choice = choose_optimizer(self.model, opts)
        log_main(
            ctx,
            "%s: %d epochs x %d steps, in batch %s%s, outlier batch ratio %.2fx, "
            "optimizer %s (lr %s), device %s, amp %s",
            self.name,
            opts.epochs,
            self.plan.steps_per_epoch,
            getattr(self.plan.in_loader, "batch_size", "?"),
            f" per rank x {ctx.world_size} ranks" if ctx.enabled else "",
            opts.outlier_ratio if self.pre.uses_outliers else 0.0,
            choice.name,
            choice.lr if choice.lr is not None else "the factory's",
            self.device,
            opts.amp,
        )
        return choice

    def _start_collapse_watch(self, choice: OptimizerChoice) -> None:
        self.collapse = CollapseWatch(self.name, collapse_hint(choice), self.pre.num_classes)
        found = self.plan.found
        saved_base = found.state.get("collapse_baseline") if found is not None else None
        if isinstance(saved_base, dict):
            self.collapse.start(Measure(**saved_base))
        elif self.val_loader is not None and found is None:  # where the model starts
            self.collapse.start(self._measure(self.val_loader))

    def _broadcast_buffers(self) -> None:
        """Give every rank rank 0's buffers (batch-norm statistics), as DDP does before
        each forward, so that all ranks hold the same model between epochs."""
        if self.ctx.enabled:
            for buf in self.model.buffers():
                torch.distributed.broadcast(buf, src=0)

    # ------------------------------------------------------------------ one epoch
    def epoch(self) -> None:
        """One pass over the in-distribution data, then statistics and a checkpoint.

        Raises:
            StopTraining: From a callback (after a checkpoint, when no step is pending).
            FloatingPointError: If the loss became NaN or infinite.
        """
        t0 = time.perf_counter()
        run = self.state
        acc = EpochAccumulator(self.device, self.pre.num_classes, self.pre.reject_model, run.acc)
        self.in_stream.start(skip=run.skip, start_rng=run.epoch_rng, epoch=run.epoch)
        run.skip, run.epoch_rng, run.acc = 0, None, None
        bar = EpochProgress(
            enabled=self.options.progress and self.ctx.is_main,
            name=self.name,
            epoch=run.epoch,
            epochs=self.options.epochs,
            total=self.plan.steps_per_epoch,
            initial=self.in_stream.position,
        )
        try:
            for batch in self.in_stream:
                self.forward_backward(batch, acc)
                bar.update(acc.running_loss)
                last = self.in_stream.position >= self.plan.steps_per_epoch
                if self.opt.group_complete or last:
                    self._optimizer_step(acc, last)
        except StopTraining:
            if self.opt.pending == 0:
                self.save(acc)
            bar.close()
            raise
        except BaseException:
            bar.close()
            raise
        self._end_epoch(acc, bar, t0)

    def forward_backward(self, batch: Any, acc: EpochAccumulator) -> None:
        """Assemble one in-loader batch with its outliers, forward it once, backward."""
        opts, run = self.options, self.state
        data = step_batch(
            batch,
            step=run.step + 1,
            num_classes=self.pre.num_classes,
            device=self.device,
            keys=self.spec.keys,
            outlier_ratio=opts.outlier_ratio if self.pre.uses_outliers else None,
            outliers=self.out_stream,
            pad_values=self.plan.pads,
        )
        out = forward_and_loss(
            self._forward,
            self.spec.objective,
            data,
            device=self.device,
            amp=opts.amp,
            signal=self.signal,
            channels_last=opts.channels_last,
        )
        self.watch.note(out.terms.loss, run.step + 1, run.epoch)
        self.opt.backward(out.terms.loss)
        acc.add(out, data.y)

    def _optimizer_step(self, acc: EpochAccumulator, last: bool) -> None:
        opts, run = self.options, self.state
        if run.step == 0 and self.collapse.baseline is None:
            # the first group's forward ran on the weights as they came in
            self.collapse.start(acc.in_distribution("the training batches"))
        self.opt.step()
        acc.count_step()
        run.step += 1
        for cb in opts.callbacks:
            cb.on_step_end(self.view(), run.step)
        every = opts.checkpoint_every
        if every is not None and run.step % every == 0 and not last:
            self.save(acc)

    def _end_epoch(self, acc: EpochAccumulator, bar: EpochProgress, t0: float) -> None:
        run = self.state
        self._broadcast_buffers()
        self.watch.raise_if_bad(run.step)
        val = self._measure(self.val_loader) if self.val_loader is not None else None
        stats = acc.finish(
            lambda t: dist_utils.all_reduce(t, self.ctx),
            epoch=run.epoch + 1,
            lr=self.opt.lr,
            seconds=time.perf_counter() - t0,
            val_accuracy=val.accuracy if val is not None else None,
        )
        bar.close(stats)
        self.collapse.check(
            run.epoch + 1,
            val
            if val is not None
            else Measure(stats.in_accuracy, stats.in_loss, "the training batches", False, 0),
        )
        self.history.epochs.append(stats)
        run.epoch += 1
        log_main(self.ctx, "%s", epoch_summary(self.name, self.options.epochs, stats))
        self.save()
        for cb in self.options.callbacks:
            cb.on_epoch_end(self.view(), stats)

    # ------------------------------------------------------------------ save
    def save(self, acc: EpochAccumulator | None = None) -> None:
        """Write a checkpoint (a no-op without ``checkpoint_dir``).

        Args:
            acc: The epoch's sums when saving mid-epoch; ``None`` at an epoch's end.

        Raises:
            FloatingPointError: If the loss became non-finite since the last check (no
                checkpoint of a broken run is written).
        """
        if self.checkpoint_dir is None:
            return
        self.watch.raise_if_bad(self.state.step)
        shared, own = capture(
            self.state,
            model=self.model,
            opt=self.opt,
            in_stream=self.in_stream,
            out_stream=self.out_stream,
            acc=acc.state_dict() if acc is not None else None,
            signal=self.signal,
        )
        ctx = self.ctx
        ranks = dist_utils.gather_to_main(own, ctx) if ctx.enabled else None
        if ctx.is_main:
            state = {
                **shared,
                **own,
                **self.plan.identity,
                "world_size": ctx.world_size,
                "sampler_seed": self.plan.sampler_seed,
            }
            if self.collapse.baseline is not None:
                state["collapse_baseline"] = dataclasses.asdict(self.collapse.baseline)
            if ranks is not None:
                state["rank_states"] = ranks
            write_checkpoint(self.checkpoint_dir, state)
        dist_utils.barrier(ctx, self.device)
