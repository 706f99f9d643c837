"""The training process, one per rank, started by torchrun through ``engine.launcher.launch``.

    python -m torch.distributed.run --nproc-per-node N -m engine.training.train --run-dir DIR [--resume]

Rank 0 alone writes events and checkpoints. The hot loop reads nothing back
from the device and makes no device tensor from host numbers: loss sums, grad
norms, clip fractions and skipped-step flags stay on it and are reduced and
read every ``log_interval`` steps (engine/training/interval.py); LR and token counts are
host numbers. One small CPU collective per step agrees on commands, stop
requests and out-of-memory back-off.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import signal
import socket
import sys
import threading
import time
import traceback
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from engine.checkpoints import checkpoint
from engine.contract import config as config_mod
from engine.contract.commands import CommandError, ControlInbox, validate_command
from engine.contract.config import Config
from engine.contract.events import EventWriter, read_events
from engine.contract.manifest import checkpoint_dir_name, newest_valid
from engine.contract.rundir import RunDir
from engine.monitoring.anomaly import AnomalyMonitor
from engine.monitoring.monitors import MusicEvaluator, Profiler, Sinks, StepClock, SystemSampler, system_event
from engine.music import data
from engine.training import distributed, precision
from engine.training.clipping import GradClipper
from engine.training.curriculum import DifficultyCurriculum, SeqLenCurriculum, piece_difficulty
from engine.training.ema import WeightEma
from engine.training.interval import Interval, WorkClock
from engine.training.model import MusicTransformer, param_groups
from engine.training.schedules import EarlyStopping, Monitor, Plateau, Schedule

PAUSE_POLL_SECONDS = 0.2


class SimulatedOOM(torch.OutOfMemoryError):
    """Raised by ``debug.oom_at_steps`` to exercise the back-off path."""


def _is_oom(exc: BaseException) -> bool:
    # A CPU allocation failure surfaces as a plain RuntimeError from the allocator.
    return isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc)


class Trainer:
    def __init__(self, run: RunDir, cfg: Config, dist: distributed.Dist, resume: bool):
        self.run, self.cfg, self.dist = run, cfg, dist
        self.device = dist.device
        self.events = EventWriter(run.events) if dist.is_main else None
        self.stop_reason: str | None = None
        self.stop_message = ""
        self.paused = False
        self.step = 0
        self.tokens_seen = 0
        self.last_eval: dict[str, float] = {}
        self.last_checkpoint_step = -1
        self.injected_ooms: set[int] = set()
        self.deferred: tuple[list, list] = ([], [])
        self.rolled_back = False  # set by a rollback, cleared by the loop iteration it happened in

        cfg.check_world_size(dist.world_size)
        self.precision, self.precision_reason = precision.choose(cfg.run.precision, self.device)
        torch.manual_seed(cfg.run.seed + dist.rank)

        corpus = data.prepare(cfg)
        self.corpus = corpus
        train_ids, val_ids = data.split_pieces(corpus.names, cfg.data.val_fraction, cfg.data.split_seed)
        pitch_range = (cfg.tokenizer.pitch_low, cfg.tokenizer.pitch_high)
        self.train_set = data.WindowSet(corpus, train_ids, cfg.data.seq_len, cfg.data.transpose, pitch_range)
        tokenizer = corpus.tokenizer()
        self.train_set.set_tokenizer(tokenizer)
        self.tokenizer_json = (corpus.directory / "tokenizer.json").read_bytes()
        self.val_set = data.WindowSet(corpus, val_ids, cfg.data.seq_len, 0, pitch_range)
        self.pad_id = corpus.meta["pad_id"]
        self.unigram_entropy = data.unigram_entropy(corpus, train_ids)

        self.seq_curriculum = (
            SeqLenCurriculum(cfg.curriculum.seq_len_stages, cfg.curriculum.unit)
            if cfg.curriculum.seq_len_stages
            else None
        )
        self.difficulty = None
        if cfg.curriculum.difficulty_stages:
            pitch_of = data.pitch_of_token(tokenizer)
            program_of = np.full(len(tokenizer), -1)
            for token, idx in tokenizer.vocab.items():
                if token.startswith("Program_"):
                    program_of[idx] = int(token.split("_")[1])
            scores = piece_difficulty([corpus.piece(i) for i in train_ids], pitch_of, tokenizer["Bar_None"], program_of)
            self.difficulty = DifficultyCurriculum(cfg.curriculum.difficulty_stages, scores)
        self.curriculum_stage = self.difficulty.stage(0) if self.difficulty else 0
        self.sampler = self._make_sampler(self.curriculum_stage)

        self.model = MusicTransformer(cfg.model, corpus.meta["vocab_size"], cfg.data.seq_len).to(self.device)
        self.model.activation_checkpointing = cfg.model.activation_checkpointing
        self.ddp = DDP(self.model) if dist.world_size > 1 else self.model
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, cfg.optim.weight_decay),
            lr=cfg.optim.lr,
            betas=(cfg.optim.beta1, cfg.optim.beta2),
            fused=fused,
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
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
        self.slow_forward_s = cfg.debug.slow_ranks_ms.get(dist.rank, 0.0) / 1000.0
        self.ema = WeightEma(self.model, cfg.ema.decay) if cfg.ema.enabled else None
        self.per_rank = cfg.batch.global_batch_size // dist.world_size
        total_tokens = None
        if self.seq_curriculum and cfg.curriculum.unit == "tokens":
            total_tokens = cfg.run.max_steps * cfg.batch.global_batch_size * cfg.data.seq_len
        self.schedule = Schedule(cfg.optim, cfg.run.max_steps, total_tokens)
        self.plateau = (
            Plateau(cfg.plateau.patience, cfg.plateau.factor, cfg.plateau.min_delta, cfg.plateau.min_scale)
            if cfg.plateau.enabled
            else None
        )
        self.early_stop = (
            EarlyStopping(
                [Monitor(**m.model_dump()) for m in cfg.early_stop.monitors],
                cfg.early_stop.divergence_factor,
                cfg.early_stop.stop_on_nonfinite,
            )
            if cfg.early_stop.enabled
            else None
        )
        self.micro, self.micro_reason = self._choose_micro_batch()
        self.checkpoints = checkpoint.CheckpointManager(run.checkpoints, cfg.checkpoint, dist, self._emit_at)
        self.resumed_from = self._resume(resume) if resume else None
        answered = (
            {e.get("id") for e in read_events(run.events)[0] if e["type"] == "control_ack"} if dist.is_main else set()
        )
        self.inbox = ControlInbox(run.control, answered, run.launched_at() or time.time()) if dist.is_main else None
        self._init_monitoring(tokenizer, [corpus.piece(i) for i in val_ids])

    def _init_monitoring(self, tokenizer, val_pieces: list[np.ndarray]) -> None:
        """System sampling on every rank; detectors, music, sinks and the watchdog on rank 0."""
        cfg, main = self.cfg, self.dist.is_main
        self.system = SystemSampler(self.dist.rank, self.dist.local_rank, self.device, cfg.monitor.system_interval_s)
        self.system.start()
        self.last_system_time = 0.0
        self.anomalies = AnomalyMonitor(cfg.anomaly) if main and cfg.anomaly.enabled else None
        self.pending_actions: list[dict[str, Any]] = []
        self.actions_lock = threading.Lock()  # the stall watchdog queues actions from its own thread
        self.music = (
            MusicEvaluator(
                cfg.music,
                cfg.sample,
                tokenizer,
                val_pieces,
                self.run.samples,
                cfg.tokenizer.positions_per_beat,
                corpus=self.corpus,
                data_cfg=cfg.data,
            )
            if main and cfg.music.enabled
            else None
        )
        if self.music and self.anomalies:
            self.anomalies.set_music_reference(self.music.reference)
        self.evals_done = 0
        self.last_train_loss = float("nan")
        self.sinks = Sinks(cfg.sinks, self.run.root, self.run.root.name, cfg.model_dump(mode="json")) if main else None
        for problem in self.sinks.problems if self.sinks else []:
            self.emit("error", message=problem, where="sinks", fatal=False)
        self.profiler: Profiler | None = None
        self.clock: StepClock | None = None  # debug.step_times, from begin()
        self.injected_nans: set[int] = set()
        self.watchdog = self.anomalies.make_watchdog() if self.anomalies else None
        if self.watchdog is not None:
            threading.Thread(target=self._watch, name="podium-watchdog", daemon=True).start()

    def _watch(self) -> None:
        """Fires ``stalled_training`` when no step finishes in time, even while a step hangs.

        Its action is queued like any detector's and taken at the next agreement, once the slow
        step is over; a step that never returns (a deadlocked collective) cannot act, and only
        ending the processes (the GUI's Stop escalates to signals) gets past it.
        """
        while True:
            time.sleep(5.0)
            anomaly = self.watchdog.check()
            if anomaly is not None:
                self.emit("anomaly", **anomaly.to_event())
                self._queue_action(anomaly)

    # ------------------------------------------------------------------ set-up helpers

    def _make_sampler(self, stage: int, epoch: int = 0, position: int = 0) -> data.RankSampler:
        """A sampler over the windows the curriculum allows in ``stage`` (all windows without one)."""
        if self.difficulty is None:
            self.window_subset = None
            n = len(self.train_set)
        else:
            allowed = set(self.difficulty.pieces(stage).tolist())
            self.window_subset = np.array(
                [i for i, (piece, _) in enumerate(self.train_set.windows) if piece in allowed]
            )
            n = len(self.window_subset)
        # Each stage draws its own order, so a stage change never replays the previous stage's sequence.
        return data.RankSampler(
            n, self.dist.rank, self.dist.world_size, self.cfg.run.seed + 7919 * stage, epoch, position
        )

    def _micro_candidates(self) -> list[int]:
        b = self.cfg.batch
        fits = [m for m in range(1, self.per_rank + 1) if self.per_rank % m == 0]
        inside = [m for m in fits if b.micro_batch_min <= m <= b.micro_batch_max]
        return inside or [min(fits, key=lambda m: abs(m - b.micro_batch_min))]

    def _choose_micro_batch(self) -> tuple[int, str]:
        """The micro-batch: from config, or the largest that fits the memory budget (agreed: the smallest over ranks)."""
        b = self.cfg.batch
        longest = self.seq_curriculum.longest if self.seq_curriculum else self.cfg.data.seq_len
        if b.micro_batch_size != "auto":
            micro = min(b.micro_batch_size, self.per_rank)
            if self.device.type == "cuda":
                self._probe(micro, longest)  # reserves memory for the longest windows up front
            return micro, "set in config"
        candidates = self._micro_candidates()
        if self.device.type == "cuda":
            micro = next((m for m in reversed(candidates) if self._probe(m, longest)), candidates[0])
            why = f"largest of {candidates} that ran forward+backward at length {longest} on this GPU"
        else:
            per_seq = self._activation_bytes(longest)
            budget = (
                b.memory_budget_mb * 2**20
                if b.memory_budget_mb
                else psutil.virtual_memory().available / 4 / self.dist.local_world_size
            )
            fitting = [m for m in candidates if m * per_seq <= budget]
            micro = fitting[-1] if fitting else candidates[0]
            why = (
                f"largest of {candidates} within {budget / 2**20:.0f} MB of activations "
                f"at {per_seq / 2**20:.1f} MB per sequence of length {longest}"
            )
        micro = min(self.dist.gather_objects(micro))
        return micro, why

    def _activation_bytes(self, length: int) -> int:
        """Bytes autograd saves for backward for one sequence: what a micro-batch costs per sample."""
        saved = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            saved += t.numel() * t.element_size()
            return t

        x = torch.zeros(1, length, dtype=torch.long, device=self.device)
        with (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
            precision.autocast(self.precision, self.device),
        ):
            self.model(x).float().sum()
        return max(saved, 1)

    def _probe(self, micro: int, length: int) -> bool:
        x = torch.zeros(micro, length, dtype=torch.long, device=self.device)
        try:
            with precision.autocast(self.precision, self.device):
                self.model(x).float().mean().backward()
            ok = True
        except torch.OutOfMemoryError:
            ok = False
        self.model.zero_grad(set_to_none=True)
        if not ok:
            torch.cuda.empty_cache()
        return ok

    # ------------------------------------------------------------------ events

    def emit(self, type_: str, **payload: Any) -> None:
        if self.events is not None:
            self.events.emit(type_, self.step, **payload)

    def _environment(self) -> dict[str, Any]:
        devices = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if self.device.type == "cuda"
            else [platform.processor() or platform.machine()]
        )
        return {
            "world_size": self.dist.world_size,
            "backend": self.dist.backend,
            "device": str(self.device.type),
            "devices": devices,
            "hostname": socket.gethostname(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "miditok": version("miditok"),
            "platform": platform.platform(),
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            "threads_per_rank": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        }

    # ------------------------------------------------------------------ control

    def poll_control(self, oom: bool = False, defer: bool = False) -> bool:
        """Read the inbox on rank 0 and agree with all ranks on commands, stop and out-of-memory.

        Commands are applied here, on every rank at this same step. Returns
        whether any rank ran out of memory in this step.
        """
        records = self.inbox.poll() if self.inbox is not None else []
        with self.actions_lock:
            actions, self.pending_actions = self.pending_actions, []
        has_news, stop, any_oom = self.dist.agree(bool(records or actions), _stop_requested, oom)
        if stop and not self.stop_reason:
            self.stop_reason = "stopped"
            self.stop_message = "stop requested by signal"
            self.emit("status", state="stopping", message=self.stop_message)
        if has_news:
            self.deferred = self.dist.broadcast_objects((records, actions))
            if not defer:
                self.apply_deferred()
        return any_oom

    def apply_deferred(self) -> None:
        """Apply agreed commands and recovery actions; inside a step they wait until the step is complete."""
        records, actions = self.deferred
        self.deferred = ([], [])
        for record in records:
            self._apply(record)
        for action in actions:
            self._recover(action)

    def _ack(self, record: dict, outcome: str, reason: str = "", **extra: Any) -> None:
        self.emit("control_ack", id=record.get("id"), cmd=record.get("cmd"), outcome=outcome, reason=reason, **extra)

    def _apply(self, record: dict) -> None:
        if "malformed" in record:
            self._ack(record, "refused", record["malformed"])
            return
        try:
            cmd, args = validate_command(record)
        except CommandError as exc:
            self._ack(record, "refused", str(exc))
            return
        if cmd == "pause":
            if self.paused:
                return self._ack(record, "refused", "already paused")
            self.paused = True
            self._ack(record, "done")
            self.emit("status", state="paused", message="paused by command")
        elif cmd == "resume":
            if not self.paused:
                return self._ack(record, "refused", "not paused")
            self.paused = False
            self._ack(record, "done")
            self.emit("status", state="running", message="resumed by command")
        elif cmd == "stop":
            if self.stop_reason:
                return self._ack(record, "refused", "already stopping")
            self.stop_reason, self.stop_message = "stopped", "stop requested by command"
            self._ack(record, "done")
            self.emit("status", state="stopping", message=self.stop_message)
        elif cmd == "save_checkpoint":
            path = self.save_checkpoint("command")
            self._ack(record, "done", path=str(path) if path else None)
        elif cmd == "profile":
            if self.profiler is not None:
                return self._ack(record, "refused", "a profile is already being recorded")
            if self.dist.is_main:
                self.profiler = Profiler(self.run.root, self.device, args["steps"], self.step)
            self._ack(record, "done", steps=args["steps"])
        elif cmd == "set_lr":
            old = self.schedule.peak_lr
            self.schedule.peak_lr = args["lr"]
            if self.anomalies is not None:
                self.anomalies.expect_lr_change()
            self._ack(
                record,
                "done",
                old_peak_lr=old,
                new_peak_lr=args["lr"],
                lr_now=self.schedule.lr(self.step, self.tokens_seen),
            )

    def wait_while_paused(self) -> None:
        while self.paused and not self.stop_reason:
            time.sleep(PAUSE_POLL_SECONDS)
            self.poll_control()

    # ------------------------------------------------------------------ batches

    def seq_len_now(self) -> int:
        return self.seq_curriculum.length(self.step, self.tokens_seen) if self.seq_curriculum else self.cfg.data.seq_len

    def draw_examples(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """This rank's share of the step's global batch, cropped to the curriculum's length."""
        length = self.seq_len_now()
        examples = []
        for _ in range(self.per_rank):
            index, rng = self.sampler.next()
            if self.window_subset is not None:
                index = int(self.window_subset[index])
            x, y = self.train_set.example(index, rng)
            examples.append((x[:length], y[:length]))
        return examples

    def to_device(self, examples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) on the device in one copy. On CUDA from pinned memory, without blocking: a copy
        from pageable memory may first wait for the device's queue to drain."""
        cuda = self.device.type == "cuda"
        # Written in place: a tensor made from the arrays would be one more copy, and on CUDA a pinned one another.
        pair = torch.empty((2, len(examples), len(examples[0][0])), dtype=torch.long, pin_memory=cuda)
        for host, column in zip(pair.numpy(), zip(*examples)):  # inputs, then targets
            np.stack(column, out=host)
        if cuda:
            pair = pair.to(self.device, non_blocking=True)
        return pair[0], pair[1]

    def loss_sum(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with precision.autocast(self.precision, self.device):
            logits = model(x)
        return F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), y.reshape(-1), ignore_index=self.pad_id, reduction="sum"
        )

    # ------------------------------------------------------------------ one step

    def forward_backward(self, examples: list, step_tokens: int) -> tuple[list[torch.Tensor], bool]:
        """Accumulate gradients over micro-batches; returns (each micro-batch's loss sum, ran out of memory).

        After an out-of-memory error this rank skips its remaining
        micro-batches but still joins DDP's gradient all-reduce with a zero
        gradient, so the other ranks are not left waiting; the step is then
        retried with a smaller micro-batch on every rank.
        """
        losses = []
        chunks = [examples[i : i + self.micro] for i in range(0, len(examples), self.micro)]
        oom = False
        # Injected once per step, so a rollback past the step does not meet it again.
        inject_nan = self.step in self.cfg.debug.nan_loss_at_steps and self.step not in self.injected_nans
        if inject_nan:
            self.injected_nans.add(self.step)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            sync = nullcontext() if last or self.ddp is self.model else self.ddp.no_sync()
            with sync:
                if not oom:
                    try:
                        if (
                            self.step in self.cfg.debug.oom_at_steps
                            and self.dist.is_main
                            and self.step not in self.injected_ooms
                            and self.micro > self.cfg.batch.micro_batch_min
                        ):
                            self.injected_ooms.add(self.step)
                            raise SimulatedOOM(f"simulated out-of-memory at step {self.step} (debug.oom_at_steps)")
                        x, y = self.to_device(chunk)
                        started = self.work_clock.start()
                        loss = self.loss_sum(self.ddp, x, y)
                        if self.slow_forward_s:
                            time.sleep(self.slow_forward_s)  # debug.slow_ranks_ms: a simulated straggler
                        self.work_clock.stop(started)
                        if inject_nan:
                            loss = loss * float("nan")
                        scaled = loss / max(step_tokens, 1)
                        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
                        losses.append(loss.detach())
                        continue
                    except RuntimeError as exc:
                        if not _is_oom(exc):
                            raise
                        oom = True
                if last and self.ddp is not self.model:
                    # DDP reduces only after its own forward: a one-token pass touches every parameter.
                    (self.ddp(torch.zeros(1, 1, dtype=torch.long, device=self.device)).sum() * 0.0).backward()
        return losses, oom

    def train_step(self, interval: Interval) -> None:
        lr = self.schedule.lr(self.step, self.tokens_seen)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        started = time.perf_counter()
        examples = self.draw_examples()
        interval.data_wait += time.perf_counter() - started
        step_tokens = sum(int((e[1] != self.pad_id).sum()) for e in examples)
        while True:
            losses, oom = self.forward_backward(examples, step_tokens)
            # One agreement per step: out-of-memory now, commands once the step is complete.
            if not self.poll_control(oom, defer=True):
                break
            self.optimizer.zero_grad(set_to_none=True)
            if self.micro <= self.cfg.batch.micro_batch_min:
                raise torch.OutOfMemoryError(
                    f"out of memory at the smallest micro-batch ({self.micro}, batch.micro_batch_min)"
                )
            old, self.micro = self.micro, max(self.cfg.batch.micro_batch_min, self.micro // 2)
            while self.per_rank % self.micro:
                self.micro -= 1
            self.emit(
                "status",
                state="running",
                message=f"out of memory at micro-batch {old}; retrying the step at {self.micro}",
                micro_batch_size=self.micro,
                previous_micro_batch_size=old,
            )
        if self.step in self.cfg.debug.inf_grad_at_steps:
            self.params[0].grad.view(-1)[0] = float("inf")
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        clip_record = self.clipper()
        skipped = None
        if self.scaler:
            scale_before = self.scaler._scale.clone()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            # The scaler lowers its scale exactly when it skipped a step on inf/NaN gradients.
            skipped = (self.scaler._scale < scale_before).squeeze()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        interval.add_step(losses, clip_record, skipped)
        interval.tokens += step_tokens
        interval.lr, interval.seq_len, interval.stage = lr, len(examples[0][0]), self.curriculum_stage
        self.step += 1
        if any(self.deferred):
            applying = time.perf_counter()
            self.apply_deferred()
            interval.start += time.perf_counter() - applying  # a command's save or rollback is not training
        if self.watchdog is not None:
            self.watchdog.beat(self.step)
        if self.profiler is not None:
            report = self.profiler.step_done()
            if report is not None:
                self.profiler = None
                self.emit("profile", **report)

    # ------------------------------------------------------------------ loop

    def _new_interval(self) -> Interval:
        return Interval(self.device, self.clipper.totals)

    def train(self) -> str:
        interval = self.begin()
        while self.step < self.cfg.run.max_steps:
            if self.paused:
                if self.watchdog is not None:
                    self.watchdog.suspend()
                paused_at = time.perf_counter()
                self.wait_while_paused()
                # Paused time is not training time; the steps before the pause still count in the interval.
                interval.start += time.perf_counter() - paused_at
            if self.stop_reason:
                break
            interval = self.iteration(interval)
        if interval.steps:  # stopped between log steps: those steps are reported and their tokens counted
            self._log_metrics(interval)
        return self.end()

    def begin(self) -> Interval:
        """Announce the run and start watching it; returns the first log interval for :meth:`iteration`."""
        cfg = self.cfg
        self.emit(
            "run_start",
            config=cfg.model_dump(mode="json"),
            env=self._environment(),
            total_steps=cfg.run.max_steps,
            resumed_from=self.resumed_from,
            model_parameters=self.model.num_parameters(),
            unigram_entropy=self.unigram_entropy,
            micro_batch_size=self.micro,
            micro_batch_reason=self.micro_reason,
            grad_accum=self.per_rank // self.micro,
        )
        self.emit("status", state="running", message="training")
        if self.watchdog is not None:
            self.watchdog.start()
        interval = self._new_interval()
        self.model.train()
        self.clock = (
            StepClock(self.run.root / "step_times.json") if cfg.debug.step_times and self.dist.is_main else None
        )
        if self.clock is not None:
            self.clock.tick(self.step)
        return interval

    def iteration(self, interval: Interval) -> Interval:
        """One pass of the training loop, pause and stop aside: the step and all that falls due at it.

        That is the step itself (watchdog beat, control poll), then at a log
        step the metrics, system event, detectors, sinks and the poll that
        acts on their recovery actions; evaluation and checkpoint when due.
        Returns the interval to go on with (a new one after a log step).
        ``train`` loops over it; bench/overhead.py drives it step by step.
        """
        cfg = self.cfg
        self._advance_curriculum()
        self.train_step(interval)
        if self.rolled_back:
            # By an action applied once the step was complete (from an evaluation's detectors or the
            # watchdog): the interval's steps were undone, so neither their tokens nor a log step count.
            self.rolled_back = False
            return self._new_interval()
        logged = self.step % cfg.run.log_interval == 0 or self.step == cfg.run.max_steps
        if logged:
            self._log_metrics(interval)
            interval = self._new_interval()
        side_work = time.perf_counter()
        if logged:
            self._report_written_save()
            # Recovery actions chosen at this log step act before anything is evaluated or saved.
            self.poll_control()
        if self.stop_reason:
            return interval  # the loop ends: no evaluation, no interval checkpoint, no clock tick
        if self.rolled_back:  # the restored step was evaluated and saved when it was first reached
            self.rolled_back = False
        else:
            if self.step % cfg.run.eval_interval == 0:
                self.evaluate()
            if cfg.checkpoint.interval and self.step % cfg.checkpoint.interval == 0:
                self.save_checkpoint("interval")
        # Recovery, evaluation and checkpoints are not training: the interval's clock (tokens/s,
        # step time, data-wait share, and the detectors reading them) leaves them out, as a pause.
        interval.start += time.perf_counter() - side_work
        if self.clock is not None:
            self.clock.tick(self.step)
        return interval

    def end(self) -> str:
        """After the loop: the final evaluation and checkpoint, monitors stopped; returns the run's end reason."""
        if self.clock is not None:
            self.clock.save()
        reason = self.stop_reason or "finished"
        if self.watchdog is not None:
            self.watchdog.suspend()
        if self.last_eval.get("step") != self.step:
            self.evaluate()
        if self.last_checkpoint_step != self.step:
            self.save_checkpoint("final")
        self.system.stop()
        if self.sinks is not None:
            self.sinks.close()
        return reason

    def _advance_curriculum(self) -> None:
        if self.difficulty is None:
            return
        stage = self.difficulty.stage(self.step)
        if stage != self.curriculum_stage:
            self.curriculum_stage = stage
            self.sampler = self._make_sampler(stage)
            self.emit(
                "status",
                state="running",
                message=f"curriculum stage {stage}: {len(self.window_subset)} windows "
                f"from the easiest {self.cfg.curriculum.difficulty_stages[stage][1]:.0%} of pieces",
            )

    def _log_metrics(self, interval: Interval) -> None:
        steps = interval.steps
        elapsed = time.perf_counter() - interval.start
        totals = interval.totals()
        counts = torch.tensor([float(interval.tokens)], device=self.device)
        self.dist.all_reduce_sum(totals)
        self.dist.all_reduce_sum(counts)
        totals, global_tokens = totals.tolist(), counts.item()
        world = self.dist.world_size
        step_time = elapsed / max(steps, 1)
        # After totals.tolist(): the interval's forward passes are complete.
        work_time = (interval.data_wait + self.work_clock.collect()) / max(steps, 1)
        per_rank = self.dist.gather_objects((work_time, self.system.latest()))
        rank_work_times = [t for t, _ in per_rank]
        self.tokens_seen += int(global_tokens)
        loss = totals[0] / max(global_tokens, 1)
        self.last_train_loss = loss
        # The norms are means over the steps the fp16 loss scaler applied (all of them without a scaler).
        applied = world * steps - totals[4]

        def per_applied(total: float) -> float | None:
            return total / applied if applied > 0 else None  # every step skipped: no norm, not a NaN one

        metrics = dict(
            loss=loss,
            lr=interval.lr,
            peak_lr=self.schedule.peak_lr,
            lr_scale=self.schedule.plateau_scale,
            grad_norm=per_applied(totals[1]),
            grad_norm_clipped=per_applied(totals[2]),
            clip_frac=per_applied(totals[3]),
            skipped_steps=round(totals[4] / world),
            samples_per_s=self.cfg.batch.global_batch_size * steps / elapsed,
            tokens_per_s=global_tokens / elapsed,
            step_time=step_time,
            data_wait_frac=min(1.0, interval.data_wait / elapsed),
            rank_work_times=rank_work_times,
            tokens_seen=self.tokens_seen,
            epoch=self.sampler.epoch,
            micro_batch_size=self.micro,
            seq_len=interval.seq_len,
            curriculum_stage=interval.stage,
        )
        self.emit("metrics", **metrics)
        if self.dist.is_main:
            self._observe("train", metrics, self.anomalies.observe_metrics if self.anomalies else None)
            system = system_event([s for _, s in per_rank])
            newest = max((s["time"] for _, s in per_rank if s), default=0.0)
            if system and newest > self.last_system_time:
                self.last_system_time = newest
                self.emit("system", **system)
                self._observe(
                    "system",
                    {"host_cpu_percent": system["host_cpu_percent"], "host_mem_percent": system["host_mem_percent"]},
                    self.anomalies.observe_system if self.anomalies else None,
                    system,
                )
        if self.early_stop and not self.stop_reason:
            reason = self.early_stop.observe_train_loss(loss)
            if reason:
                self._early_stop(reason)

    def _early_stop(self, message: str) -> None:
        self.stop_reason, self.stop_message = "early_stopped", message
        self.emit("status", state="stopping", message=f"early stopping: {message}")

    @torch.no_grad()
    def _validation_loss(self, model: torch.nn.Module) -> tuple[float, int]:
        total = torch.zeros(2, device=self.device)
        mine = list(range(self.dist.rank, len(self.val_set), self.dist.world_size))
        limit = self.cfg.run.eval_max_batches
        batches = [mine[i : i + self.micro] for i in range(0, len(mine), self.micro)]
        for chunk in batches[:limit] if limit else batches:
            x, y = self.to_device([self.val_set.example(i) for i in chunk])
            total[0] += self.loss_sum(model, x, y)
            total[1] += (y != self.pad_id).sum()
        self.dist.all_reduce_sum(total)
        loss_sum, count = total.tolist()
        return loss_sum / max(count, 1), int(count)

    def _unwatched(self) -> AbstractContextManager:
        """Legitimate long work (evaluation, a save, a checkpoint load) is not a stalled step."""
        return self.watchdog.off() if self.watchdog is not None else nullcontext()

    def evaluate(self) -> None:
        """Validation loss (all ranks), then samples and their quality (rank 0; the score is shared for early stopping)."""
        with self._unwatched():
            self._evaluate()

    def _evaluate(self) -> None:
        started = time.perf_counter()
        self.model.eval()
        val_loss, count = self._validation_loss(self.model)
        result: dict[str, Any] = {
            "val_loss": val_loss,
            "val_ppl": math.exp(min(val_loss, 50.0)),
            "val_tokens": count,
            "train_loss": self.last_train_loss,
        }
        if self.ema is not None:
            result["val_loss_ema"], _ = self._validation_loss(self.ema.module)
        if self.cfg.music.enabled and self.evals_done % self.cfg.music.every_n_evals == 0:
            quality = None
            if not self._weights_finite():
                self.emit(
                    "status", state="running", message=f"no samples at step {self.step}: the weights are not finite"
                )
            elif self.music is not None:
                report = self.music.run(self.model, self.step)
                self.emit("sample", **report)
                quality = report["quality_score"]
                self._observe("music", report["metrics"], self.anomalies.observe_samples if self.anomalies else None)
            result["quality_score"] = self.dist.broadcast_objects(quality)
        self.evals_done += 1
        self.model.train()
        if self.plateau:
            new_scale = self.plateau.observe(val_loss, self.schedule.plateau_scale)
            if new_scale is not None:
                self.schedule.plateau_scale = new_scale
                self.emit(
                    "status",
                    state="running",
                    message=f"validation loss plateaued: LR scale now {new_scale:g}",
                    lr_scale=new_scale,
                )
        result["lr_scale"] = self.schedule.plateau_scale
        self.last_eval = {"step": self.step, **result}
        self.emit(
            "eval", **result, replicas_in_sync=self.replicas_in_sync(), seconds=round(time.perf_counter() - started, 3)
        )
        if self.dist.is_main:
            self._observe("eval", result, self.anomalies.observe_eval if self.anomalies else None)
        if self.early_stop and not self.stop_reason:
            reason = self.early_stop.observe_eval(result)
            if reason:
                self._early_stop(reason)

    # ------------------------------------------------------------------ anomalies and recovery

    def _observe(self, prefix: str, values: dict[str, Any], detector, record: dict[str, Any] | None = None) -> None:
        """Rank 0: mirror values to the sinks and run the detectors; queue each prescribed action.

        Actions are not taken here: they travel with the next control
        agreement, so every rank applies them at the same step.
        """
        for problem in self.sinks.scalars(prefix, self.step, values):
            self.emit("error", message=problem, where="sinks", fatal=False)
        if detector is None:
            return
        for anomaly in detector({"step": self.step, **(record or values)}):
            self.emit("anomaly", **anomaly.to_event())
            self._queue_action(anomaly)

    def _queue_action(self, anomaly) -> None:
        if anomaly.action != "alert":
            with self.actions_lock:
                self.pending_actions.append(
                    {"id": anomaly.id, "kind": anomaly.kind, "action": anomaly.action, "step": anomaly.step}
                )

    def _recover(self, action: dict[str, Any]) -> None:
        """Apply a recovery action on every rank and report it, linked to its anomaly by id."""
        cfg = self.cfg.anomaly
        taken: dict[str, Any] = {"action": action["action"], "outcome": "done"}
        if action["action"] == "rollback":
            to_step = self._rollback()
            lower_lr = cfg.rollback_lowers_lr
            if to_step is not None:
                taken["to_step"] = to_step
                self.rolled_back = True
            elif self._weights_finite():
                taken["outcome"] = "no valid checkpoint to roll back to; lowered the LR instead"
                lower_lr = True
            else:
                lower_lr = False
                # Going on would train NaN weights, and sampling from them fails: nothing to recover.
                taken["outcome"] = "no valid checkpoint to roll back to and the weights are not finite: stopped"
                self.stop_reason = "failed"
                self.stop_message = (
                    f"the weights are not finite at step {self.step} and no checkpoint was saved yet "
                    f"to roll back to (checkpoint.interval={self.cfg.checkpoint.interval}); "
                    "lower optim.lr, or save checkpoints more often"
                )
                self.emit("status", state="stopping", message=self.stop_message)
            if lower_lr:
                self.schedule.peak_lr *= cfg.lr_factor
                taken["lr_factor"] = cfg.lr_factor
        elif action["action"] == "lower_lr":
            self.schedule.peak_lr *= cfg.lr_factor
            taken["lr_factor"] = cfg.lr_factor
        elif action["action"] == "skip_batch":
            # The detectors see a batch only after it was applied: skip the window that follows instead.
            for _ in range(self.per_rank):
                self.sampler.next()
        elif action["action"] == "pause":
            self.paused = True
            self.emit("status", state="paused", message=f"paused by the anomaly policy ({action['kind']})")
        elif action["action"] == "stop":
            self.stop_reason, self.stop_message = "stopped", f"stopped by the anomaly policy ({action['kind']})"
            self.emit("status", state="stopping", message=self.stop_message)
        self.emit(
            "anomaly",
            id=action["id"],
            kind=action["kind"],
            action=action["action"],
            action_taken=taken,
            severity="info",
            message=f"{action['action']} after {action['kind']}: {taken['outcome']}",
        )
        if self.anomalies is not None:
            self.anomalies.expect_lr_change()
            if "to_step" in taken:  # the series restart; without a rollback the cooldowns must hold
                self.anomalies.reset()

    def _weights_finite(self) -> bool:
        """Whether every rank's weights are all finite. Collective; reads a device value (a sync), so
        only at saves, evaluations and recovery, never in the step."""
        local = bool(torch.isfinite(torch.stack(torch._foreach_norm(self.params))).all())
        return all(self.dist.gather_objects(local))

    def _rollback(self) -> int | None:
        """Restore weights, optimizer and technique state from the newest valid checkpoint, on every rank.

        The data sampler keeps its position, so the window that caused the
        anomaly is skipped rather than replayed.
        """
        self.checkpoints.settle()  # a background save still in flight may be the newest good one
        # Rank 0's answer for all: what ranks do next (load, or the collective _weights_finite) must agree.
        path = self.dist.broadcast_objects(newest_valid(self.run.checkpoints)[0] if self.dist.is_main else None)
        if path is None:
            return None
        with self._unwatched():
            parts = checkpoint.load(path, map_location=self.device)
        self.model.load_state_dict(parts["model"])
        state = parts["train_state"]
        hyper = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(parts["optimizer"])
        for group, kept in zip(self.optimizer.param_groups, hyper):
            group.update(kept)
        peak_lr = self.schedule.peak_lr  # a set_lr after the checkpoint still holds
        self.load_technique_state(state["techniques"])
        self.schedule.peak_lr = peak_lr
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        self.last_checkpoint_step = self.step
        return self.step

    def replicas_in_sync(self) -> bool:
        """Whether every rank holds the same weights: a command applied at different steps would break it."""
        checksum = float(torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum())
        return len(set(self.dist.gather_objects(checksum))) == 1

    def technique_state(self) -> dict[str, Any]:
        """State of the schedule, clipper, scaler, curriculum, plateau and early stopping, for checkpoints."""
        state: dict[str, Any] = {
            "schedule": self.schedule.state_dict(),
            "clipper": self.clipper.state_dict(),
            "curriculum_stage": self.curriculum_stage,
            "micro_batch_size": self.micro,
        }
        if self.scaler:
            state["scaler"] = self.scaler.state_dict()
        if self.plateau:
            state["plateau"] = self.plateau.state_dict()
        if self.early_stop:
            state["early_stop"] = self.early_stop.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_technique_state(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state["schedule"])
        self.clipper.load_state_dict(state["clipper"])
        self.curriculum_stage = int(state["curriculum_stage"])
        self.micro = int(state["micro_batch_size"])
        for name, target in (
            ("scaler", self.scaler),
            ("plateau", self.plateau),
            ("early_stop", self.early_stop),
            ("ema", self.ema),
        ):
            if target is not None and name in state:
                target.load_state_dict(state[name])

    # ------------------------------------------------------------------ checkpoints

    def _emit_at(self, type_: str, step: int, **payload: Any) -> None:
        """Emit with an explicit step: a background save reports after training has moved on."""
        if self.events is not None:
            self.events.emit(type_, step, **payload)

    def _training_state(self) -> dict[str, Any]:
        """This rank's own state, gathered from every rank at a save: its random streams (as tensors,
        so checkpoints load with weights_only=True) and its data position."""
        return {"rng": checkpoint.rng_state(self.device), "sampler": self.sampler.state()}

    def _checkpoint_parts(self, per_rank: list[dict[str, Any]]) -> dict[str, Any]:
        """Everything a resumed run needs. State every rank shares comes from rank 0 (a new component goes
        into ``technique_state``, with ``state_dict``/``load_state_dict``); per-rank state from ``_training_state``."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_state": {
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "techniques": self.technique_state(),
                "ranks": per_rank,
                "world_size": self.dist.world_size,
                "config_digest": self.cfg.digest(),
            },
        }

    def save_checkpoint(self, reason: str) -> Path | None:
        """Collective: every rank calls it at the same step.

        Returns the checkpoint folder (committed, or being written in the
        background), or None when the save failed; a failure never touches
        earlier checkpoints, and stops the run when ``checkpoint.on_error`` says so.
        """
        if not self._weights_finite():
            # A NaN checkpoint would be what the next rollback or resume restores.
            self.emit(
                "error",
                message=f"checkpoint not saved at step {self.step} ({reason}): the weights are not finite; "
                "the earlier checkpoints are kept",
                where="checkpoint",
                fatal=False,
            )
            return None
        with self._unwatched():
            return self._save_checkpoint(reason)

    def _report_written_save(self) -> None:
        """Announce a background save once written; a failure stops the run when checkpoint.on_error says so."""
        outcome = self.checkpoints.settle_if_written()
        if outcome is not None and not outcome["ok"] and not self.stop_reason:
            self._stop_if_saves_must_not_fail(outcome["step"], outcome["error"])

    def _stop_if_saves_must_not_fail(self, step: int, error: str) -> None:
        if self.cfg.checkpoint.on_error == "stop":
            self.stop_reason, self.stop_message = "failed", f"checkpoint not saved at step {step}: {error}"
            self.emit("status", state="stopping", message=f"{self.stop_message} (checkpoint.on_error=stop)")

    def _save_checkpoint(self, reason: str) -> Path | None:
        ck = self.cfg.checkpoint
        metrics = dict(self.last_eval) if self.last_eval.get("step") == self.step else {}
        if ck.keep_best and ck.best_metric == "val_loss" and not metrics:
            # Best-of ranking compares values measured at each checkpoint's own step. Not evaluate():
            # an extra eval event would also feed plateau and early-stopping patience.
            self.model.eval()
            metrics = {"step": self.step, "val_loss": self._validation_loss(self.model)[0]}
            self.model.train()
        per_rank = self.dist.gather_objects(self._training_state())
        meta = {
            "reason": reason,
            "metrics": metrics,
            "config_digest": self.cfg.digest(),
            "config": self.cfg.model_dump(mode="json"),
            "vocab_size": self.model.vocab_size,
            "world_size": self.dist.world_size,
            "versions": checkpoint.versions(),
        }
        outcome = self.checkpoints.save(
            self.step,
            reason,
            lambda: self._checkpoint_parts(per_rank),
            meta=meta,
            metric=checkpoint.metric_of(metrics, ck.best_metric),
            files={"tokenizer.json": self.tokenizer_json},
            wait=reason in ("command", "final"),
        )
        failure = self.checkpoints.last_failure  # this save's (inline) or the previous one's (async)
        if failure:
            self._stop_if_saves_must_not_fail(outcome["step"], failure)
        saved = self.checkpoints.in_flight is not None or (
            outcome is not None and outcome["ok"] and outcome["step"] == self.step
        )
        if saved or ck.on_error == "stop":
            # continue: a failed save leaves last_checkpoint_step behind, so the final save tries again.
            self.last_checkpoint_step = self.step
        return self.run.checkpoints / checkpoint_dir_name(self.step) if saved else None

    def _resume(self, request: checkpoint.ResumeRequest | bool = True) -> dict[str, Any] | None:
        """Restore what a checkpoint holds. Collective; returns what run_start records as ``resumed_from``.

        The source is this run's newest valid full checkpoint (invalid newer
        ones are reported and passed over), else ``request.fork_from``: a fork,
        whose config changes are recorded, or a weights-only checkpoint, which
        gives the weights to a run that starts at step 0. After torchrun
        restarted the workers (``request.attempt`` > 0) a ``restart`` event
        says how many steps were lost.
        """
        request = request if isinstance(request, checkpoint.ResumeRequest) else checkpoint.ResumeRequest()
        reached = self._last_step_reached() if request.attempt else 0
        path, mode = self.checkpoints.resume_point(request.fork_from)
        info = None
        if path is None:
            self.emit("status", state="starting", message="no valid checkpoint to resume from; starting fresh")
        else:
            parts = checkpoint.load(path, map_location=self.device)
            saved = parts["manifest"]
            checkpoint.check_compatible(parts["model"], self.model.state_dict(), str(path))
            self.model.load_state_dict(parts["model"])
            if mode != "weights":
                self._restore_training_state(parts["optimizer"], parts["train_state"], saved)
            info = {
                "step": self.step,
                "path": str(path),
                "mode": mode,
                "config_changes": checkpoint.config_changes(saved.get("config"), self.cfg.model_dump(mode="json")),
            }
            what = {"resume": "resumed from", "fork": "forked from", "weights": "starting from the weights of"}[mode]
            self.emit("status", state="starting", message=f"{what} {path} at step {self.step}")
        self.checkpoints.adopt(path if mode == "resume" else None)
        if request.attempt:
            self.emit(
                "restart",
                attempt=request.attempt,
                resumed_from=self.step,
                steps_lost=max(0, reached - self.step),
                path=str(path) if path else None,
                max_restarts=int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0)),
            )
        return info

    def _restore_training_state(self, optimizer_state: dict, state: dict[str, Any], saved: dict[str, Any]) -> None:
        hyper = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(optimizer_state)
        for group, configured in zip(self.optimizer.param_groups, hyper):
            group.update(configured)  # betas and weight decay come from the config: a fork may change them
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        self.load_technique_state(state["techniques"])
        if (saved.get("config") or {}).get("optim", {}).get("lr") != self.cfg.optim.lr:
            self.schedule.peak_lr = self.cfg.optim.lr  # a changed config LR wins over the saved (maybe set_lr) peak
        if self.per_rank % self.micro:
            self.micro, self.micro_reason = self._choose_micro_batch()  # a fork changed the batch size
        if state["world_size"] == self.dist.world_size:
            mine = state["ranks"][self.dist.rank]
            checkpoint.set_rng_state(mine["rng"], self.device)
            self.sampler = self._make_sampler(self.curriculum_stage, **mine["sampler"])
        else:
            self._continue_on_new_world_size(state["ranks"], state["world_size"])
        self.last_checkpoint_step = self.step
        self.last_eval = dict(saved.get("metrics") or {})

    def _continue_on_new_world_size(self, ranks: list[dict[str, Any]], saved_world: int) -> None:
        """Resume on a different number of ranks: same weights, optimizer, schedule and global batch.

        Ranks draw in lockstep, so together they consumed the first
        ``position * saved_world`` windows of the epoch's permutation; the new
        ranks go on from there. Dropout streams cannot carry over, so they are
        reseeded: correct training, not bit-identical to the old world size.
        """
        epoch, position = ranks[0]["sampler"]["epoch"], ranks[0]["sampler"]["position"]
        self.sampler = self._make_sampler(self.curriculum_stage, epoch, position * saved_world // self.dist.world_size)
        torch.manual_seed(self.cfg.run.seed + self.dist.rank + 1_000_003 * self.step)
        self.emit(
            "status",
            state="starting",
            message=f"world size changed from {saved_world} to {self.dist.world_size}: the data order goes on "
            f"from window {position * saved_world} of epoch {epoch}; dropout streams are reseeded, so "
            f"results are not bit-identical to a {saved_world}-rank continuation",
        )

    def _last_step_reached(self) -> int:
        """The furthest step the failed attempt recorded (its events after the last run_start); a lower
        bound when rank 0 itself died between two events."""
        if not self.dist.is_main:
            return 0
        events, _ = read_events(self.run.events)
        starts = [i for i, e in enumerate(events) if e["type"] == "run_start"]
        return max((int(e["step"]) for e in events[starts[-1] if starts else 0 :]), default=0)


_stop_requested = False


def _request_stop(_signum, _frame) -> None:
    """SIGTERM/SIGINT ask for a graceful stop, agreed with the other ranks at the next step."""
    global _stop_requested
    _stop_requested = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engine.training.train")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from this run's newest valid checkpoint")
    parser.add_argument(
        "--from-checkpoint", type=Path, help="start from this checkpoint (a fork) unless the run has its own"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    run = RunDir(args.run_dir)
    is_main = int(os.environ.get("RANK", 0)) == 0
    # torchrun sets these in every worker: a count above 0 means it restarted the group after a failure.
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))
    restarts_left = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0)) - attempt
    resume = (
        checkpoint.ResumeRequest(args.from_checkpoint, attempt)
        if args.resume or args.from_checkpoint or attempt
        else None
    )
    trainer = None
    try:
        cfg = config_mod.load(run.config)
        dist = distributed.init(cfg.run.device, cfg.run.threads_per_rank)
        # Seeded like torch's stream, so checkpoints carry reproducible numpy and Python streams too.
        np.random.seed(cfg.run.seed + dist.rank)
        random.seed(cfg.run.seed + dist.rank)
        trainer = Trainer(run, cfg, dist, resume)
        reason = trainer.train()
        trainer.checkpoints.settle()  # a background save still in flight: run_end follows its outcome
        message = trainer.stop_message
        if trainer.checkpoints.last_failure:
            reason, message = "failed", f"the last checkpoint was not saved: {trainer.checkpoints.last_failure}"
        trainer.emit("run_end", reason=reason, message=message or f"{reason} at step {trainer.step}")
        return 0
    except Exception as exc:
        if is_main:
            with EventWriter(run.events) as events:
                step = trainer.step if trainer else 0
                if restarts_left > 0:
                    # Not the end: torchrun restarts the group, which resumes from the newest valid checkpoint.
                    events.emit(
                        "error",
                        step,
                        message=f"{type(exc).__name__}: {exc}; torchrun restarts the workers "
                        f"(restart {attempt + 1} of {attempt + restarts_left})",
                        where="training",
                        fatal=False,
                        traceback=traceback.format_exc(),
                    )
                else:
                    events.emit(
                        "error",
                        step,
                        message=f"{type(exc).__name__}: {exc}",
                        where="training",
                        fatal=True,
                        traceback=traceback.format_exc(),
                    )
                    events.emit("run_end", step, reason="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
