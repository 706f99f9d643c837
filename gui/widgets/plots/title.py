"""A plot's title: its name, where the readout is, and a legend with the raw values, laid out to fit its width."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyqtgraph as pg
import pyqtgraph.functions as fn
from PySide6 import QtCore, QtGui, QtWidgets

from gui.format import format_duration, format_value
from gui.theme import Theme
from gui.widgets.plots.curve import NONFINITE_COLOR, Curve, PlotSettings

if TYPE_CHECKING:
    from gui.models.run_model import RunModel
    from gui.widgets.plots.metric_plot import MetricPlot


class TitleLabel(pg.LabelItem):
    """A plot title that never asks for more width than its cell: a long
    legend is clipped instead of pushing the grid wider than the window."""

    def __init__(self, parent: pg.PlotItem):
        self._height = -1.0
        self._shown = ""  # the HTML last set by show_html
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

    def setText(self, text, **args) -> None:
        self._shown = ""  # set another way (PlotItem.setTitle while hidden): show_html must set it again
        super().setText(text, **args)

    def show_html(self, html: str) -> None:
        """Show new text. ``setText`` (and ``PlotItem.setTitle``) ask the grid
        for a new layout on every call, which re-lays out every plot; the
        title's cell only needs one when the text's height changes."""
        color = fn.mkColor(self.opts["color"] or pg.getConfigOption("foreground"))
        self.text = html
        styled = f"<span style='color: {color.name(QtGui.QColor.NameFormat.HexArgb)}'>{html}</span>"
        if styled == self._shown:
            return  # a run's constant metrics (lr, epoch) redrawn at every frame cost a layout of rich text each
        self._shown = styled
        self.item.setHtml(styled)
        if self.itemRect().height() != self._height:
            self.updateMin()

    def sizeHint(self, hint, constraint):
        size = super().sizeHint(hint, constraint)
        if hint == QtCore.Qt.SizeHint.MinimumSize:
            size.setWidth(0)
        return size


class TitleFit:
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


@dataclass(frozen=True)
class Entry:
    """One legend entry: as html and as plain text (to measure), with its run's name and without."""

    html: str
    plain: str
    short_html: str = ""
    short_plain: str = ""

    def part(self, named: bool) -> tuple[str, str]:
        return (self.html, self.plain) if named or not self.short_plain else (self.short_html, self.short_plain)


@dataclass(frozen=True)
class Readout:
    """What a title says: the values (``id(curve)`` -> (html, plain)) and where the primary run's are read."""

    values: dict[int, tuple[str, str]]
    where: tuple[str, str, str] | None  # (step, time, "latest: " or "")


def read_values(curves: list[Curve], x: float | None, x_by: str, primary: RunModel | None) -> Readout:
    """Each curve's raw value (as the events hold it, never smoothed) under the crosshair ``x``, or its newest one.

    The step and time shown are the primary run's: an overlay's newest point is at a step of its own.
    """
    values: dict[int, tuple[str, str]] = {}
    where = None
    for curve in curves:
        if x is None:
            n = len(curve.series)
            hit = (n - 1, float(curve.series.values[n - 1])) if n else None
        else:
            hit = curve.series.value_at(x, x_by)
        if hit is None:
            continue
        i, raw = hit
        style = f' style="color:{NONFINITE_COLOR}"' if not math.isfinite(raw) else ""
        text = format_value(raw)
        values[id(curve)] = (f"<b{style}>{text}</b>", text)
        if where is None and curve.model is primary:
            s = curve.series
            where = (f"step {int(s.steps[i])}", format_duration(s.times[i]), "" if x is not None else "latest: ")
    return Readout(values, where)


def legend_entries(
    curves: list[Curve],
    runs: Sequence[tuple[RunModel, str]],
    readout: Readout,
    reference: tuple[float, float | None] | None,
    muted: str,
) -> tuple[str, list[Entry]]:
    """The legend's entries, and the line styles of an overlay's series (blank otherwise).

    ``runs``: the runs shown and their colours, the primary first. With overlays there is one entry per run
    in that order, the primary's always (a dash until it has a value here); its short form leaves the name
    out (the dashboard's run legend and the tooltip name every run).
    """
    entries: list[Entry] = []
    if len(runs) > 1:
        labels = list(dict.fromkeys(c.label for c in curves))
        glyphs = ("—", "╌", "┈", "-·")
        styles = (
            " ".join(f"{label} {glyphs[i % len(glyphs)]}" for i, label in enumerate(labels)) if len(labels) > 1 else ""
        )
        for k, (model, color) in enumerate(runs):
            shown = [readout.values[id(c)] for c in curves if c.model is model and id(c) in readout.values]
            if not shown and k > 0 and not any(c.model is model for c in curves):
                continue  # an overlay without this metric
            square = f'<span style="color:{color}">■</span>'
            html_values = "/".join(h for h, _ in shown) if shown else f'<span style="color:{muted}">–</span>'
            plain_values = "/".join(p for _, p in shown) if shown else "–"
            entries.append(
                Entry(
                    f"{square} {html.escape(model.name)} {html_values}",
                    f"■ {model.name} {plain_values}",
                    f"{square} {html_values}",
                    f"■ {plain_values}",
                )
            )
    else:
        styles = ""
        for c in curves:
            value = readout.values.get(id(c))
            entries.append(
                Entry(
                    f'<span style="color:{c.color.name()}">■</span> {html.escape(c.label)}'
                    + (" " + value[0] if value else ""),
                    f"■ {c.label}" + (" " + value[1] if value else ""),
                )
            )
    if reference is not None:
        mean, std = reference
        ref = f"╌ corpus {mean:.3g}" + (f" ± {std:.2g}" if std else "")
        entries.append(Entry(f'<span style="color:{muted}">{ref}</span>', ref))
    if not entries:
        entries.append(Entry(f'<span style="color:{muted}">no data yet</span>', "no data yet"))
    return styles, entries


def wrap(parts: list[tuple[str, str]], fits: TitleFit) -> list[list[tuple[str, str]]]:
    """The entries in lines that fit, in order; an entry is never split nor left out."""
    lines: list[list[tuple[str, str]]] = [[]]
    for part in parts:
        trial = lines[-1] + [part]
        if lines[-1] and not fits("  ".join(p for _, p in trial)):
            lines.append([part])
        else:
            lines[-1] = trial
    return lines


def layout_title(
    title: str, styles: str, where: tuple[str, str, str] | None, entries: list[Entry], width: int, theme: Theme
) -> tuple[str, str]:
    """The title's html (the head on one line, shortened to fit ``width``; the legend below, wrapped) and its
    tooltip (all of it, each entry named).

    The legend is never cut: its entries wrap onto more lines, without the runs' names where naming them
    would take more lines than leaving them out.
    """
    muted = theme.muted
    fits = TitleFit(width)
    # The head: the title, the line styles of an overlay, where the readout is. Shortened until it fits.
    wheres = (
        [""] if where is None else [where[2] + f"{where[0]} · {where[1]}", f"{where[0]} · {where[1]}", where[0], ""]
    )
    head = ""
    for styled in (styles, "") if styles else ("",):
        for w in wheres:
            plain = "  ".join(p for p in (title, styled, w) if p)
            if fits(plain, bold=title):
                head = (
                    f'<span style="color:{theme.fg}; font-weight:600">{html.escape(title)}</span>'
                    + (f' <span style="color:{muted}">{html.escape(styled)}</span>' if styled else "")
                    + (f'  <span style="color:{muted}">{html.escape(w)}</span>' if w else "")
                )
                break
        if head:
            break
    if not head:  # not even the title fits: its end gives way
        short = fits.elide(title)
        head = f'<span style="color:{theme.fg}; font-weight:600">{html.escape(short)}</span>'
    named = wrap([e.part(True) for e in entries], fits)
    unnamed = wrap([e.part(False) for e in entries], fits)
    lines = named if len(named) <= len(unnamed) else unnamed
    legend = "<br>".join("  ".join(h for h, _ in line) for line in lines)
    title_html = f'<span style="font-size:9pt">{head}<br>{legend}</span>'
    full = "  ".join(p for p in (title, styles, "" if where is None else where[2] + f"{where[0]} · {where[1]}") if p)
    return title_html, "\n".join([full, *(e.plain for e in entries)])


def compose_title(
    plot: MetricPlot, settings: PlotSettings, runs: Sequence[tuple[RunModel, str]], pinned: bool
) -> tuple[str, str]:
    """A plot's title as html and its tooltip: its name, where the readout is, and the legend with the values."""
    primary = runs[0][0] if runs else None
    readout = read_values(plot.curves, plot.cursor_x, settings.x_by, primary)
    styles, entries = legend_entries(plot.curves, runs, readout, plot.reference, plot.theme.muted)
    title = ("★ " if pinned else "") + plot.spec.title
    width = int(plot.item.titleLabel.width()) if plot.item.titleLabel.isVisible() else 0
    title_html, tooltip = layout_title(title, styles, readout.where, entries, width, plot.theme)
    notes = ["Values are raw, as the run logged them."]
    if settings.smoothing > 0 and plot.spec.smooth:
        notes = ["Values are raw, as the run logged them; the curves are smoothed."]
    if pinned:
        notes.append("Pinned to the top (right-click: Unpin).")
    return title_html, tooltip + "\n" + " ".join(notes)
