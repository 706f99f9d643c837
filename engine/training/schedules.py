"""Learning-rate schedule, ReduceLROnPlateau and multi-metric early stopping.

All decisions here are pure functions of values every rank already shares
(the step, all-reduced losses), so every rank reaches the same decision at the
same step without a further collective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class Schedule:
    """LR = ``peak_lr * shape(progress) * plateau_scale``.

    ``progress`` counts steps, or tokens seen while a sequence-length
    curriculum is on (short early windows carry fewer tokens, so decaying by
    steps would spend the LR budget before the long windows arrive).

    ``set_lr`` replaces the peak: warmup and decay continue from the current
    point scaled to the new peak. ReduceLROnPlateau multiplies by its own
    scale. Both are saved in checkpoints.
    """

    def __init__(self, cfg, total_steps: int, total_tokens: int | None = None):
        self.cfg, self.total_steps, self.total_tokens = cfg, total_steps, total_tokens
        self.peak_lr = cfg.lr
        self.plateau_scale = 1.0

    def shape(self, step: int, tokens: int = 0) -> float:
        cfg = self.cfg
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        if self.total_tokens:
            progress = min(1.0, tokens / self.total_tokens)
        else:
            progress = min(1.0, (step - cfg.warmup_steps) / max(1, self.total_steps - cfg.warmup_steps))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay

    def lr(self, step: int, tokens: int = 0) -> float:
        return self.peak_lr * self.shape(step, tokens) * self.plateau_scale

    def state_dict(self) -> dict:
        return {"peak_lr": self.peak_lr, "plateau_scale": self.plateau_scale}

    def load_state_dict(self, state: dict) -> None:
        self.peak_lr, self.plateau_scale = float(state["peak_lr"]), float(state.get("plateau_scale", 1.0))


@dataclass
class Plateau:
    """ReduceLROnPlateau on validation loss: after ``patience`` evaluations
    without an improvement of ``min_delta``, multiply the LR scale by ``factor``."""

    patience: int
    factor: float
    min_delta: float = 0.0
    min_scale: float = 1e-3
    best: float = math.inf
    bad_evals: int = 0

    def observe(self, value: float, scale: float) -> float | None:
        """The new scale when the LR should drop, else None."""
        if not math.isfinite(value):
            return None
        if value < self.best - self.min_delta:
            self.best, self.bad_evals = value, 0
            return None
        self.bad_evals += 1
        if self.bad_evals >= self.patience and scale > self.min_scale:
            self.bad_evals = 0
            return max(scale * self.factor, self.min_scale)
        return None

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_evals = float(state["best"]), int(state["bad_evals"])


@dataclass
class Monitor:
    """One early-stopping criterion: a metric of ``eval`` events, its direction, patience and min_delta."""

    metric: str
    mode: str = "min"
    patience: int = 5
    min_delta: float = 0.0
    best: float | None = None
    bad_evals: int = 0

    def observe(self, value: float) -> str | None:
        improved = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        )
        if improved:
            self.best, self.bad_evals = value, 0
            return None
        self.bad_evals += 1
        if self.bad_evals >= self.patience:
            return (
                f"{self.metric} did not improve by {self.min_delta:g} for {self.patience} evaluations "
                f"(best {self.best:.4f})"
            )
        return None


@dataclass
class EarlyStopping:
    """Stop when every monitored metric has run out of patience, when the
    training loss diverges past ``divergence_factor`` x its best, or when it is
    not finite. Requiring all monitors keeps a run going while any metric still
    improves (e.g. validation loss flat, musical quality still rising)."""

    monitors: list[Monitor] = field(default_factory=list)
    divergence_factor: float = 0.0
    stop_on_nonfinite: bool = True
    best_train_loss: float = math.inf

    def observe_eval(self, values: dict) -> str | None:
        reasons = []
        for monitor in self.monitors:
            value = values.get(monitor.metric)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return None  # a metric not measured yet cannot have run out of patience
            reasons.append(monitor.observe(value))
        if self.monitors and all(reasons):
            return "; ".join(r for r in reasons if r)
        return None

    def observe_train_loss(self, loss: float) -> str | None:
        if not math.isfinite(loss):
            return f"training loss is {loss}" if self.stop_on_nonfinite else None
        self.best_train_loss = min(self.best_train_loss, loss)
        if self.divergence_factor and loss > self.divergence_factor * self.best_train_loss:
            return (
                f"training loss {loss:.4f} diverged past {self.divergence_factor:g} x its best "
                f"{self.best_train_loss:.4f}"
            )
        return None

    def state_dict(self) -> dict:
        return {
            "best_train_loss": self.best_train_loss,
            "monitors": [{"best": m.best, "bad_evals": m.bad_evals} for m in self.monitors],
        }

    def load_state_dict(self, state: dict) -> None:
        self.best_train_loss = float(state["best_train_loss"])
        for monitor, saved in zip(self.monitors, state["monitors"], strict=False):
            monitor.best, monitor.bad_evals = saved["best"], int(saved["bad_evals"])
