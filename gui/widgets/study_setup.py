"""The study panel's setup form: study name, base config, a space editor validated as you type (the
engine's own validator, so the panel and ``podium hpo`` agree), trials, sampler, pruner, direction,
metric, processes and workers, and Start; above the results, the study's status with Stop, Add trials
and Open run (:class:`StudyControls`). They ask; the panel acts."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtWidgets

from engine.contract import config as config_mod
from engine.contract import search_space
from engine.contract.commandline import UsageError
from engine.contract.studies import DIRECTIONS, PRUNERS, SAMPLERS, check_study_name, list_studies
from gui.models.config_doc import Problem
from gui.theme import Theme
from gui.widgets.code_editor import CodeEditor, YamlHighlighter
from gui.widgets.flow_layout import FlowLayout

EXAMPLE_SPACE = config_mod.resources_dir() / "example_space.yaml"


class StudySetup(QtWidgets.QWidget):
    nameChanged = QtCore.Signal(str)
    validated = QtCore.Signal()
    startRequested = QtCore.Signal()

    def __init__(self, theme: Theme, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.theme = theme
        self.valid = False
        self._build()
        self._validate_timer = QtCore.QTimer(self, singleShot=True, interval=300)
        self._validate_timer.timeout.connect(self.validate)

    def _build(self) -> None:
        self.setMinimumWidth(300)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 4, 0)
        top = QtWidgets.QHBoxLayout()
        self.study_combo = QtWidgets.QComboBox()
        self.study_combo.setEditable(True)
        self.study_combo.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.study_combo.setToolTip("Pick a study of the workspace, or type a new name")
        self.study_combo.currentTextChanged.connect(lambda _text: self.nameChanged.emit(self.study_name))
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
        self.start_button.setToolTip("Start the study's workers; a study that exists resumes with this form")
        self.start_button.clicked.connect(self.startRequested)
        buttons.addWidget(self.start_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)

    def refresh_studies(self, workspace: Path) -> None:
        current = self.study_combo.currentText()
        self.study_combo.blockSignals(True)
        self.study_combo.clear()
        self.study_combo.addItems(list_studies(workspace))
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

    def load_settings(self, folder: Path, snap: dict[str, Any] | None) -> None:
        """The form shows what the existing study was created with, so Start resumes it unchanged."""
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

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.space_edit.set_theme(theme)
        self.space_highlighter.set_theme(theme)
        self.validate()  # its message is coloured by the theme

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
        self.validated.emit()
        if problems:
            self.validation.setText("\n".join(problems))
            self.validation.setStyleSheet(f"color: {self.theme.state_colors['failed']};")
        else:
            self.validation.setText("✓ valid: the config accepts every range end and choice")
            self.validation.setStyleSheet(f"color: {self.theme.state_colors['running']};")
        self.space_edit.set_problems(marks)
        return problems

    def hpo_args(self, workspace: Path, space_file: Path) -> list[str]:
        """``podium hpo`` arguments for what the form says (the space already written to ``space_file``)."""
        args = [
            "--study",
            self.study_name,
            "--workspace",
            str(workspace),
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
        return [*args, "-c", base] if base else args


class StudyControls(QtWidgets.QWidget):
    """The shown study's status line and what can be done to it now, above its trials."""

    stopRequested = QtCore.Signal()
    extendRequested = QtCore.Signal(int)  # trials to add
    openRequested = QtCore.Signal()
    setupToggled = QtCore.Signal(bool)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.setup_button = QtWidgets.QToolButton()
        self.setup_button.setText("◂ Setup")
        self.setup_button.setCheckable(True)
        self.setup_button.setChecked(True)
        self.setup_button.setToolTip("Show or hide the study's setup (base config, space, sampler, …)")
        self.setup_button.toggled.connect(self._setup_toggled)
        self.status = QtWidgets.QLabel("no study")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip(
            "Stop the study: no new trials, running trials stop gracefully "
            "(their parameters are queued for when it resumes). Again: terminate."
        )
        self.stop_button.clicked.connect(self.stopRequested)
        self.more_spin = QtWidgets.QSpinBox(minimum=1, maximum=10000, value=5)
        self.more_spin.setToolTip("Trials to add to the study's target")
        self.more_button = QtWidgets.QPushButton("Add trials")
        self.more_button.setToolTip("Raise the study's target by this many trials and run them")
        self.more_button.clicked.connect(lambda: self.extendRequested.emit(self.more_spin.value()))
        self.open_button = QtWidgets.QPushButton("Open run")
        self.open_button.setToolTip("Open the selected trial's run in the dashboard (or double-click the row)")
        self.open_button.clicked.connect(self.openRequested)
        # The buttons first, wrapping onto a second row in a narrow column, the status under them: a long
        # status wraps without pushing the buttons out of reach.
        buttons_box = QtWidgets.QWidget()
        buttons = FlowLayout(buttons_box)
        policy = QtWidgets.QSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        buttons_box.setSizePolicy(policy)
        for button in (self.setup_button, self.stop_button, self.more_spin, self.more_button, self.open_button):
            buttons.addWidget(button)
        layout.addWidget(buttons_box)
        layout.addWidget(self.status)

    def _setup_toggled(self, shown: bool) -> None:
        self.setup_button.setText("◂ Setup" if shown else "Setup ▸")
        self.setupToggled.emit(shown)


def _combo(items: tuple[str, ...], current: str) -> QtWidgets.QComboBox:
    combo = QtWidgets.QComboBox()
    combo.addItems(list(items))
    combo.setCurrentText(current)
    return combo
