"""A grid of plots in one graphics view, laid out in as many columns as fit."""

from __future__ import annotations

import time

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from gui.theme import Theme
from gui.widgets.plots.metric_plot import MetricPlot


class PlotGrid(pg.GraphicsLayoutWidget):
    """A grid of MetricPlots in one graphics view (one scene: cheap to repaint)."""

    def __init__(
        self,
        columns: int,
        theme: Theme,
        placeholder: str = "",
        parent: QtWidgets.QWidget | None = None,
        plot_px: int = 0,
        row_px: int = 0,
    ):
        super().__init__(parent)
        self.columns = columns
        # plot_px: ``columns`` is a maximum and as many are used as fit plots this wide;
        # row_px: the grid is at least this high per row, for a host that scrolls.
        self.max_columns, self.plot_px, self.row_px = columns, plot_px, row_px
        self.plots: list[MetricPlot] = []
        self.theme = theme
        self.setBackground(theme.plot_bg)
        self.ci.setSpacing(4)
        self.ci.setContentsMargins(4, 4, 4, 4)
        self._placeholder_text = placeholder
        self._placeholder = None
        self.paint_s = 0.0  # how long the last paint took (the dashboard paces redraws by it)
        self.anchor: MetricPlot | None = None  # the plot the others' x axes are linked to
        if placeholder:
            self._placeholder = self.addLabel(placeholder, color=theme.muted, size="10pt")

    left = QtCore.Signal()  # the mouse left the grid
    resized = QtCore.Signal()  # the plots' widths may have changed: titles are shortened to fit again

    def leaveEvent(self, event: QtCore.QEvent) -> None:
        super().leaveEvent(event)
        self.left.emit()

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        start = time.perf_counter()
        super().paintEvent(event)
        self.paint_s = time.perf_counter() - start

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)  # pyqtgraph calls this with None while it builds the view
        if event is not None and hasattr(self, "plots"):
            self.resized.emit()
        if not getattr(self, "plot_px", 0):
            return
        columns = max(1, min(self.max_columns, self.width() // self.plot_px))
        if columns != self.columns:
            self.columns = columns
            # Not from within the resize: the new minimum height resizes this view again, and a
            # nested resize leaves its viewport at the old size (the plots squashed, off centre).
            QtCore.QTimer.singleShot(0, self, self._relayout)

    def add_plot(self, plot: MetricPlot, relayout: bool = True, first: bool = False) -> None:
        if self.anchor is None:
            self.anchor = plot
        if self._placeholder is not None:
            self.removeItem(self._placeholder)
            self._placeholder = None
        if first:
            self.plots.insert(0, plot)
        else:
            self.plots.append(plot)
        if relayout:
            self._relayout()

    def set_plot_visible(self, plot: MetricPlot, visible: bool) -> None:
        if plot.item.isVisible() != visible:
            plot.item.setVisible(visible)
            self._relayout()

    def _relayout(self) -> None:
        self.ci.clear()
        shown = [p for p in self.plots if p.item.isVisible()]
        for i, plot in enumerate(shown):
            self.ci.addItem(plot.item, row=i // self.columns, col=i % self.columns)
        if self.row_px:
            self.setMinimumHeight(-(-len(shown) // self.columns) * self.row_px)
        if not shown and self._placeholder_text:
            self._placeholder = self.addLabel(self._placeholder_text, color=self.theme.muted, size="10pt")
        self.resized.emit()  # other columns, other widths

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.setBackground(theme.plot_bg)
        for plot in self.plots:
            plot.apply_theme(theme)
