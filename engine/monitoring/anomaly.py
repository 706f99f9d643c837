"""Anomaly detection on the values the engine already has at log steps, with a recovery policy.

Plain Python and numpy: no torch, no Qt, no threads of its own. Detectors read
the dictionaries the engine writes as events anyway, so they add no
host-device synchronisation; each keeps a small window of past values.

How the engine uses it (rank 0; every action it takes must still be agreed on
all ranks at the same step)::

    monitor = AnomalyMonitor(config.anomaly)
    monitor.set_music_reference(reference)      # engine.music.metrics.reference_stats(...)
    watchdog = monitor.make_watchdog()          # None when stalled_training is disabled
    watchdog.start()
    ...
    watchdog.beat(step)                         # after every optimizer step (cheap)
    for a in monitor.observe_metrics(metrics_payload):      # at each log step
        writer.emit("anomaly", a.step, **a.to_event()); act(a.action, a)
    monitor.observe_eval(eval_payload)          # after each validation pass
    monitor.observe_system(system_payload)      # from the system sampler
    monitor.observe_samples(sample_metrics)     # after each sampling round
    monitor.expect_lr_change()                  # when set_lr / lower_lr / resume changes the LR
    monitor.reset()                             # after a rollback: the series restart
    # a monitor thread: a = watchdog.check(); if a: emit it
    watchdog.suspend() / watchdog.beat(step)    # around evaluation, sampling, checkpoints, pauses

Input records (missing keys are simply not checked; each needs ``step``):

* metrics: ``loss``, ``lr``, ``grad_norm`` (global norm before clipping),
  ``tokens_per_s`` (else ``samples_per_s``), ``data_wait_frac`` (0..1),
  ``rank_work_times`` (each rank's own seconds per step, one per rank). Others (``step_time``,
  ``grad_norm_clipped``, ``tokens_seen``) are ignored.
* eval: ``val_loss`` and ``train_loss``; without ``train_loss`` the last
  logged training loss stands in (noisier: send the averaged one).
* system: ``rss_mb`` and GPU memory ``gpu_mem_alloc_mb``,
  ``gpu_mem_reserved_mb``, ``gpu_mem_peak_mb``, ``gpu_mem_used_mb`` (NVML) and
  ``gpu_mem_total_mb``; each a number, a list indexed by rank or a dict
  ``{rank: value}``.
* samples: the mean over the round's samples of ``pitch_class_entropy`` and
  ``bar_repetition_rate`` (engine.music.metrics).

Each detection is an :class:`Anomaly`; ``to_event()`` is the payload of an
``anomaly`` event. Its ``action`` is what the :class:`Policy` prescribes; the
engine reports what it did in a later event naming ``anomaly.id``.
Debounce: after a kind fires it is quiet for ``cooldown_steps`` unless it
comes back more severe (or the step goes backwards, as after a rollback).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from engine.contract.monitor_config import ACTIONS, DEFAULT_ACTIONS, KINDS, AnomalySection

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

SUGGESTIONS: dict[str, str] = {
    "nonfinite_loss": "Roll back to the last good checkpoint and lower the LR; if it recurs, check the data window it happened on, and under fp16 switch to bf16 or fp32.",
    "nonfinite_grad": "Roll back and lower the LR or tighten gradient clipping; under fp16 check the loss scaler.",
    "loss_spike": "Usually harmless if the loss comes back down; frequent spikes call for a lower LR, more warmup or tighter clipping (optim.grad_clip).",
    "loss_divergence": "Roll back to the last good checkpoint and lower the LR; consider longer warmup or smaller batches per LR.",
    "grad_explosion": "Lower the LR or tighten optim.grad_clip; check the batch that caused it.",
    "vanishing_gradients": "Check that the LR is not zero, the loss is connected to the weights and no layer saturates; consider a higher LR.",
    "lr_anomaly": "Check the schedule and the last set_lr command; set the LR explicitly with set_lr.",
    "throughput_drop": "Look for another process on the machine, thermal throttling, swapping or a slower data source.",
    "stalled_training": "A step has not finished in time: look at engine.log for a hang (deadlocked collective, stuck data worker, I/O); stop and resume if it does not recover.",
    "memory_growth": "Memory grows steadily: look for tensors kept across steps (losses appended without .item(), growing caches); restart from a checkpoint before it runs out.",
    "gpu_memory_near_limit": "Reduce batch.micro_batch_size or data.seq_len (accumulation keeps the global batch), or use bf16.",
    "overfitting": "Validation is getting worse while training improves: stop early and keep the best checkpoint, or add dropout, augmentation (data.transpose) or data.",
    "dataloader_bottleneck": "Steps wait for data: cache the prepared data, add loader workers or pin memory.",
    "straggler_rank": "One rank is slower than the others: check its device or host (throttling, other jobs, a slower GPU).",
    "musical_collapse": "Samples repeat or use few pitch classes: compare checkpoints by quality score, lower the LR, raise sampling temperature, or roll back.",
}


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Anomaly:
    """One detection. ``evidence`` holds the values and window it was judged on (JSON-able)."""

    kind: str
    severity: str
    step: int
    message: str
    evidence: dict[str, Any]
    suggestion: str
    action: str = "alert"
    id: str = field(default_factory=_new_id)

    def to_event(self) -> dict[str, Any]:
        """Payload of an ``anomaly`` event (the step goes into the event's own ``step`` field)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "evidence": self.evidence,
            "suggestion": self.suggestion,
            "action": self.action,
        }


class Policy:
    """Recovery action per anomaly kind: :data:`DEFAULT_ACTIONS` with overrides."""

    def __init__(self, overrides: Mapping[str, str] | None = None):
        overrides = dict(overrides or {})
        for kind, action in overrides.items():
            if kind not in KINDS:
                raise ValueError(f"unknown anomaly kind {kind!r}; kinds: {', '.join(KINDS)}")
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r} for {kind}; actions: {', '.join(ACTIONS)}")
        self.actions: dict[str, str] = {**DEFAULT_ACTIONS, **overrides}

    def action_for(self, kind: str) -> str:
        return self.actions[kind]


# --------------------------------------------------------------------------- helpers


def _num(record: Mapping[str, Any], key: str) -> float | None:
    """The record's value as a float (NaN/inf kept), or None when absent."""
    value = record.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _per_rank(value: Any) -> dict[str, float]:
    """A number, a list indexed by rank or a ``{rank: value}`` dict, as ``{rank: float}``."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        items = [(0, value)]
    out = {}
    for rank, v in items:
        if v is not None and not isinstance(v, bool):
            out[str(rank)] = float(v)
    return out


def _recent(values: Iterable[float], n: int = 10) -> list[float]:
    return [float(v) for v in list(values)[-n:]]


class Detector:
    """One anomaly kind. ``source`` names the record stream it reads; ``update`` returns at most
    one :class:`Anomaly` (action and cooldown are the monitor's business)."""

    kind: str = ""
    source: str = "metrics"

    def __init__(self, cfg: AnomalySection):
        self.cfg = cfg

    def update(self, step: int, record: Mapping[str, Any]) -> Anomaly | None:
        raise NotImplementedError

    def found(self, step: int, severity: str, message: str, **evidence: Any) -> Anomaly:
        return Anomaly(self.kind, severity, step, message, evidence, SUGGESTIONS[self.kind])


# --------------------------------------------------------------------------- training metrics


class NonFiniteLoss(Detector):
    """The logged loss is NaN or infinite."""

    kind = "nonfinite_loss"

    def update(self, step, record):
        loss = _num(record, "loss")
        if loss is not None and not math.isfinite(loss):
            return self.found(step, "critical", f"loss is {loss}", loss=loss)
        return None


class NonFiniteGrad(Detector):
    """The gradient norm is NaN or infinite while the loss is finite (with a non-finite loss the
    gradients are too, and ``nonfinite_loss`` already says so: one cause, one anomaly).

    The norm is the mean over the steps that were applied. Under fp16 the loss scaler skips a
    step whose gradients overflow and lowers its scale: routine (the scale grows until it
    overflows again), no weight changed. Only when it skipped every step of
    ``scaler_skip_patience`` log intervals in a row (``skipped_steps`` > 0 and no norm), so that
    training stands still, is that an anomaly."""

    kind = "nonfinite_grad"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.all_skipped = 0

    def update(self, step, record):
        grad, loss = _num(record, "grad_norm"), _num(record, "loss")
        skipped = _num(record, "skipped_steps") or 0
        self.all_skipped = self.all_skipped + 1 if skipped > 0 and grad is None else 0
        if self.all_skipped >= self.cfg.scaler_skip_patience:
            return self.found(
                step,
                "critical",
                f"the fp16 loss scaler skipped every step for {self.all_skipped} log steps: "
                "the gradients overflow at any scale",
                skipped_steps=skipped,
                log_steps_all_skipped=self.all_skipped,
                loss=loss,
            )
        if grad is None or math.isfinite(grad) or (loss is not None and not math.isfinite(loss)):
            return None
        return self.found(step, "critical", f"gradient norm is {grad} with a finite loss", grad_norm=grad, loss=loss)


class LossSpike(Detector):
    """Robust windowed test: ``z = (loss - level) / noise`` where ``level`` is the median of the
    last 5 log steps and ``noise`` is 1.4826 * MAD / sqrt(6) of the second differences of the
    last ``spike_window`` losses (the MAD scaled to a normal std; a second difference of
    independent noisy values has sqrt(6) times their noise). Second differences rather than
    the values, because a decaying loss spreads a window's values far more than its noise
    does and would hide a 60 % spike, and the slope changes along the window while the
    curvature is small; medians, because they ignore the spikes they are looking for. The
    loss must also exceed the level by ``spike_min_rel``: a nearly flat, quiet curve makes
    the noise estimate tiny, and a heavy-tailed one makes it too small now and then.

    On a loss with 2 % Gaussian noise (tests/test_anomaly.py's healthy run) the defaults
    catch 1.3x spikes 9 times in 10 and 1.5x spikes always, and call nothing a spike in 300
    runs.
    """

    kind = "loss_spike"
    LEVEL = 5

    def __init__(self, cfg):
        super().__init__(cfg)
        self.window: deque[float] = deque(maxlen=cfg.spike_window)

    def update(self, step, record):
        loss = _num(record, "loss")
        if loss is None or not math.isfinite(loss):
            return None
        found = None
        if len(self.window) >= self.cfg.spike_min_history:
            values = np.array(self.window)
            level = float(np.median(values[-self.LEVEL :]))
            curvature = np.diff(values, n=2)
            noise = 1.4826 * float(np.median(np.abs(curvature - np.median(curvature)))) / math.sqrt(6)
            z = (loss - level) / noise if noise > 0 else (math.inf if loss > level else 0.0)
            if z > self.cfg.spike_z and loss > level + self.cfg.spike_min_rel * abs(level):
                found = self.found(
                    step,
                    "warning",
                    f"loss {loss:.4g} is {z:.1f} noise std above the recent level {level:.4g}",
                    loss=loss,
                    level=level,
                    noise_std=noise,
                    z=z,
                    window=len(values),
                    recent=_recent(values),
                )
        self.window.append(loss)
        return found


class LossDivergence(Detector):
    """Sustained rise: the loss EMA stays ``divergence_rel`` above its best for
    ``divergence_patience`` consecutive log steps. The EMA ignores single spikes; the best is
    the lowest EMA seen since the start (or the last reset)."""

    kind = "loss_divergence"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.ema: float | None = None
        self.best = math.inf
        self.best_step = -1
        self.seen = 0
        self.above = 0

    def update(self, step, record):
        loss = _num(record, "loss")
        if loss is None or not math.isfinite(loss):
            return None
        a = self.cfg.divergence_ema
        self.ema = loss if self.ema is None else a * loss + (1 - a) * self.ema
        self.seen += 1
        if self.ema < self.best:
            self.best, self.best_step = self.ema, step
        bound = self.best + self.cfg.divergence_rel * abs(self.best)
        self.above = self.above + 1 if self.seen >= self.cfg.divergence_min_history and self.ema > bound else 0
        if self.above >= self.cfg.divergence_patience:
            rise = (self.ema - self.best) / abs(self.best) if self.best else math.inf
            return self.found(
                step,
                "critical",
                f"loss EMA {self.ema:.4g} has stayed above {bound:.4g} (best {self.best:.4g} at step {self.best_step}) "
                f"for {self.above} log steps",
                loss=loss,
                ema=self.ema,
                best_ema=self.best,
                best_step=self.best_step,
                rise=rise,
                log_steps_above=self.above,
            )
        return None


class GradExplosion(Detector):
    """The gradient norm (before clipping) exceeds ``grad_explosion_factor`` times the median of
    the last ``grad_window`` log steps, or the absolute ``grad_norm_max`` when set. Norms are
    compared by ratio because they span orders of magnitude over training."""

    kind = "grad_explosion"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.window: deque[float] = deque(maxlen=cfg.grad_window)

    def update(self, step, record):
        grad = _num(record, "grad_norm")
        if grad is None or not math.isfinite(grad):
            return None
        found = None
        limit = self.cfg.grad_norm_max
        if limit is not None and grad > limit:
            found = self.found(
                step,
                "warning",
                f"gradient norm {grad:.4g} exceeds the limit {limit:.4g}",
                grad_norm=grad,
                limit=limit,
                recent=_recent(self.window),
            )
        elif len(self.window) >= self.cfg.grad_min_history:
            median = float(np.median(self.window))
            if median > 0 and grad > self.cfg.grad_explosion_factor * median:
                found = self.found(
                    step,
                    "warning",
                    f"gradient norm {grad:.4g} is {grad / median:.1f}x the recent median {median:.4g}",
                    grad_norm=grad,
                    median=median,
                    ratio=grad / median,
                    window=len(self.window),
                    recent=_recent(self.window),
                )
        self.window.append(grad)
        return found


class VanishingGradients(Detector):
    """The gradient norm stays at or below ``vanishing_grad_norm`` for ``vanishing_patience``
    consecutive log steps (one tiny norm can be a batch that happens to fit)."""

    kind = "vanishing_gradients"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.low: list[float] = []

    def update(self, step, record):
        grad = _num(record, "grad_norm")
        if grad is None or not math.isfinite(grad):
            return None
        self.low = self.low + [grad] if grad <= self.cfg.vanishing_grad_norm else []
        if len(self.low) >= self.cfg.vanishing_patience:
            return self.found(
                step,
                "warning",
                f"gradient norm has been <= {self.cfg.vanishing_grad_norm:g} for {len(self.low)} log steps",
                grad_norm=grad,
                limit=self.cfg.vanishing_grad_norm,
                recent=_recent(self.low),
            )
        return None


class LrAnomaly(Detector):
    """The LR is non-finite or negative (critical); stays 0 for ``lr_zero_patience`` log steps;
    or rises by more than ``lr_max_jump`` between log steps without :meth:`expect_change`.

    Only rises are judged: schedules and recovery lower the LR, often steeply near the end of
    a cosine decay to 0, while an unexplained rise is what makes runs diverge. The ratio right
    after the first positive LR is not judged either: with linear warmup from 0 that ratio is
    (s + L) / s for a first log at step s and interval L, arbitrarily large; later warmup ratios
    are at most 2."""

    kind = "lr_anomaly"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.prev: float | None = None
        self.positives = 0
        self.zeros = 0
        self.expected = False

    def expect_change(self) -> None:
        self.expected = True

    def update(self, step, record):
        lr = _num(record, "lr")
        if lr is None:
            return None
        if not math.isfinite(lr) or lr < 0:
            return self.found(step, "critical", f"learning rate is {lr}", lr=lr, previous=self.prev)
        found = None
        if lr == 0:
            self.zeros += 1
            if self.zeros >= self.cfg.lr_zero_patience:
                found = self.found(
                    step,
                    "warning",
                    f"learning rate has been 0 for {self.zeros} log steps",
                    lr=lr,
                    log_steps_at_zero=self.zeros,
                )
        else:
            self.zeros = 0
            if self.prev and self.positives >= 2 and not self.expected and lr > self.cfg.lr_max_jump * self.prev:
                found = self.found(
                    step,
                    "warning",
                    f"learning rate rose {lr / self.prev:.1f}x ({self.prev:.3g} -> {lr:.3g}) "
                    "without a set_lr or resume",
                    lr=lr,
                    previous=self.prev,
                    ratio=lr / self.prev,
                    max_jump=self.cfg.lr_max_jump,
                )
            self.expected = False
            self.positives += 1
        self.prev = lr
        return found


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
        key = "tokens_per_s" if _num(record, "tokens_per_s") is not None else "samples_per_s"
        rate = _num(record, key)
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
                        recent=_recent(self.window),
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
        frac = _num(record, "data_wait_frac")
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
                recent=_recent(self.high),
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


# --------------------------------------------------------------------------- evaluation


class Overfitting(Detector):
    """The validation-training gap grew at each of the last ``overfit_patience`` evaluations
    while the validation loss stayed above its best, and it is now ``overfit_min_rise`` above
    that best. A growing gap alone is normal early on (training loss falls faster); with
    validation no longer improving it is overfitting."""

    kind = "overfitting"
    source = "eval"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.history: list[tuple[int, float, float]] = []  # (step, val, train)
        self.best = math.inf
        self.best_step = -1
        self.growing = 0

    def update(self, step, record):
        val, train = _num(record, "val_loss"), _num(record, "train_loss")
        if val is None or train is None or not (math.isfinite(val) and math.isfinite(train)):
            return None
        gap = val - train
        if self.history:
            prev_gap = self.history[-1][1] - self.history[-1][2]
            self.growing = self.growing + 1 if gap > prev_gap and val > self.best else 0
        self.history.append((step, val, train))
        if val < self.best:
            self.best, self.best_step = val, step
        if self.growing >= self.cfg.overfit_patience and val > self.best * (1 + self.cfg.overfit_min_rise):
            recent = self.history[-(self.cfg.overfit_patience + 1) :]
            return self.found(
                step,
                "warning",
                f"validation-training gap grew for {self.growing} evaluations "
                f"(now {gap:.4g}); best val_loss {self.best:.4g} at step {self.best_step}",
                val_loss=val,
                train_loss=train,
                gap=gap,
                best_val_loss=self.best,
                best_step=self.best_step,
                evals=[{"step": s, "val_loss": v, "train_loss": t, "gap": v - t} for s, v, t in recent],
            )
        return None


# --------------------------------------------------------------------------- system


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
            for rank, value in _per_rank(record.get(key)).items():
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
            f"{worst['series']} grew {worst['growth_mb']:.0f} MB over {worst['window_steps'][1] - worst['window_steps'][0]} steps "
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
                "recent": _recent(y),
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
        totals = _per_rank(record.get("gpu_mem_total_mb"))
        worst = None
        for rank, total in totals.items():
            if not (math.isfinite(total) and total > 0):
                continue
            figures = {
                key: v for key in self.USED if math.isfinite(v := _per_rank(record.get(key)).get(rank, math.nan))
            }
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


# --------------------------------------------------------------------------- music


class MusicalCollapse(Detector):
    """Samples that were musical fall apart: they loop (mean ``bar_repetition_rate`` above
    ``collapse_max_repetition``) or their pitch-class entropy falls below a floor,
    ``collapse_min_entropy`` bits, raised to reference mean - ``collapse_entropy_z`` reference
    std when a reference is set.

    Armed only once a round of samples was musical: not looping, entropy above the floor and,
    with a reference, below reference mean + ``collapse_entropy_z`` std. An untrained model's
    samples are often sparse (few notes, low entropy) or near-random (high entropy): neither is
    a collapse, only not learned yet, and alerting on every early evaluation would teach users
    to ignore the alert. A rollback (:meth:`AnomalyMonitor.reset`) disarms it with the rest.
    """

    kind = "musical_collapse"
    source = "samples"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.reference: Mapping[str, Mapping[str, float]] | None = None
        self.history: list[tuple[int, float]] = []
        self.armed_at: int | None = None

    def update(self, step, record):
        entropy, repetition = _num(record, "pitch_class_entropy"), _num(record, "bar_repetition_rate")
        floor, ceiling = self.cfg.collapse_min_entropy, math.inf
        ref = (self.reference or {}).get("pitch_class_entropy")
        if ref and math.isfinite(ref.get("mean", math.nan)) and math.isfinite(ref.get("std", math.nan)):
            floor = max(floor, ref["mean"] - self.cfg.collapse_entropy_z * ref["std"])
            ceiling = ref["mean"] + self.cfg.collapse_entropy_z * ref["std"]
        reasons = []
        if repetition is not None and math.isfinite(repetition) and repetition > self.cfg.collapse_max_repetition:
            reasons.append(f"{repetition:.0%} of bars repeat an earlier bar")
        if entropy is not None and math.isfinite(entropy):
            if entropy < floor:
                reasons.append(f"pitch-class entropy {entropy:.2f} bits is below {floor:.2f}")
            self.history.append((step, entropy))
        if self.armed_at is None:
            if not reasons and entropy is not None and math.isfinite(entropy) and entropy <= ceiling:
                self.armed_at = step
            return None
        if not reasons:
            return None
        return self.found(
            step,
            "warning",
            "samples are collapsing: " + "; ".join(reasons),
            pitch_class_entropy=entropy,
            entropy_floor=floor,
            bar_repetition_rate=repetition,
            max_repetition=self.cfg.collapse_max_repetition,
            musical_since_step=self.armed_at,
            entropy_history=[{"step": s, "value": v} for s, v in self.history[-10:]],
        )


DETECTORS: tuple[type[Detector], ...] = (
    NonFiniteLoss,
    NonFiniteGrad,
    LossSpike,
    LossDivergence,
    GradExplosion,
    VanishingGradients,
    LrAnomaly,
    ThroughputDrop,
    DataloaderBottleneck,
    StragglerRank,
    Overfitting,
    MemoryGrowth,
    GpuMemoryNearLimit,
    MusicalCollapse,
)


# --------------------------------------------------------------------------- watchdog


class Watchdog:
    """Fires ``stalled_training`` when no step has finished within the timeout.

    No thread of its own: the training loop calls :meth:`beat` after each step and a monitor
    thread calls :meth:`check` every few seconds. Because only a *finished* step beats, a step
    that hangs (a deadlocked collective, a stuck data worker) fires it too. The first step gets
    ``startup_timeout_s`` (compilation, data loading); call :meth:`suspend` before work that
    legitimately takes long (evaluation, sampling, checkpointing, a pause) and :meth:`beat`
    when it is over. It fires once per stall; the next beat re-arms it. ``clock`` is injectable
    for tests (monotonic seconds).
    """

    kind = "stalled_training"

    def __init__(
        self,
        timeout_s: float,
        startup_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        action: str = "alert",
    ):
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s if startup_timeout_s is not None else timeout_s
        self.clock = clock
        self.action = action
        self._lock = threading.Lock()  # beat() and check() come from different threads
        self._since: float | None = None  # None = not watching
        self._step: int | None = None
        self._fired = False

    def start(self) -> None:
        """Start watching for the first step."""
        with self._lock:
            self._since, self._step, self._fired = self.clock(), None, False

    def beat(self, step: int) -> None:
        """A step finished (or long legitimate work ended): the timeout restarts."""
        with self._lock:
            self._since, self._step, self._fired = self.clock(), int(step), False

    def suspend(self) -> None:
        """Stop watching until the next :meth:`beat` or :meth:`start`."""
        with self._lock:
            self._since = None

    @contextmanager
    def off(self) -> Iterator[None]:
        """Not watching during legitimate long work (a save, a checkpoint load); afterwards the
        timeout restarts if it was watching before (not during a pause or after the last step)."""
        with self._lock:
            was_watching, self._since = self._since is not None, None
        try:
            yield
        finally:
            if was_watching:
                with self._lock:
                    self._since = self.clock()

    def check(self, now: float | None = None) -> Anomaly | None:
        with self._lock:
            if self._since is None or self._fired:
                return None
            now = self.clock() if now is None else now
            limit = self.startup_timeout_s if self._step is None else self.timeout_s
            waited = now - self._since
            if waited <= limit:
                return None
            self._fired = True
            last_step = self._step
        what = "the first step" if last_step is None else f"the step after {last_step}"
        return Anomaly(
            self.kind,
            "critical",
            last_step or 0,
            f"no step has finished for {waited:.0f} s (limit {limit:.0f} s) waiting for {what}",
            {"seconds_since_last_step": waited, "timeout_s": limit, "last_step": last_step},
            SUGGESTIONS[self.kind],
            self.action,
        )


# --------------------------------------------------------------------------- monitor


class AnomalyMonitor:
    """Runs every enabled detector on the records the engine produces, applies the cooldown and
    the policy, and returns the :class:`Anomaly` records to emit. Not thread-safe: call it from
    one thread (the :class:`Watchdog` is the part meant for a second thread)."""

    def __init__(self, config: AnomalySection | None = None):
        self.config = config if config is not None else AnomalySection()
        self.policy = Policy(self.config.policy)
        self._music_reference: Mapping[str, Mapping[str, float]] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget all windows and cooldowns: call after a rollback or resume, when the series restart."""
        disabled = set(self.config.disabled) if self.config.enabled else set(KINDS)
        self.detectors: list[Detector] = [d(self.config) for d in DETECTORS if d.kind not in disabled]
        for d in self.detectors:
            if isinstance(d, MusicalCollapse):
                d.reference = self._music_reference
        self._last: dict[str, tuple[int, int]] = {}  # kind -> (step, severity rank) it last fired at
        self._last_loss: float | None = None

    def set_music_reference(self, reference: Mapping[str, Mapping[str, float]] | None) -> None:
        """The validation pieces' :func:`engine.music.metrics.reference_stats`, for musical_collapse."""
        self._music_reference = reference
        for d in self.detectors:
            if isinstance(d, MusicalCollapse):
                d.reference = reference

    def expect_lr_change(self) -> None:
        """The next LR jump is intended (set_lr, lower_lr, resume): lr_anomaly lets it pass."""
        for d in self.detectors:
            if isinstance(d, LrAnomaly):
                d.expect_change()

    def make_watchdog(self, clock: Callable[[], float] = time.monotonic) -> Watchdog | None:
        """A :class:`Watchdog` configured from ``stall_*``; None when stalled_training is off."""
        if not self.config.enabled or "stalled_training" in self.config.disabled:
            return None
        return Watchdog(
            self.config.stall_timeout_s,
            self.config.stall_startup_timeout_s,
            clock,
            self.policy.action_for("stalled_training"),
        )

    def observe_metrics(self, record: Mapping[str, Any]) -> list[Anomaly]:
        loss = _num(record, "loss")
        if loss is not None and math.isfinite(loss):
            self._last_loss = loss
        return self._run("metrics", record)

    def observe_eval(self, record: Mapping[str, Any]) -> list[Anomaly]:
        if _num(record, "train_loss") is None and self._last_loss is not None:
            record = {**record, "train_loss": self._last_loss}
        return self._run("eval", record)

    def observe_system(self, record: Mapping[str, Any]) -> list[Anomaly]:
        return self._run("system", record)

    def observe_samples(self, record: Mapping[str, Any]) -> list[Anomaly]:
        return self._run("samples", record)

    def observe_event(self, event: Mapping[str, Any]) -> list[Anomaly]:
        """Dispatch an event from ``events.jsonl`` by type (metrics, eval, system, sample), e.g.
        to replay a finished run. A ``sample`` event's mean metrics are read from ``metrics``."""
        kind = event.get("type")
        if kind == "metrics":
            return self.observe_metrics(event)
        if kind == "eval":
            return self.observe_eval(event)
        if kind == "system":
            return self.observe_system(event)
        if kind == "sample":
            return self.observe_samples({"step": event.get("step", 0), **(event.get("metrics") or {})})
        return []

    def _run(self, source: str, record: Mapping[str, Any]) -> list[Anomaly]:
        step = int(record["step"])
        out = []
        for detector in self.detectors:
            if detector.source != source:
                continue
            found = detector.update(step, record)
            if found is not None and self._admit(found):
                out.append(replace(found, action=self.policy.action_for(found.kind)))
        return out

    def _admit(self, anomaly: Anomaly) -> bool:
        """Cooldown: quiet for cooldown_steps after a kind fired, unless it is now more severe or
        the step went backwards (a rollback that did not call reset)."""
        rank = SEVERITIES.index(anomaly.severity)
        last = self._last.get(anomaly.kind)
        if last is not None:
            last_step, last_rank = last
            if 0 <= anomaly.step - last_step < self.config.cooldown_steps and rank <= last_rank:
                return False
        self._last[anomaly.kind] = (anomaly.step, rank)
        return True
