"""The config editor's launch rows: the new run's name and processes, "Start run with this config", and
the checkpoint that "Fork from checkpoint" starts from. Nothing is emitted while the config or the name is
wrong; what stands in the way is said under the rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from gui.models.config_doc import ConfigDocument, LaunchRequest, launch_problems
from gui.widgets.engine_job import panel_toolbar

START_TIP = "Start a new run in the runs folder with the config as edited"


class LaunchRows(QtWidgets.QWidget):
    startRequested = QtCore.Signal(object)  # LaunchRequest

    def __init__(self, document: ConfigDocument, validate_now: Callable[[], None], button):
        """``validate_now`` re-reads the editor's text; ``button(text, slot, tip)`` makes a push button."""
        super().__init__()
        self.document = document
        self._validate_now = validate_now
        self.workspace: Path | None = None
        self.run_name = QtWidgets.QLineEdit()
        self.run_name.setPlaceholderText("new run's folder name")
        self.run_name.textChanged.connect(self.refresh)
        self.nproc = QtWidgets.QSpinBox()
        self.nproc.setRange(1, 256)
        self.nproc.setPrefix("processes ")
        self.nproc.setToolTip("Ranks on this machine (GPUs, or CPU processes); the batch must split over them")
        self.checkpoint = QtWidgets.QLineEdit()
        self.checkpoint.setPlaceholderText("checkpoint to fork from")
        self.checkpoint.setToolTip(
            "For a fork: the checkpoint whose weights (and, for a full one, optimizer and step) the new run starts from"
        )
        self.checkpoint.textChanged.connect(self.refresh)
        browse = QtWidgets.QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a checkpoint folder")
        browse.clicked.connect(self._browse_checkpoint)
        self.start_button = button("Start run with this config", self.start_run, START_TIP)
        self.start_button.setObjectName("primaryButton")
        self.fork_button = button(
            "Fork from checkpoint",
            self.fork_run,
            "Start a new run from the chosen checkpoint: its weights (and, for a full "
            "checkpoint, its optimizer and step), this config for everything else",
        )
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        # Two rows, so neither action ends up in a toolbar's overflow menu in a dock of ordinary width.
        layout.addWidget(panel_toolbar(self.run_name, self.nproc, self.start_button))
        layout.addWidget(panel_toolbar(self.checkpoint, browse, self.fork_button))
        # Wide enough to read, narrow enough that the buttons stay on their rows in a dock of 500 px.
        for edit, width in ((self.run_name, 160), (self.checkpoint, 220)):
            edit.setMinimumWidth(width)
            edit.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.problems = QtWidgets.QLabel()
        self.problems.setObjectName("problems")
        self.problems.setWordWrap(True)
        layout.addWidget(self.problems)

    def set_workspace(self, workspace: Path | None) -> None:
        self.workspace = Path(workspace) if workspace else None
        self.refresh()

    def set_checkpoint(self, path: Path | None) -> None:
        self.checkpoint.setText(str(path) if path else "")

    def _browse_checkpoint(self) -> None:
        start = self.checkpoint.text() or str(self.workspace or Path.cwd())
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Checkpoint to fork from", start)
        if path:
            self.checkpoint.setText(path)

    def _checkpoint_path(self) -> Path | None:
        text = self.checkpoint.text().strip()
        return Path(text).expanduser() if text else None

    def problems_for(self, fork: bool) -> list[str]:
        problems = [p.text() for p in self.document.validation.errors()]
        return problems + launch_problems(self.run_name.text(), self.workspace, self._checkpoint_path(), fork)

    def refresh(self) -> None:
        start = self.problems_for(False)
        fork = self.problems_for(True)
        self.start_button.setEnabled(not start)
        self.fork_button.setEnabled(not fork)
        self.start_button.setToolTip("; ".join(start) or START_TIP)
        shown = [p for p in fork if p.startswith(("run name", "no runs folder"))] if self.run_name.text() else []
        self.problems.setText("\n".join(shown))

    def start_run(self) -> LaunchRequest | None:
        return self._launch(fork=False)

    def fork_run(self) -> LaunchRequest | None:
        return self._launch(fork=True)

    def _launch(self, fork: bool) -> LaunchRequest | None:
        self._validate_now()
        problems = self.problems_for(fork)
        if problems:
            self.problems.setText("Not started: " + "; ".join(problems[:4]))
            return None
        assert self.workspace is not None
        name = self.run_name.text().strip()
        request = LaunchRequest(
            name,
            self.workspace / name,
            self.nproc.value(),
            self.document.text,
            self._checkpoint_path() if fork else None,
        )
        self.problems.clear()
        self.startRequested.emit(request)
        return request
