"""The Trainer: one rank's training loop, composed of components that each own a part of the run.

The hot loop reads nothing back from the device and makes no device tensor from host numbers:
loss sums, grad norms, clip fractions and skipped-step flags stay on it and are reduced and read
every ``log_interval`` steps (engine/training/interval.py); LR and token counts are host numbers.
One small CPU collective per step agrees on commands, stop requests and out-of-memory back-off.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from contextlib import nullcontext
from importlib.metadata import version
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from engine.checkpoints.checkpoint import ResumeRequest
from engine.contract.config import Config
from engine.contract.events import EventWriter
from engine.contract.rundir import RunDir
from engine.training import distributed, precision
from engine.training.batches import Batches
from engine.training.checkpointing import Checkpointing
from engine.training.clipping import GradClipper
from engine.training.dispatcher import Dispatcher
from engine.training.ema import WeightEma
from engine.training.evaluation import Evaluator
from engine.training.faults import FaultInjector, is_oom
from engine.training.hooks import Hooks
from engine.training.interval import Interval, WorkClock
from engine.training.log_step import report_interval
from engine.training.microbatch import MicroBatchPlanner
from engine.training.model import MusicTransformer, param_groups
from engine.training.run_monitors import RunMonitors
from engine.training.schedules import EarlyStopping, Monitor, Plateau, Schedule


class Component(Protocol):
    """A technique whose state a checkpoint holds."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any, /) -> None: ...


def _scale(scaler: torch.amp.GradScaler) -> torch.Tensor:
    """The scaler's scale as a device tensor: comparing it needs no wait for the device (get_scale() waits)."""
    scale = scaler._scale
    assert scale is not None  # set by the scaler's scale() in the backward pass
    return scale


class Trainer:
    """Sets up a rank's model, optimizer and techniques, then runs the loop: ``train``, or ``begin``,
    ``iteration`` per step and ``end`` (as bench/overhead.py drives it).

    ``components`` is every technique whose state a checkpoint holds, by its name in ``train_state``.
    """

    def __init__(self, run: RunDir, cfg: Config, dist: distributed.Dist, resume: ResumeRequest | bool | None):
        self.run, self.cfg, self.dist = run, cfg, dist
        self.device = dist.device
        self.events = EventWriter(run.events) if dist.is_main else None
        self.step = 0
        self.tokens_seen = 0

        cfg.check_world_size(dist.world_size)
        self.precision, self.precision_reason = precision.choose(cfg.run.precision, self.device)
        torch.manual_seed(cfg.run.seed + dist.rank)
        self.batches = Batches(cfg, dist)

        self.model = MusicTransformer(cfg.model, self.batches.corpus.meta["vocab_size"], cfg.data.seq_len)
        self.model.to(self.device)
        self.model.activation_checkpointing = cfg.model.activation_checkpointing
        self.ddp = DDP(self.model) if dist.world_size > 1 else self.model
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, o.weight_decay),
            lr=o.lr,
            betas=(o.beta1, o.beta2),
            fused=self.device.type == "cuda",
        )
        self.params: list[torch.Tensor] = [p for p in self.model.parameters() if p.requires_grad]
        c = cfg.clip
        self.clipper = GradClipper(
            c.method,
            self.params,
            self.device,
            max_norm=c.max_norm,
            percentile=c.percentile,
            window=c.window,
            ratio=c.ratio,
            ema_beta=c.ema_beta,
            agc_lambda=c.agc_lambda,
            warmup_steps=c.warmup_steps,
        )
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.work_clock = WorkClock(self.device)
        self.faults = FaultInjector(cfg.debug, dist.rank, cfg.batch.micro_batch_min)
        self.ema = WeightEma(self.model, cfg.ema.decay) if cfg.ema.enabled else None
        total_tokens = None
        if self.batches.seq_curriculum and cfg.curriculum.unit == "tokens":
            total_tokens = cfg.run.max_steps * cfg.batch.global_batch_size * cfg.data.seq_len
        self.schedule = Schedule(o, cfg.run.max_steps, total_tokens)
        p, e = cfg.plateau, cfg.early_stop
        self.plateau = Plateau(p.patience, p.factor, p.min_delta, p.min_scale) if p.enabled else None
        self.early_stop = (
            EarlyStopping([Monitor(**m.model_dump()) for m in e.monitors], e.divergence_factor, e.stop_on_nonfinite)
            if e.enabled
            else None
        )
        self.micro = MicroBatchPlanner(
            cfg.batch, self.batches.per_rank, self.batches.longest, self.model, self.precision, dist
        )
        components: dict[str, Component | None] = {
            "schedule": self.schedule,
            "clipper": self.clipper,
            "curriculum_stage": self.batches,
            "micro_batch_size": self.micro,
            "scaler": self.scaler,
            "plateau": self.plateau,
            "early_stop": self.early_stop,
            "ema": self.ema,
        }
        self.components: dict[str, Component] = {name: part for name, part in components.items() if part is not None}

        self.hooks = Hooks()
        self.evaluator = Evaluator(self)
        self.checkpoints = Checkpointing(self)
        self.resumed_from = self.checkpoints.resume(resume) if resume else None
        self.control = Dispatcher(self)
        self.monitors = RunMonitors(self, self.batches.tokenizer, self.batches.val_pieces)
        if (early_stop := self.early_stop) is not None:  # after the monitors: their detectors act first
            stop_early = self.control.stop_early
            self.hooks.subscribe(
                "log_step", lambda metrics, _: stop_early(early_stop.observe_train_loss, metrics["loss"])
            )
            self.hooks.subscribe("evaluation", lambda result: stop_early(early_stop.observe_eval, result))

    def emit(self, type_: str, **payload: Any) -> None:
        if self.events is not None:
            self.events.emit(type_, self.step, **payload)

    # ------------------------------------------------------------------ the step

    def loss_sum(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with precision.autocast(self.precision, self.device):
            logits = model(x)
        return F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), y.reshape(-1), ignore_index=self.batches.pad_id, reduction="sum"
        )

    def train_step(self, interval: Interval) -> None:
        lr = self.schedule.lr(self.step, self.tokens_seen)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        started = time.perf_counter()
        examples = self.batches.draw(self.step, self.tokens_seen)
        interval.data_wait += time.perf_counter() - started
        step_tokens = sum(int((y != self.batches.pad_id).sum()) for _, y in examples)

        losses = self.accumulate_gradients(examples, step_tokens)
        self.faults.after_backward(self.step, self.params)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        clip_record = self.clipper()
        skipped = None
        if self.scaler:
            scale_before = _scale(self.scaler).clone()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            # The scaler lowers its scale exactly when it skipped a step on inf/NaN gradients.
            skipped = (_scale(self.scaler) < scale_before).squeeze()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)

        interval.add_step(losses, clip_record, skipped)
        interval.tokens += step_tokens
        interval.lr, interval.seq_len, interval.stage = lr, len(examples[0][0]), self.batches.stage
        self.step += 1
        if self.control.has_deferred:
            applying = time.perf_counter()
            self.control.apply_deferred()
            interval.start += time.perf_counter() - applying  # a command's save or rollback is not training
        self.monitors.step_done(self.step)

    def accumulate_gradients(self, examples: list, step_tokens: int) -> list[torch.Tensor]:
        """Forward and backward over the step's micro-batches; on out-of-memory (on any rank) the step is
        retried at a smaller micro-batch. Returns each micro-batch's loss sum."""
        while True:
            losses, oom = self.forward_backward(examples, step_tokens)
            # One agreement per step: out-of-memory now, commands once the step is complete.
            if not self.control.poll(oom, defer=True):
                return losses
            self.optimizer.zero_grad(set_to_none=True)
            old = self.micro.back_off()
            self.emit(
                "status",
                state="running",
                message=f"out of memory at micro-batch {old}; retrying the step at {self.micro.size}",
                micro_batch_size=self.micro.size,
                previous_micro_batch_size=old,
            )

    def forward_backward(self, examples: list, step_tokens: int) -> tuple[list[torch.Tensor], bool]:
        """Accumulate gradients over micro-batches; returns (each micro-batch's loss sum, ran out of memory).

        After an out-of-memory error this rank skips its remaining micro-batches but still joins
        DDP's gradient all-reduce with a zero gradient, so the other ranks are not left waiting.
        """
        losses = []
        oom = False
        poisoned = self.faults.poisons_loss(self.step)
        chunks = self.micro.chunks(examples)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            with self.ddp.no_sync() if not last and isinstance(self.ddp, DDP) else nullcontext():
                if not oom:
                    try:
                        self.faults.before_forward(self.step, self.micro.size)
                        x, y = self.batches.to_device(chunk)
                        started = self.work_clock.start()
                        loss = self.loss_sum(self.ddp, x, y)
                        self.faults.after_forward()
                        self.work_clock.stop(started)
                        if poisoned:
                            loss = loss * float("nan")
                        scaled = loss / max(step_tokens, 1)
                        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
                        losses.append(loss.detach())
                        continue
                    except RuntimeError as exc:
                        if not is_oom(exc):
                            raise
                        oom = True
                if last and self.ddp is not self.model:
                    # DDP reduces only after its own forward: a one-token pass touches every parameter.
                    (self.ddp(torch.zeros(1, 1, dtype=torch.long, device=self.device)).sum() * 0.0).backward()
        return losses, oom

    def weights_finite(self) -> bool:
        """Whether every rank's weights are all finite. Collective; reads a device value (a sync), so
        only at saves, evaluations and recovery, never in the step."""
        local = bool(torch.isfinite(torch.stack(torch._foreach_norm(self.params))).all())
        return all(self.dist.gather_objects(local))

    # ------------------------------------------------------------------ the loop

    def new_interval(self) -> Interval:
        return Interval(self.device, self.clipper.totals)

    def train(self) -> str:
        interval = self.begin()
        while self.step < self.cfg.run.max_steps:
            if self.control.paused:
                self.monitors.pause()
                paused_at = time.perf_counter()
                self.control.wait_while_paused()
                # Paused time is not training time; the steps before the pause still count in the interval.
                interval.start += time.perf_counter() - paused_at
            if self.control.stop_reason:
                break
            interval = self.iteration(interval)
        if interval.steps:  # stopped between log steps: those steps are reported and their tokens counted
            self.log_step(interval)
        return self.end()

    def begin(self) -> Interval:
        """Announce the run and start watching it; returns the first log interval for :meth:`iteration`."""
        self.emit(
            "run_start",
            config=self.cfg.model_dump(mode="json"),
            env=environment(self.dist, self.precision, self.precision_reason),
            total_steps=self.cfg.run.max_steps,
            resumed_from=self.resumed_from,
            model_parameters=self.model.num_parameters(),
            unigram_entropy=self.batches.unigram_entropy,
            micro_batch_size=self.micro.size,
            micro_batch_reason=self.micro.reason,
            grad_accum=self.batches.per_rank // self.micro.size,
        )
        self.emit("status", state="running", message="training")
        interval = self.new_interval()
        self.model.train()
        self.monitors.begin(self.step)
        return interval

    def iteration(self, interval: Interval) -> Interval:
        """One pass of the training loop, pause and stop aside: the step and all that falls due at it.

        That is the step itself (watchdog beat, control poll), then at a log step the metrics,
        system event, detectors, sinks and the poll that acts on their recovery actions;
        evaluation and checkpoint when due. Returns the interval to go on with (a new one after a
        log step).
        """
        cfg, control = self.cfg, self.control
        stage_change = self.batches.advance(self.step)
        if stage_change:
            self.emit("status", state="running", message=stage_change)
        self.train_step(interval)
        if control.rolled_back:
            # By an action applied once the step was complete (from an evaluation's detectors or the
            # watchdog): the interval's steps were undone, so neither their tokens nor a log step count.
            control.rolled_back = False
            return self.new_interval()
        logged = self.step % cfg.run.log_interval == 0 or self.step == cfg.run.max_steps
        if logged:
            self.log_step(interval)
            interval = self.new_interval()
        side_work = time.perf_counter()
        if logged:
            self.checkpoints.report_written()
            # Recovery actions chosen at this log step act before anything is evaluated or saved.
            control.poll()
        if control.stop_reason:
            return interval  # the loop ends: no evaluation, no interval checkpoint, no clock tick
        if control.rolled_back:  # the restored step was evaluated and saved when it was first reached
            control.rolled_back = False
        else:
            if self.step % cfg.run.eval_interval == 0:
                self.evaluator.evaluate()
            if cfg.checkpoint.interval and self.step % cfg.checkpoint.interval == 0:
                self.checkpoints.save("interval")
        # Recovery, evaluation and checkpoints are not training: the interval's clock (tokens/s,
        # step time, data-wait share, and the detectors reading them) leaves them out, as a pause.
        interval.start += time.perf_counter() - side_work
        self.monitors.tick(self.step)
        return interval

    def log_step(self, interval: Interval) -> None:
        """The interval's metrics, and what reacts to them (the ``log_step`` hook): detectors and sinks,
        then early stopping."""
        metrics, system_samples = report_interval(self, interval)
        self.evaluator.last_train_loss = metrics["loss"]
        self.hooks.fire("log_step", metrics, system_samples)

    def end(self) -> str:
        """After the loop: the final evaluation and checkpoint, monitors stopped; returns the run's end reason."""
        self.monitors.loop_ended()
        reason = self.control.stop_reason or "finished"  # what the final evaluation and save find comes after
        if self.evaluator.last.get("step") != self.step:
            self.evaluator.evaluate()
        if self.checkpoints.last_step != self.step:
            self.checkpoints.save("final")
        self.checkpoints.manager.settle()  # a background save still in flight: its hook fires while all listen
        final = {**self.evaluator.last, "train_loss": self.evaluator.last_train_loss, "step": self.step}
        self.monitors.close(final)
        return reason


def environment(dist: distributed.Dist, precision_name: str, precision_reason: str) -> dict[str, Any]:
    """Where the run trains, for ``run_start``."""
    device = dist.device
    devices = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if device.type == "cuda"
        else [platform.processor() or platform.machine()]
    )
    return {
        "world_size": dist.world_size,
        "backend": dist.backend,
        "device": str(device.type),
        "devices": devices,
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "miditok": version("miditok"),
        "platform": platform.platform(),
        "precision": precision_name,
        "precision_reason": precision_reason,
        "threads_per_rank": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
