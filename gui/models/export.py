"""Plot data to CSV: one tidy row per point, every point (nothing resampled)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable

import numpy as np

from gui.models.series import Series, ema


def write_csv(path: str | os.PathLike[str], curves: Iterable[tuple[str, str, Series]], smoothing: float = 0.0) -> int:
    """Write ``run,series,label,step,time_s,value,smoothed,superseded`` rows; returns the row count.

    Non-finite values are written as ``nan``/``inf``/``-inf`` so they survive a
    round trip through pandas or numpy. ``superseded`` is 0 for the series
    proper and k for the points of its k-th undone stretch (a rollback or a
    resume from an earlier checkpoint redid those steps), written after it.
    """
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["run", "series", "label", "step", "time_s", "value", "smoothed", "superseded"])
        for run, label, series in curves:
            parts = [(0, series.steps, series.times, series.values)]
            parts += [(seg.number, seg.steps, seg.times, seg.values) for seg in series.superseded]
            for number, steps, times, values in parts:
                smoothed, _, _ = ema(values, smoothing)
                for step, t, v, s in zip(steps.tolist(), times.tolist(), values.tolist(), smoothed.tolist()):
                    out.writerow([run, series.name, label, int(step), f"{t:.3f}", _num(v), _num(s), number])
                    rows += 1
    return rows


def _num(value: float) -> str:
    return repr(float(value)) if np.isfinite(value) else str(value).lower()
