"""One series of one run in one plot: the curve items and what the view shows of them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyqtgraph as pg
from PySide6 import QtCore, QtGui

if TYPE_CHECKING:
    from gui.models.run_model import RunModel
    from gui.models.series import Series
    from gui.widgets.plots.metric_plot import MetricPlot

NONFINITE_COLOR = "#ef4444"
# Superseded stretches (undone by a rollback or a resume) drawn per curve: the newest ones; all are exported.
SUPERSEDED_DRAWN = 8
SUPERSEDED_ALPHA = 120


@dataclass
class PlotSettings:
    smoothing: float = 0.6  # EMA weight in [0, 1)
    x_by: str = "step"  # step | time
    show_raw: bool = True


class Curve:
    """One series of one run in one plot: smoothed line, faint raw line, non-finite markers."""

    def __init__(
        self,
        plot: MetricPlot,
        model: RunModel,
        series: Series,
        label: str,
        color: QtGui.QColor,
        style: QtCore.Qt.PenStyle,
        points: bool,
    ):
        self.plot, self.model, self.series, self.label = plot, model, series, label
        self.color = QtGui.QColor(color)
        self.smoothed = series.smoothed()
        raw_color = QtGui.QColor(color)
        raw_color.setAlpha(70)
        item = plot.item
        self.raw = item.plot(pen=pg.mkPen(raw_color, width=1))
        # One pixel wide, like the raw curve (only fainter): Qt strokes wider
        # lines as polygons, which doubled the cost of painting the dashboard.
        pen = pg.mkPen(self.color, width=1, style=style)
        self.points = points
        self.line = item.plot(pen=pen, name=label, symbol="o" if points else None)
        self.line.setSymbolSize(5)
        self.line.setSymbolBrush(self.color)
        self.line.setSymbolPen(None)
        # The non-finite markers and the undone stretches are items of their own, made when first needed:
        # most curves never have either, and every item costs at creation and in each paint's bookkeeping.
        self.bad: pg.PlotDataItem | None = None
        self.old: pg.PlotDataItem | None = None
        self.drawn: tuple | None = None

    def xs(self, by: str) -> np.ndarray:
        return self.series.steps if by == "step" else self.series.times

    def refresh(self, settings: PlotSettings, view: tuple[float, float, int]) -> bool:
        """Push what the view ``(x0, x1, width in pixels)`` shows of the series into
        the items if anything changed; returns whether it did."""
        s = self.series
        weight = settings.smoothing if self.plot.spec.smooth else 0.0
        key = (s.version, weight, settings.x_by, settings.show_raw, view, len(s.superseded))
        s.drawn_at = time.monotonic()
        if key == self.drawn:
            return False
        self.drawn = key
        x = self.xs(settings.x_by)
        y = s.values
        if not self.points:  # a lone point makes no line: a dot shows it (a run's one system sample)
            self.line.setSymbol("o" if len(s) == 1 else None)
        if weight > 0 and len(s) > 1:
            smoothed = self.smoothed.values(weight)
            self.line.setData(*self.smoothed.envelope(weight).window(x, smoothed, *view))
            if settings.show_raw:
                self.raw.setData(*s.envelope().window(x, y, *view))
            else:
                self.raw.setData([], [])
        else:
            self.line.setData(*s.envelope().window(x, y, *view))
            self.raw.setData([], [])
        bad_x, bad_y = [], []
        if s.nonfinite:
            bad = s.nonfinite_index()
            bad_x.append(x[bad])
            bad_y.append(marker_heights(y, bad))
        segments = s.superseded[-SUPERSEDED_DRAWN:]
        if segments:
            gap = np.array([np.nan])  # between stretches: the curve breaks there (connect="finite")
            xs: list[npt.NDArray[np.float64]] = []
            ys: list[npt.NDArray[np.float64]] = []
            for seg in segments:
                seg_x = seg.steps if settings.x_by == "step" else seg.times
                values, envelope = seg.smoothed(weight if len(seg) > 1 else 0.0)
                wx, wy = envelope.window(seg_x, values, *view)
                xs += [wx, gap]
                ys += [wy, gap]
                if seg.nonfinite:
                    seg_bad = np.flatnonzero(~np.isfinite(seg.values))
                    bad_x.append(seg_x[seg_bad])
                    bad_y.append(marker_heights(seg.values, seg_bad))
            self._old_item().setData(np.concatenate(xs), np.concatenate(ys), connect="finite")
        elif self.old is not None:
            self.old.setData([], [])
        if bad_x:
            self._bad_item().setData(np.concatenate(bad_x), np.concatenate(bad_y))
        elif self.bad is not None:
            self.bad.setData([], [])
        return True

    def _bad_item(self) -> pg.PlotDataItem:
        if self.bad is None:
            self.bad = self.plot.item.plot(
                pen=None, symbol="x", symbolSize=11, symbolPen=pg.mkPen(NONFINITE_COLOR, width=2), symbolBrush=None
            )
            self.bad.setZValue(20)
        return self.bad

    def _old_item(self) -> pg.PlotDataItem:
        """The stretches a rollback or resume undid: same colour, faint and dashed, under the curve, and
        left out of the y range (the view follows the run as it is now)."""
        if self.old is None:
            old_color = QtGui.QColor(self.color)
            old_color.setAlpha(SUPERSEDED_ALPHA)
            self.old = pg.PlotDataItem(pen=pg.mkPen(old_color, width=1, style=QtCore.Qt.PenStyle.DashLine))
            self.old.setZValue(-1)
            self.plot.item.addItem(self.old, ignoreBounds=True)
        return self.old

    def raise_(self) -> None:
        """Draw over the other runs' curves (the open run's, among overlays)."""
        self.raw.setZValue(2)
        self.line.setZValue(3)

    def remove(self) -> None:
        for c in (self.raw, self.line, self.bad, self.old):
            if c is not None:
                self.plot.item.removeItem(c)


def marker_heights(y: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Where to draw the non-finite points ``bad`` (sorted indices into ``y``):
    at the last finite value before each (where the curve broke off), else the
    first finite value, else 1. O(len(bad)): a stretch of consecutive
    non-finite points shares the finite point before it."""
    starts_run = np.ones(len(bad), dtype=bool)
    starts_run[1:] = np.diff(bad) != 1
    prev = bad[starts_run][np.cumsum(starts_run) - 1] - 1
    after_leading = bad[np.flatnonzero(starts_run)[1] - 1] + 1 if starts_run[1:].any() else bad[-1] + 1
    fallback = y[after_leading] if bad[0] == 0 and after_leading < len(y) else 1.0
    return np.where(prev >= 0, y[np.maximum(prev, 0)], fallback)
