"""One plot of the dashboard: its curves, markers, corpus reference, crosshair line, readout and menu."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from gui.format import format_duration
from gui.models.plotspec import PlotSpec
from gui.theme import Theme
from gui.widgets.plots.curve import Curve, PlotSettings
from gui.widgets.plots.title import TitleLabel, compose_title

if TYPE_CHECKING:
    from gui.models.run_model import Marker, RunModel

SEVERITY_COLORS = {"info": "#3b82f6", "warning": "#f59e0b", "critical": "#ef4444"}


def style_axes(plot, theme: Theme) -> None:
    """Colour a plot's left and bottom axes for ``theme`` (lines and tick labels)."""
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(theme.axis))
        axis.setTextPen(pg.mkPen(theme.fg))


class ElapsedAxis(pg.AxisItem):
    """Bottom axis that reads as steps, or as elapsed time (1h05m, 3m20s).

    The plots of a grid share their x range and, column for column, their size: when the range grows, every
    bottom axis would work out the same ticks and labels in the same frame (about 1 ms each, the largest part
    of that frame's paint). The first works them out; the others with the same range, size and pens reuse them.
    """

    _shared_specs: OrderedDict[tuple, tuple] = OrderedDict()
    _SHARED_MAX = 16

    def __init__(self, *args, **kwargs):
        super().__init__("bottom", *args, **kwargs)
        self.by = "step"

    def tickStrings(self, values, scale, spacing):
        if self.by == "step":
            return [f"{v / 1000:g}k" if abs(v) >= 10000 else f"{v:g}" for v in values]
        return [format_duration(v, short=True) for v in values]

    def generateDrawSpecs(self, p: QtGui.QPainter) -> tuple | None:
        view = self.linkedView()
        size = self.size()
        key = (
            self.by,
            *self.range,
            size.width(),
            size.height(),
            None if view is None else view.mapRectToItem(self, view.boundingRect()).getRect(),
            self.pen().color().rgba(),
            self.tickPen().color().rgba(),
            p.font().key() if self.style["tickFont"] is None else self.style["tickFont"].key(),
            p.device().devicePixelRatioF(),
            # Uniform in the dashboard today; in the key so that a plot styled apart never borrows a layout.
            self.grid,
            repr(sorted(self.style.items())),
            repr(self._tickLevels),
            repr(self._tickSpacing),
        )
        shared = ElapsedAxis._shared_specs
        hit = shared.get(key)
        if hit is None:
            text_sizes: list[float] = []
            grow: Callable[[float], None] = self._updateMaxTextSize  # type: ignore[has-type]

            def noted(x: float) -> None:
                text_sizes.append(x)
                grow(x)

            self._updateMaxTextSize = noted  # type: ignore[method-assign]
            try:
                specs = super().generateDrawSpecs(p)
            finally:
                del self._updateMaxTextSize
            hit = shared[key] = (specs, text_sizes)
            while len(shared) > self._SHARED_MAX:
                shared.popitem(last=False)
        else:
            specs, text_sizes = hit
            for x in text_sizes:  # what working the labels out would have done to this axis's height
                self._updateMaxTextSize(x)
        return specs


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
        self.item.titleLabel = TitleLabel(self.item)
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
        for name in ("left", "bottom", "top", "right"):
            # No axis has a label, so the SI prefix is always none; worked out anyway, it re-rendered the
            # hidden label's HTML at every range change, hidden axes' too (a third of a flood's axis time).
            self.item.getAxis(name).enableAutoSIPrefix(False)
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
        self.pin_action = menu.addAction("Pin to top")
        self.pin_action.setCheckable(True)
        self.maximise_action = menu.addAction("Maximise / show all (F11, double-click)")
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
        line, band = self.ref_line, self.ref_band  # made together, on first use
        if line is None or band is None:
            return
        line.setPen(pg.mkPen(self.theme.muted, width=1.5, style=QtCore.Qt.PenStyle.DashLine))
        color = QtGui.QColor(self.theme.muted)
        color.setAlpha(40)
        band.setBrush(pg.mkBrush(color))

    def _place_reference(self) -> None:
        line, band_item = self.ref_line, self.ref_band  # made together, on first use
        if line is None or band_item is None:
            return
        mean, std = self.reference if self.reference is not None else (math.nan, None)
        lo, hi = (mean - std, mean + std) if std else (math.nan, math.nan)
        if self.log_y:  # the view's y is log10 of the value: a level at or below 0 has no place
            mean, lo, hi = (math.log10(v) if v > 0 else math.nan for v in (mean, lo, hi))
        line.setVisible(math.isfinite(mean))
        if math.isfinite(mean):
            line.setPos(mean)
        band = math.isfinite(lo) and math.isfinite(hi)
        band_item.setVisible(band)
        if band:
            band_item.setRegion((lo, hi))

    def add_curve(self, curve: Curve) -> None:
        """Add ``curve`` in its place among its run's curves (the legend reads in the spec's order)."""
        place = self.spec.place_of(curve.series.name, curve.model.env)
        at = next(
            (
                i
                for i, other in enumerate(self.curves)
                if other.model is curve.model and self.spec.place_of(other.series.name, other.model.env) > place
            ),
            len(self.curves),
        )
        self.curves.insert(at, curve)
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

    def add_marker(self, marker: Marker, x_by: str, tooltip: str = "") -> None:
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
        line.setToolTip(tooltip or marker.text)
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

    def marker_tip_near(self, x: float, x_by: str, tolerance: float) -> str:
        """The tooltip of the marker nearest to ``x`` within ``tolerance``, or ""."""
        best, best_d = "", tolerance
        for marker, line in self.markers:
            d = abs((marker.step if x_by == "step" else marker.t) - x)
            if d <= best_d:
                best, best_d = line.toolTip(), d
        return best

    def update_title(self, settings: PlotSettings, runs: Sequence[tuple[RunModel, str]], pinned: bool = False) -> None:
        """Title = legend (coloured labels) + the raw values under the crosshair, or the newest ones.

        ``runs``: the runs shown and their colours, the primary first (see :func:`compose_title`).
        """
        label = self.item.titleLabel
        width = int(label.width()) if label.isVisible() else 0
        key = (
            self.cursor_x,
            len(self.curves),
            settings.x_by,
            settings.smoothing > 0,
            tuple((id(m), c) for m, c in runs),
            pinned,
            self.reference,
            tuple(c.series.version for c in self.curves),
            width,
        )
        if key == self._title_key:
            return
        self._title_key = key
        title_html, tooltip = compose_title(self, settings, runs, pinned)
        label.setToolTip(tooltip)
        if label.isVisible():
            label.show_html(title_html)
        else:
            self.item.setTitle(title_html, justify="left")
