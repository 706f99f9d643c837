"""Plot data to CSV: one tidy row per point, every point (nothing resampled)."""
from __future__ import annotations

import csv
import os
from typing import Iterable

import numpy as np

from gui.models.series import Series, ema


def write_csv(path: str | os.PathLike, curves: Iterable[tuple[str, str, Series]], smoothing: float = 0.0) -> int:
    """Write ``run,series,label,step,time_s,value,smoothed`` rows; returns the row count.

    Non-finite values are written as ``nan``/``inf``/``-inf`` so they survive a
    round trip through pandas or numpy.
    """
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["run", "series", "label", "step", "time_s", "value", "smoothed"])
        for run, label, series in curves:
            smoothed, _, _ = ema(series.values, smoothing)
            for step, t, v, s in zip(series.steps.tolist(), series.times.tolist(), series.values.tolist(), smoothed.tolist()):
                out.writerow([run, series.name, label, int(step), f"{t:.3f}", _num(v), _num(s)])
                rows += 1
    return rows


def _num(value: float) -> str:
    return repr(float(value)) if np.isfinite(value) else str(value).lower()
