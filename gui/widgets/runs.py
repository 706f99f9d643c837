"""The runs table: every run and study trial of the workspace, to find, compare and annotate.

A filter box (words, or ``field op value``: :mod:`gui.models.runs_query`), columns for any config
field, grouping by studies or by a field, and on the selected runs: overlay on the plots, a config
diff of two, parallel coordinates against a metric, notes and tags (:mod:`gui.widgets.runs_compare`).
A study's header opens it in the study panel.
"""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from engine.contract.rundir import RunSummary
from engine.contract.studies import STUDIES
from gui.models.lab import LabIndex, RemoteNotes, RunRow, Scan
from gui.models.runs_query import Group
from gui.models.runs_table import RunsTableModel
from gui.theme import Theme

if TYPE_CHECKING:  # the dialogs (and their parallel-coordinates chart) load when first opened
    from gui.widgets import runs_compare

GROUP_BY_STUDY = "studies"
COLUMNS_KEY, GROUP_KEY = "runs/columns", "runs/group_by"  # QSettings keys of what the person chose


def workspace_of(path: Path) -> tuple[Path, str | None]:
    """A folder chosen as the workspace, and the study it is when it is one (``WS/studies/NAME``): the
    workspace is then ``WS``, so new runs never land inside a study's folder."""
    path = Path(path)
    if path.parent.name == STUDIES and (path / "journal.log").exists():
        return path.parent.parent, path.name
    return path, None


class WorkspaceWatcher(QtCore.QObject):
    """Refreshes a :class:`LabIndex` (runs and studies) in a worker thread every few seconds.

    The first read of a big run's events takes a while; it must not happen on
    the GUI thread. One refresh at a time; results come back by signal.
    """

    refreshed = QtCore.Signal(object, object)  # (root, Scan)
    studyChosen = QtCore.Signal(str)  # a study's folder was given as the workspace: open this study
    _scanned = QtCore.Signal(object, object)  # from the scanning thread: (the index it scanned, its scan)

    def __init__(self, root: Path, interval_ms: int = 2000, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        root, self.chosen_study = workspace_of(root)
        self.index = LabIndex(root)
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.remote_notes: RemoteNotes | None = None  # a server's runs: their notes through its access
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self._scanned.connect(self._deliver, QtCore.Qt.ConnectionType.QueuedConnection)

    @property
    def root(self) -> Path:
        return self.index.root

    def set_root(self, root: Path) -> None:
        root, self.chosen_study = workspace_of(root)
        if root != self.index.root:
            self.index = LabIndex(root)
            self.refresh()
        if self.chosen_study is not None:
            self.studyChosen.emit(self.chosen_study)

    def refresh(self) -> None:
        if not self._busy.acquire(blocking=False):
            return
        if self._stopped:
            self._busy.release()
            return
        self._thread = threading.Thread(target=self._work, args=(self.index,), daemon=True, name="podium-workspace")
        self._thread.start()

    def _work(self, index: LabIndex) -> None:
        try:
            scan = index.refresh()
            access = getattr(index, "access", None)  # a server's listing: summaries, notes read here
            if isinstance(scan, list) and access is not None:
                notes = self.remote_notes
                if notes is None or notes.access is not access:
                    notes = self.remote_notes = RemoteNotes(access)
                scan = Scan(index.root, notes.rows(scan), {})
        except Exception:  # a vanished folder mid-scan: the next refresh sees the new truth
            scan = None
        finally:
            self._busy.release()
        if scan is not None:
            try:
                self._scanned.emit(index, scan)
            except RuntimeError:  # the window went away while this scan ran
                pass

    def _deliver(self, index: object, scan: object) -> None:
        # By identity, not by root: a local folder and a server's share a path, and a slow scan of the one
        # left behind must not fill the list of the one opened since (which then gets its own scan at once).
        if index is self.index:
            self.refreshed.emit(self.index.root, scan)
        elif not self._stopped:
            self.refresh()

    def stop(self) -> None:
        """No more scans; waits for one in flight, so none emits into a
        window (or an interpreter) being torn down."""
        self._stopped = True
        self._timer.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)


class HeaderDelegate(QtWidgets.QStyledItemDelegate):
    """A group header spans every column, most of them out of sight: its text is drawn in the visible part
    (elided there, whole in its tooltip) rather than cut mid-number at the view's edge. Only the headers' rows
    use it, so the runs' cells paint without Python."""

    def paint(
        self,
        painter: QtGui.QPainter,
        option: QtWidgets.QStyleOptionViewItem,
        index: QtCore.QModelIndex | QtCore.QPersistentModelIndex,
    ) -> None:
        view = self.parent()
        assert isinstance(view, QtWidgets.QAbstractItemView)
        option.rect = option.rect.intersected(view.viewport().rect())  # type: ignore[attr-defined]
        super().paint(painter, option, index)


class RunsPanel(QtWidgets.QWidget):
    openRequested = QtCore.Signal(Path)
    overlayToggled = QtCore.Signal(Path, bool)
    chooseWorkspace = QtCore.Signal()
    studyRequested = QtCore.Signal(str)  # open this study in the study panel
    stopStudyRequested = QtCore.Signal(str)

    def __init__(self, watcher: WorkspaceWatcher, theme: Theme, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.watcher = watcher
        self.theme = theme
        self.model = RunsTableModel(theme, self)
        self.model.overlayToggled.connect(self.overlayToggled)
        self.model.arranged.connect(self._lay_out_groups)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(3)
        top = QtWidgets.QHBoxLayout()
        self.folder = QtWidgets.QLabel()
        self.folder.setObjectName("workspaceLabel")
        self.folder.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        # A long path must not widen the dock: it is shortened in the middle to the room there is.
        self.folder.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        change = QtWidgets.QToolButton()
        change.setText("Change…")
        change.setToolTip("Choose the folder whose runs are listed")
        change.clicked.connect(self.chooseWorkspace)
        top.addWidget(self.folder, 1)
        top.addWidget(change)
        layout.addLayout(top)
        for row in self._build_tools():
            layout.addLayout(row)
        self.filter_problem = QtWidgets.QLabel()
        self.filter_problem.setWordWrap(True)
        self.filter_problem.setStyleSheet(f"color: {theme.state_colors['failed']};")
        self.filter_problem.hide()
        layout.addWidget(self.filter_problem)
        self.table = QtWidgets.QTableView()
        self.table.setModel(self.model)
        self._header_rows: list[int] = []
        self._header_delegate = HeaderDelegate(self.table)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.viewport().installEventFilter(self)  # a row's tooltip over any of its cells
        self.table.horizontalHeader().setSortIndicator(2, QtCore.Qt.SortOrder.DescendingOrder)
        # Run names are time stamps more often than not: keep the end that tells them apart.
        self.table.setTextElideMode(QtCore.Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setMinimumSectionSize(48)
        header.setStretchLastSection(True)
        self.table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.table.doubleClicked.connect(self._activated)
        self.table.activated.connect(self._activated)
        self.table.clicked.connect(self._clicked)
        self.table.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._menu)
        layout.addWidget(self.table, 1)
        self.empty = QtWidgets.QLabel("No runs here yet. Start one with New run (Ctrl+N).")
        self.empty.setObjectName("muted")
        self.empty.setWordWrap(True)
        layout.addWidget(self.empty)
        self._sized = False
        self._settings: QtCore.QSettings | None = None
        watcher.refreshed.connect(self._on_refreshed)
        self._show_root(watcher.root)

    def _build_tools(self) -> list[QtWidgets.QHBoxLayout]:
        self.filter = QtWidgets.QLineEdit()
        self.filter.setClearButtonEnabled(True)
        self.filter.setPlaceholderText("Filter: words, or field op value (optim.lr < 1e-3, tags = baseline)")
        self.filter.setToolTip(
            "Words must all appear in a run's name, state, study, tags or note.\n"
            "Conditions: FIELD OP VALUE with OP one of < <= > >= = != ~ (contains);\n"
            "FIELD is a column (name, state, steps, duration, best_val, last_val, tags, note, study, value)\n"
            "or any config field (optim.lr, model.n_layers, …)."
        )
        self.filter.textChanged.connect(self.set_filter)
        self.group_combo = QtWidgets.QComboBox()
        self.group_combo.setEditable(True)
        self.group_combo.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.group_combo.addItem(GROUP_BY_STUDY)
        self.group_combo.setToolTip("Group the runs: by study, or by the value of a config field (type or pick it)")
        self.group_combo.setMinimumContentsLength(8)
        self.group_combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.group_combo.currentTextChanged.connect(self._group_changed)
        columns = QtWidgets.QToolButton()
        columns.setText("Columns…")
        columns.setToolTip("Show config fields (hyperparameters) as columns")
        columns.clicked.connect(self.pick_columns)
        # The filter has a row of its own: expressions are long and the dock is often narrow.
        first, second = QtWidgets.QHBoxLayout(), QtWidgets.QHBoxLayout()
        first.addWidget(self.filter)
        second.addWidget(QtWidgets.QLabel("Group by"))
        second.addWidget(self.group_combo, 1)
        second.addWidget(columns)
        return [first, second]

    def _show_root(self, root: Path) -> None:
        room = max(self.folder.width() - self.folder.fontMetrics().horizontalAdvance("Runs in  "), 60)
        shown = self.folder.fontMetrics().elidedText(str(root), QtCore.Qt.TextElideMode.ElideMiddle, room)
        self.folder.setText(f"<b>Runs in</b> {html.escape(shown)}")
        self.folder.setToolTip(str(root))

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.Type.ToolTip and watched is self.table.viewport():
            assert isinstance(event, QtGui.QHelpEvent)
            index = self.table.indexAt(event.pos())
            if index.isValid():
                QtWidgets.QToolTip.showText(event.globalPos(), self.model.tooltip(index.row()), self.table.viewport())
                return True
        return super().eventFilter(watched, event)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._show_root(self.watcher.root)

    def _on_refreshed(self, root: Path, scan: Scan | list[RunSummary]) -> None:
        if root != self.watcher.root:
            return  # a scan of the previous workspace
        if isinstance(scan, list):  # summaries alone (a WorkspaceIndex's, as bench/gui.py times them)
            scan = Scan(root, [RunRow(s) for s in scan], {})
        self._show_root(root)
        self.model.set_scan(scan)
        self.empty.setVisible(not scan.runs and not scan.studies)
        known = self.model.known_fields()
        if self.group_combo.count() != len(known) + 1:
            text = self.group_combo.currentText()
            self.group_combo.blockSignals(True)
            self.group_combo.clear()
            self.group_combo.addItems([GROUP_BY_STUDY, "tags", "state", *known])
            self.group_combo.setEditText(text)
            self.group_combo.blockSignals(False)
        if not self._sized and self.model.rows:
            self._sized = True
            self._fit_columns()

    def _fit_columns(self) -> None:
        header = self.table.horizontalHeader()
        self.table.resizeColumnsToContents()
        header.resizeSection(0, max(header.sectionSize(0), 150))

    def _lay_out_groups(self) -> None:
        self.table.clearSpans()
        columns = self.model.columnCount()
        for row in self._header_rows:
            self.table.setItemDelegateForRow(row, None)  # type: ignore[arg-type]  # Qt takes None: the view's own
        self._header_rows = self.model.group_rows()
        for row in self._header_rows:
            self.table.setSpan(row, 0, 1, columns)
            self.table.setItemDelegateForRow(row, self._header_delegate)

    # ------------------------------------------------------------- filter

    def set_filter(self, text: str) -> None:
        problem = self.model.set_filter(text)
        self.filter_problem.setText(problem or "")
        self.filter_problem.setVisible(problem is not None)
        self.filter.setStyleSheet(f"border: 1px solid {self.theme.state_colors['failed']};" if problem else "")

    def _group_changed(self, text: str) -> None:
        text = text.strip()
        if text == GROUP_BY_STUDY or not text:
            self.model.set_group_by(None)
        elif text in ("tags", "state") or text in self.model.known_fields():
            self.model.set_group_by(text)
        else:
            return
        if self._settings is not None:
            self._settings.setValue(GROUP_KEY, self.model.group_by or "")

    def pick_columns(self) -> None:
        from gui.widgets import runs_compare

        dialog = runs_compare.ColumnsDialog(self.model.known_fields(), self.model.fields, self)
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            self.choose_columns(dialog.chosen())

    def choose_columns(self, fields: list[str]) -> None:
        self.model.set_fields(fields)
        self._fit_columns()
        if self._settings is not None:
            self._settings.setValue(COLUMNS_KEY, json.dumps(fields))

    def keep_choices(self, settings: QtCore.QSettings) -> None:
        """Show the columns and grouping chosen before, and remember every new choice in ``settings``.

        One choice for every workspace, not one each: the columns are config fields, the same schema in
        each workspace (a field some workspace's runs lack shows blank), so picking the hyperparameters
        once serves a local folder and a server alike."""
        self._settings = settings
        try:
            fields = json.loads(str(settings.value(COLUMNS_KEY, "null")))
        except ValueError:
            fields = None
        if isinstance(fields, list) and all(isinstance(f, str) for f in fields):
            self.model.set_fields(fields)
        group = str(settings.value(GROUP_KEY, "") or "")
        if group:
            # The runs are not scanned yet, so the field cannot be checked against them: a field none has
            # puts every run under "(none)", which says so.
            self.model.set_group_by(group)
            self.group_combo.blockSignals(True)
            self.group_combo.setEditText(group)
            self.group_combo.blockSignals(False)

    # ---------------------------------------------------------- selection

    def selected_runs(self) -> list[RunRow]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [e for r in rows if isinstance(e := self.model.rows[r], RunRow)]

    def _activated(self, index: QtCore.QModelIndex) -> None:
        entry = self.model.rows[index.row()]
        if isinstance(entry, Group):
            if entry.study:
                self.studyRequested.emit(entry.study)
        else:
            self.openRequested.emit(entry.path)

    def _clicked(self, index: QtCore.QModelIndex) -> None:
        entry = self.model.rows[index.row()]
        if isinstance(entry, Group) and not entry.study:
            self.model.toggle_group(entry.key)

    def _menu(self, pos: QtCore.QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        entry = self.model.rows[index.row()]
        menu = QtWidgets.QMenu(self)
        if isinstance(entry, Group):
            self._group_menu(menu, entry)
        else:
            self._run_menu(menu, entry)
        menu.exec(self.table.viewport().mapToGlobal(pos))

    def _group_menu(self, menu: QtWidgets.QMenu, group: Group) -> None:
        if group.study:
            study = group.study
            menu.addAction("Open study panel").triggered.connect(lambda: self.studyRequested.emit(study))
            menu.addAction("Stop study").triggered.connect(lambda: self.stopStudyRequested.emit(study))
        menu.addAction("Unfold" if group.collapsed else "Fold").triggered.connect(
            lambda: self.model.toggle_group(group.key)
        )

    def _run_menu(self, menu: QtWidgets.QMenu, run: RunRow) -> None:
        selected = self.selected_runs()
        if run not in selected:
            selected = [run]
        menu.addAction("Open").triggered.connect(lambda: self.openRequested.emit(run.path))
        off = [r for r in selected if r.path not in self.model.overlaid]
        if off:
            label = "Overlay on plots" if len(off) == 1 else f"Overlay {len(off)} runs on plots"
            menu.addAction(label).triggered.connect(lambda: self._overlay(off, True))
        on = [r for r in selected if r.path in self.model.overlaid]
        if on:
            menu.addAction("Remove from overlay").triggered.connect(lambda: self._overlay(on, False))
        compare = menu.addAction("Compare configs")
        compare.setEnabled(len(selected) == 2)
        compare.setToolTip("Select two runs")
        compare.triggered.connect(lambda: self.compare_configs(selected))
        parallel = menu.addAction("Parallel coordinates…")
        parallel.setEnabled(len(selected) >= 2)
        parallel.triggered.connect(lambda: self.show_parallel(selected))
        menu.addSeparator()
        notes = menu.addAction("Name, tags and note…")
        notes.triggered.connect(lambda: self.edit_notes(run))
        if run.study:
            study = run.study
            menu.addAction(f"Open study {study}").triggered.connect(lambda: self.studyRequested.emit(study))
        menu.addAction("Copy path").triggered.connect(lambda: QtWidgets.QApplication.clipboard().setText(str(run.path)))

    # ------------------------------------------------------------ actions

    def _overlay(self, runs: list[RunRow], on: bool) -> None:
        for run in runs:
            self.overlayToggled.emit(run.path, on)

    def compare_configs(self, runs: list[RunRow]) -> runs_compare.ConfigDiffDialog | None:
        if len(runs) != 2:
            return None
        from gui.widgets import runs_compare

        dialog = runs_compare.ConfigDiffDialog(runs[0], runs[1], self)
        dialog.show()
        return dialog

    def show_parallel(self, runs: list[RunRow]) -> runs_compare.ParallelDialog:
        from gui.widgets import runs_compare

        dialog = runs_compare.ParallelDialog(runs, self.model.fields, self.theme, self)
        dialog.show()
        return dialog

    def edit_notes(self, run: RunRow) -> runs_compare.NotesDialog:
        remote = self.watcher.remote_notes
        on_server = remote is not None and not isinstance(self.watcher.index, LabIndex)
        from gui.widgets import runs_compare

        dialog = runs_compare.NotesDialog(run, self, store=remote.write if remote and on_server else None)
        dialog.saved.connect(self.watcher.refresh)
        dialog.show()
        return dialog
