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

import html
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters  # noqa: F401  (pg.exporters is not imported by pyqtgraph itself)
import pyqtgraph.functions as fn
from PySide6 import QtCore, QtGui, QtWidgets

from gui.format import format_duration, format_value
from gui.models.export import write_csv
from gui.models.plotspec import QUALITY, SYSTEM, TRAINING, PlotSpec, is_musical, musical_spec
from gui.models.run_model import Marker, RunModel
from gui.models.series import Series, SmoothedView
from gui.theme import Theme

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
SEVERITY_COLORS = {"info": "#3b82f6", "warning": "#f59e0b", "critical": "#ef4444"}
NONFINITE_COLOR = "#ef4444"
# Music plots: as many columns as fit plots this wide (one in a side dock), rows at least this high
# (with many metrics the dock scrolls rather than squash them).
MUSIC_PLOT_PX = 300
# The training grid's columns: up to three, as many as leave each plot this wide (legends, tick labels).
TRAINING_PLOT_PX = 280
TRAINING_ROW_PX = 150  # below this per row the grid scrolls (its host is a scroll area) instead of squashing plots
MUSIC_ROW_PX = 165
# Superseded stretches (undone by a rollback or a resume) drawn per curve: the newest ones; all are exported.
SUPERSEDED_DRAWN = 8
SUPERSEDED_ALPHA = 120


def style_axes(plot, theme: Theme) -> None:
    """Colour a plot's left and bottom axes for ``theme`` (lines and tick labels)."""
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(theme.axis))
        axis.setTextPen(pg.mkPen(theme.fg))


@dataclass
class PlotSettings:
    smoothing: float = 0.6  # EMA weight in [0, 1)
    x_by: str = "step"  # step | time
    show_raw: bool = True


class ElapsedAxis(pg.AxisItem):
    """Bottom axis that reads as steps, or as elapsed time (1h05m, 3m20s)."""

    def __init__(self, *args, **kwargs):
        super().__init__("bottom", *args, **kwargs)
        self.by = "step"

    def tickStrings(self, values, scale, spacing):
        if self.by == "step":
            return [f"{v / 1000:g}k" if abs(v) >= 10000 else f"{v:g}" for v in values]
        return [format_duration(v, short=True) for v in values]


def _round_up(value: float) -> float:
    """The next round number at or above ``value`` (1, 2, 3, 5 x 10^k): a range
    change redraws every axis and re-decimates every curve, so it should be rare."""
    if value <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    for m in (1.0, 2.0, 3.0, 5.0, 10.0):
        if value <= m * scale * (1 + 1e-12):
            return m * scale
    return 10.0 * scale


class Curve:
    """One series of one run in one plot: smoothed line, faint raw line, non-finite markers."""

    def __init__(
        self,
        plot: MetricPlot,
        model: RunModel,
        series: Series,
        label: str,
        color: QtGui.QColor,
        style: QtCore.Qt.PenStyle,
        points: bool,
    ):
        self.plot, self.model, self.series, self.label = plot, model, series, label
        self.color = QtGui.QColor(color)
        self.smoothed = SmoothedView(series)
        raw_color = QtGui.QColor(color)
        raw_color.setAlpha(70)
        item = plot.item
        self.raw = item.plot(pen=pg.mkPen(raw_color, width=1))
        # One pixel wide, like the raw curve (only fainter): Qt strokes wider
        # lines as polygons, which doubled the cost of painting the dashboard.
        pen = pg.mkPen(self.color, width=1, style=style)
        symbol = dict(symbol="o", symbolSize=5, symbolBrush=self.color, symbolPen=None) if points else {}
        self.line = item.plot(pen=pen, name=label, **symbol)
        self.bad = item.plot(
            pen=None, symbol="x", symbolSize=11, symbolPen=pg.mkPen(NONFINITE_COLOR, width=2), symbolBrush=None
        )
        self.bad.setZValue(20)
        # The stretches a rollback or resume undid: same colour, faint and dashed, under the curve, and
        # left out of the y range (the view follows the run as it is now).
        old_color = QtGui.QColor(color)
        old_color.setAlpha(SUPERSEDED_ALPHA)
        self.old = pg.PlotDataItem(pen=pg.mkPen(old_color, width=1, style=QtCore.Qt.PenStyle.DashLine))
        self.old.setZValue(-1)
        item.addItem(self.old, ignoreBounds=True)
        self.drawn: tuple | None = None

    def xs(self, by: str) -> np.ndarray:
        return self.series.steps if by == "step" else self.series.times

    def refresh(self, settings: PlotSettings, view: tuple[float, float, int]) -> bool:
        """Push what the view ``(x0, x1, width in pixels)`` shows of the series into
        the items if anything changed; returns whether it did."""
        s = self.series
        weight = settings.smoothing if self.plot.spec.smooth else 0.0
        key = (s.version, weight, settings.x_by, settings.show_raw, view, len(s.superseded))
        if key == self.drawn:
            return False
        self.drawn = key
        x = self.xs(settings.x_by)
        y = s.values
        if weight > 0 and len(s) > 1:
            smoothed = self.smoothed.values(weight)
            self.line.setData(*self.smoothed.envelope(weight).window(x, smoothed, *view))
            if settings.show_raw:
                self.raw.setData(*s.envelope().window(x, y, *view))
            else:
                self.raw.setData([], [])
        else:
            self.line.setData(*s.envelope().window(x, y, *view))
            self.raw.setData([], [])
        bad_x, bad_y = [], []
        if s.nonfinite:
            bad = s.nonfinite_index()
            bad_x.append(x[bad])
            bad_y.append(_marker_heights(y, bad))
        segments = s.superseded[-SUPERSEDED_DRAWN:]
        if segments:
            xs, ys = [], []
            for seg in segments:
                seg_x = seg.steps if settings.x_by == "step" else seg.times
                values, envelope = seg.smoothed(weight if len(seg) > 1 else 0.0)
                wx, wy = envelope.window(seg_x, values, *view)
                xs += [wx, [np.nan]]
                ys += [wy, [np.nan]]
                if seg.nonfinite:
                    seg_bad = np.flatnonzero(~np.isfinite(seg.values))
                    bad_x.append(seg_x[seg_bad])
                    bad_y.append(_marker_heights(seg.values, seg_bad))
            self.old.setData(np.concatenate(xs), np.concatenate(ys), connect="finite")
        else:
            self.old.setData([], [])
        if bad_x:
            self.bad.setData(np.concatenate(bad_x), np.concatenate(bad_y))
        else:
            self.bad.setData([], [])
        return True

    def remove(self) -> None:
        for c in (self.raw, self.line, self.bad, self.old):
            self.plot.item.removeItem(c)


def _marker_heights(y: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Where to draw the non-finite points ``bad`` (sorted indices into ``y``):
    at the last finite value before each (where the curve broke off), else the
    first finite value, else 1. O(len(bad)): a stretch of consecutive
    non-finite points shares the finite point before it."""
    starts_run = np.ones(len(bad), dtype=bool)
    starts_run[1:] = np.diff(bad) != 1
    prev = bad[starts_run][np.cumsum(starts_run) - 1] - 1
    after_leading = bad[np.flatnonzero(starts_run)[1] - 1] + 1 if starts_run[1:].any() else bad[-1] + 1
    fallback = y[after_leading] if bad[0] == 0 and after_leading < len(y) else 1.0
    return np.where(prev >= 0, y[np.maximum(prev, 0)], fallback)


class _TitleLabel(pg.LabelItem):
    """A plot title that never asks for more width than its cell: a long
    legend is clipped instead of pushing the grid wider than the window."""

    def __init__(self, parent: pg.PlotItem):
        self._height = -1.0
        super().__init__("", size="9pt", parent=parent)
        self.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape, True)
        # Rich text is laid out on every paint otherwise; the title changes far
        # less often than the curves under it are redrawn.
        self.item.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)

    def updateMin(self) -> None:
        super().updateMin()
        self.setMinimumWidth(0)
        self._height = self.itemRect().height()

    def resizeEvent(self, ev) -> None:
        # LabelItem re-derives its size hints on every resize and asks for a new
        # layout, which resizes it again; a left-aligned title only needs its
        # text placed at the top left.
        self.item.setPos(0, 0)
        if self.itemRect().height() != self._height:
            self.updateMin()

    def show_html(self, html: str) -> None:
        """Show new text. ``setText`` (and ``PlotItem.setTitle``) ask the grid
        for a new layout on every call, which re-lays out every plot; the
        title's cell only needs one when the text's height changes."""
        color = fn.mkColor(self.opts["color"] or pg.getConfigOption("foreground"))
        self.text = html
        self.item.setHtml(f"<span style='color: {color.name(QtGui.QColor.NameFormat.HexArgb)}'>{html}</span>")
        if self.itemRect().height() != self._height:
            self.updateMin()

    def sizeHint(self, hint, constraint):
        size = super().sizeHint(hint, constraint)
        if hint == QtCore.Qt.SizeHint.MinimumSize:
            size.setWidth(0)
        return size


class MetricPlot:
    """A PlotItem for one :class:`PlotSpec`, with its curves, markers, crosshair and readout."""

    def __init__(
        self, spec: PlotSpec, theme: Theme, on_export: Callable[[MetricPlot, str], None], on_fit: Callable[[], None]
    ):
        self.spec = spec
        self.theme = theme
        self.axis = ElapsedAxis()
        self.item = pg.PlotItem(axisItems={"bottom": self.axis})
        self.item.layout.removeItem(self.item.titleLabel)
        self.item.scene() and self.item.scene().removeItem(self.item.titleLabel)
        self.item.titleLabel.setParentItem(None)
        self.item.titleLabel = _TitleLabel(self.item)
        self.item.layout.addItem(self.item.titleLabel, 0, 1)
        for name in ("left", "bottom"):
            # No grid: pyqtgraph draws it as translucent lines over the whole
            # plot from the axis items, which measured 5 ms per axis per paint
            # (a full dashboard paint went from ~10 ms to ~120 ms). The
            # crosshair readout gives exact values instead. Axes are cached
            # as pixmaps, redrawn only when their range changes; two tick
            # levels instead of three make that redraw 30% cheaper (when the
            # x range grows, every plot's axis is redrawn in the same frame).
            axis = self.item.getAxis(name)
            axis.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
            axis.setStyle(maxTickLevel=1, maxTextLevel=1)
        # A fixed width for the value axis (seven characters of tick text):
        # grown to fit each new label, it re-laid out the whole grid again and
        # again while a run's values settled.
        left = self.item.getAxis("left")
        left.setWidth(QtGui.QFontMetrics(left.font()).horizontalAdvance("-0.0000") + 12)
        self.item.setMenuEnabled(True)
        self.item.getViewBox().setMouseMode(pg.ViewBox.RectMode)
        self.item.hideButtons()
        self.item.setMinimumHeight(120)
        self.curves: list[Curve] = []
        self.markers: list[tuple[Marker, pg.InfiniteLine]] = []
        self.log_y = spec.log_y
        self.item.setLogMode(y=self.log_y)
        self.cursor = pg.InfiniteLine(
            angle=90, movable=False, pen=pg.mkPen(theme.muted, width=1, style=QtCore.Qt.PenStyle.DashLine)
        )
        self.cursor.setZValue(30)
        self.cursor.hide()
        self.item.addItem(self.cursor, ignoreBounds=True)
        self.cursor_x: float | None = None
        # Musical plots only: the corpus level (mean, std) as a dashed line over a faint band.
        self.reference: tuple[float, float | None] | None = None
        self.ref_line: pg.InfiniteLine | None = None
        self.ref_band: pg.LinearRegionItem | None = None
        self._title_key: tuple | None = None
        self._y_floor: float | None = None
        menu = self.item.getViewBox().menu
        # Curves hold only what is in view, so pyqtgraph's own "View All" and
        # x auto-range would fit the view itself: both are the dashboard's Fit.
        menu.viewAll.triggered.disconnect()
        menu.viewAll.triggered.connect(on_fit)
        x_axis_menu = next(a for a in menu.actions() if a.menu() is not None)  # pyqtgraph adds "X axis" first
        menu.removeAction(x_axis_menu)
        menu.addSeparator()
        self.log_action = menu.addAction("Log scale (Y)")
        self.log_action.setCheckable(True)
        self.log_action.setChecked(self.log_y)
        self.log_action.toggled.connect(self.set_log_y)
        menu.addAction("Export PNG…").triggered.connect(lambda: on_export(self, "png"))
        menu.addAction("Export CSV…").triggered.connect(lambda: on_export(self, "csv"))
        self.apply_theme(theme)

    def set_log_y(self, on: bool) -> None:
        self.log_y = bool(on)
        self.item.setLogMode(y=self.log_y)
        self._place_reference()
        self._y_floor = None
        self.update_y_floor()
        if self.log_action.isChecked() != self.log_y:
            self.log_action.setChecked(self.log_y)
        self._title_key = None

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        style_axes(self.item, theme)
        self.cursor.setPen(pg.mkPen(theme.muted, width=1, style=QtCore.Qt.PenStyle.DashLine))
        if self.ref_line is not None:
            self._style_reference()
        self._title_key = None

    def set_reference(self, reference: tuple[float, float | None] | None) -> None:
        """Draw the corpus level ``(mean, std)``: a dashed line at the mean over a band of ± one std
        (None: nothing). The items are made on first use, so other plots carry none."""
        if reference == self.reference:
            return
        self.reference = reference
        self._title_key = None
        if reference is not None and self.ref_line is None:
            self.ref_band = pg.LinearRegionItem(orientation="horizontal", movable=False)
            for edge in self.ref_band.lines:
                edge.setPen(pg.mkPen(None))
            self.ref_band.setZValue(-10)
            self.ref_line = pg.InfiniteLine(angle=0, movable=False)
            self.ref_line.setZValue(-5)  # under the curves
            # Not ignoreBounds: the y range takes the reference in, so the distance to it is seen.
            self.item.addItem(self.ref_band)
            self.item.addItem(self.ref_line)
            self._style_reference()
        self._place_reference()

    def _style_reference(self) -> None:
        self.ref_line.setPen(pg.mkPen(self.theme.muted, width=1.5, style=QtCore.Qt.PenStyle.DashLine))
        band = QtGui.QColor(self.theme.muted)
        band.setAlpha(40)
        self.ref_band.setBrush(pg.mkBrush(band))

    def _place_reference(self) -> None:
        if self.ref_line is None:
            return
        mean, std = self.reference if self.reference is not None else (math.nan, None)
        lo, hi = (mean - std, mean + std) if std else (math.nan, math.nan)
        if self.log_y:  # the view's y is log10 of the value: a level at or below 0 has no place
            mean, lo, hi = (math.log10(v) if v > 0 else math.nan for v in (mean, lo, hi))
        self.ref_line.setVisible(math.isfinite(mean))
        if math.isfinite(mean):
            self.ref_line.setPos(mean)
        band = math.isfinite(lo) and math.isfinite(hi)
        self.ref_band.setVisible(band)
        if band:
            self.ref_band.setRegion((lo, hi))

    def add_curve(self, curve: Curve) -> None:
        self.curves.append(curve)
        self._title_key = None

    def remove_model(self, model: RunModel) -> None:
        for curve in [c for c in self.curves if c.model is model]:
            curve.remove()
            self.curves.remove(curve)
        self.clear_markers()
        self._title_key = None

    def clear_markers(self) -> None:
        for _, line in self.markers:
            self.item.removeItem(line)
        self.markers.clear()

    def add_marker(self, marker: Marker, x_by: str) -> None:
        color = QtGui.QColor(SEVERITY_COLORS.get(marker.severity, SEVERITY_COLORS["info"]))
        if marker.kind == "control":
            color = QtGui.QColor(self.theme.control)
        color.setAlpha(200)
        # Markers are dashed so they never read as a data curve.
        style = QtCore.Qt.PenStyle.DotLine if marker.kind == "control" else QtCore.Qt.PenStyle.DashLine
        line = pg.InfiniteLine(
            pos=marker.step if x_by == "step" else marker.t,
            angle=90,
            movable=False,
            pen=pg.mkPen(color, width=1.2, style=style),
            hoverPen=pg.mkPen(color, width=3),
        )
        line.setToolTip(marker.text)
        line.setZValue(10)
        self.item.addItem(line, ignoreBounds=True)
        self.markers.append((marker, line))

    def reposition_markers(self, x_by: str) -> None:
        for marker, line in self.markers:
            line.setValue(marker.step if x_by == "step" else marker.t)

    def update_y_floor(self) -> None:
        """Keep a flat series from zooming into float noise (95.0000000000001):
        the y range spans at least 0.2% of the curves' level."""
        lasts = [float(c.series.values[-1]) for c in self.curves if c.series.n and math.isfinite(c.series.values[-1])]
        levels = [abs(v) for v in lasts]
        floor = 0.02 if self.log_y else max(max(levels, default=1.0), 1e-12) * 2e-3
        if self._y_floor is None or not (0.5 < floor / self._y_floor < 2.0):
            self._y_floor = floor
            box = self.item.getViewBox()
            box.setLimits(minYRange=floor)
            if lasts and not self.log_y and box.state["autoRange"][1]:
                # Auto-range keeps the previous span for a flat series, at first pyqtgraph's 1.0, which
                # squashes a constant 3e-4 LR onto the 0 tick: start from a span around its level instead.
                half = max(levels[0] * 0.1, floor)
                box.setRange(yRange=(lasts[0] - half, lasts[0] + half), padding=0, disableAutoRange=False)

    def view(self) -> tuple[float, float, int]:
        """The visible x range and the plot area's width in device pixels: what curves are drawn for."""
        vb = self.item.getViewBox()
        (x0, x1), _ = vb.viewRange()
        views = vb.scene().views() if vb.scene() is not None else []
        # On a HiDPI screen a logical pixel holds 2-3 device pixels: draw for the ones the user sees.
        ratio = views[0].devicePixelRatioF() if views else 1.0
        width = int(vb.width() * ratio)
        return x0, x1, width if width >= 50 else 1000  # not laid out yet: a typical width until it is

    def marker_near(self, x: float, x_by: str, tolerance: float) -> Marker | None:
        best, best_d = None, tolerance
        for marker, _ in self.markers:
            d = abs((marker.step if x_by == "step" else marker.t) - x)
            if d <= best_d:
                best, best_d = marker, d
        return best

    def update_title(self, settings: PlotSettings, overlay: bool) -> None:
        """Title = legend (colored labels) + the values under the crosshair.

        Overlaid runs are told apart by color and series by line style, so the
        legend names each run once and each series once. What does not fit the
        plot's width is left out in order (the "latest:" word, the time, the last
        legend entries, then the title's end, marked "…"); the whole of it is the
        title's tooltip.
        """
        label = self.item.titleLabel
        width = int(label.width()) if label.isVisible() else 0
        key = (
            self.cursor_x,
            len(self.curves),
            settings.x_by,
            settings.smoothing,
            overlay,
            self.reference,
            tuple(c.series.version for c in self.curves),
            width,
        )
        if key == self._title_key:
            return
        self._title_key = key
        where: tuple[str, str, str] | None = None  # (step, time, "latest: " or "")
        values: dict[int, list[tuple[str, str]]] = {}  # id(curve) -> [(html, plain)]
        x = self.cursor_x
        for curve in self.curves:
            # No crosshair: the newest point of each curve, so the readout never shows an old step as current.
            if x is None:
                n = len(curve.series)
                hit = (n - 1, float(curve.series.values[n - 1])) if n else None
            else:
                hit = curve.series.value_at(x, settings.x_by)
            if hit is None:
                continue
            i, raw = hit
            shown = raw
            if settings.smoothing > 0 and self.spec.smooth and math.isfinite(raw):
                shown = float(curve.smoothed.values(settings.smoothing)[i])
            style = f' style="color:{NONFINITE_COLOR}"' if not math.isfinite(raw) else ""
            text = format_value(shown)
            values.setdefault(id(curve), []).append((f"<b{style}>{text}</b>", text))
            if where is None:
                s = curve.series
                where = (f"step {int(s.steps[i])}", format_duration(s.times[i]), "" if x is not None else "latest: ")
        muted = self.theme.muted
        # The legend as (html, plain) entries.
        parts: list[tuple[str, str]] = []
        if overlay:
            labels = list(dict.fromkeys(c.label for c in self.curves))
            glyphs = ("—", "╌", "┈", "-·")
            styles = (
                " ".join(f"{label} {glyphs[i % len(glyphs)]}" for i, label in enumerate(labels))
                if len(labels) > 1
                else ""
            )
            runs: dict[int, list[Curve]] = {}
            for curve in self.curves:
                runs.setdefault(id(curve.model), []).append(curve)
            for curves in runs.values():
                first = curves[0]
                shown = [v for c in curves for v in values.get(id(c), [])]
                text = f'<span style="color:{first.color.name()}">■</span> {html.escape(first.model.name)}'
                plain = f"■ {first.model.name}"
                if shown:
                    text += " " + "/".join(h for h, _ in shown)
                    plain += " " + "/".join(p for _, p in shown)
                parts.append((text, plain))
        else:
            styles = ""
            for c in self.curves:
                value = values[id(c)][0] if id(c) in values else None
                parts.append(
                    (
                        f'<span style="color:{c.color.name()}">■</span> {html.escape(c.label)}'
                        + (" " + value[0] if value else ""),
                        f"■ {c.label}" + (" " + value[1] if value else ""),
                    )
                )
        if self.reference is not None:
            mean, std = self.reference
            ref = f"╌ corpus {mean:.3g}" + (f" ± {std:.2g}" if std else "")
            parts.append((f'<span style="color:{muted}">{ref}</span>', ref))
        if not parts:
            parts.append((f'<span style="color:{muted}">no data yet</span>', "no data yet"))

        fits = _TitleFit(width)
        # Line 1: the title, the line styles of an overlay, where the readout is. Shortened until it fits.
        wheres = (
            [""] if where is None else [where[2] + f"{where[0]} · {where[1]}", f"{where[0]} · {where[1]}", where[0], ""]
        )
        title, head = self.spec.title, ""
        for styled in (styles, "") if styles else ("",):
            for w in wheres:
                plain = "  ".join(p for p in (title, styled, w) if p)
                if fits(plain, bold=title):
                    head = (
                        f'<span style="color:{self.theme.fg}; font-weight:600">{html.escape(title)}</span>'
                        + (f' <span style="color:{muted}">{html.escape(styled)}</span>' if styled else "")
                        + (f'  <span style="color:{muted}">{html.escape(w)}</span>' if w else "")
                    )
                    break
            if head:
                break
        if not head:  # not even the title fits: its end gives way
            short = fits.elide(title)
            head = f'<span style="color:{self.theme.fg}; font-weight:600">{html.escape(short)}</span>'
        # Line 2: the legend, as many entries as fit, then "…".
        legend = [parts[0]]
        for k in range(1, len(parts)):
            rest = " …" if k < len(parts) - 1 else ""
            if not fits("  ".join(p for _, p in legend + [parts[k]]) + rest):
                legend.append((f'<span style="color:{muted}">…</span>', "…"))
                break
            legend.append(parts[k])
        title_html = f'<span style="font-size:9pt">{head}<br>{"  ".join(h for h, _ in legend)}</span>'
        full = "  ".join(
            p for p in (self.spec.title, styles, "" if where is None else where[2] + f"{where[0]} · {where[1]}") if p
        )
        label.setToolTip(full + "\n" + "  ".join(p for _, p in parts))
        if label.isVisible():
            label.show_html(title_html)
        else:
            self.item.setTitle(title_html, justify="left")


class _TitleFit:
    """Whether plain text fits a title's width at 9 pt (values measured bold: an upper bound)."""

    _fonts: dict[bool, QtGui.QFontMetricsF] = {}

    def __init__(self, width: int):
        self.width = width - 4 if width > 0 else 0  # 0: not laid out yet, everything fits

    @classmethod
    def metrics(cls, bold: bool) -> QtGui.QFontMetricsF:
        if bold not in cls._fonts:
            font = QtGui.QFont()
            font.setPointSizeF(9)
            font.setBold(bold)
            cls._fonts[bold] = QtGui.QFontMetricsF(font)
        return cls._fonts[bold]

    def __call__(self, plain: str, bold: str = "") -> bool:
        if not self.width:
            return True
        # ``bold``: the leading part set in bold (the title); the rest is measured bold too where values are.
        wide = self.metrics(True).horizontalAdvance(plain if not bold else bold) + (
            self.metrics(False).horizontalAdvance(plain[len(bold) :]) if bold else 0
        )
        return wide <= self.width

    def elide(self, text: str) -> str:
        if not self.width:
            return text
        return self.metrics(True).elidedText(text, QtCore.Qt.TextElideMode.ElideRight, self.width)


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


class Dashboard(QtCore.QObject):
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
                for marker in self.primary.markers[: self._markers_seen]:  # those from before it existed
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
        """One frame: bind new series, follow the data, then push one grid's changed curves until the budget is spent."""
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
        target = _round_up(hi)
        left = min(lo, 0.0)  # steps and times count from 0
        moved = False
        for g in (self.training, self.system, self.music) if grid is None else (grid,):
            if g.anchor is None:
                continue
            master = g.anchor.item.getViewBox()
            v_lo, v_hi = master.viewRange()[0]
            if force or hi > v_hi or lo < v_lo or v_hi > 2 * target or v_lo < left - 0.5 * (target - left):
                master.setXRange(left, target, padding=0.02)
                moved = True
        return moved

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        for grid in (self.training, self.system, self.music):
            grid.apply_theme(theme)
        self.set_models(self.models)

    # ------------------------------------------------------------ crosshair

    def _mouse_moved(self, grid: PlotGrid, pos: QtCore.QPointF) -> None:
        for plot in grid.plots:
            vb = plot.item.getViewBox()
            if plot.item.isVisible() and vb.sceneBoundingRect().contains(pos):
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
            marker = source.marker_near(x, self.settings.x_by, 4 * px)
            tooltip = marker.text if marker is not None else ""
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
