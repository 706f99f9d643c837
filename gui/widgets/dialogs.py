"""Dialogs: start a new run, set the learning rate."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from gui.models.hardware import Hardware


@dataclass
class NewRunRequest:
    config: Path
    name: str
    nproc: int
    overrides: list[str]
    run_dir: Path


def default_run_name() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S")


class NewRunDialog(QtWidgets.QDialog):
    """Config (built-in default or a file), run name, processes; validated as you type.

    Validation uses the engine's own config schema (torch-free), including the
    check that the batch splits over the chosen number of ranks, so Start is
    enabled only for a config the engine will accept.
    """

    def __init__(
        self,
        workspace: Path,
        hardware: Hardware,
        default_config: Path,
        last_config: str = "",
        last_nproc: int | None = None,
        parent: QtWidgets.QWidget | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("New run")
        self.workspace = Path(workspace)
        self.default_config = Path(default_config)
        self.hardware = hardware
        form = QtWidgets.QFormLayout()
        self.use_default = QtWidgets.QRadioButton(f"Built-in default ({self.default_config.name})")
        self.use_file = QtWidgets.QRadioButton("File:")
        self.path = QtWidgets.QLineEdit(last_config)
        self.path.setPlaceholderText("a YAML config")
        browse = QtWidgets.QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse)
        file_row = QtWidgets.QHBoxLayout()
        file_row.addWidget(self.use_file)
        file_row.addWidget(self.path, 1)
        file_row.addWidget(browse)
        config_box = QtWidgets.QVBoxLayout()
        config_box.addWidget(self.use_default)
        config_box.addLayout(file_row)
        (self.use_file if last_config else self.use_default).setChecked(True)
        form.addRow("Config", config_box)
        self.name = QtWidgets.QLineEdit(default_run_name())
        form.addRow("Name", self.name)
        self.nproc = QtWidgets.QSpinBox()
        self.nproc.setRange(1, max(hardware.max_nproc, 64))
        self.nproc.setValue(last_nproc or hardware.default_nproc)
        hw = QtWidgets.QLabel(hardware.describe())
        hw.setObjectName("muted")
        hw.setWordWrap(True)
        nproc_row = QtWidgets.QVBoxLayout()
        nproc_row.addWidget(self.nproc)
        nproc_row.addWidget(hw)
        form.addRow("Processes", nproc_row)
        self.overrides = QtWidgets.QLineEdit()
        self.overrides.setPlaceholderText("optional: optim.lr=3e-4 run.max_steps=500")
        form.addRow("Overrides", self.overrides)
        self.problems = QtWidgets.QLabel()
        self.problems.setObjectName("problems")
        self.problems.setWordWrap(True)
        self.problems.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.target = QtWidgets.QLabel()
        self.target.setObjectName("muted")
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.start = buttons.addButton("Start", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.start.setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.target)
        layout.addWidget(self.problems)
        layout.addWidget(buttons)
        self.setMinimumWidth(560)
        self._check_timer = QtCore.QTimer(self, singleShot=True, interval=200)
        self._check_timer.timeout.connect(self.validate)
        for signal in (
            self.use_default.toggled,
            self.path.textChanged,
            self.name.textChanged,
            self.nproc.valueChanged,
            self.overrides.textChanged,
        ):
            signal.connect(self._check_timer.start)
        self.validate()

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Config", self.path.text() or str(Path.cwd()), "YAML (*.yaml *.yml)"
        )
        if path:
            self.path.setText(path)
            self.use_file.setChecked(True)

    def config_path(self) -> Path:
        return self.default_config if self.use_default.isChecked() else Path(self.path.text().strip()).expanduser()

    def request(self) -> NewRunRequest:
        name = self.name.text().strip()
        return NewRunRequest(
            self.config_path(), name, self.nproc.value(), self.overrides.text().split(), self.workspace / name
        )

    def validate(self) -> list[str]:
        """Problems with the current choices (shown, and Start disabled while any)."""
        # The config schema pulls in pydantic: loaded on first use, not at start-up.
        from engine.contract.config import ConfigError, load
        from gui.models.config_doc import data_path_problem

        problems = []
        req = self.request()
        if not req.name:
            problems.append("name: give the run a name")
        elif "/" in req.name or req.name in (".", ".."):
            problems.append(f"name: {req.name!r} must be a plain folder name")
        elif req.run_dir.exists() and any(req.run_dir.iterdir()):
            problems.append(f"name: {req.run_dir} already holds a run; choose another name")
        if self.use_file.isChecked() and not self.path.text().strip():
            problems.append("config: choose a file, or use the built-in default")
        else:
            try:
                config = load(req.config, req.overrides)
                config.check_world_size(req.nproc)
                missing = data_path_problem(config)
                if missing:
                    problems.append(missing)
                self.target.setText(
                    f"{config.run.max_steps} steps, {config.model.n_layers}x{config.model.d_model} model, "
                    f"global batch {config.batch.global_batch_size} → {req.run_dir}"
                )
            except ConfigError as exc:
                problems += exc.problems
                self.target.setText("")
        self.problems.setText("\n".join(f"• {p}" for p in problems))
        self.problems.setVisible(bool(problems))
        self.start.setEnabled(not problems)
        return problems


class SetLrDialog(QtWidgets.QDialog):
    """A new peak learning rate (the schedule keeps its shape), in any float notation."""

    def __init__(self, current_lr: float | None, peak_lr: float | None, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Set learning rate")
        layout = QtWidgets.QVBoxLayout(self)
        info = []
        if peak_lr is not None:
            info.append(f"peak LR now {peak_lr:.3g}")
        if current_lr is not None and math.isfinite(current_lr):
            info.append(f"current LR {current_lr:.3g}")
        label = QtWidgets.QLabel(
            "New peak learning rate (warmup and decay keep their shape)" + (f"\n{', '.join(info)}" if info else "")
        )
        layout.addWidget(label)
        self.edit = QtWidgets.QLineEdit(f"{peak_lr:g}" if peak_lr else "")
        self.edit.setPlaceholderText("e.g. 3e-4")
        layout.addWidget(self.edit)
        self.error = QtWidgets.QLabel()
        self.error.setObjectName("problems")
        layout.addWidget(self.error)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        self.ok = buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.edit.textChanged.connect(self._check)
        self._check()

    def value(self) -> float | None:
        try:
            lr = float(self.edit.text().strip())
        except ValueError:
            return None
        return lr if math.isfinite(lr) and 0 < lr <= 1 else None

    def _check(self) -> None:
        ok = self.value() is not None
        self.error.setText("" if ok or not self.edit.text().strip() else "a number in (0, 1], e.g. 3e-4")
        self.ok.setEnabled(ok)
