"""Musical metrics over training steps, each against the corpus reference (pyqtgraph).

One small plot per metric of the sampling rounds (their mean over the
round's samples), plus the quality score: the curve over steps, the corpus
reference mean as a dashed horizontal line and a band of ± one reference
standard deviation around it, so "is the model writing like Bach yet" reads
off the plot. Plots are created once per metric and fed with ``setData``
from a timer (at most 5 Hz: rounds are minutes apart), never once per event;
the x axes are linked.

Mount it as a dock::

    self.music_plots = MusicMetricsPlots(sample_model, self.theme)
    self._dock("Music vs corpus", "music_ref", self.music_plots, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
"""
from __future__ import annotations

import html
import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from gui.models.samples import SampleModel
from gui.theme import LIGHT, Theme
from gui.widgets.plots import style_axes

QUALITY = "quality_score"
REDRAW_MS = 200
MIN_PLOT_PX = 340
MIN_ROW_PX = 170


class MetricPlot:
    def __init__(self, name: str, theme: Theme, color: str):
        self.name = name
        self.item = pg.PlotItem()
        self.item.showGrid(x=True, y=True, alpha=0.15)
        self.item.hideButtons()
        self.item.setMenuEnabled(False)
        self.item.setMinimumHeight(110)
        self.color = color
        self.band = pg.LinearRegionItem(orientation="horizontal", movable=False)
        self.band.setZValue(-10)
        for line in self.band.lines:
            line.setPen(pg.mkPen(None))
        self.band.hide()
        self.item.addItem(self.band)
        self.reference = pg.InfiniteLine(angle=0, movable=False)
        self.reference.hide()
        self.item.addItem(self.reference)
        self.curve = self.item.plot(pen=pg.mkPen(color, width=2), symbol="o", symbolSize=6, symbolBrush=color, symbolPen=None)
        self.eval_curve = self.item.plot(pen=pg.mkPen(color, width=1, style=QtCore.Qt.PenStyle.DotLine), symbol="t",
                                         symbolSize=6, symbolBrush=None, symbolPen=pg.mkPen(color))
        self.ref: tuple[float, float | None] | None = None
        self.apply_theme(theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        style_axes(self.item, theme)
        muted = QtGui.QColor(theme.muted)
        self.reference.setPen(pg.mkPen(muted, width=1.5, style=QtCore.Qt.PenStyle.DashLine))
        band = QtGui.QColor(theme.muted)
        band.setAlpha(40)
        self.band.setBrush(pg.mkBrush(band))

    def set_data(self, steps: np.ndarray, values: np.ndarray, ref: dict | None,
                 eval_points: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.curve.setData(steps, values)
        if eval_points is not None:
            self.eval_curve.setData(*eval_points)
        mean = (ref or {}).get("mean")
        std = (ref or {}).get("std")
        if mean is not None and math.isfinite(mean):
            self.reference.setPos(mean)
            self.reference.show()
            if std is not None and math.isfinite(std) and std > 0:
                self.band.setRegion((mean - std, mean + std))
                self.band.show()
            else:
                self.band.hide()
            self.ref = (mean, std)
        else:
            self.reference.hide()
            self.band.hide()
            self.ref = None
        self._title(values)

    def _title(self, values: np.ndarray) -> None:
        """Two short lines (a long one would spill over the neighbouring plot): the metric; then its
        latest value, the corpus reference and the validation pass's value where there is one."""
        theme = self.theme
        label = "quality score (1 = corpus)" if self.name == QUALITY else self.name.replace("_", " ")
        parts = []
        finite = values[np.isfinite(values)] if len(values) else values
        if len(finite):
            parts.append(f'<span style="color:{self.color}">{finite[-1]:.3g}</span>')
        if self.ref is not None:
            mean, std = self.ref
            parts.append(f"corpus {mean:.3g}" + (f" ± {std:.2g}" if std else ""))
        eval_values = self.eval_curve.getData()[1]
        if eval_values is not None and len(eval_values):
            parts.append(f"▽ validation {eval_values[-1]:.3g}")
        detail = f' <span style="color:{theme.muted}">' + " · ".join(parts) + "</span>" if parts else ""
        self.item.setTitle(f'<span style="font-size:9pt; color:{theme.fg}; font-weight:600">{html.escape(label)}</span>'
                           f'<br><span style="font-size:8pt">{detail}</span>', justify="left")


class MusicMetricsPlots(pg.GraphicsLayoutWidget):
    def __init__(self, model: SampleModel, theme: Theme = LIGHT, columns: int = 2,
                 parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.theme = theme
        self.columns = columns
        self.plots: dict[str, MetricPlot] = {}
        self._laid: list[str] = []
        self._drawn = -1
        self.setBackground(theme.plot_bg)
        self.ci.setSpacing(6)
        self._placeholder = self.addLabel("Musical metrics appear here after the run's first sampling round.",
                                          color=theme.muted, size="10pt")
        self._timer = QtCore.QTimer(self, interval=REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()
        self.redraw()

    def stop(self) -> None:
        self._timer.stop()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)  # pyqtgraph calls this with None while it builds the view
        if not hasattr(self, "_laid"):
            return
        # As many columns as fit plots of a readable width: one in a side dock, more when wide.
        columns = max(1, min(3, self.width() // MIN_PLOT_PX))
        if columns != self.columns:
            self.columns = columns
            self._layout(self._laid)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.setBackground(theme.plot_bg)
        for plot in self.plots.values():
            plot.apply_theme(theme)
        self._drawn = -1
        self.redraw()

    def names(self) -> list[str]:
        names = self.model.metric_names()
        has_quality = bool(len(self.model.quality_series()[0]) or self.model.eval_quality)
        return ([QUALITY] if has_quality else []) + names

    def redraw(self) -> None:
        """Push the model into the plots when it changed (one setData per curve)."""
        if self._drawn == self.model.version:
            return
        self._drawn = self.model.version
        names = self.names()
        if names != self._laid:
            self._layout(names)
        ref = self.model.reference()
        for name, plot in self.plots.items():
            if name == QUALITY:
                eval_steps = np.array([s for s, _ in self.model.eval_quality], dtype=np.float64)
                eval_values = np.array([v for _, v in self.model.eval_quality], dtype=np.float64)
                # The quality score is defined so the corpus scores 1: that is its reference.
                plot.set_data(*self.model.quality_series(), {"mean": 1.0, "std": None}, (eval_steps, eval_values))
            else:
                plot.set_data(*self.model.series(name), ref.get(name))

    def _layout(self, names: list[str]) -> None:
        self.ci.clear()
        self._laid = list(names)
        if not names:
            self.setMinimumHeight(0)
            self.plots.clear()
            self._placeholder = self.addLabel("Musical metrics appear here after the run's first sampling round.",
                                              color=self.theme.muted, size="10pt")
            return
        palette = self.theme.palette
        self.plots = {name: self.plots.get(name) or MetricPlot(name, self.theme, palette[i % len(palette)])
                      for i, name in enumerate(names)}
        # Rows keep a readable height; with many metrics the host scrolls (see Panels) rather than squash them.
        self.setMinimumHeight(-(-len(names) // self.columns) * MIN_ROW_PX)
        first = None
        for i, name in enumerate(names):
            plot = self.plots[name]
            self.ci.addItem(plot.item, row=i // self.columns, col=i % self.columns)
            if first is None:
                first = plot.item
            else:
                plot.item.setXLink(first)
