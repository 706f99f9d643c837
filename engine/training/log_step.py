"""The log step: the interval's device values reduced over ranks and read back once, as a ``metrics`` event."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from engine.training.interval import Interval

if TYPE_CHECKING:
    from engine.training.trainer import Trainer


def report_interval(trainer: Trainer, interval: Interval) -> tuple[dict[str, Any], list[dict[str, Any] | None]]:
    """Emit the interval's ``metrics`` and count its tokens; returns the metrics and every rank's latest
    system sample. Collective."""
    t = trainer
    steps = interval.steps
    elapsed = time.perf_counter() - interval.start
    totals_tensor = interval.totals()
    counts = torch.tensor([float(interval.tokens)], device=t.device)
    t.dist.all_reduce_sum(totals_tensor)
    t.dist.all_reduce_sum(counts)
    totals: list[float] = totals_tensor.tolist()
    global_tokens = counts.item()
    world = t.dist.world_size
    step_time = elapsed / max(steps, 1)
    # After totals.tolist(): the interval's forward passes are complete.
    work_time = (interval.data_wait + t.work_clock.collect()) / max(steps, 1)
    per_rank = t.dist.gather_objects((work_time, t.monitors.system.latest()))
    t.tokens_seen += int(global_tokens)
    # The norms are means over the steps the fp16 loss scaler applied (all of them without a scaler).
    applied = world * steps - totals[4]

    def per_applied(total: float) -> float | None:
        return total / applied if applied > 0 else None  # every step skipped: no norm, not a NaN one

    metrics = dict(
        loss=totals[0] / max(global_tokens, 1),
        lr=interval.lr,
        peak_lr=t.schedule.peak_lr,
        lr_scale=t.schedule.plateau_scale,
        grad_norm=per_applied(totals[1]),
        grad_norm_clipped=per_applied(totals[2]),
        clip_frac=per_applied(totals[3]),
        skipped_steps=round(totals[4] / world),
        samples_per_s=t.cfg.batch.global_batch_size * steps / elapsed,
        tokens_per_s=global_tokens / elapsed,
        step_time=step_time,
        data_wait_frac=min(1.0, interval.data_wait / elapsed),
        rank_work_times=[work for work, _ in per_rank],
        tokens_seen=t.tokens_seen,
        epoch=t.batches.sampler.epoch,
        micro_batch_size=t.micro.size,
        seq_len=interval.seq_len,
        curriculum_stage=interval.stage,
    )
    t.emit("metrics", **metrics)
    return metrics, [sample for _, sample in per_rank]
