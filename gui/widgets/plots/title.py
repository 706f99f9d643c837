"""A plot's title: its name, where the readout is, and a legend with the values, shortened to fit its width."""

from __future__ import annotations

import html

import pyqtgraph as pg
import pyqtgraph.functions as fn
from PySide6 import QtCore, QtGui, QtWidgets

from gui.theme import Theme
from gui.widgets.plots.curve import Curve


class TitleLabel(pg.LabelItem):
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


def legend_entries(
    curves: list[Curve],
    values: dict[int, list[tuple[str, str]]],
    overlay: bool,
    reference: tuple[float, float | None] | None,
    muted: str,
) -> tuple[str, list[tuple[str, str]]]:
    """The legend as (html, plain) entries, and the line styles of an overlay's series (blank otherwise).

    ``values``: the readout per curve (``id(curve)`` -> [(html, plain)]).
    """
    parts: list[tuple[str, str]] = []
    if overlay:
        labels = list(dict.fromkeys(c.label for c in curves))
        glyphs = ("—", "╌", "┈", "-·")
        styles = (
            " ".join(f"{label} {glyphs[i % len(glyphs)]}" for i, label in enumerate(labels)) if len(labels) > 1 else ""
        )
        runs: dict[int, list[Curve]] = {}
        for curve in curves:
            runs.setdefault(id(curve.model), []).append(curve)
        for of_run in runs.values():
            first = of_run[0]
            shown = [v for c in of_run for v in values.get(id(c), [])]
            text = f'<span style="color:{first.color.name()}">■</span> {html.escape(first.model.name)}'
            plain = f"■ {first.model.name}"
            if shown:
                text += " " + "/".join(h for h, _ in shown)
                plain += " " + "/".join(p for _, p in shown)
            parts.append((text, plain))
    else:
        styles = ""
        for c in curves:
            value = values[id(c)][0] if id(c) in values else None
            parts.append(
                (
                    f'<span style="color:{c.color.name()}">■</span> {html.escape(c.label)}'
                    + (" " + value[0] if value else ""),
                    f"■ {c.label}" + (" " + value[1] if value else ""),
                )
            )
    if reference is not None:
        mean, std = reference
        ref = f"╌ corpus {mean:.3g}" + (f" ± {std:.2g}" if std else "")
        parts.append((f'<span style="color:{muted}">{ref}</span>', ref))
    if not parts:
        parts.append((f'<span style="color:{muted}">no data yet</span>', "no data yet"))
    return styles, parts


def layout_title(
    title: str, styles: str, where: tuple[str, str, str] | None, parts: list[tuple[str, str]], width: int, theme: Theme
) -> tuple[str, str]:
    """The title's html in two lines (what fits ``width``) and its tooltip (all of it).

    ``where``: (step, time, "latest: " or ""); ``parts``: the legend's (html, plain) entries.
    """
    muted = theme.muted
    fits = TitleFit(width)
    # Line 1: the title, the line styles of an overlay, where the readout is. Shortened until it fits.
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
    # Line 2: the legend, as many entries as fit, then "…".
    legend = [parts[0]]
    for k in range(1, len(parts)):
        rest = " …" if k < len(parts) - 1 else ""
        if not fits("  ".join(p for _, p in legend + [parts[k]]) + rest):
            legend.append((f'<span style="color:{muted}">…</span>', "…"))
            break
        legend.append(parts[k])
    title_html = f'<span style="font-size:9pt">{head}<br>{"  ".join(h for h, _ in legend)}</span>'
    full = "  ".join(p for p in (title, styles, "" if where is None else where[2] + f"{where[0]} · {where[1]}") if p)
    return title_html, full + "\n" + "  ".join(p for _, p in parts)
