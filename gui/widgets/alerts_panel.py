"""Anomaly alerts: a live list with what the engine did about each, filters, acknowledgement, notifications.

Each row: severity, kind, step, what was seen, the evidence, the suggested
action, and the action the engine took with its result (a rollback names the
step it went back to and the LR factor). Severity buttons and a kind menu
filter the list; acknowledging clears the badge (``badgeChanged``). A new
alert on a live run raises a desktop notification where the platform offers
one (``QSystemTrayIcon.supportsMessages``). Selecting an alert emits
``stepSelected`` with its step, for the plots.

Mount it as a dock::

    self.alerts = AlertsPanel(AlertModel())
    self._dock("Alerts", "alerts", self.alerts, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)

and feed it with ``alerts.ingest(events)`` (anomaly events; others are ignored).
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Sequence

from PySide6 import QtCore, QtGui, QtWidgets

from engine.contract.events import Record
from gui.format import format_clock
from gui.models.alerts import SEVERITIES, SEVERITY_RANK, Alert, AlertModel
from gui.models.table import Column, RowTableModel
from gui.widgets.engine_job import panel_toolbar

SEVERITY_COLORS = {"critical": "#dc2626", "warning": "#d97706", "info": "#2563eb"}
OUTCOME_COLORS = {"done": "#16a34a", "other": "#d97706", "pending": "#6b7280"}
MUTED = "#6b7280"
ACKNOWLEDGED_COLOR = "#8b9099"
# Events older than this when read are history (a run opened later): listed, never notified.
NOTIFY_MAX_AGE_S = 120.0
PROSE_WIDTHS = {"Action taken": 330, "What happened": 320, "Evidence": 260}
# Until the user sizes them, what the engine did and what was seen share the width the short columns leave,
# so both are on screen; evidence and suggestion follow (and are in the details).
SHARED_PROSE = ("Action taken", "What happened")
PROSE_MIN_WIDTH = 160
NOTIFY_MIN_INTERVAL_S = 10.0  # several alerts at once make one notification
DETAIL_LINES = 4
MIN_ROWS = 3  # alerts the table keeps in view however low the dock (the details give way first)
TABLE_SHARE = 0.7  # of the splitter's height, for the table, until the user moves the handle


class AlertTable(RowTableModel[Alert]):
    def __init__(self, model: AlertModel, parent: QtCore.QObject | None = None):
        # What the engine did comes right after when: it is what a user scans for.
        super().__init__(
            [
                Column("Severity", lambda a: f"● {a.severity}", color=lambda a: SEVERITY_COLORS.get(a.severity, MUTED)),
                Column("Kind", lambda a: a.title, color=_read_color),
                Column("Step", lambda a: f"{a.step:,}", right=True, color=_read_color),
                Column("Time", lambda a: format_clock(a.time), color=_read_color),
                Column("Action taken", lambda a: a.action_text(), color=_outcome_color),
                Column("What happened", lambda a: a.message, color=_read_color),
                Column("Evidence", lambda a: a.evidence_text(), color=_read_color),
                Column("Suggestion", lambda a: a.suggestion, color=_read_color),
            ],
            parent,
        )
        self.model = model

    def reload(self) -> None:
        self.set_rows(self.model.visible())

    def bold(self, alert: Alert, column: Column[Alert]) -> bool:
        return not alert.acknowledged

    def tooltip(self, alert: Alert) -> str:
        return (
            f"{alert.title} ({alert.severity}) at step {alert.step}\n{alert.message}\n\n"
            f"evidence: {alert.evidence_text(limit=50)}\nsuggestion: {alert.suggestion}\n"
            f"action: {alert.action_text()}"
        )


def _read_color(alert: Alert) -> str | None:
    """Acknowledged alerts are greyed out."""
    return ACKNOWLEDGED_COLOR if alert.acknowledged else None


def _outcome_color(alert: Alert) -> str | None:
    return OUTCOME_COLORS.get(alert.outcome, MUTED) if alert.outcome != "none" else None


class Notifier(QtCore.QObject):
    """Desktop notifications through the system tray, where the platform shows them."""

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.tray: QtWidgets.QSystemTrayIcon | None = None
        self.available = (
            QtWidgets.QSystemTrayIcon.isSystemTrayAvailable() and QtWidgets.QSystemTrayIcon.supportsMessages()
        )
        self.sent: list[tuple[str, str]] = []  # (title, body) of each notification shown
        self._last = 0.0
        self._queued: list[Alert] = []
        self._timer = QtCore.QTimer(self, singleShot=True)
        self._timer.timeout.connect(self._flush)

    def notify(self, alerts: list[Alert], run_name: str) -> None:
        if not self.available or not alerts:
            return
        self._queued += alerts
        self._run_name = run_name
        wait = NOTIFY_MIN_INTERVAL_S - (time.monotonic() - self._last)
        if wait <= 0:
            self._flush()
        elif not self._timer.isActive():
            self._timer.start(int(wait * 1000))

    def _flush(self) -> None:
        alerts, self._queued = self._queued, []
        if not alerts:
            return
        if self.tray is None:
            icon = QtWidgets.QApplication.style().standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MessageBoxWarning)
            self.tray = QtWidgets.QSystemTrayIcon(icon, self)
            self.tray.show()
        worst = min(alerts, key=lambda a: SEVERITY_RANK.get(a.severity, 9))
        if len(alerts) == 1:
            title = f"{self._run_name}: {worst.title} at step {worst.step}"
            body = worst.message + (f"\n{worst.action_text()}" if worst.action_text() != "alert only" else "")
        else:
            title = f"{self._run_name}: {len(alerts)} anomalies"
            body = "; ".join(f"{a.title} @ {a.step}" for a in alerts[:5])
        message_icon = {
            "critical": QtWidgets.QSystemTrayIcon.MessageIcon.Critical,
            "warning": QtWidgets.QSystemTrayIcon.MessageIcon.Warning,
        }.get(worst.severity, QtWidgets.QSystemTrayIcon.MessageIcon.Information)
        self.tray.showMessage(title, body, message_icon, 8000)
        self.sent.append((title, body))
        self._last = time.monotonic()


class AlertsPanel(QtWidgets.QWidget):
    stepSelected = QtCore.Signal(int)
    badgeChanged = QtCore.Signal(int)  # unacknowledged alerts
    alertsRaised = QtCore.Signal(list)  # new alerts (not follow-ups), as they arrive

    def __init__(self, model: AlertModel, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.run_name = "run"
        self.notifier = Notifier(self)
        self._badge = -1
        self._reloading = False
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.severity_buttons: dict[str, QtWidgets.QCheckBox] = {}
        for severity in SEVERITIES:
            button = QtWidgets.QCheckBox()
            button.setChecked(True)
            button.setToolTip(f"Show {severity} alerts")
            button.setStyleSheet(f"QCheckBox {{ color: {SEVERITY_COLORS[severity]}; font-weight: 600; }}")
            button.toggled.connect(self._severity_filter)
            self.severity_buttons[severity] = button
        self.kind = QtWidgets.QComboBox()
        self.kind.setToolTip("Show one kind of anomaly")
        self.kind.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.kind.currentIndexChanged.connect(self._kind_filter)
        self.count = QtWidgets.QLabel()
        self.count.setObjectName("muted")
        self.ack_button = QtWidgets.QPushButton("Acknowledge")
        self.ack_button.setToolTip("Mark the selected alerts as seen (Space)")
        self.ack_button.clicked.connect(self.acknowledge_selected)
        self.ack_all_button = QtWidgets.QPushButton("Acknowledge all")
        self.ack_all_button.setToolTip("Mark every shown alert as seen")
        self.ack_all_button.clicked.connect(self.acknowledge_all)
        layout.addWidget(
            panel_toolbar(
                *self.severity_buttons.values(), self.kind, "stretch", self.count, self.ack_button, self.ack_all_button
            )
        )

        self.table_model = AlertTable(model, self)
        self.table = QtWidgets.QTableView()
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        # Short columns follow their contents, also when a style sheet changes the font; the prose ones get
        # a fixed share and show the rest in the tooltip and the details below.
        for col, column in enumerate(self.table_model.columns):
            if column.title in PROSE_WIDTHS:
                header.setSectionResizeMode(col, QtWidgets.QHeaderView.ResizeMode.Interactive)
                header.resizeSection(col, PROSE_WIDTHS[column.title])
            else:
                header.setSectionResizeMode(col, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self._prose_by_user = False
        header.sectionResized.connect(self._section_resized)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        QtGui.QShortcut(QtGui.QKeySequence("Space"), self.table, self.acknowledge_selected)
        self.splitter = splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        self.detail = QtWidgets.QTextBrowser()
        self.detail.setOpenLinks(False)
        self.detail.setPlaceholderText("Select an alert to see its evidence and what the engine did.")
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setCollapsible(0, False)
        # The list is what the panel is for: it keeps MIN_ROWS rows in view, the details take what is left.
        self.table.setMinimumHeight(self.table_height(MIN_ROWS))
        # The details say what was seen and done in a few lines: never fewer than DETAIL_LINES in view.
        self.detail.setMinimumHeight(DETAIL_LINES * self.detail.fontMetrics().lineSpacing() + 12)
        self._split_by_user = False
        splitter.splitterMoved.connect(lambda *_: setattr(self, "_split_by_user", True))
        layout.addWidget(splitter, 1)
        self._fill_kinds()
        self.reload()

    def table_height(self, rows: int) -> int:
        """Pixels for the header, ``rows`` rows and the horizontal scroll bar."""
        header = self.table.horizontalHeader().sizeHint().height()
        row = self.table.verticalHeader().defaultSectionSize()
        bar = self.table.horizontalScrollBar().sizeHint().height()
        return header + rows * row + bar + 2 * self.table.frameWidth()

    def _section_resized(self, col: int, _old: int, _new: int) -> None:
        if self.table_model.columns[col].title in SHARED_PROSE and self.table.horizontalHeader().underMouse():
            self._prose_by_user = True

    def _share_prose(self) -> None:
        header = self.table.horizontalHeader()
        shared = [i for i, c in enumerate(self.table_model.columns) if c.title in SHARED_PROSE]
        before = [i for i in range(min(shared)) if not header.isSectionHidden(i)]
        free = self.table.viewport().width() - sum(header.sectionSize(i) for i in before)
        for col in shared:
            header.resizeSection(col, max(PROSE_MIN_WIDTH, free // len(shared)))

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        if not self._prose_by_user:
            self._share_prose()
        minimum = self.table_height(MIN_ROWS)  # again: a style sheet set since changes the rows' height
        if self.table.minimumHeight() != minimum:
            self.table.setMinimumHeight(minimum)
        height = self.splitter.height()
        if not self._split_by_user and height > 0:
            table = max(self.table.minimumHeight(), int(height * TABLE_SHARE))
            self.splitter.setSizes([table, max(0, height - table - self.splitter.handleWidth())])

    # --------------------------------------------------------------- data in

    def ingest(self, events: Sequence[Record], live: bool = True) -> list[Alert]:
        """Take anomaly events; new ones on a live run are notified. Returns the new alerts."""
        new = self.model.ingest(events)
        if new or any(e.get("type") == "anomaly" for e in events):
            self._fill_kinds()
            self.reload()
        if new:
            self.alertsRaised.emit(new)
            now = time.time()
            if live:
                self.notifier.notify(
                    [a for a in new if now - a.time <= NOTIFY_MAX_AGE_S and a.severity != "info"], self.run_name
                )
        return new

    def reset(self, run_name: str = "run") -> None:
        self.run_name = run_name
        self.model.clear()
        self._fill_kinds()
        self.reload()

    # ----------------------------------------------------------------- views

    def reload(self) -> None:
        self._reloading = True
        try:
            self._reload()
        finally:
            self._reloading = False
        if not self._prose_by_user:
            self._share_prose()  # the short columns follow their contents, which may have changed
        self._show_selected()
        badge = self.model.unacknowledged()
        if badge != self._badge:
            self._badge = badge
            self.badgeChanged.emit(badge)

    def _reload(self) -> None:
        selected = {a.id for a in self.selected_alerts()}
        self.table_model.reload()
        selection = QtCore.QItemSelection()
        for i, alert in enumerate(self.table_model.rows):
            if alert.id in selected:
                index = self.table_model.index(i, 0)
                selection.select(index, index.siblingAtColumn(self.table_model.columnCount() - 1))
        self.table.selectionModel().select(selection, QtCore.QItemSelectionModel.SelectionFlag.ClearAndSelect)
        counts = self.model.unacknowledged_by_severity()
        total_by = {s: 0 for s in SEVERITIES}
        for a in self.model.alerts:
            total_by[a.severity] = total_by.get(a.severity, 0) + 1
        for severity, button in self.severity_buttons.items():
            new = counts.get(severity, 0)
            button.setText(f"{severity} {total_by[severity]}" + (f" ({new} new)" if new else ""))
        shown, total = len(self.table_model.rows), len(self.model.alerts)
        self.count.setText(
            f"{shown} of {total} shown" if shown != total else f"{total} alert{'s' if total != 1 else ''}"
        )
        self.ack_all_button.setEnabled(any(not a.acknowledged for a in self.table_model.rows))

    def _fill_kinds(self) -> None:
        current = self.kind.currentData()
        self.kind.blockSignals(True)
        self.kind.clear()
        self.kind.addItem("all kinds", None)
        seen = {a.kind for a in self.model.alerts}
        for kind in self.model.known_kinds() if seen else []:
            n = sum(1 for a in self.model.alerts if a.kind == kind)
            if kind in seen:
                self.kind.addItem(f"{kind.replace('_', ' ')} ({n})", kind)
        index = self.kind.findData(current)
        self.kind.setCurrentIndex(max(index, 0))
        self.kind.blockSignals(False)

    def _severity_filter(self) -> None:
        self.model.set_severities({s for s, b in self.severity_buttons.items() if b.isChecked()})
        self.reload()

    def _kind_filter(self) -> None:
        kind = self.kind.currentData()
        self.model.set_kinds(None if kind is None else {kind})
        self.reload()

    def selected_alerts(self) -> list[Alert]:
        return [self.table_model.data(i, RowTableModel.ROW_ROLE) for i in self.table.selectionModel().selectedRows()]

    def select(self, alert_id: str) -> bool:
        for i, alert in enumerate(self.table_model.rows):
            if alert.id == alert_id:
                self.table.selectRow(i)
                return True
        return False

    def _on_selection(self, *_args) -> None:
        alerts = self._show_selected()
        if len(alerts) == 1 and not self._reloading:  # a user's choice, not a reload keeping it
            self.stepSelected.emit(alerts[0].step)

    def _show_selected(self) -> list[Alert]:
        alerts = self.selected_alerts()
        self.ack_button.setEnabled(any(not a.acknowledged for a in alerts))
        if len(alerts) == 1:
            self.detail.setHtml(self._detail_html(alerts[0]))
        else:
            self.detail.clear()
        return alerts

    @staticmethod
    def _detail_html(alert: Alert) -> str:
        color = SEVERITY_COLORS.get(alert.severity, "#6b7280")
        evidence = html.escape(json.dumps(alert.evidence, indent=1, default=str)) if alert.evidence else "—"
        taken = alert.action_taken
        outcome_color = OUTCOME_COLORS.get(alert.outcome, "#6b7280")
        rows = [
            ("Seen", html.escape(alert.message or "—")),
            ("Suggestion", html.escape(alert.suggestion or "—")),
            ("Policy", html.escape(alert.action or "alert")),
            (
                "Action taken",
                f"<span style='color:{outcome_color}; font-weight:600'>{html.escape(alert.action_text())}</span>"
                if taken or alert.outcome == "pending"
                else "none (alert only)",
            ),
        ]
        body = "".join(f"<tr><td style='padding-right:10px'><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
        return (
            f"<p><span style='color:{color}; font-weight:700'>● {html.escape(alert.severity)}</span> "
            f"<b>{html.escape(alert.title)}</b> at step {alert.step:,}</p><table>{body}</table>"
            f"<p><b>Evidence</b></p><pre>{evidence}</pre>"
        )

    # ------------------------------------------------------------ acknowledge

    def acknowledge_selected(self) -> None:
        if self.model.acknowledge(a.id for a in self.selected_alerts()):
            self.reload()

    def acknowledge_all(self) -> None:
        if self.model.acknowledge_all():
            self.reload()
