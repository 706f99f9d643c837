"""The status bar: state, step/total, ETA, tokens/s, last checkpoint, unread anomalies."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtWidgets

from gui.format import format_duration
from gui.theme import Theme

if TYPE_CHECKING:
    from gui.models.run_model import RunModel


class RunStatusBar(QtWidgets.QStatusBar):
    anomaliesClicked = QtCore.Signal()

    def __init__(self, theme: Theme, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.theme = theme
        self.model: RunModel | None = None
        self._key: tuple | None = None
        self.state = QtWidgets.QLabel("no run")
        self.state.setObjectName("stateBadge")
        self.step = QtWidgets.QLabel()
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(120)
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.eta = QtWidgets.QLabel()
        self.queue = QtWidgets.QLabel()  # a SLURM run's job: pending (and why), running, ...
        self.queue.hide()
        self.speed = QtWidgets.QLabel()
        self.checkpoint = QtWidgets.QLabel()
        self.anomalies = QtWidgets.QPushButton()
        self.anomalies.setObjectName("anomalyButton")
        self.anomalies.setFlat(True)
        self.anomalies.setCursor(QtCore.Qt.CursorShape.PointingHandCursor)
        self.anomalies.setToolTip("Unread anomalies: click to show them")
        self.anomalies.clicked.connect(self.anomaliesClicked)
        for w in (
            self.state,
            self.queue,
            self.step,
            self.progress,
            self.eta,
            self.speed,
            self.checkpoint,
            self.anomalies,
        ):
            self.addPermanentWidget(w)
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    def stop(self) -> None:
        self._timer.stop()

    def set_model(self, model: RunModel | None) -> None:
        self.model = model
        self._key = None
        self.refresh()

    def set_slurm(self, label: str, details: str = "") -> None:
        """The SLURM job's queue state beside the run's ("" hides it: not a SLURM run)."""
        self.queue.setText(label)
        self.queue.setToolTip(details)
        self.queue.setVisible(bool(label))

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._key = None
        self.refresh()

    def refresh(self) -> None:
        m = self.model
        now = time.time()
        if m is None:
            key = None
        else:
            key = (m.state_version, m.state(now), m.step, int(now) // 5, m.unread_anomalies)
        if key == self._key and key is not None:
            return
        self._key = key
        if m is None:
            self.state.setText("no run")
            for w in (self.step, self.eta, self.speed, self.checkpoint):
                w.clear()
            self.progress.hide()
            self.anomalies.hide()
            return
        state = m.state(now)
        color = self.theme.state_colors.get(state, self.theme.fg)
        label = state.replace("_", " ")
        if m.status_message and state in ("preparing", "starting", "stopping"):
            label += f": {m.status_message}"
        self.state.setText(f'<span style="color:{color}; font-weight:600">● {label}</span>')
        self.state.setToolTip(m.exit_note or m.status_message)
        if m.progress and state == "preparing":
            done, total = m.progress
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
            self.step.setText(f"{int(done)}/{int(total)}")
        else:
            self.step.setText(f"step {m.step:,}/{m.total_steps:,}" if m.total_steps else f"step {m.step:,}")
            if m.total_steps:
                self.progress.setRange(0, m.total_steps)
                self.progress.setValue(min(m.step, m.total_steps))
        self.progress.setVisible(bool(m.total_steps or m.progress))
        eta = m.eta_seconds() if state == "running" else None
        self.eta.setText(f"ETA {format_duration(eta)}" if eta is not None else "")
        tps = m.latest.get("tokens_per_s")
        shown = f"{tps:,.0f} tok/s" if isinstance(tps, (int, float)) and math.isfinite(tps) else ""
        if state == "paused":
            shown = "paused: 0 tok/s"  # the last interval's speed is not what the run is doing now
        elif shown and state != "running":
            shown = f"last {shown}"
        self.speed.setText(shown)
        ck = m.last_checkpoint
        if ck:
            ago = format_duration(now - float(ck["time"]))
            self.checkpoint.setText(f"ckpt @ {ck.get('step', '?')} ({ago} ago)")
            self.checkpoint.setToolTip(str(ck.get("path", "")))
        else:
            self.checkpoint.setText("no checkpoint yet" if m.events else "")
        n = m.unread_anomalies
        self.anomalies.setVisible(n > 0)
        self.anomalies.setText(f"⚠ {n} unread anomal{'y' if n == 1 else 'ies'}")
