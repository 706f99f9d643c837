"""Detectors of optimisation health on the metrics of each log step: the loss, the gradient norm and the LR."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from engine.monitoring.detector import Detector, last_values, number_of


class NonFiniteLoss(Detector):
    """The logged loss is NaN or infinite."""

    kind = "nonfinite_loss"

    def update(self, step, record):
        loss = number_of(record, "loss")
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
        grad, loss = number_of(record, "grad_norm"), number_of(record, "loss")
        skipped = number_of(record, "skipped_steps") or 0
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
        loss = number_of(record, "loss")
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
                    recent=last_values(values),
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
        loss = number_of(record, "loss")
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
        grad = number_of(record, "grad_norm")
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
                recent=last_values(self.window),
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
                    recent=last_values(self.window),
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
        grad = number_of(record, "grad_norm")
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
                recent=last_values(self.low),
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
        lr = number_of(record, "lr")
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
