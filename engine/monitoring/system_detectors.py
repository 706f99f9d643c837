"""Detectors of speed and memory: throughput, data waits, straggling ranks, memory growth and GPU memory."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from engine.monitoring.detector import Detector, last_values, number_of, per_rank


class ThroughputDrop(Detector):
    """Tokens/s (else samples/s) below ``throughput_drop_frac`` of the median of the last
    ``throughput_window`` log steps, for ``throughput_patience`` consecutive log steps. Slow
    values enter the window too, so a lasting new rate becomes the norm after about half a
    window instead of alerting forever."""

    kind = "throughput_drop"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.window: deque[float] = deque(maxlen=cfg.throughput_window)
        self.slow: list[float] = []

    def update(self, step, record):
        key = "tokens_per_s" if number_of(record, "tokens_per_s") is not None else "samples_per_s"
        rate = number_of(record, key)
        if rate is None or not math.isfinite(rate):
            return None
        found = None
        if len(self.window) >= self.cfg.throughput_min_history:
            median = float(np.median(self.window))
            if rate < self.cfg.throughput_drop_frac * median:
                self.slow.append(rate)
                if len(self.slow) >= self.cfg.throughput_patience:
                    found = self.found(
                        step,
                        "warning",
                        f"{key} {rate:.4g} is {rate / median:.0%} of the recent median {median:.4g} "
                        f"for {len(self.slow)} log steps",
                        metric=key,
                        value=rate,
                        median=median,
                        ratio=rate / median,
                        window=len(self.window),
                        recent=last_values(self.window),
                    )
            else:
                self.slow = []
        self.window.append(rate)
        return found


class DataloaderBottleneck(Detector):
    """``data_wait_frac`` (share of step time spent waiting for the next batch) above
    ``data_wait_frac`` for ``data_wait_patience`` consecutive log steps. Severity info: the
    run is slower than it could be, nothing is wrong with what it learns."""

    kind = "dataloader_bottleneck"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.high: list[float] = []

    def update(self, step, record):
        frac = number_of(record, "data_wait_frac")
        if frac is None or not math.isfinite(frac):
            return None
        self.high = self.high + [frac] if frac > self.cfg.data_wait_frac else []
        if len(self.high) >= self.cfg.data_wait_patience:
            return self.found(
                step,
                "info",
                f"steps spent {frac:.0%} of their time waiting for data for {len(self.high)} log steps",
                data_wait_frac=frac,
                limit=self.cfg.data_wait_frac,
                recent=last_values(self.high),
            )
        return None


class StragglerRank(Detector):
    """The slowest rank's own work time per step (its data and forward passes, which wait for
    no other rank: engine.training.interval.WorkClock) exceeds the median of the other ranks' by
    ``straggler_ratio``, with the same rank slowest for ``straggler_patience`` consecutive log
    steps spanning at least ``straggler_min_steps`` steps (the median of the others, not of all,
    so that two ranks compare one with the other).
    Not wall time per step: collectives make every rank wait for the slowest, so it is equal."""

    kind = "straggler_rank"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.rank: int | None = None
        self.count = 0
        self.since_step = 0

    def update(self, step, record):
        times = record.get("rank_work_times")
        if not isinstance(times, (list, tuple)) or len(times) < 2:
            return None
        t = np.asarray(times, dtype=np.float64)
        if not np.isfinite(t).all() or (t <= 0).any():
            return None
        slowest = int(np.argmax(t))
        others = float(np.median(np.delete(t, slowest)))
        ratio = float(t[slowest] / others)
        if ratio > self.cfg.straggler_ratio:
            if slowest != self.rank:
                self.count, self.since_step = 0, step
            self.count += 1
            self.rank = slowest
        else:
            self.count, self.rank = 0, None
        if self.count >= self.cfg.straggler_patience and step - self.since_step >= self.cfg.straggler_min_steps:
            return self.found(
                step,
                "warning",
                f"rank {slowest} is {ratio:.2f}x slower than the other ranks since step "
                f"{self.since_step} ({self.count} log steps)",
                rank=slowest,
                ratio=ratio,
                rank_work_times=[float(x) for x in t],
                log_steps=self.count,
                since_step=self.since_step,
            )
        return None


class MemoryGrowth(Detector):
    """A leak trend: a least-squares line of memory against step over the last ``memory_window``
    system samples (each series separately: RSS and allocated GPU memory per rank) whose fitted
    growth over the window exceeds both ``memory_min_growth_mb`` and
    ``memory_min_growth_frac`` of the fitted start, with R^2 >= ``memory_min_r2`` (a leak
    climbs steadily; noise and sawtooth allocators do not). Samples before
    ``memory_warmup_steps`` are ignored."""

    kind = "memory_growth"
    source = "system"
    SERIES = ("rss_mb", "gpu_mem_alloc_mb")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.series: dict[str, deque[tuple[int, float]]] = {}

    def update(self, step, record):
        if step < self.cfg.memory_warmup_steps:
            return None
        worst = None
        for key in self.SERIES:
            for rank, value in per_rank(record.get(key)).items():
                if not math.isfinite(value):
                    continue
                name = f"{key}[{rank}]"
                window = self.series.setdefault(name, deque(maxlen=self.cfg.memory_window))
                window.append((step, value))
                fit = self._fit(window)
                if fit and (worst is None or fit["growth_mb"] > worst["growth_mb"]):
                    worst = {"series": name, **fit}
        if worst is None:
            return None
        return self.found(
            step,
            "warning",
            f"{worst['series']} grew {worst['growth_mb']:.0f} MB over "
            f"{worst['window_steps'][1] - worst['window_steps'][0]} steps "
            f"({worst['slope_mb_per_1k_steps']:.0f} MB per 1000 steps, R^2 {worst['r2']:.2f})",
            **worst,
        )

    def _fit(self, window: deque[tuple[int, float]]) -> dict[str, Any] | None:
        if len(window) < self.cfg.memory_window:
            return None
        x = np.array([s for s, _ in window], dtype=np.float64)
        y = np.array([v for _, v in window], dtype=np.float64)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            return None
        slope, intercept = np.polyfit(x, y, 1)
        residual = y - (slope * x + intercept)
        r2 = 1.0 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
        growth = float(slope * (x[-1] - x[0]))
        start = float(slope * x[0] + intercept)
        if (
            growth > self.cfg.memory_min_growth_mb
            and growth > self.cfg.memory_min_growth_frac * abs(start)
            and r2 >= self.cfg.memory_min_r2
        ):
            return {
                "growth_mb": growth,
                "start_mb": start,
                "slope_mb_per_1k_steps": float(slope * 1000),
                "r2": r2,
                "window_steps": [int(x[0]), int(x[-1])],
                "recent": last_values(y),
            }
        return None


class GpuMemoryNearLimit(Detector):
    """Per rank, the highest of the GPU memory figures the record carries (allocated, reserved,
    peak, NVML used) as a fraction of the total: warning above ``gpu_mem_warn_frac``, critical
    above ``gpu_mem_critical_frac``. The highest, because the next longer batch needs what the
    peak needed."""

    kind = "gpu_memory_near_limit"
    source = "system"
    USED = ("gpu_mem_alloc_mb", "gpu_mem_reserved_mb", "gpu_mem_peak_mb", "gpu_mem_used_mb")

    def update(self, step, record):
        totals = per_rank(record.get("gpu_mem_total_mb"))
        worst = None
        for rank, total in totals.items():
            if not (math.isfinite(total) and total > 0):
                continue
            figures = {key: v for key in self.USED if math.isfinite(v := per_rank(record.get(key)).get(rank, math.nan))}
            if not figures:
                continue
            frac = max(figures.values()) / total
            if worst is None or frac > worst["fraction"]:
                worst = {"rank": rank, "fraction": frac, "total_mb": total, **figures}
        if worst is None or worst["fraction"] <= self.cfg.gpu_mem_warn_frac:
            return None
        severity = "critical" if worst["fraction"] > self.cfg.gpu_mem_critical_frac else "warning"
        return self.found(
            step,
            severity,
            f"GPU memory of rank {worst['rank']} at {worst['fraction']:.0%} of {worst['total_mb']:.0f} MB",
            **worst,
        )
