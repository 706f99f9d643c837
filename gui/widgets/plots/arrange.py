"""Which plots the dashboard shows, where: the grids as the finder filters, orders and maximises them, and the
central area's plots or empty state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6 import QtCore

from gui.widgets.plots.view import MAXIMISE_KEY, DashboardView

if TYPE_CHECKING:
    from gui.models.run_model import RunModel
    from gui.widgets.plots.finder import PlotFinder
    from gui.widgets.plots.grid import PlotGrid
    from gui.widgets.plots.metric_plot import MetricPlot


class ArrangeMixin:
    """Part of :class:`~gui.widgets.plots.dashboard.Dashboard`: lays its grids out from its ``finder`` and
    switches its ``view`` between the plots and the empty state."""

    # The dashboard's, which this part reads and moves.
    models: list[RunModel]
    plots: dict[str, MetricPlot]
    training: PlotGrid
    system: PlotGrid
    music: PlotGrid
    finder: PlotFinder
    view: DashboardView
    _grid_of: dict[str, PlotGrid]
    _titles_stale: set[int]

    if TYPE_CHECKING:

        @property
        def primary(self) -> RunModel | None: ...

        def _retitle(self, plot: MetricPlot) -> None: ...

    def _arrange(self) -> None:
        """Lay each grid out with the plots the finder lets through (pinned first, or the maximised one alone),
        and the central area with the plots or the empty state."""
        has_data = any(p.curves for p in self.plots.values())
        finder = self.finder
        maximised = finder.maximised if finder.maximised in self.plots else None
        for grid in (self.training, self.system, self.music):
            if maximised is not None and self._grid_of[maximised] is grid:
                grid.arrange([self.plots[maximised]], single=True)
                continue
            shown = [p for p in finder.order(grid.plots) if (p.curves or not p.spec.optional) and finder.matches(p)]
            placeholder = ""
            if not self.models:
                shown, placeholder = [], "No run open"
            elif not has_data:
                shown, placeholder = [], "No metrics yet"
            elif not shown and grid.plots and finder.pattern is not None:
                placeholder = f"No plot here matches “{finder.text}”"
            grid.arrange(shown, placeholder)
        for plot in self.plots.values():
            if plot.pin_action.isChecked() != finder.is_pinned(plot.spec.key):
                plot.pin_action.setChecked(finder.is_pinned(plot.spec.key))
            self._retitle(plot)
        self._titles_stale = {id(g) for g in (self.training, self.system, self.music)}
        primary = self.primary
        if primary is None:
            self.view.show_plots(
                False,
                "Open a run or start one",
                "Its loss, learning rate and every other metric are plotted here, live.",
                True,
            )
        elif not has_data:
            self.view.show_plots(
                False, f"No metrics from {primary.name} yet", "Plots appear with the run's first logged step."
            )
        else:
            self.view.show_plots(True)
        if finder.error:
            self.view.show_message(finder.error, error=True)
        elif maximised is not None:
            self.view.show_message(f"Maximised: {MAXIMISE_KEY} or double-click for all")
        elif finder.pattern is not None:
            n = sum(len(g.shown) for g in (self.training, self.system, self.music))
            self.view.show_message("1 plot matches" if n == 1 else f"{n} plots match")
        else:
            self.view.show_message("")

    def toggle_maximised(self, key: str | None = None) -> None:
        """Maximise the plot ``key`` (the one last under the mouse; the first shown when that is None or
        hidden now), or show all again."""
        if self.finder.maximised not in self.plots:
            self.finder.maximised = None
        if self.finder.maximised is None and (key not in self.plots or not self.plots[key].item.isVisible()):
            key = next((p.spec.key for p in self.training.shown), None)
            if key is None:
                return
        self.finder.toggle_maximised(key)

    def _clicked(self, grid: PlotGrid, event) -> None:
        if not event.double() or event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        for plot in grid.shown:
            if plot.item.sceneBoundingRect().contains(event.scenePos()):
                self.toggle_maximised(plot.spec.key)
                event.accept()
                return
