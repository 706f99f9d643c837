"""The dashboard's redraws: one timer, at most 30 Hz, each frame pushing one grid's changed curves within a budget."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from PySide6 import QtCore

if TYPE_CHECKING:
    from gui.models.run_model import RunModel
    from gui.widgets.plots.curve import PlotSettings
    from gui.widgets.plots.grid import PlotGrid
    from gui.widgets.plots.metric_plot import MetricPlot

FRAME_MS = 33  # <= 30 Hz
FRAME_BUDGET_S = (
    0.006  # of setData per tick: the timers and paints of one event-loop pass must stay well under 50 ms together
)
# While a run's backlog is read as it is opened, a frame of partial data costs
# as much to paint as a full one: redraw only this often until it is caught up.
BACKLOG_BYTES = 1 << 20
BACKLOG_FRAME_S = 2.0
PAINT_TARGET_S = 0.015  # of one paint of a grid: plots beyond what fits wait for the next frame
PAINT_SHARE_INV = 2  # a redraw at most every 2x the paints' duration: paint <= 1/2 of the time


class FramesMixin:
    """Part of :class:`~gui.widgets.plots.dashboard.Dashboard`: the redraw timer's frames and the readouts
    they update; a paint-paced share of the time, so a flood of points cannot stall the window."""

    # The dashboard's, which this part reads and moves.
    models: list[RunModel]
    plots: dict[str, MetricPlot]
    settings: PlotSettings
    training: PlotGrid
    system: PlotGrid
    music: PlotGrid
    follow: bool
    redrawn: QtCore.SignalInstance
    _grid_of: dict[str, PlotGrid]
    _titles_stale: set[int]
    _pending_cursor: float | None
    _bound: dict[int, int]

    if TYPE_CHECKING:

        def sync(self, budget_s: float | None = None) -> None: ...

        def _follow(self, grid: PlotGrid | None = None, force: bool = False) -> bool: ...

        def _retitle(self, plot: MetricPlot) -> None: ...

    def _start_frames(self) -> None:
        self._rr: dict[int, int] = {}  # per grid: where the round-robin over its curves resumes under budget
        self._grid_rr = 0  # the grid whose turn it is to be pushed
        self._pushed_grid: PlotGrid | None = None
        self.last_redraw_s = 0.0
        self._read_backlog = False  # the models had a backlog at the last frame
        self._last_frame_s = 0.0
        # One frame at a time, the next FRAME_MS after the last or sooner when data arrives (``poke``).
        self._timer = QtCore.QTimer(self)  # type: ignore[arg-type]  # a QObject: the dashboard
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._frame)
        self._timer.start(FRAME_MS)
        self._stopped = False

    def _frame(self) -> None:
        try:
            self.tick()
        finally:
            self._last_frame_s = time.perf_counter()
            if not self._stopped:
                self._timer.start(FRAME_MS)

    def poke(self) -> None:
        """New data: the next frame as soon as the frame rate allows, not at the timer's next beat (the data
        would wait for it, half a frame on average)."""
        due_ms = max(0, round((self._last_frame_s + FRAME_MS / 1000 - time.perf_counter()) * 1000))
        if self._timer.isActive() and self._timer.remainingTime() > due_ms:
            self._timer.start(due_ms)

    def tick(self) -> None:
        """One frame: bind new series, follow the data, then push one grid's changed curves within the budget."""
        start = time.perf_counter()
        # Curves are made and laid out while a backlog is read, so they are ready to draw when it ends.
        self.sync(FRAME_BUDGET_S)
        # Only while a run is being opened: a live run that is read behind for a moment keeps its budgeted
        # frames (held back, then pushed whole, it made one frame of every curve: a 100 ms stall).
        if any(m.backlog > BACKLOG_BYTES and not m.read_through for m in self.models):
            self._read_backlog = True
            if start - self.last_redraw_s < BACKLOG_FRAME_S:
                return
        elif self._read_backlog:
            # A backlog (a finished run opened) has just been read: the user is waiting for exactly this
            # frame, so every grid is pushed in it, whatever the budget.
            self._read_backlog = False
            for grid in (g for g in (self.training, self.system, self.music) if g.isVisible()):
                if self.follow:
                    self._follow(grid, force=True)
                self._push(grid, start, math.inf)
            for plot in self.plots.values():
                if self._visible(plot):
                    self._retitle(plot)
            self.last_redraw_s = time.perf_counter()
            self.redrawn.emit()
            return
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
            for plot in self.plots.values():
                grid = self._grid_of[plot.spec.key]
                if self._visible(plot) and (id(grid) in stale or grid is pushed):
                    self._retitle(plot)
            self._titles_stale -= stale
            self._pending_cursor = None
        if pushed is not None:
            self._pushed_grid = pushed
            self.last_redraw_s = time.perf_counter()
            self.redrawn.emit()

    def _push(self, grid: PlotGrid, start: float, budget_s: float = FRAME_BUDGET_S) -> bool:
        """Push the grid's changed curves, round-robin, until ``budget_s`` is spent or as many plots changed
        as one paint of PAINT_TARGET_S redraws (the rest in the next frames: a flood of points never makes
        one long paint of every plot)."""
        curves = [(p, c) for p in grid.plots if p.item.isVisible() for c in p.curves]
        if not curves:
            return False
        per_plot = grid.paint_s / max(1, grid.plots_changed)
        most = len(grid.plots) if budget_s == math.inf or per_plot <= 0 else max(2, int(PAINT_TARGET_S / per_plot))
        views: dict[int, tuple[float, float, int]] = {}
        touched: set[int] = set()
        n = len(curves)
        first = self._rr.get(id(grid), 0) % n
        for k in range(n):
            plot, curve = curves[(first + k) % n]
            if len(touched) >= most and id(plot) not in touched:
                self._rr[id(grid)] = (first + k) % n
                break
            view = views.get(id(plot))
            if view is None:
                view = views[id(plot)] = plot.view()
            if curve.refresh(self.settings, view) and id(plot) not in touched:
                touched.add(id(plot))
                plot.update_y_floor()
            if time.perf_counter() - start > budget_s:
                self._rr[id(grid)] = (first + k + 1) % n
                break
        for plot in grid.plots:
            if id(plot) in touched:
                # pyqtgraph settles auto-ranges when the paint begins, and a
                # range that moves then asks for a second paint; settled now,
                # the grid is painted once.
                plot.item.getViewBox().prepareForPaint()
        if touched:
            grid.plots_changed = len(touched)
        return bool(touched)

    def stop(self) -> None:
        """No more redraws (the window is closing)."""
        self._stopped = True
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
            self._retitle(plot)

    def is_current(self) -> bool:
        """True when every visible curve shows its series' latest version
        (hidden docks catch up when shown)."""
        return all(self._bound.get(id(m), 0) == len(m.series_order) for m in self.models) and all(
            c.drawn is not None and c.drawn[0] == c.series.version
            for p in self.plots.values()
            if self._visible(p)
            for c in p.curves
        )
