"""Detectors of what the model learns: overfitting on evaluations, musical collapse and memorization in samples."""

from __future__ import annotations

import math
from collections.abc import Mapping

from engine.monitoring.detector import Detector, number_of


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
        val, train = number_of(record, "val_loss"), number_of(record, "train_loss")
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
        entropy, repetition = number_of(record, "pitch_class_entropy"), number_of(record, "bar_repetition_rate")
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


class Memorization(Detector):
    """The round's samples copy the training set: the mean share of their 2-bar passages found in it
    (``memorization``, engine.music.memorization) is above ``memorization_max_share``."""

    kind = "memorization"
    source = "samples"

    def update(self, step, record):
        share = number_of(record, "memorization")
        limit = self.cfg.memorization_max_share
        if share is None or not math.isfinite(share) or share <= limit:
            return None
        return self.found(
            step,
            "warning",
            f"{share:.0%} of the samples' 2-bar passages are in the training set (limit {limit:.0%})",
            memorization=share,
            max_share=limit,
        )
