"""A run's metric series and the step/time bookkeeping that goes with them. Qt-free.

:class:`SeriesStore` takes ready columns (:class:`~gui.models.columns.MetricsColumns`, built off the GUI
thread) and single points, and keeps the figures the run's progress is judged by: the newest step, the
first and last event times, the recent step rate, the rollbacks.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.contract.events import System
from gui.models.columns import HEADER, MetricsColumns
from gui.models.series import Series

_ETA_WINDOW = 30
Pending = dict[str, list[tuple[float, float, float]]]  # points per series, gathered before one extend each


class SeriesStore:
    def __init__(self, out_of_order: Callable[[int, int, float], None]):
        self.series: dict[str, Series] = {}
        self.series_order: list[str] = []  # creation order; views bind new ones by index
        self.t0: float | None = None
        self.last_time: float | None = None
        self.step = 0
        self.latest: dict[str, Any] = {}  # the last metrics row
        self.rollbacks = 0  # times the metrics went back to an earlier step (a rollback, a resume, a restart)
        self.rate: collections.deque[tuple[float, float]] = collections.deque(maxlen=_ETA_WINDOW)
        self._metrics_step = -math.inf  # the newest training step logged in the current pass
        self._out_of_order = out_of_order
        self._names: dict[tuple[str, str], str] = {}

    def get(self, name: str) -> Series:
        s = self.series.get(name)
        if s is None:
            s = self.series[name] = Series(name)
            self.series_order.append(name)
        return s

    def name(self, prefix: str, key: str) -> str:
        name = self._names.get((prefix, key))
        if name is None:
            name = self._names[(prefix, key)] = f"{prefix}/{key}"
        return name

    def saw(self, step: int, t_abs: float) -> float:
        """An event at ``step``, written at ``t_abs``: its time on the run's clock."""
        if self.t0 is None:
            self.t0 = t_abs
        self.last_time = t_abs if self.last_time is None else max(self.last_time, t_abs)
        self.step = max(self.step, step)
        return t_abs - self.t0

    def add_metrics(self, run: MetricsColumns) -> dict[str, Any] | None:
        """A run of metrics rows; the last row taken, or None when every row was skipped.

        A training step is logged once per pass, and the engine announces every way back (a rollback's
        ``action_taken``, a restart, a resume's ``run_start``) before it logs a step again: a row at or
        before the newest logged step with no announcement is not the run's, and is skipped and counted
        rather than taken for a rollback that would fade what came after it.
        """
        steps, t_abs = run.steps, run.times
        newest_before = np.maximum.accumulate(np.concatenate(([self._metrics_step], steps[:-1])))
        stale = steps <= newest_before
        keep = None
        if stale.any():
            first = int(np.argmax(stale))
            self._out_of_order(int(stale.sum()), int(steps[first]), float(newest_before[first]))
            keep = ~stale
            if not keep.any():
                return None
        kept_steps = steps if keep is None else steps[keep]
        kept_times = t_abs if keep is None else t_abs[keep]
        self._metrics_step = float(kept_steps[-1])
        if self.t0 is None:
            self.t0 = float(kept_times[0])
        latest = float(kept_times.max())
        self.last_time = latest if self.last_time is None else max(self.last_time, latest)
        self.step = max(self.step, int(kept_steps.max()))
        for step, t_event in zip(kept_steps[-_ETA_WINDOW:].tolist(), kept_times[-_ETA_WINDOW:].tolist(), strict=True):
            if not self.rate or step > self.rate[-1][0]:
                self.rate.append((int(step), t_event))
        times = t_abs - self.t0
        for name, (rows, values) in run.columns.items():
            s, t = (steps, times) if rows is None else (steps[rows], times[rows])
            if keep is not None:
                mask = keep if rows is None else keep[rows]
                s, t, values = s[mask], t[mask], values[mask]
            if len(values):
                self.get(name).extend(s, t, values)
        if keep is not None and not keep[-1]:
            return None  # the newest row kept is not the last one: the latest row stays as it was
        self.latest = run.last
        return run.last

    @staticmethod
    def push(pending: Pending, name: str, step: float, t: float, value: float) -> None:
        bucket = pending.get(name)
        if bucket is None:
            bucket = pending[name] = []
        bucket.append((step, t, value))

    def push_numbers(self, pending: Pending, prefix: str, values: dict[str, Any], step: int, t: float) -> None:
        for key, value in values.items():
            if type(value) in (float, int) and key not in HEADER:
                self.push(pending, self.name(prefix, key), step, t, value)

    def push_system(self, pending: Pending, event: System, t: float) -> None:
        """A system event's readings: the host's, each rank's and each GPU's, a series per figure."""
        self.push_numbers(pending, "system", event.to_values(), event.step, t)
        for rank in event.ranks:
            self.push_numbers(pending, f"system/rank{rank.rank}", rank.to_values(), event.step, t)
        for i, gpu in enumerate(event.gpus):
            self.push_numbers(
                pending, f"system/gpu{i if gpu.index is None else gpu.index}", gpu.to_values(), event.step, t
            )

    def flush(self, pending: Pending) -> None:
        for name, points in pending.items():
            table = np.array(points, dtype=np.float64)
            self.get(name).extend(table[:, 0], table[:, 1], table[:, 2])
        pending.clear()

    def went_back(self, step: int) -> int:
        """Training continues from ``step``: every series' points past it become a superseded
        segment (kept, drawn faded) and the progress figures restart there; returns how many moved."""
        moved = sum(s.supersede_after(step) for s in self.series.values())
        if moved:
            self.rollbacks += 1
        self.step = step
        self._metrics_step = step
        self.rate.clear()
        return moved

    def eta_seconds(self, total_steps: int | None) -> float | None:
        """Remaining steps over the recent wall-clock step rate (pauses reset the window)."""
        if not total_steps or len(self.rate) < 2:
            return None
        (s0, t0), (s1, t1) = self.rate[0], self.rate[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return max(0.0, (total_steps - self.step) * (t1 - t0) / (s1 - s0))
