"""The dashboard's x range: follow the data as it grows, or hold what the user zoomed to."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gui.widgets.plots.curve import PlotSettings
    from gui.widgets.plots.grid import PlotGrid
    from gui.widgets.plots.metric_plot import MetricPlot


def round_up(value: float) -> float:
    """The next round number at or above ``value`` (1, 2, 3, 5 x 10^k): a range
    change redraws every axis and re-decimates every curve, so it should be rare."""
    if value <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    for m in (1.0, 2.0, 3.0, 5.0, 10.0):
        if value <= m * scale * (1 + 1e-12):
            return m * scale
    return 10.0 * scale


class FollowMixin:
    """Part of :class:`~gui.widgets.plots.dashboard.Dashboard`: one x range for its grids, widened in coarse steps
    while ``follow`` is on; a zoom or pan by the user turns it off, Fit turns it on again."""

    # The dashboard's, which this part reads and moves.
    plots: dict[str, MetricPlot]
    settings: PlotSettings
    training: PlotGrid
    system: PlotGrid
    music: PlotGrid
    follow: bool
    _unfitted: set[int]

    if TYPE_CHECKING:

        def clear_cursor(self) -> None: ...  # CrosshairMixin's, before this one in the dashboard's bases

    def fit(self) -> None:
        """Show all the data again (both axes) and follow new points."""
        self.follow = True
        self.clear_cursor()
        for plot in self.plots.values():
            plot.item.enableAutoRange(y=True)
        self._follow(force=True)

    def show_x(self, x0: float, x1: float) -> None:
        """Show ``[x0, x1]`` on every plot and stop following new points, as a user's zoom does."""
        self.follow = False
        for grid in (self.training, self.system, self.music):
            if grid.anchor is not None:
                grid.anchor.item.getViewBox().setXRange(x0, x1, padding=0)

    def _user_moved_x(self, source: MetricPlot, changed) -> None:
        """A zoom or pan by the user: stop following, and show the other grids the same x range."""
        if changed is not None and not changed[0]:
            return
        self.show_x(*source.item.getViewBox().viewRange()[0])

    def _follow(self, grid: PlotGrid | None = None, force: bool = False) -> bool:
        """Keep all data in view in ``grid`` (every grid when None), widening the
        x range in coarse steps; returns whether a range changed.

        An axis redraws (text, grid) whenever its range changes; growing the
        range to the next round number instead of to the last point changes
        it a few times per decade rather than every frame.
        """
        lo, hi = math.inf, -math.inf
        for plot in self.plots.values():
            for curve in plot.curves:
                if len(curve.series):
                    xs = curve.xs(self.settings.x_by)
                    lo, hi = min(lo, float(xs[0])), max(hi, float(xs[-1]))
                for seg in curve.series.superseded:  # an undone stretch stays in view until the run passes it
                    hi = max(hi, float((seg.steps if self.settings.x_by == "step" else seg.times)[-1]))
        if not math.isfinite(lo):
            return False
        target = round_up(hi)
        left = min(lo, 0.0)  # steps and times count from 0
        moved = False
        for g in (self.training, self.system, self.music) if grid is None else (grid,):
            if g.anchor is None:
                continue
            master = g.anchor.item.getViewBox()
            v_lo, v_hi = master.viewRange()[0]
            fresh = id(g) in self._unfitted  # another run's range until this run's first data
            if fresh or force or hi > v_hi or lo < v_lo or v_hi > 2 * target or v_lo < left - 0.5 * (target - left):
                master.setXRange(left, target, padding=0.02)
                self._unfitted.discard(id(g))
                moved = True
        return moved
