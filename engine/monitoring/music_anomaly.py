"""Anomalies in generated music that the musical metrics alone do not show."""

from __future__ import annotations

import math

from engine.monitoring.anomaly import Anomaly, Detector, _num

MEMORIZATION_SUGGESTION = (
    "Samples copy the training set: compare earlier checkpoints by quality score, roll back, stop earlier, "
    "or train with more dropout, more transposition or more data."
)


class Memorization(Detector):
    """The round's samples copy the training set: the mean share of their 2-bar passages found in it
    (``memorization``, engine.music.memorization) is above ``memorization_max_share``."""

    kind = "memorization"
    source = "samples"

    def update(self, step, record):
        share = _num(record, "memorization")
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

    def found(self, step, severity, message, **evidence):
        return Anomaly(self.kind, severity, step, message, evidence, MEMORIZATION_SUGGESTION)
