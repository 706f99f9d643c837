"""The study panel: set up, start, extend, watch and stop hyperparameter studies.

Left, the setup (:class:`gui.widgets.study_setup.StudySetup`). Right, the live study: a trials
table (activating a row opens the trial's run), optimization history,
intermediate values per trial (pruned trials dashed and marked with a cross),
parallel coordinates, parameter importances, the scaling fit and the
workers' log.

Workers (:mod:`gui.models.study_workers`) are ``main.py hpo`` processes in a session of their own, with their
output in ``<study>/worker-*.log``: a study outlives the window, like a run.
Stop writes the study's stop file, which every worker honours by stopping its
running trial through the run's control inbox; pressing it again terminates
the workers started here. Importances and the scaling fit are computed in
child processes (``hpo show --importances --json``, ``scaling --json``), never
in the GUI process (:class:`gui.widgets.study_charts.StudyAnalyses`).

:func:`mount` docks it in the main window (View > Panels > Studies) and wires it to the runs list.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from engine.contract.commandline import engine_command
from engine.contract.studies import list_studies, request_stop, study_dir
from gui.models.study_model import DatabaseSource, JournalSource, StudyModel, TrialRow, split_password
from gui.models.study_table import TrialsTableModel
from gui.models.study_workers import LogTail, StudyWorkers
from gui.models.table import RowTableModel
from gui.theme import LIGHT, Theme
from gui.widgets.study_charts import StudyAnalyses, StudyCharts
from gui.widgets.study_setup import StudyControls, StudySetup

CHILD_MIN_INTERVAL_S = 5.0  # importances/scaling recomputed at most this often while trials complete
LOG_LINES = 400


class StudyPanel(QtWidgets.QWidget):
    """Everything about the studies of one workspace (``<workspace>/studies/<name>``)."""

    open_run_requested = QtCore.Signal(Path)
    study_changed = QtCore.Signal(str)

    def __init__(
        self,
        workspace: Path,
        theme: Theme = LIGHT,
        parent: QtWidgets.QWidget | None = None,
        python: str = sys.executable,
        poll_ms: int = 1000,
    ):
        super().__init__(parent)
        self.workspace = Path(workspace).resolve()
        self.theme = theme
        self.python = python
        self.model = StudyModel()
        self.source: JournalSource | DatabaseSource | None = None
        engine = engine_command(python=python)
        self.workers = StudyWorkers(engine)
        self.log_tail = LogTail(LOG_LINES)
        self.stopping = False
        self._drawn_revision = -1
        self._selected: int | None = None

        self._build()
        self.analyses = StudyAnalyses(self.charts, engine, CHILD_MIN_INTERVAL_S)

        self._poll = QtCore.QTimer(self, interval=poll_ms)
        self._poll.timeout.connect(self.poll)
        self._poll.start()
        self.refresh_studies()
        self.new_study()

    # ------------------------------------------------------------ building

    def _build(self) -> None:
        root = QtWidgets.QHBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        root.addWidget(splitter)
        self.setup = StudySetup(self.theme)
        self.setup.nameChanged.connect(self._name_changed)
        self.setup.validated.connect(self._update_buttons)
        self.setup.startRequested.connect(self.start)
        splitter.addWidget(self.setup)
        splitter.addWidget(self._build_results())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 1000])

    def _build_results(self) -> QtWidgets.QWidget:
        box = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(box)
        layout.setContentsMargins(4, 0, 0, 0)
        self.controls = StudyControls()
        self.controls.stopRequested.connect(self.stop)
        self.controls.extendRequested.connect(self.extend)
        self.controls.openRequested.connect(self._open_selected)
        self.controls.setupToggled.connect(self.setup.setVisible)
        self.status, self.stop_button = self.controls.status, self.controls.stop_button
        self.storage = StudyStorage()
        self.storage.changed.connect(lambda: self._name_changed(self.study_name))
        # Where the study lives is part of its setup: folded away with it (a database stays named), the charts
        # get the row.
        storage = self.storage
        self.controls.setupToggled.connect(lambda shown: storage.setVisible(shown or bool(storage.url)))
        layout.addWidget(self.storage)
        # The study's controls and trials on the left, the charts beside them: the bottom dock is wide and
        # short, so a chart gets the dock's whole height, not a share of it.
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        trials = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(trials)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.controls)
        self.table_model = TrialsTableModel(self.model, self.theme, self)
        self.proxy = QtCore.QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setSortRole(RowTableModel.SORT_ROLE)
        self.table = QtWidgets.QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, QtCore.Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(False)
        self.table.setMinimumHeight(66)  # two trials and the header, whatever the dock's height
        self.table.activated.connect(self._activated)
        self.table.doubleClicked.connect(self._activated)
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        column.addWidget(self.table, 1)
        split.addWidget(trials)

        self.charts = StudyCharts(self.model, self.theme)
        self.log_view = QtWidgets.QPlainTextEdit(readOnly=True)
        self.log_view.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.log_view.setMaximumBlockCount(LOG_LINES)
        self.log_view.setPlaceholderText(
            "The output of the workers started from this panel (also in the study's worker-*.log). "
            "A worker started from a command line prints there."
        )
        self.charts.addTab(self.log_view, "Worker log")
        split.addWidget(self.charts)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([400, 600])
        split.setChildrenCollapsible(False)
        layout.addWidget(split, 1)
        return box

    def set_theme(self, theme: Theme) -> None:
        """Restyle the built panel: charts, the trials' state colours, the space editor."""
        self.theme = self.table_model.theme = theme
        self.charts.set_theme(theme)
        self.setup.set_theme(theme)
        self.table_model.recolor()

    # --------------------------------------------------------- studies, form

    def refresh_studies(self) -> None:
        self.setup.refresh_studies(self.workspace)

    def new_study(self) -> None:
        self.setup.new_study()

    def select_study(self, name: str) -> None:
        self.setup.select_study(name)

    def set_workspace(self, workspace: Path) -> None:
        """Follow the window's workspace: its studies are listed, the one shown is forgotten."""
        workspace = Path(workspace).resolve()
        if workspace != self.workspace:
            self.workspace = workspace
            self.refresh_studies()
            self.new_study()

    @property
    def study_name(self) -> str:
        return self.setup.study_name

    def _name_changed(self, _text: str) -> None:
        name = self.study_name
        self.stopping = False
        self.analyses.reset()
        self.log_tail.reset()
        self.log_view.clear()
        exists = name in list_studies(self.workspace) and not self.storage.url
        if isinstance(self.source, DatabaseSource):
            self.source.close()
        self.source = JournalSource(self.workspace, name) if exists else None
        if self.storage.url and name:
            self.source = DatabaseSource(self.storage.url, name, self.storage.password)
            self.charts.show_importances({"error": "for a database: podium hpo show --importances --storage URL"})
        self.model.update(None)
        if exists:
            self.setup.load_settings(study_dir(self.workspace, name), self.source.read() if self.source else None)
        self._drawn_revision = -1
        self.poll()
        self.study_changed.emit(name)
        self.setup._schedule_validation()

    # ------------------------------------------------------------ start/stop

    def workers_alive(self) -> int:
        """Workers of the shown study started here that still run (poll() also reaps those that ended)."""
        return self.workers.alive(self.study_name)

    def start(self) -> bool:
        """Start the workers (``podium hpo`` processes in their own session). A study that exists resumes."""
        if self.setup.validate() or self.workers_alive():
            return False
        name = self.study_name
        folder = study_dir(self.workspace, name)
        self.stopping = False
        self.log_view.clear()
        errors = self.workers.start_study(
            name,
            folder,
            self.setup.space_edit.toPlainText(),
            lambda space_file: self.setup.hpo_args(self.workspace, space_file),
            self.setup.workers_spin.value(),
        )
        for error in errors:
            self.log_view.appendPlainText(error)
        self.source = JournalSource(self.workspace, name)
        self.refresh_studies()
        self._update_buttons()
        return self.workers_alive() > 0

    def extend(self, more: int) -> bool:
        """Raise the study's target by ``more`` trials and run them (the study resumes with the new target)."""
        done = self.model.target or self.setup.trials_spin.value()
        self.setup.trials_spin.setValue(max(done, len(self.model.trials)) + more)
        return self.start()

    def stop(self) -> None:
        """First press: the stop file (every worker of the study stops gently). Second: terminate ours."""
        name = self.study_name
        if not self.stopping:
            request_stop(self.workspace, name)
            self.stopping = True
            self.stop_button.setText("Terminate")
            self.log_view.appendPlainText("stop requested: the running trials stop after their current step")
        else:
            self.workers.terminate(name)
            self.log_view.appendPlainText("terminating the workers started here")
        self._update_buttons()

    def _update_buttons(self) -> None:
        alive = self.workers_alive()
        running = alive > 0 or self.model.running
        exists = self.source is not None and bool(self.model.name)
        # Workers on a database start on their hosts (podium hpo --storage URL); the panel reads it.
        here = not self.storage.url
        self.setup.start_button.setEnabled(here and self.setup.valid and alive == 0)
        self.setup.start_button.setText("Resume" if exists else "Start")
        self.controls.more_button.setEnabled(here and exists and self.setup.valid and alive == 0)
        self.stop_button.setEnabled(running)
        if not running:
            self.stopping = False
            self.stop_button.setText("Stop")
        selected = self._selected_trial()
        self.controls.open_button.setEnabled(bool(selected and selected.run_dir and selected.run_dir.exists()))

    # --------------------------------------------------------------- polling

    def poll(self) -> None:
        if self.source is not None:
            if self.model.update(self.source.read()):
                self._redraw()
            if isinstance(self.source, JournalSource):  # the children read the study folder's journal
                self.analyses.maybe_run(self.model, self.workspace)
        self._tail_log()
        alive = self.workers_alive()
        what = self.model.summary()
        if isinstance(self.source, DatabaseSource) and self.source.error:
            what = f"{self.source.url}: {self.source.error}"
        if alive:
            what += f" · {alive} worker{'s' if alive > 1 else ''} {'stopping' if self.stopping else 'running'}"
        self.status.setText(what)
        self._update_buttons()

    def _redraw(self) -> None:
        if self._drawn_revision == self.model.revision:
            return
        self._drawn_revision = self.model.revision
        selected = self._selected
        self.table_model.refresh()
        self.table.resizeColumnsToContents()
        if selected is not None:
            self.select_trial(selected)
        self.charts.redraw()

    def _tail_log(self) -> None:
        if not self.model.name:
            return
        text = self.log_tail.read(self.workspace, self.model.name)
        if text is None:
            return
        self.log_view.setPlainText(text)
        self.log_view.verticalScrollBar().setValue(self.log_view.verticalScrollBar().maximum())

    # ----------------------------------------------------------- selection

    def _selected_trial(self) -> TrialRow | None:
        if self._selected is None:
            return None
        return next((t for t in self.model.trials if t.number == self._selected), None)

    def select_trial(self, number: int) -> None:
        for row in range(self.table_model.rowCount()):
            if self.table_model.rows[row].number == number:
                index = self.proxy.mapFromSource(self.table_model.index(row, 0))
                self.table.selectionModel().setCurrentIndex(
                    index,
                    QtCore.QItemSelectionModel.SelectionFlag.ClearAndSelect
                    | QtCore.QItemSelectionModel.SelectionFlag.Rows,
                )
                return

    def _row_changed(self, current: QtCore.QModelIndex, _previous) -> None:
        if not current.isValid():
            return
        number = self.table_model.rows[self.proxy.mapToSource(current).row()].number
        if number != self._selected:
            self._selected = number
            self.charts.select(number)
        self._update_buttons()

    def _activated(self, index: QtCore.QModelIndex) -> None:
        trial = self.table_model.rows[self.proxy.mapToSource(index).row()]
        if trial.run_dir is not None and trial.run_dir.exists():
            self.open_run_requested.emit(trial.run_dir)

    def _open_selected(self) -> None:
        trial = self._selected_trial()
        if trial is not None and trial.run_dir is not None:
            self.open_run_requested.emit(trial.run_dir)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        # Workers keep running (their own session); only the short-lived children end with the panel.
        self.analyses.kill()
        super().closeEvent(event)


class StudyStorage(QtWidgets.QWidget):
    """Where the shown study lives: its folder's journal, or a database that workers on other hosts share."""

    changed = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.url_edit = QtWidgets.QLineEdit()
        self.url_edit.setPlaceholderText("the study folder's journal, or postgresql://user@host/db")
        self.url_edit.setToolTip(
            "Read the study live from a database (podium hpo --storage URL, docs/cluster.md). "
            "A password typed in the URL moves to the password box; neither is saved."
        )
        self.password_edit = QtWidgets.QLineEdit()
        self.password_edit.setEchoMode(QtWidgets.QLineEdit.EchoMode.Password)
        self.password_edit.setPlaceholderText("password (else PGPASSWORD, ~/.pgpass)")
        self.password_edit.setMaximumWidth(240)
        for edit in (self.url_edit, self.password_edit):
            edit.editingFinished.connect(self._edited)
        layout.addWidget(QtWidgets.QLabel("Storage"))
        layout.addWidget(self.url_edit, 1)
        layout.addWidget(self.password_edit)
        self._read = ("", "")

    @property
    def url(self) -> str:
        """The URL without its password ("" for the study folder's journal)."""
        return self.url_edit.text().strip()

    @property
    def password(self) -> str | None:
        return self.password_edit.text() or None

    def _edited(self) -> None:
        url, password = split_password(self.url)
        if password is not None:  # never shown: it moves to the masked box
            self.url_edit.setText(url)
            self.password_edit.setText(password)
        if (url, self.password_edit.text()) != self._read:
            self._read = (url, self.password_edit.text())
            self.changed.emit()
