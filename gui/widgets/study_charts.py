"""The study panel's charts, in tabs: optimization history, intermediate values per trial (pruned
trials dashed and marked with a cross), parallel coordinates and parameter importances; the scaling fit;
and the child processes that compute the importances and the fit (:class:`StudyAnalyses`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from engine.contract.studies import study_dir
from gui.format import format_error, format_si
from gui.models.study_model import StudyModel
from gui.theme import Theme
from gui.widgets.engine_job import EngineQuery
from gui.widgets.parallel_plot import ParallelPlot, short_name
from gui.widgets.study_empty import EmptyChart

NO_TRIALS = "No finished trials yet"
NO_VALUES = "No intermediate values yet: a trial reports one per evaluation"
IMPORTANCES = "Parameter importances"
SCALING = "Scaling"
RIGHT_PX = 12  # a chart's right margin


class StudyCharts(QtWidgets.QTabWidget):
    """Draws what a :class:`StudyModel` holds; the trial picked in the table (``selected``) is drawn bold."""

    def __init__(self, model: StudyModel, theme: Theme, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.theme = theme
        self.selected: int | None = None
        self._labels: dict[pg.PlotWidget, tuple[str, str, str]] = {}  # each chart's title and axis labels
        self._shown: dict[str, dict[str, Any]] = {}  # the importances and scaling results drawn last
        self._keys: dict[pg.PlotWidget, tuple[str, list[tuple[str, str, str]]]] = {}  # titles with keys
        # A tab each: in the bottom dock's height, four charts in a grid were each too small to read.
        self.history_plot = self._plot("Optimization history", "trial", "")
        self.inter_plot = self._plot("Intermediate values", "step", "")
        self.parallel_plot = self._plot("Parallel coordinates", "", "")
        self.importance_plot = self._plot(IMPORTANCES, "importance", "")
        for plot, name in (
            (self.history_plot, "History"),
            (self.inter_plot, "Intermediate"),
            (self.parallel_plot, "Parallel"),
            (self.importance_plot, "Importances"),
        ):
            self.addTab(plot, name)
        self.scaling_plot = self._plot(SCALING, "parameters N (log scale)", "final val_loss")
        self.addTab(self.scaling_plot, "Scaling")
        self._setup_items()

    def redraw(self) -> None:
        self._draw_history()
        self._draw_intermediate()
        self._draw_parallel()
        self.history_plot.getPlotItem().setLabel("left", self.model.metric, color=self.theme.muted)
        self.inter_plot.getPlotItem().setLabel("left", self.model.metric, color=self.theme.muted)

    def select(self, number: int) -> None:
        self.selected = number
        self._draw_intermediate()
        self._draw_parallel()

    def computing_importances(self) -> None:
        if self.importance_bars is None:  # bars already drawn stay until the new ones come
            self.empty[self.importance_plot].show("computing importances…")

    def _plot(self, title: str, x: str, y: str) -> pg.PlotWidget:
        self._labels[plot := themed_plot(self.theme, title, x, y)] = (title, x, y)
        return plot

    def set_theme(self, theme: Theme) -> None:
        """Draw everything again in ``theme``'s colours (the window's theme was switched)."""
        self.theme = self.parallel.theme = theme
        for plot, (title, x, y) in self._labels.items():
            style_plot(plot, theme, title, x, y)
        self._style_items()
        self.redraw()
        if "importances" in self._shown:
            self.show_importances(self._shown["importances"])
        if "scaling" in self._shown:
            self.show_scaling(self._shown["scaling"])

    def _setup_items(self) -> None:
        self.history_points = pg.ScatterPlotItem(size=8, pen=None)
        self.history_best = pg.PlotDataItem()
        self.history_plot.addItem(self.history_best)
        self.history_plot.addItem(self.history_points)
        self.inter_curves: dict[int, pg.PlotDataItem] = {}
        self.pruned_marks = pg.ScatterPlotItem(symbol="x", size=11)
        self.inter_plot.addItem(self.pruned_marks)
        self.parallel = ParallelPlot(self.parallel_plot, self.theme)
        self.importance_bars: pg.BarGraphItem | None = None
        self.importance_plot.setMouseEnabled(x=False, y=False)
        self.empty = {
            self.history_plot: EmptyChart(self.history_plot, NO_TRIALS),
            self.inter_plot: EmptyChart(self.inter_plot, NO_VALUES),
            self.parallel_plot: EmptyChart(self.parallel_plot, NO_TRIALS, axes=("bottom",)),
            self.importance_plot: EmptyChart(self.importance_plot, "Importances appear once two trials have finished"),
            self.scaling_plot: EmptyChart(
                self.scaling_plot, "No fit yet: it needs finished runs of several model sizes and token budgets"
            ),
        }
        self.scaling_items: list[pg.GraphicsObject] = []
        self.scaling_legend = self.scaling_plot.getPlotItem().addLegend(offset=(-8, 30))
        self.scaling_note = pg.TextItem(anchor=(0, 0))
        self.scaling_note.setParentItem(self.scaling_plot.getPlotItem().getViewBox())
        self.scaling_note.setPos(8, 4)
        # The fit's figures or why there is none, wrapped inside the chart.
        self.scaling_plot.getPlotItem().getViewBox().sigResized.connect(self._wrap_note)
        self._style_items()

    def _style_items(self) -> None:
        palette = self.theme.palette
        complete, pruned = palette[0], palette[1]
        failed = self.theme.state_colors["failed"]
        self.history_best.setPen(pg.mkPen(palette[2], width=2))
        self.pruned_marks.setPen(pg.mkPen(pruned, width=2))
        self.pruned_marks.setBrush(pg.mkBrush(pruned))
        self.scaling_note.setColor(self.theme.fg)
        for empty in self.empty.values():
            empty.note.setColor(self.theme.muted)
        self.scaling_legend.setLabelTextColor(self.theme.fg)
        # Keys in the titles: a legend box inside the plot would hide the points under it.
        self._title(
            self.history_plot,
            "Optimization history",
            [(complete, "●", "finished"), (pruned, "✕", "pruned"), (palette[2], "━", "best so far")],
        )
        self._title(
            self.inter_plot,
            "Intermediate values",
            [
                (complete, "━", "finished"),
                (pruned, "╌ ✕", "pruned"),
                (palette[2], "━", "running"),
                (failed, "┈", "failed"),
            ],
        )
        self._title(
            self.parallel_plot, "Parallel coordinates", [(palette[0], "━", "better"), (self.theme.axis, "━", "worse")]
        )
        self._title(
            self.scaling_plot,
            SCALING,
            [(self.theme.muted, "", "final loss against model size, fit per token budget D")],
        )

    def _title(self, plot: pg.PlotWidget, title: str, keys: list[tuple[str, str, str]]) -> None:
        if plot not in self._keys:
            plot.installEventFilter(self)  # a narrower chart puts its keys under the title
        self._keys[plot] = (title, keys)
        # Keys stay whole; between them a line may break when the chart is narrow (and within a description, a
        # key without a glyph).
        legend = " &nbsp;".join(
            f"<span style='color:{color}'>{glyph}</span>&nbsp;{label.replace(' ', '&nbsp;') if glyph else label}"
            for color, glyph, label in keys
        )
        # The title's one line, as wide as it is drawn: the keys are in a smaller font than the title.
        metrics = QtGui.QFontMetrics(plot.font())
        wide = metrics.horizontalAdvance(title + "    " + "  ".join(f"{g} {label}" for _, g, label in keys))
        item = plot.getPlotItem()
        left = item.getAxis("left")
        # The title is over the data: the left axis and the right margin (RIGHT_PX) are not its.
        room = plot.width() - 16 - RIGHT_PX - (int(left.width()) if left.isVisible() else 0)
        wrapped = wide * 1.1 > room
        text = (
            f"<span style='color:{self.theme.fg}'>{title}</span>{'<br>' if wrapped else '&nbsp;' * 3}"
            f"<span style='color:{self.theme.muted}; font-size:9pt'>{legend}</span>"
        )
        item.setTitle(f"<div align='center'>{text}</div>" if wrapped else text, size="10pt")
        label = item.titleLabel.item
        label.setTextWidth(room if wrapped else -1)
        # A title never widens its chart past the widget (an axis that widens later would otherwise push it out).
        item.titleLabel.setMinimumWidth(0)
        if wrapped:  # pyqtgraph gives a title one line's height
            height = int(label.boundingRect().height()) + 2
            item.titleLabel.setMaximumHeight(height)
            item.layout.setRowFixedHeight(0, height)

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.Type.Resize and isinstance(watched, pg.PlotWidget) and watched in self._keys:
            self._title(watched, *self._keys[watched])
        return False

    def _trial_pen(self, state: str, highlight: bool) -> QtGui.QPen:
        palette = self.theme.palette
        color, style = {
            "COMPLETE": (palette[0], QtCore.Qt.PenStyle.SolidLine),
            "PRUNED": (palette[1], QtCore.Qt.PenStyle.DashLine),
            "RUNNING": (palette[2], QtCore.Qt.PenStyle.SolidLine),
            "FAIL": (self.theme.state_colors["failed"], QtCore.Qt.PenStyle.DotLine),
        }.get(state, (self.theme.muted, QtCore.Qt.PenStyle.SolidLine))
        qcolor = QtGui.QColor(color)
        if not highlight:
            qcolor.setAlpha(170)
        return pg.mkPen(qcolor, width=3.5 if highlight else 1.6, style=style)

    def _draw_history(self) -> None:
        numbers, values, states, best = self.model.history()
        self.empty[self.history_plot].show(None if len(numbers) else self._no_trials())
        palette = self.theme.palette
        brushes = [pg.mkBrush(palette[0] if s == "COMPLETE" else palette[1]) for s in states]
        symbols = ["o" if s == "COMPLETE" else "x" for s in states]
        self.history_points.setData(
            x=numbers, y=values, brush=brushes, symbol=symbols, pen=None, data=[int(n) for n in numbers]
        )
        finite = np.isfinite(best)
        self.history_best.setData(numbers[finite], best[finite])

    def _draw_intermediate(self) -> None:
        marks_x, marks_y = [], []
        best = self.model.best["number"] if self.model.best else None
        for trial in self.model.trials:
            curve = self.inter_curves.get(trial.number)
            if curve is None:
                curve = pg.PlotDataItem()
                curve.setClipToView(True)
                curve.setDownsampling(auto=True, method="peak")
                self.inter_plot.addItem(curve)
                self.inter_curves[trial.number] = curve
            highlight = trial.number in (best, self.selected)
            curve.setPen(self._trial_pen(trial.state, highlight))
            curve.setZValue(2 if highlight else 1 if trial.state == "RUNNING" else 0)
            curve.setData(trial.steps, trial.values, connect="finite")
            if trial.state == "PRUNED" and len(trial.steps):
                marks_x.append(trial.steps[-1])
                marks_y.append(trial.values[-1])
        for number in [n for n in self.inter_curves if n not in {t.number for t in self.model.trials}]:
            self.inter_plot.removeItem(self.inter_curves.pop(number))
        self.pruned_marks.setData(marks_x, marks_y)
        self.pruned_marks.setZValue(3)
        reported = any(len(t.steps) for t in self.model.trials)
        self.empty[self.inter_plot].show(None if reported else NO_VALUES)

    def _draw_parallel(self) -> None:
        data = self.model.parallel()
        if len(data.values):
            self.empty[self.parallel_plot].show(None)
            self.parallel.draw(data, self.model.direction, self.selected)
        else:  # axes with no line across them say nothing
            self.parallel.clear()
            self.empty[self.parallel_plot].show(self._no_trials())

    def _no_trials(self) -> str:
        running = sum(t.state == "RUNNING" for t in self.model.trials)
        return NO_TRIALS + (f" ({running} running)" if running else "")

    def show_importances(self, imp: dict[str, Any]) -> None:
        """Bars of the importances ``hpo show --importances --json`` computed, or why there are none."""
        self._shown["importances"] = imp
        plot = self.importance_plot.getPlotItem()
        if self.importance_bars is not None:
            plot.removeItem(self.importance_bars)
            self.importance_bars = None
        values = imp.get("values") or {}
        # How they were computed, in the title's key (it wraps when narrow): under the bars it ran out of the chart.
        how = [(self.theme.muted, "", f"{imp.get('method', '')}, {imp.get('trials', '?')} trials")] if values else []
        self._title(self.importance_plot, IMPORTANCES, how)
        if not values:
            self.empty[self.importance_plot].show(str(imp.get("error", "No importances yet")))
            return
        self.empty[self.importance_plot].show(None)
        names = list(values)[::-1]  # most important on top
        widths = [values[n] for n in names]
        self.importance_bars = pg.BarGraphItem(
            x0=0, y=np.arange(len(names)), height=0.6, width=widths, brush=pg.mkBrush(self.theme.palette[0]), pen=None
        )
        plot.addItem(self.importance_bars)
        left = plot.getAxis("left")
        left.setTicks([[(i, short_name(n)) for i, n in enumerate(names)]])
        # Room for the longest name now: pyqtgraph widens an axis only after a paint has clipped it.
        left.setWidth(max(QtGui.QFontMetrics(left.font()).horizontalAdvance(short_name(n)) for n in names) + 14)
        plot.setXRange(0, max(max(widths), 1e-9) * 1.05)
        plot.setYRange(-0.6, len(names) - 0.4)

    def show_scaling(self, result: dict[str, Any]) -> None:
        """The runs' final losses against model size and the engine's fitted curves (``scaling --json``)."""
        self._shown["scaling"] = result
        plot = self.scaling_plot.getPlotItem()
        for item in self.scaling_items:
            plot.removeItem(item)
        self.scaling_items = []
        self.scaling_legend.clear()
        points = result.get("points") or []
        no_fit = "No fit: " + str(result.get("error", "")).removeprefix("error: ")
        self.empty[self.scaling_plot].show(None if points else no_fit)  # with no runs, why says it all
        if points:
            tokens = sorted({p["tokens"] for p in points})
            colors = {d: self.theme.palette[i % len(self.theme.palette)] for i, d in enumerate(tokens)}
            # x is log10(N), labelled at whole decades: pyqtgraph's log axis crowds its minor labels.
            log_n = np.log10([p["params"] for p in points])
            scatter = pg.ScatterPlotItem(
                x=log_n,
                y=[p["loss"] for p in points],
                brush=[pg.mkBrush(colors[p["tokens"]]) for p in points],
                pen=None,
                size=9,
            )
            plot.addItem(scatter)
            self.scaling_items.append(scatter)
            decades = range(math.floor(log_n.min() - 0.3), math.ceil(log_n.max() + 0.3) + 1)
            plot.getAxis("bottom").setTicks([[(k, format_si(10.0**k)) for k in decades], []])
            # The engine's fitted curves, one per token budget (the first six: more would not be told apart).
            for fitted in (result.get("curves") or [])[:6]:
                d = fitted["tokens"]
                curve = pg.PlotDataItem(np.log10(fitted["params"]), fitted["loss"], pen=pg.mkPen(colors[d], width=2))
                plot.addItem(curve)
                self.scaling_legend.addItem(curve, f"D = {format_si(d)} tokens")
                self.scaling_items.append(curve)
        if "values" in result:
            v, e = result["values"], result.get("errors", {})
            text = (
                f"L = E + A/N^α + B/D^β over {len(points)} runs: E={v['E']:.3g}±{format_error(e.get('E'))}, "
                f"α={v['alpha']:.3g}±{format_error(e.get('alpha'))}, β={v['beta']:.3g}±{format_error(e.get('beta'))}; "
                f"R²={result.get('r2', float('nan')):.3f}, RMSE={result.get('rmse', float('nan')):.3g}"
            )
        else:
            text = no_fit if points else ""
        self.scaling_note.setText(text)
        self._wrap_note()

    def _wrap_note(self) -> None:
        self.scaling_note.setTextWidth(max(self.scaling_plot.getPlotItem().getViewBox().width() - 16, 80))


class StudyAnalyses(QtCore.QObject):
    """The importances and the scaling fit of the shown study, computed by ``podium hpo show --importances``
    and ``podium scaling`` in child processes (never in the GUI process), at most every
    ``min_interval_s`` while trials complete, and drawn on the charts when they answer."""

    def __init__(self, charts: StudyCharts, engine: list[str], min_interval_s: float = 5.0):
        super().__init__(charts)
        self.charts = charts
        self.min_interval_s = min_interval_s
        self.importances: dict[str, Any] | None = None
        self.scaling: dict[str, Any] | None = None
        self._complete = -1  # finished trials when the children last ran
        self.importance_job = EngineQuery(engine, self)
        self.importance_job.answered.connect(self._importances_done)
        self.scaling_job = EngineQuery(engine, self)
        self.scaling_job.answered.connect(self._scaling_done)

    def reset(self) -> None:
        self.importances = self.scaling = None
        self._complete = -1
        self.kill()

    def kill(self) -> None:
        self.importance_job.kill()
        self.scaling_job.kill()

    def maybe_run(self, model: StudyModel, workspace: Path) -> None:
        """Ask again when trials finished since the last answer (and not too often)."""
        complete = model.complete_count()
        if complete == self._complete or not model.name:
            return
        last = max(self.importance_job.last_start, self.scaling_job.last_start)
        if time.monotonic() - last < self.min_interval_s and self._complete >= 0:
            return
        self._complete = complete
        common = ["--study", model.name, "--workspace", str(workspace)]
        if complete >= 2:
            self.charts.computing_importances()
        self.importance_job.request(["hpo", "show", *common, "--json", "--importances", "--last", "0"])
        self.scaling_job.request(["scaling", str(study_dir(workspace, model.name)), "--json"])

    def _importances_done(self, result: dict[str, Any]) -> None:
        self.importances = result.get("importances") or {"error": result.get("error", "no result")}
        self.charts.show_importances(self.importances)

    def _scaling_done(self, result: dict[str, Any]) -> None:
        self.scaling = result
        self.charts.show_scaling(result)


def themed_plot(theme: Theme, title: str, x: str = "", y: str = "") -> pg.PlotWidget:
    """A chart in the theme's colours, its own context menu off."""
    plot = pg.PlotWidget()
    style_plot(plot, theme, title, x, y)
    plot.getPlotItem().showGrid(x=True, y=True, alpha=0.15)
    plot.setMenuEnabled(False)
    plot.setMinimumHeight(160)
    plot.getPlotItem().layout.setContentsMargins(1, 1, RIGHT_PX, 1)  # room for the last tick's label at the right
    return plot


def style_plot(plot: pg.PlotWidget, theme: Theme, title: str, x: str = "", y: str = "") -> None:
    """The chart's background, title, axes and their labels in ``theme``'s colours."""
    plot.setBackground(theme.plot_bg)
    item = plot.getPlotItem()
    item.setTitle(title, color=theme.fg, size="10pt")
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(theme.axis))
        axis.setTextPen(pg.mkPen(theme.fg))
    if x:
        item.setLabel("bottom", x, color=theme.muted)
    if y:
        item.setLabel("left", y, color=theme.muted)
