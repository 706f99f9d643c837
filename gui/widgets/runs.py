"""The runs list: every run of the workspace with its state, start, step and best val loss."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from engine.contract.rundir import RunSummary
from gui.models.table import Column, RowTableModel
from gui.models.workspace import WorkspaceIndex
from gui.theme import Theme


class RunsTableModel(RowTableModel[RunSummary]):
    """Summaries as rows; the check box on a row overlays that run on the plots."""

    overlayToggled = QtCore.Signal(Path, bool)

    def __init__(self, theme: Theme, parent: QtCore.QObject | None = None):
        super().__init__(
            [
                Column("Run", lambda r: r.name),
                Column("State", lambda r: r.state.replace("_", " "), color=self._state_color),
                Column("Started", _started),
                Column(
                    "Done",
                    lambda r: f"{100 * r.step / r.total_steps:.0f}%" if r.total_steps else str(r.step),
                    right=True,
                ),
                Column(
                    "Best val",
                    lambda r: (
                        f"{r.best_val_loss:.4f}"
                        if r.best_val_loss is not None and math.isfinite(r.best_val_loss)
                        else "—"
                    ),
                    right=True,
                ),
            ],
            parent,
        )
        self.overlaid: set[Path] = set()
        self.primary: Path | None = None
        self.theme = theme

    def _state_color(self, run: RunSummary) -> str:
        return self.theme.state_colors.get(run.state, self.theme.fg)

    def bold(self, run: RunSummary, column: Column[RunSummary]) -> bool:
        return run.path == self.primary

    def tooltip(self, run: RunSummary) -> str:
        steps = f"step {run.step}" + (f" of {run.total_steps}" if run.total_steps else "")
        if run.start_time:
            steps += time.strftime(", started %Y-%m-%d %H:%M", time.localtime(run.start_time))
        return (
            f"{run.path}\nstate: {run.state}, {steps}"
            + (f" ({run.end_reason})" if run.end_reason else "")
            + "\ndouble-click to open; tick to overlay on the plots"
        )

    def flags(self, index):
        base = QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0:
            base |= QtCore.Qt.ItemFlag.ItemIsUserCheckable
        return base

    def data(self, index, role=QtCore.Qt.ItemDataRole.DisplayRole):
        if role == QtCore.Qt.ItemDataRole.CheckStateRole and index.column() == 0:
            checked = self.rows[index.row()].path in self.overlaid
            return QtCore.Qt.CheckState.Checked if checked else QtCore.Qt.CheckState.Unchecked
        return super().data(index, role)

    def setData(self, index, value, role=QtCore.Qt.ItemDataRole.EditRole):
        if role == QtCore.Qt.ItemDataRole.CheckStateRole and index.column() == 0:
            path = self.rows[index.row()].path
            on = QtCore.Qt.CheckState(value) == QtCore.Qt.CheckState.Checked
            self.overlayToggled.emit(path, on)
            return True
        return False

    def set_overlaid(self, paths: set[Path], primary: Path | None) -> None:
        self.overlaid, self.primary = set(paths), primary
        self._changed()

    def set_runs(self, runs: list[RunSummary]) -> None:
        if [r.path for r in runs] == [r.path for r in self.rows]:
            # The same runs, newer figures: repainted in place, so the selection and scroll stay.
            self.rows = list(runs)
            self._changed()
            return
        self.set_rows(runs)

    def _changed(self) -> None:
        if self.rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(self.columns) - 1))


def _started(run: RunSummary) -> str:
    if not run.start_time:
        return "—"
    started = time.localtime(run.start_time)
    # Today's runs by time, older ones by date: the column stays narrow.
    same_day = time.strftime("%Y%m%d", started) == time.strftime("%Y%m%d")
    return time.strftime("%H:%M" if same_day else "%b %d", started)


class WorkspaceWatcher(QtCore.QObject):
    """Refreshes a :class:`WorkspaceIndex` in a worker thread every few seconds.

    The first read of a big run's events takes a while; it must not happen on
    the GUI thread. One refresh at a time; results come back by signal.
    """

    refreshed = QtCore.Signal(object, list)  # (root, summaries)

    def __init__(self, root: Path, interval_ms: int = 2000, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.index = WorkspaceIndex(root)
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()

    @property
    def root(self) -> Path:
        return self.index.root

    def set_root(self, root: Path) -> None:
        if Path(root) != self.index.root:
            self.index = WorkspaceIndex(root)
            self.refresh()

    def refresh(self) -> None:
        if not self._busy.acquire(blocking=False):
            return
        if self._stopped:
            self._busy.release()
            return
        self._thread = threading.Thread(target=self._work, args=(self.index,), daemon=True, name="podium-workspace")
        self._thread.start()

    def _work(self, index: WorkspaceIndex) -> None:
        try:
            runs = index.refresh()
        except Exception:  # a vanished folder mid-scan: the next refresh sees the new truth
            runs = None
        finally:
            self._busy.release()
        if runs is not None:
            try:
                self.refreshed.emit(index.root, runs)
            except RuntimeError:  # the window went away while this scan ran
                pass

    def stop(self) -> None:
        """No more scans; waits for one in flight, so none emits into a
        window (or an interpreter) being torn down."""
        self._stopped = True
        self._timer.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)


class RunsPanel(QtWidgets.QWidget):
    openRequested = QtCore.Signal(Path)
    overlayToggled = QtCore.Signal(Path, bool)
    chooseWorkspace = QtCore.Signal()

    def __init__(self, watcher: WorkspaceWatcher, theme: Theme, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.watcher = watcher
        self.model = RunsTableModel(theme, self)
        self.model.overlayToggled.connect(self.overlayToggled)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        top = QtWidgets.QHBoxLayout()
        self.folder = QtWidgets.QLabel()
        self.folder.setObjectName("workspaceLabel")
        self.folder.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        change = QtWidgets.QToolButton()
        change.setText("Change…")
        change.setToolTip("Choose the folder whose runs are listed")
        change.clicked.connect(self.chooseWorkspace)
        top.addWidget(self.folder, 1)
        top.addWidget(change)
        layout.addLayout(top)
        self.table = QtWidgets.QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        # Run names are time stamps more often than not: keep the end that tells them apart.
        self.table.setTextElideMode(QtCore.Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        # Names first: the run column takes the room left, never less than a readable width.
        header.setMinimumSectionSize(40)
        header.setStretchLastSection(False)
        for col in range(1, self.model.columnCount()):
            header.setSectionResizeMode(col, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(48)
        self.table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.table.doubleClicked.connect(lambda index: self.openRequested.emit(self.model.rows[index.row()].path))
        self.table.activated.connect(lambda index: self.openRequested.emit(self.model.rows[index.row()].path))
        self.table.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._menu)
        layout.addWidget(self.table, 1)
        self.empty = QtWidgets.QLabel("No runs here yet. Start one with New run (Ctrl+N).")
        self.empty.setObjectName("muted")
        self.empty.setWordWrap(True)
        layout.addWidget(self.empty)
        watcher.refreshed.connect(self._on_refreshed)
        self._show_root(watcher.root)

    def _show_root(self, root: Path) -> None:
        self.folder.setText(f"<b>Runs in</b> {root}")
        self.folder.setToolTip(str(root))

    def _on_refreshed(self, root: Path, runs: list) -> None:
        if root != self.watcher.root:
            return  # a scan of the previous workspace
        self._show_root(root)
        self.model.set_runs(runs)
        self.empty.setVisible(not runs)

    def _menu(self, pos: QtCore.QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        run = self.model.rows[index.row()]
        menu = QtWidgets.QMenu(self)
        menu.addAction("Open").triggered.connect(lambda: self.openRequested.emit(run.path))
        overlaid = run.path in self.model.overlaid
        menu.addAction("Remove from overlay" if overlaid else "Overlay on plots").triggered.connect(
            lambda: self.overlayToggled.emit(run.path, not overlaid)
        )
        menu.addAction("Copy path").triggered.connect(lambda: QtWidgets.QApplication.clipboard().setText(str(run.path)))
        menu.exec(self.table.viewport().mapToGlobal(pos))
