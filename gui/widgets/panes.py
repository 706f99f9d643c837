"""Text panes of a run: event feed, run information (the log has its own module, log_pane)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from gui.format import format_clock
from gui.theme import Theme

if TYPE_CHECKING:
    from gui.models.run_model import FeedItem, RunModel

FILTERS = {
    "All": None,
    "Anomalies": {"anomaly"},
    "Commands": {"command", "ack"},
    "Checkpoints": {"checkpoint"},
    "Profiles": {"profile"},
    "Errors & warnings": None,  # by severity, see _accept
}


class EventsView(QtWidgets.QWidget):
    """The run's feed: commands and their acks, anomalies, checkpoints, errors."""

    def __init__(self, theme: Theme, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.theme = theme
        self.model: RunModel | None = None
        self._shown = 0
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        bar = QtWidgets.QHBoxLayout()
        self.filter = QtWidgets.QComboBox()
        self.filter.addItems(list(FILTERS))
        self.filter.currentTextChanged.connect(self._refilter)
        bar.addWidget(QtWidgets.QLabel("Show"))
        bar.addWidget(self.filter)
        bar.addStretch(1)
        layout.addLayout(bar)
        self.table = QtWidgets.QTreeWidget()
        self.table.setColumnCount(4)
        self.table.setHeaderLabels(["Time", "Step", "Kind", "What"])
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setAlternatingRowColors(True)
        self.table.header().setStretchLastSection(True)
        self.table.itemDoubleClicked.connect(self._details)
        self.table.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._menu)
        layout.addWidget(self.table, 1)

    def set_model(self, model: RunModel | None) -> None:
        self.model = model
        self._shown = 0
        self.table.clear()
        self.refresh()

    def refresh(self) -> None:
        if self.model is None or self._shown >= len(self.model.feed):
            return
        new = self.model.feed[self._shown :]
        self._shown = len(self.model.feed)
        items = [self._item(f) for f in new]
        self.table.addTopLevelItems(items)
        for item, feed in zip(items, new, strict=True):
            item.setHidden(not self._accept(feed))
        for col in range(3):
            self.table.resizeColumnToContents(col)
        self.table.scrollToBottom()

    def _item(self, f: FeedItem) -> QtWidgets.QTreeWidgetItem:
        item = QtWidgets.QTreeWidgetItem([format_clock(f.time), str(f.step), f.kind, f.title])
        item.setData(0, QtCore.Qt.ItemDataRole.UserRole, f)
        color = {"warning": "#d97706", "critical": "#dc2626"}.get(f.severity)
        if color:
            for col in range(4):
                item.setForeground(col, QtGui.QColor(color))
        if f.detail:
            item.setToolTip(
                3, f.detail if not f.path else f"{f.detail}\n(double-click or right-click to open its folder)"
            )
        return item

    def _accept(self, f: FeedItem) -> bool:
        name = self.filter.currentText()
        if name == "Errors & warnings":
            return f.severity in ("warning", "critical")
        kinds = FILTERS.get(name)
        return kinds is None or f.kind in kinds

    def _refilter(self) -> None:
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            assert item is not None  # i is below topLevelItemCount()
            item.setHidden(not self._accept(item.data(0, QtCore.Qt.ItemDataRole.UserRole)))

    def _details(self, item: QtWidgets.QTreeWidgetItem) -> None:
        f: FeedItem = item.data(0, QtCore.Qt.ItemDataRole.UserRole)
        box = QtWidgets.QMessageBox(self)
        box.setWindowTitle(f.kind)
        box.setText(f.title)
        box.setDetailedText(f.detail or "")
        if f.path:
            box.setInformativeText(f.path)
            button = box.addButton("Open folder", QtWidgets.QMessageBox.ButtonRole.ActionRole)
            button.clicked.disconnect()  # an action button would close the box first; keep it open
            button.clicked.connect(lambda _checked=False, p=f.path: self.open_folder(p))
            box.addButton(QtWidgets.QMessageBox.StandardButton.Close)
        box.open()
        self._box = box  # tests look at it

    def _menu(self, pos: QtCore.QPoint) -> None:
        item = self.table.itemAt(pos)
        f: FeedItem | None = item.data(0, QtCore.Qt.ItemDataRole.UserRole) if item is not None else None
        menu = QtWidgets.QMenu(self)
        if f is not None and f.path:
            path = f.path
            menu.addAction("Open folder", lambda: self.open_folder(path))
            menu.addAction("Copy path", lambda: QtWidgets.QApplication.clipboard().setText(path))
        if f is not None and item is not None:
            menu.addAction("Details…", lambda: self._details(item))
        if not menu.isEmpty():
            menu.exec(self.table.viewport().mapToGlobal(pos))

    @staticmethod
    def folder_of(path: str) -> Path:
        """The folder to show for a path: itself when it is one, else the folder holding it."""
        p = Path(path)
        return p if p.is_dir() or not p.suffix else p.parent

    def open_folder(self, path: str) -> bool:
        """Show the folder of ``path`` (a profile's trace) in the desktop's file manager."""
        return QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(self.folder_of(path))))


class RunInfoView(QtWidgets.QTextBrowser):
    """What the run is: environment (devices, precision and why), data, config."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.model: RunModel | None = None
        self._key: tuple | None = None
        self.slurm = ""  # the SLURM job's queue state, for a run submitted with podium run --slurm
        self.setOpenLinks(False)

    def set_slurm(self, details: str) -> None:
        if details != self.slurm:
            self.slurm = details
            self._key = None
            self.refresh()

    def set_model(self, model: RunModel | None) -> None:
        self.model = model
        self._key = None
        self.refresh()

    def refresh(self) -> None:
        m = self.model
        if m is None:
            self.setHtml("<p>No run open.</p>")
            return
        key = (id(m), id(m.env), id(m.config), id(m.data), m.total_steps, m.end is not None, self.slurm)
        if key == self._key:
            return
        self._key = key
        rows = [("Folder", str(m.path))]
        if self.slurm:
            rows.append(("SLURM", self.slurm))
        env = m.env or {}
        for label, k in (
            ("Ranks", "world_size"),
            ("Backend", "backend"),
            ("Device", "device"),
            ("Precision", "precision"),
            ("Why", "precision_reason"),
            ("Host", "hostname"),
            ("torch", "torch"),
            ("Python", "python"),
        ):
            if env.get(k) not in (None, ""):
                rows.append((label, str(env[k])))
        if env.get("devices"):
            rows.append(
                ("Devices", json.dumps(env["devices"]) if not isinstance(env["devices"], str) else env["devices"])
            )
        if m.total_steps:
            rows.append(("Steps", str(m.total_steps)))
        if m.data:
            d = m.data
            rows.append(
                (
                    "Data",
                    f"{d.get('pieces_train', '?')} train / {d.get('pieces_val', '?')} val pieces; "
                    f"{d.get('tokens_train', '?')} / {d.get('tokens_val', '?')} tokens; "
                    f"vocab {d.get('vocab_size', '?')}",
                )
            )
            skipped = d.get("skipped") or []
            if skipped:
                listed = "<br>".join(
                    html.escape(f"{s.get('file', '?')}: {s.get('reason', '?')}")
                    for s in skipped[:50]
                    if isinstance(s, dict)
                )
                more = f"<br>… and {len(skipped) - 50} more" if len(skipped) > 50 else ""
                rows.append(("Skipped", f"{len(skipped)} file(s)<br>{listed}{more}"))
        if m.end:
            message = m.end.get("message") or ""
            rows.append(("Ended", f"{m.end.get('reason', '?')}" + (f": {message}" if message else "")))
        body = "".join(
            f"<tr><td style='padding-right:12px'><b>{html.escape(k)}</b></td>"
            f"<td>{v if k == 'Skipped' else html.escape(v)}</td></tr>"
            for k, v in rows
        )
        config = ""
        if m.config:
            import yaml  # not before the first paint: shown once a run with a config is open

            config = f"<h4>Config</h4><pre>{html.escape(yaml.safe_dump(m.config, sort_keys=False))}</pre>"
        self.setHtml(f"<h3>{html.escape(m.name)}</h3><table>{body}</table>{config}")
