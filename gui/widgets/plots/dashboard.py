"""Live metric plots (pyqtgraph), fed from the runs' series by a redraw timer.

Every curve item is created once and fed with ``setData`` with what the view
shows: the series' points in the visible x range, peak-downsampled to the
plot's width from the series' min/max pyramid (:mod:`gui.models.envelope`),
so every point is represented (a one-step spike survives) and a redraw costs
the same for a thousand points or ten million. Redraws come from one timer,
never from events, at <= 30 Hz and less often when painting is slow, so a
flood of points cannot stall the window. Non-finite values are drawn as
markers, never dropped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import pyqtgraph as pg
import pyqtgraph.exporters  # noqa: F401  (pg.exporters is not imported by pyqtgraph itself)
from PySide6 import QtCore, QtGui, QtWidgets

from gui.models.export import write_csv
from gui.models.plotspec import QUALITY, SYSTEM, TRAINING, PlotSpec, is_musical, musical_spec
from gui.models.run_model import RunModel
from gui.theme import Theme
from gui.widgets.plots.crosshair import CrosshairMixin
from gui.widgets.plots.curve import Curve, PlotSettings
from gui.widgets.plots.follow import FollowMixin
from gui.widgets.plots.grid import PlotGrid
from gui.widgets.plots.metric_plot import MetricPlot

FRAME_MS = 33  # <= 30 Hz
FRAME_BUDGET_S = (
    0.006  # of setData per tick: the timers and paints of one event-loop pass must stay well under 50 ms together
)
# While a run's backlog (a finished run being opened, a flood of events) is
# read, a frame of partial data costs as much to paint as a full one: redraw
# only this often until it is caught up.
BACKLOG_BYTES = 1 << 20
BACKLOG_FRAME_S = 2.0
PAINT_SHARE_INV = 4  # a redraw at most every 4x the last paint's duration: paint <= 1/4 of the time
LINE_STYLES = (
    QtCore.Qt.PenStyle.SolidLine,
    QtCore.Qt.PenStyle.DashLine,
    QtCore.Qt.PenStyle.DotLine,
    QtCore.Qt.PenStyle.DashDotLine,
)
# Music plots: as many columns as fit plots this wide (one in a side dock), rows at least this high
# (with many metrics the dock scrolls rather than squash them).
MUSIC_PLOT_PX = 300
# The training grid's columns: up to three, as many as leave each plot this wide (legends, tick labels).
TRAINING_PLOT_PX = 280
TRAINING_ROW_PX = 150  # below this per row the grid scrolls (its host is a scroll area) instead of squashing plots
MUSIC_ROW_PX = 165


class Dashboard(CrosshairMixin, FollowMixin, QtCore.QObject):
    """All plots of the window, the runs they show, and the redraw timer.

    The first model is the primary run (the one the toolbar steers; its
    markers are drawn); the others are overlays for comparison.
    """

    redrawn = QtCore.Signal()  # after a tick that pushed data into curves
    cursorMoved = QtCore.Signal(float)

    def __init__(self, theme: Theme, settings: PlotSettings | None = None, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.theme = theme
        self.settings = settings or PlotSettings()
        self.models: list[RunModel] = []
        self.training = PlotGrid(3, theme, plot_px=TRAINING_PLOT_PX, row_px=TRAINING_ROW_PX)
        self.system = PlotGrid(1, theme)
        self.music = PlotGrid(
            3,
            theme,
            placeholder="Musical metrics appear here when the run evaluates or generates samples.",
            plot_px=MUSIC_PLOT_PX,
            row_px=MUSIC_ROW_PX,
        )
        self.cursor_x: float | None = None  # None: every readout shows the newest values
        self.cursor_pinned = False  # set by a selection (an alert), not by hovering: stays when the mouse leaves
        self._titles_stale: set[int] = (
            set()
        )  # grids whose titles wait for the crosshair (hidden ones catch up when shown)
        self.plots: dict[str, MetricPlot] = {}
        self._grid_of: dict[str, PlotGrid] = {}
        for spec in TRAINING:
            self._make_plot(spec, self.training, relayout=False)
        for spec in SYSTEM:
            self._make_plot(spec, self.system, relayout=False)
        self.training._relayout()
        self.system._relayout()
        self._bound: dict[int, int] = {}  # id(model) -> series bound so far
        self._markers_seen: int = 0
        self._reference: dict | None = None  # the primary run's corpus reference the music plots show
        self._rr: dict[int, int] = {}  # per grid: where the round-robin over its curves resumes under budget
        self._grid_rr = 0  # the grid whose turn it is to be pushed
        self._pushed_grid: PlotGrid | None = None
        self.last_redraw_s = 0.0
        self._pending_cursor: float | None = None
        self.follow = True  # the x range follows the data until the user zooms or pans
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(FRAME_MS)
        self._timer.timeout.connect(self.tick)
        self._timer.start()
        for grid in (self.training, self.system, self.music):
            grid.scene().sigMouseMoved.connect(lambda pos, g=grid: self._mouse_moved(g, pos))
            grid.left.connect(self._mouse_left)
            grid.resized.connect(lambda g=grid: self._titles_stale.add(id(g)))

    # ------------------------------------------------------------ structure

    def _make_plot(self, spec: PlotSpec, grid: PlotGrid, relayout: bool = True, first: bool = False) -> MetricPlot:
        plot = MetricPlot(spec, self.theme, self._export, self.fit)
        # The x range is the dashboard's (see _follow), not each plot's autorange.
        plot.item.enableAutoRange(x=False)
        plot.item.getViewBox().sigRangeChangedManually.connect(lambda changed, p=plot: self._user_moved_x(p, changed))
        # x axes are linked within a grid; across grids the dashboard keeps
        # them equal (see _follow, _user_moved_x), so that when the range
        # grows each grid redraws its axes in a frame of its own.
        if grid.anchor is not None:
            plot.item.setXLink(grid.anchor.item)
        else:
            shown = next((g.anchor for g in (self.training, self.system, self.music) if g.anchor is not None), None)
            if shown is not None:  # a grid's first plot starts where the others are (zoomed or not)
                plot.item.setXRange(*shown.item.getViewBox().viewRange()[0], padding=0)
        self.plots[spec.key] = plot
        self._grid_of[spec.key] = grid
        plot.item.setVisible(not spec.optional)
        grid.add_plot(plot, relayout, first)
        if self.cursor_x is not None:
            plot.cursor_x = self.cursor_x
            plot.cursor.setPos(self.cursor_x)
            plot.cursor.show()
        plot.update_title(self.settings, False)
        return plot

    @property
    def primary(self) -> RunModel | None:
        return self.models[0] if self.models else None

    def set_models(self, models: Iterable[RunModel]) -> None:
        """Show these runs (first = primary). Curves are rebound from scratch:
        colors depend on how many runs are shown, markers on which is primary."""
        for plot in self.plots.values():
            for model in self.models:
                plot.remove_model(model)
        for key in [k for k, p in self.plots.items() if k.startswith("music:")]:
            plot = self.plots.pop(key)
            grid = self._grid_of.pop(key)
            grid.plots.remove(plot)
            if grid.anchor is plot:
                grid.anchor = None
            grid._relayout()
        models = list(models)
        if (models[0] if models else None) is not self.primary:
            self.clear_cursor()  # another run: a step picked in the last one means nothing here
        self.models = models
        self._bound.clear()
        self._markers_seen = 0
        self._reference = None
        self.follow = True
        self.sync()

    def sync(self, budget_s: float | None = None) -> None:
        """Bind series and markers that appeared since the last call (cheap when none did).

        With ``budget_s``, binding stops once that much time is spent and the
        rest waits for the next call: a run's first metrics bring a dozen
        series at once, and creating their curves in one go stalls the window.
        """
        started = time.perf_counter()
        overlay = len(self.models) > 1
        for run_index, model in enumerate(self.models):
            names = model.series_order
            while self._bound.get(id(model), 0) < len(names):
                if budget_s is not None and time.perf_counter() - started > budget_s:
                    return
                i = self._bound.get(id(model), 0)
                self._bind(model, run_index, names[i], overlay)
                self._bound[id(model)] = i + 1
        primary = self.primary
        if primary is not None and self._markers_seen < len(primary.markers):
            for marker in primary.markers[self._markers_seen :]:
                for plot in self.plots.values():
                    plot.add_marker(marker, self.settings.x_by)
            self._markers_seen = len(primary.markers)
        if primary is not None and primary.music_reference is not self._reference:
            self._reference = primary.music_reference
            for plot in self.music.plots:
                plot.set_reference(self._reference_for(plot.spec))

    def _bind(self, model: RunModel, run_index: int, name: str, overlay: bool) -> None:
        series = model.series[name]
        if is_musical(name):
            spec = musical_spec(name)
            if spec.key not in self.plots:
                # The quality score sums up the others: it goes first.
                plot = self._make_plot(spec, self.music, first=spec.key == f"music:{QUALITY}")
                plot.set_reference(self._reference_for(spec))
                primary = self.primary
                assert primary is not None  # ``model`` is one of self.models
                for marker in primary.markers[: self._markers_seen]:  # those from before it existed
                    plot.add_marker(marker, self.settings.x_by)
        for key, plot in self.plots.items():
            label = plot.spec.label_for(name, model.env)
            if label is None:
                continue
            if overlay:
                color = self.theme.palette[run_index % len(self.theme.palette)]
                style = LINE_STYLES[len([c for c in plot.curves if c.model is model]) % len(LINE_STYLES)]
            else:
                color = self.theme.palette[len(plot.curves) % len(self.theme.palette)]
                style = LINE_STYLES[0]
            plot.add_curve(Curve(plot, model, series, label, QtGui.QColor(color), style, plot.spec.points))
            if plot.spec.optional:
                self._grid_of[key].set_plot_visible(plot, True)

    def _reference_for(self, spec: PlotSpec) -> tuple[float, float | None] | None:
        """A musical plot's corpus level: fixed by its metric, else the primary run's reference."""
        if spec.reference_level is not None:
            return spec.reference_level, None
        primary = self.primary
        return primary.music_reference.get(spec.reference) if primary is not None and spec.reference else None

    # --------------------------------------------------------------- redraw

    def tick(self) -> None:
        """One frame: bind new series, follow the data, then push one grid's changed curves within the budget."""
        start = time.perf_counter()
        if any(m.backlog > BACKLOG_BYTES for m in self.models) and start - self.last_redraw_s < BACKLOG_FRAME_S:
            return
        self.sync(FRAME_BUDGET_S)
        # Painting the pushed curves costs more than pushing them: keep it to
        # a share of the time, so a slow machine draws less often but still
        # reads every event and answers the user (the crosshair is not held back).
        last_paint = self._pushed_grid.paint_s if self._pushed_grid is not None else 0.0
        pushed: PlotGrid | None = None
        if start - self.last_redraw_s >= PAINT_SHARE_INV * last_paint:
            # One grid per tick, so each grid is painted in an event-loop pass
            # of its own rather than the whole dashboard in one long pass.
            grids = [g for g in (self.training, self.system, self.music) if g.isVisible()]
            for k in range(len(grids)):
                grid = grids[(self._grid_rr + k) % len(grids)]
                moved = self.follow and self._follow(grid)
                if self._push(grid, start) or moved:
                    pushed = grid
                    self._grid_rr = (self._grid_rr + k + 1) % len(grids)
                    break
        stale = {
            id(g) for g in (self.training, self.system, self.music) if id(g) in self._titles_stale and g.isVisible()
        }
        if stale or pushed is not None:
            overlay = len(self.models) > 1
            for plot in self.plots.values():
                grid = self._grid_of[plot.spec.key]
                if self._visible(plot) and (id(grid) in stale or grid is pushed):
                    plot.update_title(self.settings, overlay)
            self._titles_stale -= stale
            self._pending_cursor = None
        if pushed is not None:
            self._pushed_grid = pushed
            self.last_redraw_s = time.perf_counter()
            self.redrawn.emit()

    def _push(self, grid: PlotGrid, start: float) -> bool:
        """Push the grid's changed curves, round-robin, until the frame budget is spent."""
        curves = [(p, c) for p in grid.plots if p.item.isVisible() for c in p.curves]
        if not curves:
            return False
        views: dict[int, tuple[float, float, int]] = {}
        touched: set[int] = set()
        n = len(curves)
        first = self._rr.get(id(grid), 0) % n
        for k in range(n):
            plot, curve = curves[(first + k) % n]
            view = views.get(id(plot))
            if view is None:
                view = views[id(plot)] = plot.view()
            if curve.refresh(self.settings, view) and id(plot) not in touched:
                touched.add(id(plot))
                plot.update_y_floor()
            if time.perf_counter() - start > FRAME_BUDGET_S:
                self._rr[id(grid)] = (first + k + 1) % n
                break
        for plot in grid.plots:
            if id(plot) in touched:
                # pyqtgraph settles auto-ranges when the paint begins, and a
                # range that moves then asks for a second paint; settled now,
                # the grid is painted once.
                plot.item.getViewBox().prepareForPaint()
        return bool(touched)

    def stop(self) -> None:
        """No more redraws (the window is closing)."""
        self._timer.stop()

    def _visible(self, plot: MetricPlot) -> bool:
        grid = self._grid_of[plot.spec.key]
        return grid.isVisible() and plot.item.isVisible()

    def redraw_all(self) -> None:
        """Push every curve now, whatever the budget or visibility (screenshots, export)."""
        self.sync()
        if self.follow:
            self._follow(force=True)
        for plot in self.plots.values():
            view = plot.view()
            for curve in plot.curves:
                curve.refresh(self.settings, view)
            plot.update_y_floor()
            plot.update_title(self.settings, len(self.models) > 1)

    def is_current(self) -> bool:
        """True when every visible curve shows its series' latest version
        (hidden docks catch up when shown)."""
        return all(self._bound.get(id(m), 0) == len(m.series_order) for m in self.models) and all(
            c.drawn is not None and c.drawn[0] == c.series.version
            for p in self.plots.values()
            if self._visible(p)
            for c in p.curves
        )

    # ------------------------------------------------------------- settings

    def set_smoothing(self, weight: float) -> None:
        self.settings.smoothing = min(max(float(weight), 0.0), 0.999)

    def set_show_raw(self, on: bool) -> None:
        self.settings.show_raw = bool(on)

    def set_x_by(self, by: str) -> None:
        if by not in ("step", "time") or by == self.settings.x_by:
            return
        self.settings.x_by = by
        for plot in self.plots.values():
            plot.axis.by = by
            plot.reposition_markers(by)
        self.clear_cursor()
        self.fit()

    def set_log_y(self, key: str, on: bool) -> None:
        self.plots[key].set_log_y(on)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        for grid in (self.training, self.system, self.music):
            grid.apply_theme(theme)
        self.set_models(self.models)

    # --------------------------------------------------------------- export

    def _export(self, plot: MetricPlot, kind: str) -> None:
        parent = self._grid_of[plot.spec.key].window()
        suggested = str(Path.home() / f"{(self.primary.name if self.primary else 'run')}-{plot.spec.key}.{kind}")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            parent, f"Export {plot.spec.title}", suggested, "PNG image (*.png)" if kind == "png" else "CSV (*.csv)"
        )
        if path:
            self.export(plot.spec.key, path)

    def export(self, key: str, path: str) -> int:
        """Write one plot to ``path`` (.png image or .csv of every point); returns rows or 0."""
        plot = self.plots[key]
        if path.lower().endswith(".csv"):
            return write_csv(path, [(c.model.name, c.label, c.series) for c in plot.curves], self.settings.smoothing)
        self.redraw_all()
        exporter = pg.exporters.ImageExporter(plot.item)
        exporter.parameters()["width"] = 1200
        exporter.export(path)
        return 0
