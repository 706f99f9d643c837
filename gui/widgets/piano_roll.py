"""A piano roll (pyqtgraph): notes over time, coloured by voice, with zoom, pan and a playhead.

Notes are drawn by one item from a cached ``QPicture`` (one ``drawRects``
per voice), so a piece of thousands of notes pans and zooms smoothly. The
wheel zooms time, Shift+wheel zooms pitch and a drag pans, limited to the
piece and the MIDI range; double-click or "Fit" shows the whole piece. The
header says how many notes, voices and seconds the piece has; the legend's
buttons hide (and mute) a voice.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from gui.models.midi import Piece, note_name
from gui.theme import LIGHT, Theme
from gui.widgets.flow_layout import FlowLayout
from gui.widgets.plots import style_axes

BLACK_KEYS = {1, 3, 6, 8, 10}
MIN_NOTE_S = 0.02  # zero-length notes stay visible


class PitchAxis(pg.AxisItem):
    """Note names at every C, and E/G/B too when zoomed in far enough to read them."""

    def tickValues(self, minVal, maxVal, size):
        span = maxVal - minVal
        if span <= 0:
            return []
        lo, hi = int(np.floor(minVal)), int(np.ceil(maxVal))
        major = [p for p in range(max(lo, 0), min(hi, 127) + 1) if p % 12 == 0]
        if span < 30:
            minor = [p for p in range(max(lo, 0), min(hi, 127) + 1) if p % 12 != 0]
            return [(12, major), (1, minor)]
        return [(12, major)]

    def tickStrings(self, values, scale, spacing):
        return [note_name(int(round(v))) if 0 <= v <= 127 else "" for v in values]


def _duration_text(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}"


class RollViewBox(pg.ViewBox):
    """The wheel zooms time; with Shift it zooms pitch (zooming both at once squashes the notes)."""

    def wheelEvent(self, ev, axis=None):
        shift = bool(ev.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier)
        super().wheelEvent(ev, axis=1 if shift else 0)


class PianoRollItem(pg.GraphicsObject):
    def __init__(self):
        super().__init__()
        self.picture = QtGui.QPicture()
        self._bounds = QtCore.QRectF()

    def set_notes(self, piece: Piece | None, colors: list[QtGui.QColor], hidden: set[int]) -> None:
        self.prepareGeometryChange()
        self.picture = QtGui.QPicture()
        painter = QtGui.QPainter(self.picture)
        self._bounds = QtCore.QRectF()
        if piece is not None and len(piece):
            widths = np.maximum(piece.end_s - piece.start_s, MIN_NOTE_S)
            for voice in range(len(piece.voices)):
                if voice in hidden:
                    continue
                mine = np.flatnonzero(piece.voice == voice)
                if not mine.size:
                    continue
                color = colors[voice % len(colors)]
                pen = QtGui.QPen(color.darker(150))
                pen.setCosmetic(True)
                pen.setWidthF(1.0)
                painter.setPen(pen)
                fill = QtGui.QColor(color)
                painter.setBrush(fill)
                rects = [
                    QtCore.QRectF(float(piece.start_s[i]), float(piece.pitch[i]) - 0.42, float(widths[i]), 0.84)
                    for i in mine
                ]
                painter.drawRects(rects)
            self._bounds = QtCore.QRectF(
                0.0,
                float(piece.pitch.min()) - 0.5,
                float(piece.duration_s) + MIN_NOTE_S,
                float(piece.pitch.max() - piece.pitch.min()) + 1.0,
            )
        painter.end()
        self.update()

    def paint(self, painter, *args):
        painter.drawPicture(0, 0, self.picture)

    def boundingRect(self):
        return QtCore.QRectF(self._bounds)


class KeyboardShade(pg.GraphicsObject):
    """Rows of the black keys shaded and a line at every C, across the piece, so pitches read at a glance."""

    def __init__(self, theme: Theme):
        super().__init__()
        self.theme = theme
        self.width = 1.0
        self.picture = QtGui.QPicture()
        self.setZValue(-10)
        self._draw()

    def set_width(self, width: float) -> None:
        self.prepareGeometryChange()
        self.width = max(width, 1.0)
        self._draw()

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._draw()

    def _draw(self) -> None:
        self.picture = QtGui.QPicture()
        painter = QtGui.QPainter(self.picture)
        shade = QtGui.QColor(self.theme.fg)
        shade.setAlpha(14)
        painter.setPen(QtCore.Qt.PenStyle.NoPen)
        painter.setBrush(shade)
        painter.drawRects([QtCore.QRectF(0.0, p - 0.5, self.width, 1.0) for p in range(128) if p % 12 in BLACK_KEYS])
        line = QtGui.QColor(self.theme.axis)
        line.setAlpha(90)
        pen = QtGui.QPen(line)
        pen.setCosmetic(True)
        painter.setPen(pen)
        for p in range(0, 128, 12):
            painter.drawLine(QtCore.QPointF(0.0, p - 0.5), QtCore.QPointF(self.width, p - 0.5))
        painter.end()
        self.update()

    def paint(self, painter, *args):
        painter.drawPicture(0, 0, self.picture)

    def boundingRect(self):
        return QtCore.QRectF(0.0, -0.5, self.width, 128.0)


def _wrapping_policy() -> QtWidgets.QSizePolicy:
    """A flow layout's box: as wide as it is given, as tall as its rows need there."""
    policy = QtWidgets.QSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
    policy.setHeightForWidth(True)
    return policy


class PianoRoll(QtWidgets.QWidget):
    voicesChanged = QtCore.Signal(set)  # the hidden (muted) voices

    def __init__(self, theme: Theme = LIGHT, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.theme = theme
        self.piece: Piece | None = None
        self.hidden: set[int] = set()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        head = QtWidgets.QHBoxLayout()
        # The title and the count share a row while they fit; in a narrow dock the count wraps below, whole.
        words_box = QtWidgets.QWidget()
        words = FlowLayout(words_box, spacing=8)
        words_box.setSizePolicy(_wrapping_policy())
        self.title = QtWidgets.QLabel()
        self.title.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.count_label = QtWidgets.QLabel()
        self.count_label.setObjectName("muted")
        fit = QtWidgets.QToolButton()
        fit.setText("Fit")
        fit.setToolTip(
            "Show the whole piece (or double-click the roll). Wheel: zoom time; Shift+wheel: zoom pitch; drag: pan"
        )
        fit.clicked.connect(self.fit)
        words.addWidget(self.title)
        words.addWidget(self.count_label)
        head.addWidget(words_box, 1)
        head.addWidget(fit, 0, QtCore.Qt.AlignmentFlag.AlignTop)
        layout.addLayout(head)
        # Many voices wrap onto more rows rather than widen the dock or scroll out of sight.
        legend_box = QtWidgets.QWidget()
        self.legend = FlowLayout(legend_box)
        legend_box.setSizePolicy(_wrapping_policy())
        layout.addWidget(legend_box)
        self.plot = pg.PlotWidget(viewBox=RollViewBox(), axisItems={"left": PitchAxis("left")})
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=False, alpha=0.12)
        self.plot.setLabel("bottom", "seconds")
        self.view = self.plot.getViewBox()
        self.view.setLimits(yMin=-1, yMax=129, minYRange=6, minXRange=0.25)
        self.shade = KeyboardShade(theme)
        self.notes = PianoRollItem()
        self.plot.addItem(self.shade)
        self.plot.addItem(self.notes)
        self.playhead = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#ef4444", width=2))
        self.playhead.setZValue(20)
        self.playhead.hide()
        self.plot.addItem(self.playhead, ignoreBounds=True)
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        layout.addWidget(self.plot, 1)
        self.apply_theme(theme)
        self.set_piece(None)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.plot.setBackground(theme.plot_bg)
        style_axes(self.plot, theme)
        self.shade.set_theme(theme)
        if self.piece is not None:
            self._redraw()
            self._fill_legend()

    def colors(self) -> list[QtGui.QColor]:
        return [QtGui.QColor(c) for c in self.theme.palette]

    def set_piece(self, piece: Piece | None, title: str = "", message: str = "") -> None:
        """Show ``piece`` (None: nothing, with ``message`` saying why)."""
        self.piece = piece
        self.hidden = set()
        self.title.setText(title)
        if piece is None:
            self.count_label.setText(message or "No sample selected.")
        else:
            span = piece.pitch_span()
            pitches = f" · {note_name(span[0])}–{note_name(span[1])}" if span else ""
            voices = len(piece.voices)
            self.count_label.setText(
                f"{piece.n_notes:,} note{'s' if piece.n_notes != 1 else ''} · "
                f"{voices} voice{'s' if voices != 1 else ''} · {_duration_text(piece.duration_s)}"
                + pitches
                + (" · file truncated" if piece.truncated else "")
            )
        self._fill_legend()
        self._redraw()
        self.shade.set_width((piece.duration_s if piece is not None else 0.0) + 1.0)
        if piece is not None:
            self.view.setLimits(xMin=-0.5, xMax=piece.duration_s + 1.0)
        self.fit()

    def _redraw(self) -> None:
        self.notes.set_notes(self.piece, self.colors(), self.hidden)

    def _fill_legend(self) -> None:
        while (item := self.legend.takeAt(0)) is not None:
            widget = item.widget()
            if widget is not None:
                widget.deleteLater()
        if self.piece is None:
            return
        colors = self.colors()
        for i, voice in enumerate(self.piece.voices):
            n = int(np.count_nonzero(self.piece.voice == i))
            button = QtWidgets.QToolButton()
            button.setCheckable(True)
            button.setChecked(i not in self.hidden)
            color = colors[i % len(colors)].name()
            button.setText(f"■ {voice.label} · {n}")
            button.setToolTip(
                f"{html.escape(voice.label)}: {n} notes, program {voice.program}. Click to hide and mute it."
            )
            button.setStyleSheet(
                f"QToolButton {{ color: {color}; font-weight: 600; }} "
                f"QToolButton:!checked {{ color: {self.theme.muted}; font-weight: 400; }}"
            )
            button.toggled.connect(lambda on, v=i: self._toggle_voice(v, on))
            self.legend.addWidget(button)

    def _toggle_voice(self, voice: int, shown: bool) -> None:
        (self.hidden.discard if shown else self.hidden.add)(voice)
        self._redraw()
        self.voicesChanged.emit(set(self.hidden))

    def fit(self) -> None:
        piece = self.piece
        span = piece.pitch_span() if piece is not None else None  # None: no notes
        if piece is None or span is None:
            self.view.setRange(xRange=(0, 8), yRange=(48, 84), padding=0)
            return
        lo, hi = span
        self.view.setRange(xRange=(0, max(piece.duration_s, 0.5)), yRange=(lo - 3, hi + 3), padding=0.02)

    def _clicked(self, event) -> None:
        if event.double():
            self.fit()

    def set_playhead(self, seconds: float | None) -> None:
        """A line at ``seconds`` into the piece (None: no line); zoomed in, the view pages along with it."""
        if seconds is None:
            self.playhead.hide()
            return
        self.playhead.setPos(seconds)
        self.playhead.show()
        x0, x1 = self.view.viewRange()[0]
        if not x0 <= seconds <= x1:
            self.view.setXRange(seconds, seconds + (x1 - x0), padding=0)
