"""The training process, one per rank, started by torchrun through ``engine.launch``.

    python -m torch.distributed.run --nproc-per-node N -m engine.train --run-dir DIR [--resume]

Rank 0 alone writes events and checkpoints. The hot loop reads nothing back
from the device: loss sums and grad norms stay on it and are read every
``log_interval`` steps; LR and token counts are host numbers.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import signal
import socket
import sys
import time
import traceback
from contextlib import nullcontext
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from engine import checkpoint, config as config_mod, data, distributed, precision
from engine.config import Config
from engine.control import CommandError, ControlInbox, validate_command
from engine.manifest import CheckpointInvalid, newest_valid
from engine.model import MusicTransformer, param_groups
from engine.protocol import EventWriter, read_events
from engine.rundir import RunDir

PAUSE_POLL_SECONDS = 0.2


class Schedule:
    """LR at a step: ``peak_lr * shape(step)``.

    ``set_lr`` replaces the peak: the schedule keeps its shape (warmup and
    decay continue from the current step) scaled to the new peak. The peak is
    saved in checkpoints, so a resumed run keeps the user's change.
    """

    def __init__(self, cfg, total_steps: int):
        self.cfg, self.total = cfg, total_steps
        self.peak_lr = cfg.lr

    def shape(self, step: int) -> float:
        cfg = self.cfg
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, self.total - cfg.warmup_steps))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay

    def lr(self, step: int) -> float:
        return self.peak_lr * self.shape(step)


class Trainer:
    def __init__(self, run: RunDir, cfg: Config, dist: distributed.Dist, resume: bool):
        self.run, self.cfg, self.dist = run, cfg, dist
        self.device = dist.device
        self.events = EventWriter(run.events) if dist.is_main else None
        self.stop_reason: str | None = None
        self.paused = False
        self.step = 0
        self.tokens_seen = 0
        self.last_eval: dict[str, float] = {}
        self.last_checkpoint_step = -1

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
        self.sampler = data.RankSampler(len(self.train_set), dist.rank, dist.world_size, cfg.run.seed)
        self.unigram_entropy = data.unigram_entropy(corpus, train_ids)

        self.model = MusicTransformer(cfg.model, corpus.meta["vocab_size"], cfg.data.seq_len).to(self.device)
        self.ddp = DDP(self.model) if dist.world_size > 1 else self.model
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                           betas=(cfg.optim.beta1, cfg.optim.beta2), fused=fused)
        self.schedule = Schedule(cfg.optim, cfg.run.max_steps)
        per_rank = cfg.batch.global_batch_size // dist.world_size
        self.micro = min(cfg.batch.micro_batch_size, per_rank)
        self.accum = per_rank // self.micro
        self.resumed_from = self._resume() if resume else None
        answered = {e.get("id") for e in read_events(run.events)[0] if e["type"] == "control_ack"} if dist.is_main else set()
        self.inbox = ControlInbox(run.control, answered) if dist.is_main else None

    # ------------------------------------------------------------------ events

    def emit(self, type_: str, **payload: Any) -> None:
        if self.events is not None:
            self.events.emit(type_, self.step, **payload)

    def _environment(self) -> dict[str, Any]:
        devices = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                   if self.device.type == "cuda" else [platform.processor() or platform.machine()])
        return {
            "world_size": self.dist.world_size, "backend": self.dist.backend, "device": str(self.device.type),
            "devices": devices, "hostname": socket.gethostname(), "python": platform.python_version(),
            "torch": torch.__version__, "miditok": version("miditok"), "platform": platform.platform(),
            "precision": self.precision, "precision_reason": self.precision_reason,
            "threads_per_rank": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        }

    # ------------------------------------------------------------------ control

    def poll_control(self) -> None:
        """Read the inbox on rank 0, agree with all ranks, apply at this same step everywhere."""
        records = self.inbox.poll() if self.inbox is not None else []
        has_news, stop = self.dist.agree(bool(records), _stop_requested)
        if stop and not self.stop_reason:
            self.stop_reason = "stopped"
            self.emit("status", state="stopping", message="stop requested by signal")
        if has_news:
            for record in self.dist.broadcast_objects(records):
                self._apply(record)

    def _ack(self, record: dict, outcome: str, reason: str = "", **extra: Any) -> None:
        self.emit("control_ack", id=record.get("id"), cmd=record.get("cmd"), outcome=outcome, reason=reason, **extra)

    def _apply(self, record: dict) -> None:
        if "malformed" in record:
            self._ack(record, "refused", f"not a JSON object: {record['malformed']!r}")
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
            self.stop_reason = "stopped"
            self._ack(record, "done")
            self.emit("status", state="stopping", message="stop requested by command")
        elif cmd == "save_checkpoint":
            path = self.save_checkpoint("command")
            self._ack(record, "done", path=str(path) if path else None)
        elif cmd == "set_lr":
            old = self.schedule.peak_lr
            self.schedule.peak_lr = args["lr"]
            self._ack(record, "done", old_peak_lr=old, new_peak_lr=args["lr"], lr_now=self.schedule.lr(self.step))

    def wait_while_paused(self) -> None:
        while self.paused and not self.stop_reason:
            time.sleep(PAUSE_POLL_SECONDS)
            self.poll_control()

    # ------------------------------------------------------------------ batches

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        xs, ys = [], []
        for _ in range(self.micro):
            index, rng = self.sampler.next()
            x, y = self.train_set.example(index, rng)
            xs.append(x)
            ys.append(y)
        x, y = np.stack(xs), np.stack(ys)
        n_tokens = int((y != self.pad_id).sum())
        non_blocking = self.device.type == "cuda"
        return (torch.from_numpy(x).to(self.device, non_blocking=non_blocking),
                torch.from_numpy(y).to(self.device, non_blocking=non_blocking), n_tokens)

    def loss_sum(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with precision.autocast(self.precision, self.device):
            logits = model(x)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1),
                               ignore_index=self.pad_id, reduction="sum")

    # ------------------------------------------------------------------ loop

    def train(self) -> str:
        cfg = self.cfg
        self.emit("run_start", config=cfg.model_dump(mode="json"), env=self._environment(),
                  total_steps=cfg.run.max_steps, resumed_from=self.resumed_from,
                  model_parameters=self.model.num_parameters(), unigram_entropy=self.unigram_entropy,
                  micro_batch_size=self.micro, grad_accum=self.accum)
        self.emit("status", state="running", message="training")
        log_every = cfg.run.log_interval
        dev = self.device
        loss_acc = torch.zeros((), device=dev)
        norm_acc = torch.zeros((), device=dev)
        clipped_acc = torch.zeros((), device=dev)
        tokens_acc = steps_acc = 0
        data_wait = 0.0
        interval_start = time.perf_counter()
        params = [p for p in self.model.parameters() if p.requires_grad]
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
        self.model.train()

        while self.step < cfg.run.max_steps:
            self.poll_control()
            if self.paused:
                self.wait_while_paused()
                # Paused time is not training time: restart the interval.
                interval_start = time.perf_counter()
                data_wait = 0.0
                loss_acc.zero_(); norm_acc.zero_(); clipped_acc.zero_()
                tokens_acc = steps_acc = 0
            if self.stop_reason:
                break
            lr = self.schedule.lr(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            batches = []
            t0 = time.perf_counter()
            for _ in range(self.accum):
                batches.append(self.next_batch())
            data_wait += time.perf_counter() - t0
            step_tokens = sum(b[2] for b in batches)
            for i, (x, y, _) in enumerate(batches):
                sync = nullcontext() if i == self.accum - 1 or self.ddp is self.model else self.ddp.no_sync()
                with sync:
                    loss = self.loss_sum(self.ddp, x, y)
                    (loss / max(step_tokens, 1)).backward()
                loss_acc += loss.detach()
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
            norm_acc += norm
            clipped_acc += torch.clamp(norm, max=clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            steps_acc += 1
            tokens_acc += step_tokens

            if self.step % log_every == 0 or self.step == cfg.run.max_steps:
                elapsed = time.perf_counter() - interval_start
                self._log_metrics(loss_acc, norm_acc, clipped_acc, tokens_acc, steps_acc, elapsed, data_wait, lr)
                loss_acc.zero_(); norm_acc.zero_(); clipped_acc.zero_()
                tokens_acc = steps_acc = 0
                data_wait = 0.0
                interval_start = time.perf_counter()
            if self.step % cfg.run.eval_interval == 0:
                self.evaluate()
            if cfg.checkpoint.interval and self.step % cfg.checkpoint.interval == 0:
                self.save_checkpoint("interval")

        reason = self.stop_reason or "finished"
        if self.last_eval.get("step") != self.step:
            self.evaluate()
        if self.last_checkpoint_step != self.step:
            self.save_checkpoint("final")
        return reason

    def _log_metrics(self, loss_acc, norm_acc, clipped_acc, tokens, steps, elapsed, data_wait, lr) -> None:
        totals = torch.stack([loss_acc, norm_acc, clipped_acc]).float()
        counts = torch.tensor([float(tokens)], device=self.device)
        self.dist.all_reduce_sum(totals)
        self.dist.all_reduce_sum(counts)
        totals, global_tokens = totals.tolist(), counts.item()
        world = self.dist.world_size
        step_time = elapsed / max(steps, 1)
        rank_times = self.dist.gather_objects(step_time)
        self.tokens_seen += int(global_tokens)
        self.emit(
            "metrics",
            loss=totals[0] / max(global_tokens, 1), lr=lr,
            grad_norm=totals[1] / world / steps, grad_norm_clipped=totals[2] / world / steps,
            samples_per_s=self.cfg.batch.global_batch_size * steps / elapsed,
            tokens_per_s=global_tokens / elapsed, step_time=step_time,
            data_wait_frac=min(1.0, data_wait / elapsed), rank_step_times=rank_times,
            tokens_seen=self.tokens_seen, epoch=self.sampler.epoch, peak_lr=self.schedule.peak_lr,
        )

    @torch.no_grad()
    def evaluate(self) -> None:
        self.model.eval()
        started = time.perf_counter()
        total = torch.zeros(2, device=self.device)
        mine = list(range(self.dist.rank, len(self.val_set), self.dist.world_size))
        limit = self.cfg.run.eval_max_batches
        batches = [mine[i: i + self.micro] for i in range(0, len(mine), self.micro)]
        for chunk in batches[:limit] if limit else batches:
            pairs = [self.val_set.example(i) for i in chunk]
            x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(self.device)
            y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(self.device)
            total[0] += self.loss_sum(self.model, x, y)
            total[1] += (y != self.pad_id).sum()
        self.dist.all_reduce_sum(total)
        loss_sum, count = total.tolist()
        val_loss = loss_sum / max(count, 1)
        self.model.train()
        self.last_eval = {"step": self.step, "val_loss": val_loss}
        self.emit("eval", val_loss=val_loss, val_ppl=math.exp(min(val_loss, 50.0)), val_tokens=int(count),
                  replicas_in_sync=self.replicas_in_sync(), seconds=round(time.perf_counter() - started, 3))

    def replicas_in_sync(self) -> bool:
        """Whether every rank holds the same weights: a command applied at different steps would break it."""
        checksum = float(torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum())
        return len(set(self.dist.gather_objects(checksum))) == 1

    # ------------------------------------------------------------------ checkpoints

    def _training_state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"rng": rng, "sampler": self.sampler.state()}

    def save_checkpoint(self, reason: str) -> Path | None:
        """Collective: every rank calls it at the same step (it gathers each rank's RNG state)."""
        per_rank = self.dist.gather_objects(self._training_state())
        path = None
        if self.dist.is_main:
            parts = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "train_state": {
                    "step": self.step, "tokens_seen": self.tokens_seen, "peak_lr": self.schedule.peak_lr,
                    "ranks": per_rank, "world_size": self.dist.world_size,
                },
            }
            meta = {"reason": reason, "metrics": self.last_eval, "config_digest": self.cfg.digest(),
                    "config": self.cfg.model_dump(mode="json"), "vocab_size": self.model.vocab_size,
                    "world_size": self.dist.world_size, "torch": torch.__version__}
            started = time.perf_counter()
            path = checkpoint.save(self.run.checkpoints, self.step, parts, meta=meta,
                                   files={"tokenizer.json": self.tokenizer_json})
            size = sum(f.stat().st_size for f in path.iterdir())
            self.emit("checkpoint", path=str(path), kind="full", reason=reason, size_bytes=size,
                      seconds=round(time.perf_counter() - started, 3))
        self.last_checkpoint_step = self.step
        return path

    def _resume(self) -> int | None:
        path, rejected = newest_valid(self.run.checkpoints)
        for bad, why in rejected:
            self.emit("error", message=f"skipped invalid checkpoint: {why}", where="resume", fatal=False, path=str(bad))
        if path is None:
            self.emit("status", state="starting", message="no valid checkpoint to resume from; starting fresh")
            return None
        parts = checkpoint.load(path, map_location=self.device)
        state = parts["train_state"]
        if state["world_size"] != self.dist.world_size:
            raise CheckpointInvalid(f"{path}: saved with {state['world_size']} ranks, resuming with {self.dist.world_size}; "
                                    f"the data order and RNG streams are per rank, so use --nproc {state['world_size']}")
        self.model.load_state_dict(parts["model"])
        self.optimizer.load_state_dict(parts["optimizer"])
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        self.schedule.peak_lr = state["peak_lr"]
        mine = state["ranks"][self.dist.rank]
        torch.set_rng_state(mine["rng"]["torch"])
        if "cuda" in mine["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["rng"]["cuda"], self.device)
        self.sampler = data.RankSampler(len(self.train_set), self.dist.rank, self.dist.world_size, self.cfg.run.seed,
                                        **mine["sampler"])
        self.last_checkpoint_step = self.step
        self.emit("status", state="starting", message=f"resumed from {path.name}")
        return self.step


_stop_requested = False


def _request_stop(_signum, _frame) -> None:
    """SIGTERM/SIGINT ask for a graceful stop, agreed with the other ranks at the next step."""
    global _stop_requested
    _stop_requested = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engine.train")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    run = RunDir(args.run_dir)
    is_main = int(os.environ.get("RANK", 0)) == 0
    trainer = None
    try:
        cfg = config_mod.load(run.config)
        dist = distributed.init(cfg.run.device, cfg.run.threads_per_rank)
        trainer = Trainer(run, cfg, dist, args.resume)
        reason = trainer.train()
        trainer.emit("run_end", reason=reason, message=f"{reason} at step {trainer.step}")
        return 0
    except Exception as exc:
        if is_main:
            with EventWriter(run.events) as events:
                step = trainer.step if trainer else 0
                events.emit("error", step, message=f"{type(exc).__name__}: {exc}", where="training", fatal=True,
                            traceback=traceback.format_exc())
                events.emit("run_end", step, reason="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
