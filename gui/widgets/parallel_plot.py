"""Parallel coordinates of trials or runs: one vertical axis per parameter and the metric, each trial a line
coloured from worse to better. Used by the study panel's charts and by the runs table's comparison."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtGui

from gui.models.study_model import ParallelData
from gui.theme import Theme

LABEL_GAP = 0.02  # between a parallel axis's end and its label, in the axis's 0-1 units


class ParallelPlot:
    """Parallel coordinates on a plot: one vertical axis per parameter and one for the metric, a line per
    trial (or run) coloured from worse to better; the selected one drawn thick. Used by the study panel
    and by the runs table's comparison of any runs."""

    def __init__(self, plot: pg.PlotWidget, theme: Theme):
        self.plot = plot
        self.theme = theme
        self.items: list[pg.GraphicsObject] = []
        plot.getPlotItem().hideAxis("left")
        plot.setMouseEnabled(x=False, y=False)
        self.names: list[str] = []
        self._end_half = 0.0  # half the widest end label of the first and last axes, in pixels
        plot.getPlotItem().getViewBox().sigResized.connect(self._fit_labels)

    def _fit_labels(self, *_args) -> None:
        """Room around the axes for their end labels (above and below, one text line each whatever the height); the
        axes' names without their section (``lr``, not ``optim.lr``) when the whole ones would run into each other, and
        on two lines when those would too."""
        box = self.plot.getPlotItem().getViewBox()
        axis = self.plot.getPlotItem().getAxis("bottom")
        if self.names:
            room = box.width() / len(self.names) - 8
            advance = QtGui.QFontMetrics(axis.font()).horizontalAdvance
            labels = [short_name(n) for n in self.names]
            if any(advance(label) > room for label in labels):
                labels = [short_name(n.rsplit(".", 1)[-1]) for n in self.names]
            staggered = any(advance(label) > room for label in labels)
            if staggered:  # still too wide: every other one a line lower, in an axis tall enough for both lines
                labels = [("\n" if i % 2 else "") + label for i, label in enumerate(labels)]
            axis.setHeight(2 * QtGui.QFontMetrics(axis.font()).height() + 12 if staggered else None)
            axis.setTicks([list(enumerate(labels))])
            # Room left and right for the outer axes' end labels, centred on them.
            span, half = len(self.names) - 1, self._end_half
            side = max(0.35, half * span / max(box.width() - 2 * half, 1.0))
            box.setXRange(-side, span + side, padding=0)
        line = QtGui.QFontMetrics(self.plot.font()).height() + 10  # a TextItem's margins are 4 px a side
        pad = min(1.0, line / max(box.height() - 2 * line, 1.0)) + LABEL_GAP
        box.setYRange(-pad, 1 + pad, padding=0)

    def clear(self) -> None:
        for item in self.items:
            self.plot.removeItem(item)
        self.items = []

    def draw(self, data: ParallelData, direction: str, selected: int | None = None) -> None:
        self.clear()
        plot = self.plot.getPlotItem()
        k = len(data.axes)
        self.names = list(data.axes)
        ends = []
        for i in range(k):
            line = pg.InfiniteLine(pos=i, angle=90, pen=pg.mkPen(self.theme.axis, width=1))
            low_label, high_label = data.labels[i] if i < len(data.labels) else ("", "")
            texts = [
                pg.TextItem(low_label, color=self.theme.muted, anchor=(0.5, 0)),
                pg.TextItem(high_label, color=self.theme.muted, anchor=(0.5, 1)),
            ]
            texts[0].setPos(i, -LABEL_GAP)
            texts[1].setPos(i, 1 + LABEL_GAP)
            ends += texts if i in (0, k - 1) else []
            for item in (line, *texts):
                plot.addItem(item)
                self.items.append(item)
        self._end_half = max((t.boundingRect().width() / 2 for t in ends), default=0.0)
        self._fit_labels()
        if not len(data.values):
            return
        low, high = float(data.values.min()), float(data.values.max())
        worst, good = QtGui.QColor(self.theme.axis), QtGui.QColor(self.theme.palette[0])
        order = []
        for row, value, number in zip(data.lines, data.values, data.numbers, strict=True):
            goodness = 0.5 if high == low else (high - value) / (high - low)
            if direction == "maximize":
                goodness = 1 - goodness
            order.append((goodness, row, number))
        for goodness, row, number in sorted(order, key=lambda o: o[0]):
            color = _blend(worst, good, goodness)
            width = 3.0 if number == selected else 1.2 + 1.3 * goodness
            item = pg.PlotDataItem(np.arange(k, dtype=float), row, pen=pg.mkPen(color, width=width), connect="finite")
            item.setZValue(1 + goodness)
            plot.addItem(item)
            self.items.append(item)


def short_name(name: str) -> str:
    """A long dotted name cut from the front, where its sections are: the end says which field it is."""
    return name if len(name) <= 18 else "…" + name[-17:]


def _blend(a: QtGui.QColor, b: QtGui.QColor, t: float) -> QtGui.QColor:
    t = min(max(t, 0.0), 1.0)
    return QtGui.QColor(
        int(a.red() + (b.red() - a.red()) * t),
        int(a.green() + (b.green() - a.green()) * t),
        int(a.blue() + (b.blue() - a.blue()) * t),
    )
