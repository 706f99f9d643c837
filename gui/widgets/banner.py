"""The banner over the plots: why the open run failed and its last log lines, or why a folder did not open."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtWidgets

if TYPE_CHECKING:
    from gui.session import RunSession


class FailureBanner(QtWidgets.QFrame):
    """Shown over the plots when the run failed: why, and the last log lines."""

    showLog = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("failureBanner")
        self._shown_for: tuple | None = None  # (session, state version) last shown, so Dismiss sticks
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        self.text = QtWidgets.QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.text, 1)
        buttons = QtWidgets.QVBoxLayout()
        self.log_button = QtWidgets.QPushButton("Show log")
        self.log_button.clicked.connect(self.showLog)
        close = QtWidgets.QPushButton("Dismiss")
        close.clicked.connect(self.hide)
        buttons.addWidget(self.log_button)
        buttons.addWidget(close)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.hide()

    def show_failure(self, title: str, lines: list[str]) -> None:
        tail = "<br>".join(html.escape(line) for line in lines[-8:]) or "(the log is empty)"
        self.text.setText(f"<b>{html.escape(title)}</b><br><span style='font-family:monospace'>{tail}</span>")
        self.log_button.show()
        self.show()

    def show_notice(self, title: str, text: str) -> None:
        """A problem that is not the open run's (it has no log to show)."""
        self.text.setText(f"<b>{html.escape(title)}</b><br>{html.escape(text)}")
        self.log_button.hide()
        self._shown_for = None
        self.show()

    def reset(self) -> None:
        self.hide()
        self._shown_for = None

    def check(self, session: RunSession) -> None:
        """Show the banner once for each failure of ``session`` (none while it is not failed)."""
        m = session.model
        if m.state() != "failed":
            return
        key = (id(session), m.state_version)
        if key == self._shown_for:
            return
        self._shown_for = key
        why = (
            m.exit_note
            or (m.end.message if m.end is not None else "")
            or (m.fatal_error.message if m.fatal_error is not None else "")
            or "the run failed"
        )
        self.show_failure(f"{m.name} failed: {why}", session.last_log_lines(12))
