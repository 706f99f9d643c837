"""Live metric plots (pyqtgraph), fed from the runs' series by a redraw timer.

Every curve item is created once and fed with ``setData`` with what the view
shows: the series' points in the visible x range, peak-downsampled to the
plot's width from the series' min/max pyramid (:mod:`gui.models.envelope`),
so every point is represented (a one-step spike survives) and a redraw costs
the same for a thousand points or ten million. Redraws come from one timer,
never from events (:mod:`~gui.widgets.plots.frames`). Non-finite values are
drawn as markers, never dropped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyqtgraph as pg
import pyqtgraph.exporters  # noqa: F401  (pg.exporters is not imported by pyqtgraph itself)
from PySide6 import QtCore, QtGui, QtWidgets

from gui.models.export import write_csv
from gui.models.plotspec import QUALITY, SYSTEM, TRAINING, PlotSpec, is_musical, musical_spec
from gui.theme import Theme
from gui.widgets.plots.arrange import ArrangeMixin
from gui.widgets.plots.crosshair import CrosshairMixin
from gui.widgets.plots.curve import Curve, PlotSettings
from gui.widgets.plots.finder import PlotFinder
from gui.widgets.plots.follow import FollowMixin
from gui.widgets.plots.frames import FramesMixin
from gui.widgets.plots.grid import PlotGrid
from gui.widgets.plots.markers import MarkerTips
from gui.widgets.plots.metric_plot import MetricPlot
from gui.widgets.plots.view import DashboardView

if TYPE_CHECKING:
    from gui.models.run_model import RunModel

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
IDLE_BUILD_MS = 100  # the plots start building this long after the window is made: after its first paint


class Dashboard(ArrangeMixin, CrosshairMixin, FollowMixin, FramesMixin, QtCore.QObject):
    """All plots of the window, the runs they show, which plots are shown (:class:`PlotFinder`), and the
    central area they are shown in (:attr:`view`).

    The first model is the primary run (the one the toolbar steers; its markers are drawn and its
    values read out); the others are overlays for comparison, each in a colour of its own.
    """

    redrawn = QtCore.Signal()  # after a tick that pushed data into curves
    cursorMoved = QtCore.Signal(float)

    def __init__(
        self,
        theme: Theme,
        settings: PlotSettings | None = None,
        parent: QtCore.QObject | None = None,
        store: QtCore.QSettings | None = None,
    ):
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
        self.finder = PlotFinder(store, self)
        self.view = DashboardView(self.training, theme)
        self.cursor_x: float | None = None  # None: every readout shows the newest values
        self.cursor_pinned = False  # set by a selection (an alert), not by hovering: stays when the mouse leaves
        self.hovered: str | None = None  # the plot under the mouse (the one the maximise key picks)
        self._titles_stale: set[int] = set()  # grids whose titles wait for the crosshair (hidden ones catch up)
        self.plots: dict[str, MetricPlot] = {}
        self._grid_of: dict[str, PlotGrid] = {}
        self._log_y = {spec.key: spec.log_y for spec in (*TRAINING, *SYSTEM)}  # kept for plots not built yet
        # Built after the first paint, one per turn of the event loop, or all at once when a run is shown first.
        self._unbuilt = [(spec, self.training) for spec in TRAINING] + [(spec, self.system) for spec in SYSTEM]
        QtCore.QTimer.singleShot(IDLE_BUILD_MS, self, self._build_one)
        self._bound: dict[int, int] = {}  # id(model) -> series bound so far
        self._unarranged = False  # series bound since the grids were last laid out
        self._markers_seen: int = 0
        self._tips = MarkerTips()
        self._reference: dict | None = None  # the primary run's corpus reference the music plots show
        self._pending_cursor: float | None = None
        self.follow = True  # the x range follows the data until the user zooms or pans
        self._unfitted: set[int] = set()  # grids whose x range is still another run's
        self._start_frames()
        for grid in (self.training, self.system, self.music):
            grid.scene().sigMouseMoved.connect(lambda pos, g=grid: self._mouse_moved(g, pos))
            grid.scene().sigMouseClicked.connect(lambda event, g=grid: self._clicked(g, event))
            grid.left.connect(self._mouse_left)
            grid.resized.connect(lambda g=grid: self._titles_stale.add(id(g)))
        self.finder.changed.connect(self._arrange)
        self.view.filterChanged.connect(self.finder.set_filter)
        self.view.maximiseRequested.connect(lambda: self.toggle_maximised(self.hovered))
        self._arrange()

    # ------------------------------------------------------------ structure

    def _build_plots(self) -> None:
        """The training and system plots not built yet. Their PlotItems are most of the window's
        construction: the empty window paints without them."""
        while self._unbuilt:
            self._make_plot(*self._unbuilt.pop(0))

    def _build_one(self) -> None:
        """One plot (some 20 ms), then the event loop turns: building them while idle never stalls the window."""
        if self._unbuilt:
            self._make_plot(*self._unbuilt.pop(0))
        if self._unbuilt:
            QtCore.QTimer.singleShot(0, self, self._build_one)

    def _make_plot(self, spec: PlotSpec, grid: PlotGrid, first: bool = False) -> MetricPlot:
        plot = MetricPlot(spec, self.theme, self._export, self.fit)
        if self._log_y.get(spec.key, spec.log_y) != plot.log_y:
            plot.set_log_y(self._log_y[spec.key])
        plot.log_action.toggled.connect(lambda on, k=spec.key: self._log_y.__setitem__(k, on))
        plot.axis.by = self.settings.x_by
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
        plot.pin_action.setChecked(self.finder.is_pinned(spec.key))
        plot.pin_action.toggled.connect(lambda on, k=spec.key: self.finder.set_pinned(k, on))
        plot.maximise_action.triggered.connect(lambda _checked=False, k=spec.key: self.toggle_maximised(k))
        self.plots[spec.key] = plot
        self._grid_of[spec.key] = grid
        plot.item.setVisible(False)  # until the grid is arranged
        grid.add_plot(plot, first)
        if self.cursor_x is not None:
            plot.cursor_x = self.cursor_x
            plot.cursor.setPos(self.cursor_x)
            plot.cursor.show()
        self._retitle(plot)
        return plot

    @property
    def primary(self) -> RunModel | None:
        return self.models[0] if self.models else None

    @property
    def runs(self) -> list[tuple[RunModel, str]]:
        """The runs shown and their colours, the primary first."""
        palette = self.theme.palette
        return [(m, palette[i % len(palette)]) for i, m in enumerate(self.models)]

    def set_models(self, models: Iterable[RunModel]) -> None:
        """Show these runs (first = primary). Curves are rebound from scratch:
        colors depend on how many runs are shown, markers on which is primary."""
        for plot in self.plots.values():
            for model in self.models:
                plot.remove_model(model)
        for key in [k for k in self.plots if k.startswith("music:")]:
            self._grid_of.pop(key).remove_plot(self.plots.pop(key))
        models = list(models)
        if models:
            self._build_plots()
        if (models[0] if models else None) is not self.primary:
            self.clear_cursor()  # another run: a step picked in the last one means nothing here
            self._reset_ranges()
        self.models = models
        self._bound.clear()
        self._markers_seen = 0
        self._tips = MarkerTips()
        self._reference = None
        self.follow = True
        self.view.set_runs([(m.name, color) for m, color in self.runs])
        self.sync()
        self._arrange()

    def _reset_ranges(self) -> None:
        """Nothing of the last run's view stays: y ranges fit the data again, x ranges at the first data."""
        for plot in self.plots.values():
            plot.item.enableAutoRange(y=True)
        self._unfitted = {id(g) for g in (self.training, self.system, self.music)}

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
                    # Laid out once all are bound: each layout change resizes every plot of its grid.
                    self._unarranged = True
                    return
                i = self._bound.get(id(model), 0)
                self._bind(model, run_index, names[i], overlay)
                self._bound[id(model)] = i + 1
                self._unarranged = True
        if self._unarranged:  # optional plots that got data, plots that now match the filter, the first data
            self._unarranged = False
            self._arrange()
        primary = self.primary
        if primary is not None and self._markers_seen < len(primary.markers):
            for marker in primary.markers[self._markers_seen :]:
                tip = self._tips.tooltip(marker, primary.notable)
                for plot in self.plots.values():
                    plot.add_marker(marker, self.settings.x_by, tip)
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
                    plot.add_marker(marker, self.settings.x_by, self._tips.tooltip(marker, primary.notable))
        for plot in self.plots.values():
            label = plot.spec.label_for(name, model.env)
            if label is None:
                continue
            if overlay:  # runs told apart by colour, a run's series by line style
                color = self.theme.palette[run_index % len(self.theme.palette)]
                style = LINE_STYLES[len([c for c in plot.curves if c.model is model]) % len(LINE_STYLES)]
            else:
                # By the series' place in the plot, not by arrival: a run whose first system sample lacked the
                # CPU figure drew CPU in RAM's colour, and the next run the other way round.
                color = self.theme.palette[plot.spec.place_of(name, model.env) % len(self.theme.palette)]
                style = LINE_STYLES[0]
            curve = Curve(plot, model, series, label, QtGui.QColor(color), style, plot.spec.points)
            if overlay and run_index == 0:
                curve.raise_()  # the overlays never hide the open run
            plot.add_curve(curve)

    def _reference_for(self, spec: PlotSpec) -> tuple[float, float | None] | None:
        """A musical plot's corpus level: fixed by its metric, else the primary run's reference."""
        if spec.reference_level is not None:
            return spec.reference_level, None
        primary = self.primary
        return primary.music_reference.get(spec.reference) if primary is not None and spec.reference else None

    def _retitle(self, plot: MetricPlot) -> None:
        plot.update_title(self.settings, self.runs, self.finder.is_pinned(plot.spec.key))

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
        self._log_y[key] = bool(on)
        if key in self.plots:
            self.plots[key].set_log_y(on)

    def log_scales(self) -> list[tuple[str, str, bool]]:
        """(key, title, log y) of every plot, built or not yet."""
        specs = {spec.key: spec for spec in (*TRAINING, *SYSTEM)} | {k: p.spec for k, p in self.plots.items()}
        return [(key, spec.title, self._log_y.get(key, spec.log_y)) for key, spec in specs.items()]

    def set_empty_actions(self, actions: Sequence[QtGui.QAction]) -> None:
        """The actions the empty state offers when no run is open (New run, Open run)."""
        self.view.empty.set_actions(actions)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.view.apply_theme(theme)
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
