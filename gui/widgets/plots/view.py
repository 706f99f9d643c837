"""The dashboard's central area: the metric filter and the runs' legend over the plots, or an empty state."""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6 import QtCore, QtGui, QtWidgets

from gui.theme import Theme
from gui.widgets.plots.grid import PlotGrid

MAXIMISE_KEY = "F11"
NB_HYPHEN = "\u2011"


class EmptyState(QtWidgets.QWidget):
    """What the plots' place says when there is nothing to plot, with the actions that would change that."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addStretch(2)
        self.title = QtWidgets.QLabel()
        self.title.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        self.title.setFont(font)
        self.text = QtWidgets.QLabel()
        self.text.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.text.setWordWrap(True)
        layout.addWidget(self.title)
        layout.addWidget(self.text)
        self.buttons = QtWidgets.QHBoxLayout()
        self.buttons.addStretch(1)
        self.buttons.addStretch(1)
        layout.addSpacing(8)
        layout.addLayout(self.buttons)
        layout.addStretch(3)
        self._buttons: list[QtWidgets.QPushButton] = []

    def set_actions(self, actions: Sequence[QtGui.QAction]) -> None:
        """Offer these actions as buttons (the first as the default one); each follows its action's state."""
        for button in self._buttons:
            button.deleteLater()
        self._buttons = []
        for i, action in enumerate(actions):
            button = QtWidgets.QPushButton(action.text())
            button.setToolTip(action.toolTip())
            button.setDefault(i == 0)
            button.setEnabled(action.isEnabled())
            button.clicked.connect(lambda _checked=False, a=action: a.trigger())
            action.changed.connect(lambda a=action, b=button: b.setEnabled(a.isEnabled()))
            self.buttons.insertWidget(1 + i, button)
            self._buttons.append(button)

    def show_text(self, title: str, text: str, with_actions: bool) -> None:
        self.title.setText(title)
        self.text.setText(text)
        for button in self._buttons:
            button.setVisible(with_actions)


class SearchBox(QtWidgets.QLineEdit):
    """A line edit that Escape clears."""

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        if event.key() == QtCore.Qt.Key.Key_Escape and self.text():
            self.clear()
            return
        super().keyPressEvent(event)


class DashboardView(QtWidgets.QWidget):
    """The metric filter, the message it gives, and the legend of the runs shown, over the training grid (in a
    scroll area: a grid that keeps its rows readable grows past the window) or over an empty state."""

    filterChanged = QtCore.Signal(str)
    maximiseRequested = QtCore.Signal()

    def __init__(self, grid: PlotGrid, theme: Theme, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.theme = theme
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.header = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(self.header)
        row.setContentsMargins(6, 4, 6, 2)
        self.search = SearchBox()
        self.search.setObjectName("metricFilter")
        self.search.setPlaceholderText("Filter plots (regex)")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(160)
        self.search.setMaximumWidth(260)
        self.search.setToolTip(
            "Show the plots whose title or series matches this regular expression (case-insensitive), "
            "e.g. loss|lr or ^rank.\nRight-click a plot to pin it to the top; double-click a plot or press "
            f"{MAXIMISE_KEY} over it to maximise it, and again to go back."
        )
        self.search.textChanged.connect(self.filterChanged)
        self.message = QtWidgets.QLabel()
        self.message.setObjectName("filterMessage")
        # However long the message, it never widens the central area (the docks beside it would give way):
        # what does not fit is in its tooltip.
        self.message.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.message.setWordWrap(True)
        self.legend = QtWidgets.QLabel()
        self.legend.setObjectName("runLegend")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.legend.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.search)
        row.addWidget(self.message, 2)
        row.addWidget(self.legend, 3)
        layout.addWidget(self.header)
        self.stack = QtWidgets.QStackedWidget()
        self.empty = EmptyState()
        self.plots_area = QtWidgets.QScrollArea()
        self.plots_area.setWidgetResizable(True)
        self.plots_area.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.plots_area.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.plots_area.setWidget(grid)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.plots_area)
        layout.addWidget(self.stack, 1)
        self.maximise_action = QtGui.QAction("Maximise plot", self)
        self.maximise_action.setShortcut(QtGui.QKeySequence(MAXIMISE_KEY))
        self.maximise_action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        self.maximise_action.setToolTip(
            f"Show the plot under the mouse alone, or all of them again ({MAXIMISE_KEY}, or double-click a plot)"
        )
        self.maximise_action.triggered.connect(self.maximiseRequested)
        self.addAction(self.maximise_action)

    def show_plots(self, on: bool, title: str = "", text: str = "", with_actions: bool = False) -> None:
        """The plots, or the empty state saying ``title`` and ``text`` (with its actions, ``with_actions``)."""
        if not on:
            self.empty.show_text(title, text, with_actions)
        self.stack.setCurrentWidget(self.plots_area if on else self.empty)
        self.header.setVisible(on or bool(self.search.text()))

    def show_message(self, text: str, error: bool = False) -> None:
        color = self.theme.state_colors.get("failed", "#b91c1c") if error else self.theme.muted
        self.message.setText(f'<span style="color:{color}">{html.escape(text)}</span>' if text else "")
        self.message.setToolTip(text)
        self.search.setProperty("invalid", error)
        self.search.setStyleSheet(f"QLineEdit#metricFilter {{ border: 1px solid {color}; }}" if error else "")

    def set_runs(self, runs: Sequence[tuple[str, str]]) -> None:
        """The legend of the runs shown (name, colour), the open one first: shown when there is more than one."""
        if len(runs) < 2:
            self.legend.clear()
            return
        # Lines break between runs, never inside a name (at its hyphens or spaces): those are non-breaking.
        entries = [
            f'<span style="color:{color}">■</span>&nbsp;{_unbroken(name)}'
            + (f'&nbsp;<span style="color:{self.theme.muted}">(open)</span>' if i == 0 else "")
            for i, (name, color) in enumerate(runs)
        ]
        self.legend.setText("&nbsp;&nbsp; ".join(entries))
        self.legend.setToolTip("Runs on the plots, each in its colour; the open run first.")

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme


def _unbroken(name: str) -> str:
    """``name`` as html that a line never breaks inside."""
    return html.escape(name).replace("-", NB_HYPHEN).replace(" ", "&nbsp;")
