"""The study panel: set up, start, watch and stop hyperparameter studies.

Left, the setup: study name, base config, a space editor validated as you
type (the engine's own validator, so the panel and ``main.py hpo`` agree),
trials, sampler, pruner, direction, metric. Right, the live study: a trials
table (activating a row opens the trial's run), optimization history,
intermediate values per trial (pruned trials dashed and marked with a cross),
parallel coordinates, parameter importances, the scaling fit and the
workers' log.

Workers are ``main.py hpo`` processes in a session of their own, with their
output in ``<study>/worker-*.log``: a study outlives the window, like a run.
Stop writes the study's stop file, which every worker honours by stopping its
running trial through the run's control inbox; pressing it again terminates
the workers started here. Importances and the scaling fit are computed in
child processes (``hpo show --importances --json``, ``scaling --json``), never
in the GUI process.

Mount it in the main window as a dock::

    self.study_panel = StudyPanel(self.workspace, self.theme); self.study_panel.open_run_requested.connect(self.open_run)
    self.study_dock = self._dock("Studies", "studies", self.study_panel, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6 import QtCore, QtGui, QtWidgets

from engine.contract import config as config_mod
from engine.contract import search_space
from engine.contract.commandline import UsageError, engine_command
from engine.studies.hpo import DIRECTIONS, PRUNERS, SAMPLERS, check_study_name, list_studies, request_stop, study_dir
from gui.models.study_model import JournalSource, StudyModel, TrialRow, worker_logs
from gui.theme import LIGHT, Theme

EXAMPLE_SPACE = config_mod.resources_dir() / "example_space.yaml"
STATE_NAMES = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
STATE_THEME = {
    "COMPLETE": "finished",
    "PRUNED": "paused",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "preparing",
}
CHILD_MIN_INTERVAL_S = 5.0  # importances/scaling recomputed at most this often while trials complete
LOG_LINES = 400


class TrialsTableModel(QtCore.QAbstractTableModel):
    """The trials of a StudyModel: number, state, value, each parameter, duration, run or reason."""

    SORT_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1

    def __init__(self, study: StudyModel, theme: Theme, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.study = study
        self.theme = theme
        self.rows: list[TrialRow] = []
        self.columns: list[str] = []

    def refresh(self) -> None:
        self.beginResetModel()
        self.rows = list(self.study.trials)
        self.columns = ["#", "State", self.study.metric, *self.study.param_names, "Time", "Run / reason"]
        self.endResetModel()

    def rowCount(self, parent=QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section, orientation, role=QtCore.Qt.ItemDataRole.DisplayRole):
        if orientation == QtCore.Qt.Orientation.Horizontal and role == QtCore.Qt.ItemDataRole.DisplayRole:
            return self.columns[section]
        return None

    def data(self, index, role=QtCore.Qt.ItemDataRole.DisplayRole):
        trial = self.rows[index.row()]
        col = index.column()
        name = self.columns[col]
        Role = QtCore.Qt.ItemDataRole
        params = self.study.param_names
        if role == Role.DisplayRole:
            if col == 0:
                return str(trial.number)
            if col == 1:
                return STATE_NAMES.get(trial.state, trial.state.lower())
            if col == 2:
                return "" if trial.value is None else f"{trial.value:.5g}"
            if 3 <= col < 3 + len(params):
                return _fmt(trial.params.get(name))
            if name == "Time":
                return "" if trial.duration_s is None else _duration(trial.duration_s)
            if trial.state in ("FAIL", "PRUNED") and trial.reason:
                return trial.reason
            return trial.run_dir.name if trial.run_dir else ""
        if role == self.SORT_ROLE:
            if col == 0:
                return trial.number
            if col == 2:
                return math.inf if trial.value is None else trial.value
            if name == "Time":
                return trial.duration_s or 0.0
            return self.data(index, Role.DisplayRole)
        if role == Role.ForegroundRole and col == 1:
            return QtGui.QColor(self.theme.state_colors.get(STATE_THEME.get(trial.state, ""), self.theme.fg))
        if role == Role.FontRole and self.study.best and trial.number == self.study.best["number"]:
            font = QtGui.QFont()
            font.setBold(True)
            return font
        if role == Role.ToolTipRole:
            lines = [f"trial {trial.number}: {STATE_NAMES.get(trial.state, trial.state)}"]
            if trial.run_dir:
                lines.append(f"run: {trial.run_dir}")
            if trial.reason:
                lines.append(trial.reason)
            return "\n".join(lines)
        if role == Role.TextAlignmentRole and (col in (0, 2) or name == "Time"):
            return int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        return None


class SpaceEditor(QtWidgets.QPlainTextEdit):
    """YAML editor that underlines the lines a validation problem names."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        self.setFont(font)
        self.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        self.setTabChangesFocus(True)
        self.setPlaceholderText("optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}")

    def mark_lines(self, lines: set[int], color: str) -> None:
        selections = []
        for line in sorted(lines):
            block = self.document().findBlockByNumber(line - 1)
            if not block.isValid():
                continue
            sel = QtWidgets.QTextEdit.ExtraSelection()
            sel.format.setBackground(QtGui.QColor(color))
            sel.format.setProperty(QtGui.QTextFormat.Property.FullWidthSelection, True)
            sel.cursor = QtGui.QTextCursor(block)
            selections.append(sel)
        self.setExtraSelections(selections)


class ChildJob(QtCore.QObject):
    """One short-lived engine subcommand whose stdout is JSON; at most one at a time, reruns when asked meanwhile."""

    finished = QtCore.Signal(object)  # the parsed JSON, or {"error": text}

    def __init__(self, python: str, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.python = python
        self.proc: QtCore.QProcess | None = None
        self.pending: list[str] | None = None
        self.last_start = 0.0

    def request(self, args: list[str]) -> None:
        if self.proc is not None:
            self.pending = args
            return
        self.last_start = time.monotonic()
        proc = QtCore.QProcess(self)
        proc.finished.connect(lambda code, _status, p=proc: self._done(p, code))
        self.proc = proc
        program, *arguments = engine_command(*args, python=self.python)
        proc.start(program, arguments)

    def _done(self, proc: QtCore.QProcess, code: int) -> None:
        if not shiboken6.isValid(proc):  # finished emitted while the panel (and so the process object) is torn down
            return
        out = bytes(proc.readAllStandardOutput()).decode(errors="replace").strip()
        err = bytes(proc.readAllStandardError()).decode(errors="replace").strip()
        self.proc = None
        proc.deleteLater()
        try:
            result = json.loads(out.splitlines()[-1]) if out else {"error": err or f"exit code {code}"}
        except ValueError:
            result = {"error": err or out[-500:]}
        if code != 0 and "error" not in result:
            result["error"] = err or f"exit code {code}"
        self.finished.emit(result)
        if self.pending is not None:
            args, self.pending = self.pending, None
            self.request(args)

    def kill(self) -> None:
        self.pending = None
        if self.proc is not None:
            self.proc.kill()
            self.proc.waitForFinished(2000)


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
        self.workers: list[tuple[str, subprocess.Popen]] = []  # (study, `hpo` worker) started from this panel
        self.stopping = False
        self.importances: dict[str, Any] | None = None
        self.scaling: dict[str, Any] | None = None
        self._child_complete = -1
        self._log_state: tuple[str, float] | None = None
        self._drawn_revision = -1
        self._selected: int | None = None
        self.valid = False

        self._build()
        self.importance_job = ChildJob(python, self)
        self.importance_job.finished.connect(self._importances_done)
        self.scaling_job = ChildJob(python, self)
        self.scaling_job.finished.connect(self._scaling_done)

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
        browse = QtWidgets.QToolButton(text="…")
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
        for i, (label, widget) in enumerate(
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
            grid.addWidget(widget, i // 2, (i % 2) * 2 + 1)
        form.addRow("Metric", self.metric_edit)
        layout.addLayout(form)
        layout.addLayout(grid)
        layout.addWidget(QtWidgets.QLabel("Search space (config key: range)"))
        self.space_edit = SpaceEditor()
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
        self.proxy.setSortRole(TrialsTableModel.SORT_ROLE)
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

        self.tabs = QtWidgets.QTabWidget()
        plots = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(plots)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        self.history_plot = self._plot("Optimization history", "trial", "")
        self.inter_plot = self._plot("Intermediate values", "step", "")
        self.parallel_plot = self._plot("Parallel coordinates", "", "")
        self.importance_plot = self._plot("Parameter importances", "importance", "")
        for i, plot in enumerate((self.history_plot, self.inter_plot, self.parallel_plot, self.importance_plot)):
            grid.addWidget(plot, i // 2, i % 2)
        self.tabs.addTab(plots, "Plots")
        self.scaling_plot = self._plot(
            "Scaling: final loss against model size (fit per token budget D)",
            "parameters N (log scale)",
            "final val_loss",
        )
        self.tabs.addTab(self.scaling_plot, "Scaling")
        self.log_view = QtWidgets.QPlainTextEdit(readOnly=True)
        self.log_view.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.log_view.setMaximumBlockCount(LOG_LINES)
        self.tabs.addTab(self.log_view, "Worker log")
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)
        split.setSizes([250, 550])
        layout.addWidget(split, 1)

        self._setup_items()
        return box

    def _plot(self, title: str, x: str, y: str) -> pg.PlotWidget:
        plot = pg.PlotWidget(background=self.theme.plot_bg)
        item = plot.getPlotItem()
        item.setTitle(title, color=self.theme.fg, size="10pt")
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            axis.setPen(pg.mkPen(self.theme.axis))
            axis.setTextPen(pg.mkPen(self.theme.fg))
        if x:
            item.setLabel("bottom", x, color=self.theme.muted)
        if y:
            item.setLabel("left", y, color=self.theme.muted)
        item.showGrid(x=True, y=True, alpha=0.15)
        plot.setMenuEnabled(False)
        plot.setMinimumHeight(160)
        return plot

    def _setup_items(self) -> None:
        palette = self.theme.palette
        complete, pruned = palette[0], palette[1]
        failed = self.theme.state_colors["failed"]
        self.history_points = pg.ScatterPlotItem(size=8, pen=None)
        self.history_best = pg.PlotDataItem(pen=pg.mkPen(palette[2], width=2))
        self.history_plot.addItem(self.history_best)
        self.history_plot.addItem(self.history_points)
        # Keys in the titles: a legend box inside the plot would hide the points under it.
        self._title(
            self.history_plot,
            "Optimization history",
            [(complete, "●", "finished"), (pruned, "✕", "pruned"), (palette[2], "━", "best so far")],
        )
        self.inter_curves: dict[int, pg.PlotDataItem] = {}
        self.pruned_marks = pg.ScatterPlotItem(
            symbol="x", size=11, pen=pg.mkPen(pruned, width=2), brush=pg.mkBrush(pruned)
        )
        self.inter_plot.addItem(self.pruned_marks)
        self._title(
            self.inter_plot,
            "Intermediate values",
            [
                (complete, "━", "finished"),
                (pruned, "╌ ✕", "pruned"),
                (palette[2], "━", "running"),
                (failed, "┈", "failed"),
            ],
        )

        self._title(
            self.parallel_plot, "Parallel coordinates", [(palette[0], "━", "better"), (self.theme.axis, "━", "worse")]
        )
        self.parallel_items: list[pg.GraphicsObject] = []
        self.parallel_plot.getPlotItem().hideAxis("left")
        self.parallel_plot.setMouseEnabled(x=False, y=False)
        self.importance_bars: pg.BarGraphItem | None = None
        self.importance_note = pg.TextItem(
            "importances appear once two trials have finished", color=self.theme.muted, anchor=(0.5, 0.5)
        )
        self.importance_plot.addItem(self.importance_note)
        self.importance_plot.setMouseEnabled(x=False, y=False)
        self._empty_importances()
        self.scaling_items: list[pg.GraphicsObject] = []
        self.scaling_legend = self.scaling_plot.getPlotItem().addLegend(offset=(-8, 30), labelTextColor=self.theme.fg)
        self.scaling_note = pg.TextItem(color=self.theme.fg, anchor=(0, 0))
        self.scaling_note.setParentItem(self.scaling_plot.getPlotItem().getViewBox())
        self.scaling_note.setPos(8, 4)

    def _title(self, plot: pg.PlotWidget, title: str, keys: list[tuple[str, str, str]]) -> None:
        legend = "&nbsp;&nbsp;".join(
            f"<span style='color:{color}'>{glyph}</span>&nbsp;{label}" for color, glyph, label in keys
        )
        plot.getPlotItem().setTitle(
            f"<span style='color:{self.theme.fg}'>{title}</span>&nbsp;&nbsp;&nbsp;"
            f"<span style='color:{self.theme.muted}; font-size:9pt'>{legend}</span>",
            size="10pt",
        )

    def _empty_importances(self) -> None:
        plot = self.importance_plot.getPlotItem()
        self.importance_note.setPos(0.5, 0.5)
        plot.getAxis("left").setTicks([[]])
        plot.getAxis("bottom").setTicks([[]])
        plot.setXRange(0, 1, padding=0)
        plot.setYRange(0, 1, padding=0)

    def _trial_pen(self, state: str, highlight: bool) -> QtGui.QPen:
        palette = self.theme.palette
        color, style = {
            "COMPLETE": (palette[0], QtCore.Qt.PenStyle.SolidLine),
            "PRUNED": (palette[1], QtCore.Qt.PenStyle.DashLine),
            "RUNNING": (palette[2], QtCore.Qt.PenStyle.SolidLine),
            "FAIL": (self.theme.state_colors["failed"], QtCore.Qt.PenStyle.DotLine),
        }.get(state, (self.theme.muted, QtCore.Qt.PenStyle.SolidLine))
        qcolor = QtGui.QColor(color)
        if not highlight:
            qcolor.setAlpha(170)
        return pg.mkPen(qcolor, width=3.5 if highlight else 1.6, style=style)

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
        self._log_state = None
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
        lines: set[int] = set()
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
                lines |= {int(m.group(1)) for p in exc.problems for m in [re.match(r"line (\d+)", p)] if m}
        self.valid = not problems
        if problems:
            self.validation.setText("\n".join(problems))
            self.validation.setStyleSheet(f"color: {self.theme.state_colors['failed']};")
        else:
            self.validation.setText("✓ valid: the config accepts every range end and choice")
            self.validation.setStyleSheet(f"color: {self.theme.state_colors['running']};")
        highlight = QtGui.QColor(self.theme.state_colors["failed"])
        highlight.setAlpha(45)
        self.space_edit.mark_lines(lines, highlight.name(QtGui.QColor.NameFormat.HexArgb))
        self._update_buttons()
        return problems

    # ------------------------------------------------------------ start/stop

    def workers_alive(self) -> int:
        """Workers of the shown study started here that still run (poll() also reaps those that ended)."""
        self.workers = [(study, w) for study, w in self.workers if w.poll() is None]
        return sum(1 for study, _ in self.workers if study == self.study_name)

    def start(self) -> bool:
        """Start the workers (``main.py hpo`` processes in their own session). A study that exists resumes."""
        if self.validate() or self.workers_alive():
            return False
        name = self.study_name
        folder = study_dir(self.workspace, name)
        folder.mkdir(parents=True, exist_ok=True)
        space_file = folder / "space.yaml"
        space_file.write_text(self.space_edit.toPlainText())
        args = engine_command(
            "hpo",
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
            python=self.python,
        )
        base = self.base_edit.text().strip()
        if base:
            args += ["-c", base]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.stopping = False
        self.log_view.clear()
        for i in range(self.workers_spin.value()):
            log_path = folder / f"worker-{stamp}-{i}.log"
            # A session of its own: the worker outlives the window (and its Ctrl-C), like a training run.
            with open(log_path, "ab") as log:
                try:
                    self.workers.append(
                        (
                            name,
                            subprocess.Popen(
                                args,
                                stdin=subprocess.DEVNULL,
                                stdout=log,
                                stderr=subprocess.STDOUT,
                                start_new_session=True,
                            ),
                        )
                    )
                except OSError as exc:
                    self.log_view.appendPlainText(f"could not start a worker: {exc}")
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
            for study, worker in self.workers:
                if study == name and worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
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
        self._draw_history()
        self._draw_intermediate()
        self._draw_parallel()
        self.history_plot.getPlotItem().setLabel("left", self.model.metric, color=self.theme.muted)
        self.inter_plot.getPlotItem().setLabel("left", self.model.metric, color=self.theme.muted)

    def _draw_history(self) -> None:
        numbers, values, states, best = self.model.history()
        palette = self.theme.palette
        brushes = [pg.mkBrush(palette[0] if s == "COMPLETE" else palette[1]) for s in states]
        symbols = ["o" if s == "COMPLETE" else "x" for s in states]
        self.history_points.setData(
            x=numbers, y=values, brush=brushes, symbol=symbols, pen=None, data=[int(n) for n in numbers]
        )
        finite = np.isfinite(best)
        self.history_best.setData(numbers[finite], best[finite])

    def _draw_intermediate(self) -> None:
        marks_x, marks_y = [], []
        best = self.model.best["number"] if self.model.best else None
        for trial in self.model.trials:
            curve = self.inter_curves.get(trial.number)
            if curve is None:
                curve = pg.PlotDataItem()
                curve.setClipToView(True)
                curve.setDownsampling(auto=True, method="peak")
                self.inter_plot.addItem(curve)
                self.inter_curves[trial.number] = curve
            highlight = trial.number in (best, self._selected)
            curve.setPen(self._trial_pen(trial.state, highlight))
            curve.setZValue(2 if highlight else 1 if trial.state == "RUNNING" else 0)
            curve.setData(trial.steps, trial.values, connect="finite")
            if trial.state == "PRUNED" and len(trial.steps):
                marks_x.append(trial.steps[-1])
                marks_y.append(trial.values[-1])
        for number in [n for n in self.inter_curves if n not in {t.number for t in self.model.trials}]:
            self.inter_plot.removeItem(self.inter_curves.pop(number))
        self.pruned_marks.setData(marks_x, marks_y)
        self.pruned_marks.setZValue(3)

    def _draw_parallel(self) -> None:
        plot = self.parallel_plot.getPlotItem()
        for item in self.parallel_items:
            plot.removeItem(item)
        self.parallel_items = []
        data = self.model.parallel()
        k = len(data.axes)
        axis = plot.getAxis("bottom")
        axis.setTicks([[(i, _short(name)) for i, name in enumerate(data.axes)]])
        plot.setXRange(-0.35, k - 0.65, padding=0)
        plot.setYRange(-0.12, 1.12, padding=0)
        for i in range(k):
            line = pg.InfiniteLine(pos=i, angle=90, pen=pg.mkPen(self.theme.axis, width=1))
            low, high = data.labels[i] if i < len(data.labels) else ("", "")
            texts = [
                pg.TextItem(low, color=self.theme.muted, anchor=(0.5, 0)),
                pg.TextItem(high, color=self.theme.muted, anchor=(0.5, 1)),
            ]
            texts[0].setPos(i, -0.02)
            texts[1].setPos(i, 1.02)
            for item in (line, *texts):
                plot.addItem(item)
                self.parallel_items.append(item)
        if not len(data.values):
            return
        low, high = float(data.values.min()), float(data.values.max())
        worst, good = QtGui.QColor(self.theme.axis), QtGui.QColor(self.theme.palette[0])
        order = []
        for row, value, number in zip(data.lines, data.values, data.numbers):
            goodness = 0.5 if high == low else (high - value) / (high - low)
            if self.model.direction == "maximize":
                goodness = 1 - goodness
            order.append((goodness, row, number))
        for goodness, row, number in sorted(order, key=lambda o: o[0]):
            color = _blend(worst, good, goodness)
            width = 3.0 if number == self._selected else 1.2 + 1.3 * goodness
            item = pg.PlotDataItem(np.arange(k, dtype=float), row, pen=pg.mkPen(color, width=width), connect="finite")
            item.setZValue(1 + goodness)
            plot.addItem(item)
            self.parallel_items.append(item)

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
            self.importance_note.setText("computing importances…")
        self.importance_job.request(["hpo", "show", *common, "--json", "--importances", "--last", "0"])
        self.scaling_job.request(["scaling", str(study_dir(self.workspace, self.model.name)), "--json"])

    def _importances_done(self, result: dict[str, Any]) -> None:
        imp = result.get("importances") or {"error": result.get("error", "no result")}
        self.importances = imp
        plot = self.importance_plot.getPlotItem()
        if self.importance_bars is not None:
            plot.removeItem(self.importance_bars)
            self.importance_bars = None
        values = imp.get("values") or {}
        if not values:
            self.importance_note.setText(str(imp.get("error", "no importances yet")))
            self._empty_importances()
            return
        self.importance_note.setText("")
        plot.getAxis("bottom").setTicks(None)
        names = list(values)[::-1]  # most important on top
        widths = [values[n] for n in names]
        self.importance_bars = pg.BarGraphItem(
            x0=0, y=np.arange(len(names)), height=0.6, width=widths, brush=pg.mkBrush(self.theme.palette[0]), pen=None
        )
        plot.addItem(self.importance_bars)
        plot.getAxis("left").setTicks([[(i, _short(n)) for i, n in enumerate(names)]])
        plot.setXRange(0, max(max(widths), 1e-9) * 1.05)
        plot.setYRange(-0.6, len(names) - 0.4)
        plot.setLabel(
            "bottom", f"importance ({imp.get('method', '')}, {imp.get('trials', '?')} trials)", color=self.theme.muted
        )

    def _scaling_done(self, result: dict[str, Any]) -> None:
        self.scaling = result
        plot = self.scaling_plot.getPlotItem()
        for item in self.scaling_items:
            plot.removeItem(item)
        self.scaling_items = []
        self.scaling_legend.clear()
        points = result.get("points") or []
        if points:
            tokens = sorted({p["tokens"] for p in points})
            colors = {d: self.theme.palette[i % len(self.theme.palette)] for i, d in enumerate(tokens)}
            # x is log10(N), labelled at whole decades: pyqtgraph's log axis crowds its minor labels.
            log_n = np.log10([p["params"] for p in points])
            scatter = pg.ScatterPlotItem(
                x=log_n,
                y=[p["loss"] for p in points],
                brush=[pg.mkBrush(colors[p["tokens"]]) for p in points],
                pen=None,
                size=9,
            )
            plot.addItem(scatter)
            self.scaling_items.append(scatter)
            decades = range(math.floor(log_n.min() - 0.3), math.ceil(log_n.max() + 0.3) + 1)
            plot.getAxis("bottom").setTicks([[(k, _si(10.0**k)) for k in decades], []])
            if "values" in result:
                v = result["values"]
                ns = np.logspace(
                    math.log10(min(p["params"] for p in points)) - 0.3,
                    math.log10(max(p["params"] for p in points)) + 0.3,
                    100,
                )
                for d in tokens[:6]:
                    curve = pg.PlotDataItem(
                        np.log10(ns),
                        v["E"] + v["A"] / ns ** v["alpha"] + v["B"] / d ** v["beta"],
                        pen=pg.mkPen(colors[d], width=2),
                    )
                    plot.addItem(curve)
                    self.scaling_legend.addItem(curve, f"D = {_si(d)} tokens")
                    self.scaling_items.append(curve)
        if "values" in result:
            v, e = result["values"], result.get("errors", {})
            text = (
                f"L = E + A/N^α + B/D^β over {len(points)} runs: E={v['E']:.3g}±{_err(e.get('E'))}, "
                f"α={v['alpha']:.3g}±{_err(e.get('alpha'))}, β={v['beta']:.3g}±{_err(e.get('beta'))}; "
                f"R²={result.get('r2', float('nan')):.3f}, RMSE={result.get('rmse', float('nan')):.3g}"
            )
        else:
            text = "No fit: " + str(result.get("error", "")).removeprefix("error: ")
        self.scaling_note.setText(text)

    def _tail_log(self) -> None:
        if not self.model.name:
            return
        logs = worker_logs(self.workspace, self.model.name)
        if not logs:
            return
        newest = logs[-1]
        try:
            stat = newest.stat()
        except OSError:
            return
        state = (str(newest), stat.st_size)
        if state == self._log_state:
            return
        self._log_state = state
        with open(newest, "rb") as f:
            f.seek(max(0, stat.st_size - 64_000))
            text = f.read().decode(errors="replace")
        self.log_view.setPlainText("\n".join(text.splitlines()[-LOG_LINES:]))
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
            self._draw_intermediate()
            self._draw_parallel()
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


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _short(name: str) -> str:
    return name if len(name) <= 18 else "…" + name[-17:]


def _si(value: float) -> str:
    """1e6 -> 1M: model sizes and token counts as people say them."""
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _err(value: float | None) -> str:
    return "?" if value is None or not math.isfinite(value) else f"{value:.2g}"


def _blend(a: QtGui.QColor, b: QtGui.QColor, t: float) -> QtGui.QColor:
    t = min(max(t, 0.0), 1.0)
    return QtGui.QColor(
        int(a.red() + (b.red() - a.red()) * t),
        int(a.green() + (b.green() - a.green()) * t),
        int(a.blue() + (b.blue() - a.blue()) * t),
    )
