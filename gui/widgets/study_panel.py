"""The study panel: set up, start, watch and stop hyperparameter studies.

Left, the setup: study name, base config, a space editor validated as you
type (the engine's own validator, so the panel and ``main.py hpo`` agree),
trials, sampler, pruner, direction, metric. Right, the live study: a trials
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
in the GUI process.

Mount it in the main window as a dock::

    self.study_panel = StudyPanel(self.workspace, self.theme)
    self.study_panel.open_run_requested.connect(self.open_run)
    self.study_dock = self._dock("Studies", "studies", self.study_panel, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from engine.contract import config as config_mod
from engine.contract import search_space
from engine.contract.commandline import UsageError, engine_command
from engine.contract.studies import (
    DIRECTIONS,
    PRUNERS,
    SAMPLERS,
    check_study_name,
    list_studies,
    request_stop,
    study_dir,
)
from gui.models.config_doc import Problem
from gui.models.study_model import JournalSource, StudyModel, TrialRow
from gui.models.study_table import TrialsTableModel
from gui.models.study_workers import LogTail, StudyWorkers
from gui.models.table import RowTableModel
from gui.theme import LIGHT, Theme
from gui.widgets.code_editor import CodeEditor, YamlHighlighter
from gui.widgets.engine_job import EngineQuery
from gui.widgets.study_charts import StudyCharts

EXAMPLE_SPACE = config_mod.resources_dir() / "example_space.yaml"
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
        self.source: JournalSource | None = None
        engine = engine_command(python=python)
        self.workers = StudyWorkers(engine)
        self.log_tail = LogTail(LOG_LINES)
        self.stopping = False
        self.importances: dict[str, Any] | None = None
        self.scaling: dict[str, Any] | None = None
        self._child_complete = -1
        self._drawn_revision = -1
        self._selected: int | None = None
        self.valid = False

        self._build()
        self.importance_job = EngineQuery(engine, self)
        self.importance_job.answered.connect(self._importances_done)
        self.scaling_job = EngineQuery(engine, self)
        self.scaling_job.answered.connect(self._scaling_done)

        self._validate_timer = QtCore.QTimer(self, singleShot=True, interval=300)
        self._validate_timer.timeout.connect(self.validate)
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
        splitter.addWidget(self._build_setup())
        splitter.addWidget(self._build_results())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 1000])

    def _build_setup(self) -> QtWidgets.QWidget:
        box = QtWidgets.QWidget()
        box.setMinimumWidth(300)
        layout = QtWidgets.QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 4, 0)
        top = QtWidgets.QHBoxLayout()
        self.study_combo = QtWidgets.QComboBox()
        self.study_combo.setEditable(True)
        self.study_combo.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.study_combo.setToolTip("Pick a study of the workspace, or type a new name")
        self.study_combo.currentTextChanged.connect(self._name_changed)
        new = QtWidgets.QPushButton("New")
        new.setToolTip("Set up a new study (from resources/example_space.yaml)")
        new.clicked.connect(self.new_study)
        top.addWidget(QtWidgets.QLabel("Study"))
        top.addWidget(self.study_combo, 1)
        top.addWidget(new)
        layout.addLayout(top)

        form = QtWidgets.QFormLayout()
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        base_row = QtWidgets.QHBoxLayout()
        self.base_edit = QtWidgets.QLineEdit()
        self.base_edit.setPlaceholderText("resources/default.yaml")
        self.base_edit.textChanged.connect(self._schedule_validation)
        browse = QtWidgets.QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse_base)
        base_row.addWidget(self.base_edit, 1)
        base_row.addWidget(browse)
        form.addRow("Base config", base_row)
        self.trials_spin = QtWidgets.QSpinBox(minimum=1, maximum=100000, value=20)
        self.trials_spin.setToolTip("The study's total number of trials, shared by all its workers")
        self.sampler_combo = _combo(SAMPLERS, "tpe")
        self.pruner_combo = _combo(PRUNERS, "median")
        self.direction_combo = _combo(DIRECTIONS, "minimize")
        self.metric_edit = QtWidgets.QLineEdit("val_loss")
        self.metric_edit.setToolTip("A numeric field of the runs' eval events (val_loss, or e.g. a quality score)")
        self.nproc_spin = QtWidgets.QSpinBox(minimum=1, maximum=64, value=1)
        self.nproc_spin.setToolTip("Processes per trial run (torchrun --nproc-per-node)")
        self.workers_spin = QtWidgets.QSpinBox(minimum=1, maximum=16, value=1)
        self.workers_spin.setToolTip("Trials run in parallel on this machine: one `hpo` worker process each")
        for widget in (self.sampler_combo, self.pruner_combo, self.direction_combo):
            widget.currentTextChanged.connect(self._schedule_validation)
        self.metric_edit.textChanged.connect(self._schedule_validation)
        self.nproc_spin.valueChanged.connect(self._schedule_validation)
        grid = QtWidgets.QGridLayout()
        for i, (label, control) in enumerate(
            (
                ("Trials", self.trials_spin),
                ("Sampler", self.sampler_combo),
                ("Pruner", self.pruner_combo),
                ("Direction", self.direction_combo),
                ("Processes", self.nproc_spin),
                ("Workers", self.workers_spin),
            )
        ):
            grid.addWidget(QtWidgets.QLabel(label), i // 2, (i % 2) * 2)
            grid.addWidget(control, i // 2, (i % 2) * 2 + 1)
        form.addRow("Metric", self.metric_edit)
        layout.addLayout(form)
        layout.addLayout(grid)
        layout.addWidget(QtWidgets.QLabel("Search space (config key: range)"))
        self.space_edit = CodeEditor(self.theme)
        self.space_edit.setPlaceholderText("optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}")
        self.space_highlighter = YamlHighlighter(self.space_edit.document(), self.theme)
        self.space_edit.textChanged.connect(self._schedule_validation)
        layout.addWidget(self.space_edit, 1)
        self.validation = QtWidgets.QLabel()
        self.validation.setWordWrap(True)
        self.validation.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.validation)
        buttons = QtWidgets.QHBoxLayout()
        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.setObjectName("primaryButton")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip(
            "Stop the study: no new trials, running trials stop gracefully "
            "(their parameters are queued for when it resumes). Again: terminate."
        )
        self.stop_button.clicked.connect(self.stop)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        layout.addLayout(buttons)
        return box

    def _build_results(self) -> QtWidgets.QWidget:
        box = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(box)
        layout.setContentsMargins(4, 0, 0, 0)
        head = QtWidgets.QHBoxLayout()
        self.status = QtWidgets.QLabel("no study")
        self.status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QtWidgets.QPushButton("Open run")
        self.open_button.setToolTip("Open the selected trial's run in the dashboard (or double-click the row)")
        self.open_button.clicked.connect(self._open_selected)
        head.addWidget(self.status, 1)
        head.addWidget(self.open_button)
        layout.addLayout(head)

        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
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
        self.table.activated.connect(self._activated)
        self.table.doubleClicked.connect(self._activated)
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        split.addWidget(self.table)

        self.charts = StudyCharts(self.model, self.theme)
        self.log_view = QtWidgets.QPlainTextEdit(readOnly=True)
        self.log_view.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.log_view.setMaximumBlockCount(LOG_LINES)
        self.charts.addTab(self.log_view, "Worker log")
        split.addWidget(self.charts)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)
        split.setSizes([250, 550])
        layout.addWidget(split, 1)
        return box

    # --------------------------------------------------------- studies, form

    def refresh_studies(self) -> None:
        current = self.study_combo.currentText()
        self.study_combo.blockSignals(True)
        self.study_combo.clear()
        self.study_combo.addItems(list_studies(self.workspace))
        self.study_combo.setEditText(current)
        self.study_combo.blockSignals(False)

    def new_study(self) -> None:
        """A fresh name and the example space; nothing is created until Start."""
        name = time.strftime("study-%Y%m%d-%H%M%S")
        try:
            text = EXAMPLE_SPACE.read_text()
        except OSError:
            text = ""
        self.study_combo.setEditText(name)
        self.space_edit.setPlainText(text)
        self.base_edit.setText(str(config_mod.default_config_path()))

    def select_study(self, name: str) -> None:
        self.study_combo.setEditText(name)

    @property
    def study_name(self) -> str:
        return self.study_combo.currentText().strip()

    def _name_changed(self, _text: str) -> None:
        name = self.study_name
        self.stopping = False
        self.importances = self.scaling = None
        self._child_complete = -1
        self.log_tail.reset()
        self.log_view.clear()
        self.importance_job.kill()
        self.scaling_job.kill()
        exists = name in list_studies(self.workspace)
        self.source = JournalSource(self.workspace, name) if exists else None
        self.model.update(None)
        if exists:
            self._load_settings(name)
        self._drawn_revision = -1
        self.poll()
        self.study_changed.emit(name)
        self._schedule_validation()

    def _load_settings(self, name: str) -> None:
        """The form shows what the existing study was created with, so Start resumes it unchanged."""
        folder = study_dir(self.workspace, name)
        snap = self.source.read() if self.source else None
        if (folder / "space.yaml").exists():
            self.space_edit.setPlainText((folder / "space.yaml").read_text())
        if (folder / "base.yaml").exists():
            self.base_edit.setText(str(folder / "base.yaml"))
        if snap:
            self.trials_spin.setValue(int(snap.get("target") or self.trials_spin.value()))
            self.direction_combo.setCurrentText(snap.get("direction", "minimize"))
            self.metric_edit.setText(snap.get("metric") or "val_loss")
            for combo, key in ((self.sampler_combo, "sampler"), (self.pruner_combo, "pruner")):
                if snap.get(key):
                    combo.setCurrentText(snap[key])

    def _browse_base(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Base config", str(config_mod.resources_dir()), "YAML (*.yaml *.yml)"
        )
        if path:
            self.base_edit.setText(path)

    def _schedule_validation(self, *_args) -> None:
        self._validate_timer.start()

    def validate(self) -> list[str]:
        """Check the form with the engine's validators; show problems, mark their lines; return them."""
        problems: list[str] = []
        marks: list[Problem] = []
        try:
            check_study_name(self.study_name)
        except UsageError as exc:
            problems.append(str(exc).replace("--study", "name"))
        base_path = self.base_edit.text().strip() or None
        base: dict[str, Any] = {}
        try:
            base_cfg = config_mod.load(base_path)
            base_cfg.check_world_size(self.nproc_spin.value())
            base = base_cfg.model_dump(mode="json")
        except config_mod.ConfigError as exc:
            problems += [f"base config: {p}" for p in exc.problems]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", self.metric_edit.text().strip()):
            problems.append("metric: name a numeric field of the eval events, e.g. val_loss")
        if not problems or base:
            try:
                search_space.parse(
                    self.space_edit.toPlainText(),
                    base,
                    nproc=self.nproc_spin.value(),
                    sampler=self.sampler_combo.currentText(),
                )
            except search_space.SpaceError as exc:
                problems += exc.problems
                marks = [
                    Problem(p, line=int(m.group(1))) for p in exc.problems for m in [re.match(r"line (\d+)", p)] if m
                ]
        self.valid = not problems
        if problems:
            self.validation.setText("\n".join(problems))
            self.validation.setStyleSheet(f"color: {self.theme.state_colors['failed']};")
        else:
            self.validation.setText("✓ valid: the config accepts every range end and choice")
            self.validation.setStyleSheet(f"color: {self.theme.state_colors['running']};")
        self.space_edit.set_problems(marks)
        self._update_buttons()
        return problems

    # ------------------------------------------------------------ start/stop

    def workers_alive(self) -> int:
        """Workers of the shown study started here that still run (poll() also reaps those that ended)."""
        return self.workers.alive(self.study_name)

    def start(self) -> bool:
        """Start the workers (``main.py hpo`` processes in their own session). A study that exists resumes."""
        if self.validate() or self.workers_alive():
            return False
        name = self.study_name
        folder = study_dir(self.workspace, name)
        folder.mkdir(parents=True, exist_ok=True)
        space_file = folder / "space.yaml"
        space_file.write_text(self.space_edit.toPlainText())
        args = [
            "--study",
            name,
            "--workspace",
            str(self.workspace),
            "--space",
            str(space_file),
            "--trials",
            str(self.trials_spin.value()),
            "--sampler",
            self.sampler_combo.currentText(),
            "--pruner",
            self.pruner_combo.currentText(),
            "--direction",
            self.direction_combo.currentText(),
            "--metric",
            self.metric_edit.text().strip(),
            "--nproc",
            str(self.nproc_spin.value()),
        ]
        base = self.base_edit.text().strip()
        if base:
            args += ["-c", base]
        self.stopping = False
        self.log_view.clear()
        for error in self.workers.start(name, folder, args, self.workers_spin.value()):
            self.log_view.appendPlainText(error)
        self.source = JournalSource(self.workspace, name)
        self.refresh_studies()
        self._update_buttons()
        return self.workers_alive() > 0

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
        self.start_button.setEnabled(self.valid and alive == 0)
        self.start_button.setText("Resume" if self.source is not None and self.model.name else "Start")
        self.stop_button.setEnabled(running)
        if not running:
            self.stopping = False
            self.stop_button.setText("Stop")
        selected = self._selected_trial()
        self.open_button.setEnabled(bool(selected and selected.run_dir and selected.run_dir.exists()))

    # --------------------------------------------------------------- polling

    def poll(self) -> None:
        if self.source is not None:
            if self.model.update(self.source.read()):
                self._redraw()
            self._maybe_run_children()
        self._tail_log()
        alive = self.workers_alive()
        what = self.model.summary()
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

    def _maybe_run_children(self) -> None:
        complete = self.model.complete_count()
        if complete == self._child_complete or not self.model.name:
            return
        if (
            time.monotonic() - max(self.importance_job.last_start, self.scaling_job.last_start) < CHILD_MIN_INTERVAL_S
            and self._child_complete >= 0
        ):
            return
        self._child_complete = complete
        common = ["--study", self.model.name, "--workspace", str(self.workspace)]
        if complete >= 2:
            self.charts.computing_importances()
        self.importance_job.request(["hpo", "show", *common, "--json", "--importances", "--last", "0"])
        self.scaling_job.request(["scaling", str(study_dir(self.workspace, self.model.name)), "--json"])

    def _importances_done(self, result: dict[str, Any]) -> None:
        self.importances = result.get("importances") or {"error": result.get("error", "no result")}
        self.charts.show_importances(self.importances)

    def _scaling_done(self, result: dict[str, Any]) -> None:
        self.scaling = result
        self.charts.show_scaling(result)

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
        self.importance_job.kill()
        self.scaling_job.kill()
        super().closeEvent(event)


def _combo(items: tuple[str, ...], current: str) -> QtWidgets.QComboBox:
    combo = QtWidgets.QComboBox()
    combo.addItems(list(items))
    combo.setCurrentText(current)
    return combo
