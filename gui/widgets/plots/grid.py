"""A grid of plots in one graphics view, laid out in as many columns as fit."""

from __future__ import annotations

import time

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from gui.theme import Theme
from gui.widgets.plots.metric_plot import MetricPlot

PAINT_AVERAGING = 0.25  # the weight of the newest paint in ``paint_s``


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
        # How long a paint takes, averaged over the last few (the dashboard paces redraws by it): one slow
        # paint, when every axis changed at once, must not hold the next redraws back.
        self.paint_s = 0.0
        self.plots_changed = 0  # how many plots the dashboard changed before the last paint
        self.anchor: MetricPlot | None = None  # the plot the others' x axes are linked to
        self.shown: list[MetricPlot] = []  # in layout order
        self.single = False  # one plot filling the grid (maximised)
        self._empty_text = placeholder
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
        self.paint_s += PAINT_AVERAGING * (time.perf_counter() - start - self.paint_s)

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

    def add_plot(self, plot: MetricPlot, first: bool = False) -> None:
        """Take ``plot`` in (first or last); it is shown when the grid is next arranged."""
        if self.anchor is None:
            self.anchor = plot
        if first:
            self.plots.insert(0, plot)
        else:
            self.plots.append(plot)

    def remove_plot(self, plot: MetricPlot) -> None:
        self.plots.remove(plot)
        if plot in self.shown:
            self.shown.remove(plot)
        if self.anchor is plot:
            self.anchor = None

    def arrange(self, shown: list[MetricPlot], placeholder: str = "", single: bool = False) -> None:
        """Show these plots in this order (``single``: one, filling the grid), or ``placeholder`` when none."""
        placeholder = placeholder or self._placeholder_text
        if shown == self.shown and placeholder == self._empty_text and single == self.single:
            return
        self.shown, self._empty_text, self.single = list(shown), placeholder, single
        for plot in self.plots:
            plot.item.setVisible(plot in self.shown)
        self._lead()
        self._relayout()
        if self.anchor is not None:
            x_range = self.anchor.item.getViewBox().viewRange()[0]
            for plot in self.shown:
                # A plot out of the layout misses its lead's range changes (pyqtgraph links only views on screen).
                plot.item.setXRange(*x_range, padding=0)

    def _lead(self) -> None:
        """Link the x axes to the first plot shown: one out of the layout passes no range change on."""
        lead = self.shown[0] if self.shown else None
        if lead is None or lead is self.anchor:
            return
        x_range = self.anchor.item.getViewBox().viewRange()[0] if self.anchor is not None else None
        self.anchor = lead
        lead.item.setXLink(None)
        for plot in self.plots:
            if plot is not lead:
                plot.item.setXLink(lead.item)
        if x_range is not None:
            lead.item.setXRange(*x_range, padding=0)

    def _relayout(self) -> None:
        self.ci.clear()  # the placeholder too
        self._placeholder = None
        columns = 1 if self.single else self.columns
        # pyqtgraph's addItem activates the layout after each item, resizing every plot placed so far
        # (n plots laid out n times over); the layout is activated once, when all are placed.
        layout = self.ci.layout
        layout.activate = lambda: None
        try:
            for i, plot in enumerate(self.shown):
                self.ci.addItem(plot.item, row=i // columns, col=i % columns)
        finally:
            del layout.activate
        layout.activate()
        if self.row_px:
            self.setMinimumHeight(0 if self.single else -(-len(self.shown) // columns) * self.row_px)
        if not self.shown and self._empty_text:
            self._placeholder = self.addLabel(self._empty_text, color=self.theme.muted, size="10pt")
        self.resized.emit()  # other columns, other widths

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.setBackground(theme.plot_bg)
        for plot in self.plots:
            plot.apply_theme(theme)
        if self._placeholder is not None:
            self._relayout()  # its text in the theme's colour
