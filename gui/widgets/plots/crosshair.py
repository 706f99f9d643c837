"""The dashboard's crosshair: one x on every plot, from the mouse (hover) or a selection (pinned)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6 import QtCore

if TYPE_CHECKING:
    from gui.widgets.plots.curve import PlotSettings
    from gui.widgets.plots.grid import PlotGrid
    from gui.widgets.plots.metric_plot import MetricPlot


class CrosshairMixin:
    """Part of :class:`~gui.widgets.plots.dashboard.Dashboard`: moves and clears the crosshair of its ``plots``
    and marks the grids whose titles must show the values under it (``_titles_stale``)."""

    # The dashboard's, which this part reads and moves.
    plots: dict[str, MetricPlot]
    settings: PlotSettings
    training: PlotGrid
    system: PlotGrid
    music: PlotGrid
    _grid_of: dict[str, PlotGrid]
    cursorMoved: QtCore.SignalInstance
    cursor_x: float | None
    cursor_pinned: bool
    hovered: str | None
    _pending_cursor: float | None
    _titles_stale: set[int]

    def _mouse_moved(self, grid: PlotGrid, pos: QtCore.QPointF) -> None:
        for plot in grid.plots:
            vb = plot.item.getViewBox()
            if plot.item.isVisible() and vb.sceneBoundingRect().contains(pos):
                self.hovered = plot.spec.key
                self.set_cursor(vb.mapSceneToView(pos).x(), source=plot)
                return

    def _mouse_left(self) -> None:
        """The mouse left a grid: a hover crosshair goes, and the readouts show the newest values again."""
        if not self.cursor_pinned:
            self.clear_cursor()

    def set_cursor(self, x: float, source: MetricPlot | None = None, pinned: bool | None = None) -> None:
        """Move the crosshair of every plot to ``x`` (data coordinates).

        From the mouse (``source``) it follows the hover and goes when the mouse
        leaves; otherwise (an alert selected) it is pinned until the mouse moves
        over a plot, Home, another run or :meth:`clear_cursor`.
        """
        self.cursor_pinned = source is None if pinned is None else pinned
        self.cursor_x = x
        for plot in self.plots.values():
            plot.cursor_x = x
            plot.cursor.setPos(x)
            plot.cursor.show()
        tooltip = ""
        if source is not None:
            vb = source.item.getViewBox()
            px = vb.viewPixelSize()[0] if vb.width() > 0 else 0.0
            tooltip = source.marker_tip_near(x, self.settings.x_by, 4 * px)
            grid = self._grid_of[source.spec.key]
            grid.setToolTip(tooltip)
        self._pending_cursor = x
        self._titles_stale = {id(g) for g in (self.training, self.system, self.music)}
        self.cursorMoved.emit(x)

    def clear_cursor(self) -> None:
        """No crosshair: every readout shows the newest values (and follows them as the run goes on)."""
        self.cursor_pinned = False
        if self.cursor_x is None and not any(p.cursor_x is not None for p in self.plots.values()):
            return
        self.cursor_x = None
        for plot in self.plots.values():
            plot.cursor_x = None
            plot.cursor.hide()
        for grid in (self.training, self.system, self.music):
            grid.setToolTip("")
        self._titles_stale = {id(g) for g in (self.training, self.system, self.music)}
