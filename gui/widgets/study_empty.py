"""The study charts' empty state: what a chart with nothing to draw says instead of blank axes."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore


class EmptyChart:
    """A chart with nothing to draw says what is missing in its middle, its axes hidden (pyqtgraph's
    0-1 placeholder axes and grid looked like data); the axes come back with the first data."""

    def __init__(self, plot: pg.PlotWidget, text: str, axes: tuple[str, ...] = ("left", "bottom")):
        self.plot = plot
        self.axes = axes  # those the chart shows when it has data
        self.note = pg.TextItem(anchor=(0.5, 0.5))
        self.note.setZValue(10)
        document = self.note.textItem.document()  # lines centred in the chart's width, as they wrap
        option = document.defaultTextOption()
        option.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        document.setDefaultTextOption(option)
        plot.addItem(self.note, ignoreBounds=True)
        plot.getPlotItem().getViewBox().sigResized.connect(self._wrap)
        self.show(text)

    @property
    def text(self) -> str | None:
        """What the chart says, or None while it draws data."""
        return self.note.textItem.toPlainText() if self.note.isVisible() else None

    def show(self, text: str | None) -> None:
        """Say ``text`` over a blank chart; None gives the chart back its axes."""
        item = self.plot.getPlotItem()
        for name in self.axes:
            item.showAxis(name, text is None)
        self.note.setVisible(text is not None)
        if text is None:
            item.enableAutoRange()
            return
        self.note.setText(text)
        item.setXRange(0, 1, padding=0)
        item.setYRange(0, 1, padding=0)
        self.note.setPos(0.5, 0.5)
        self._wrap()

    def _wrap(self, *_args) -> None:
        self.note.setTextWidth(max(self.plot.getPlotItem().getViewBox().width() - 24, 80))
