"""The config editor: YAML with highlighting and line numbers beside a form generated from the schema.

Edit either side and the other follows: the form writes one value into the
YAML in place (comments and layout kept), and the YAML, re-read as you type,
refills the form. Validation is the engine's own and runs as you type; each
problem is underlined on its line, listed below the editor (click to go
there) and shown at its field in the form. The Diff tab compares the
config with the defaults or with the selected run's ``config.yaml``.

Open, Save and Save as work on files (Save refuses an invalid config, so a
saved file is one ``main.py run -c`` accepts). "Start run with this config"
and "Fork from checkpoint" emit :attr:`ConfigEditorPanel.startRequested`
with a :class:`~gui.models.config_doc.LaunchRequest`; nothing is emitted
while the config or the run name is wrong.

Mount it as a dock::

    self.config_editor = ConfigEditorPanel(ConfigDocument())
    self._dock("Config", "config", self.config_editor, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from engine.contract import config as config_mod
from gui.models.config_doc import (
    ConfigDocument,
    LaunchRequest,
    Problem,
    diff,
    launch_problems,
    read_config_file,
    unified,
)
from gui.theme import LIGHT, Theme
from gui.widgets.code_editor import ERROR_COLOR, WARNING_COLOR, CodeEditor, YamlHighlighter
from gui.widgets.engine_job import panel_toolbar
from gui.widgets.schema_form import FieldRow, SchemaForm

VALIDATE_MS = 150  # after the last keystroke
EDITOR_SHARE = 0.42  # of the width, for the YAML beside the form, until the user moves the handle
OK_COLOR = "#15803d"


class ConfigEditorPanel(QtWidgets.QWidget):
    startRequested = QtCore.Signal(object)  # LaunchRequest
    saved = QtCore.Signal(str)

    def __init__(self, document: ConfigDocument, theme: Theme = LIGHT, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.theme = theme
        self.workspace: Path | None = None
        self.run_config: Path | None = None  # the selected run's config.yaml, for diff and load
        self._applying = False
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)

        self.open_button = self._button("Open…", self.open_dialog, "Open a YAML config file")
        self.save_button = self._button("Save", self.save, "Save to the file (refused while the config is invalid)")
        self.save_as_button = self._button("Save as…", self.save_as_dialog, "Save to a new file")
        self.defaults_button = self._button(
            "Defaults",
            self.load_defaults,
            "Replace the text with every field at its default, with its help as a comment",
        )
        self.run_button = self._button("Run's config", self.load_run_config, "Load the selected run's config.yaml")
        self.file_label = QtWidgets.QLabel()
        self.file_label.setObjectName("muted")
        self.file_label.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.status = QtWidgets.QLabel()
        layout.addWidget(
            panel_toolbar(
                self.open_button,
                self.save_button,
                self.save_as_button,
                None,
                self.defaults_button,
                self.run_button,
                None,
                self.file_label,
            )
        )

        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        left = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        self.editor = CodeEditor(theme)
        # The comments say what each field does: wrapped, they are read in a half-width editor, not cut off.
        self.editor.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.highlighter = YamlHighlighter(self.editor.document(), theme)
        left.addWidget(self.editor)
        self.problem_list = QtWidgets.QListWidget()
        self.problem_list.setWordWrap(True)
        self.problem_list.setMaximumHeight(130)
        self.problem_list.itemActivated.connect(self._problem_clicked)
        self.problem_list.itemClicked.connect(self._problem_clicked)
        left.addWidget(self.problem_list)
        left.setStretchFactor(0, 4)
        left.setStretchFactor(1, 1)
        split.addWidget(left)

        self.tabs = QtWidgets.QTabWidget()
        self.form = SchemaForm(document)
        self.form.edited.connect(self._form_edited)
        self.form.resetRequested.connect(self._form_reset)
        self.form.gotoRequested.connect(self._goto_path)
        self.tabs.addTab(self.form, "Form")
        diff_box = QtWidgets.QWidget()
        diff_layout = QtWidgets.QVBoxLayout(diff_box)
        diff_layout.setContentsMargins(0, 4, 0, 0)
        diff_bar = QtWidgets.QHBoxLayout()
        diff_bar.addWidget(QtWidgets.QLabel("Compare with"))
        self.compare = QtWidgets.QComboBox()
        self.compare.addItem("defaults", "defaults")
        self.compare.currentIndexChanged.connect(self.refresh_diff)
        diff_bar.addWidget(self.compare)
        self.as_text = QtWidgets.QCheckBox("as text")
        self.as_text.setToolTip("A unified diff of the two configs as the engine writes them")
        self.as_text.toggled.connect(self.refresh_diff)
        diff_bar.addWidget(self.as_text)
        diff_bar.addStretch(1)
        self.diff_count = QtWidgets.QLabel()
        self.diff_count.setObjectName("muted")
        diff_bar.addWidget(self.diff_count)
        diff_layout.addLayout(diff_bar)
        self.diff_tree = QtWidgets.QTreeWidget()
        self.diff_tree.setHeaderLabels(["Field", "This config", "Defaults"])
        self.diff_tree.setRootIsDecorated(False)
        self.diff_tree.setAlternatingRowColors(True)
        self.diff_tree.itemActivated.connect(lambda item: self._goto_path(item.text(0)))
        diff_layout.addWidget(self.diff_tree, 1)
        self.diff_text = QtWidgets.QPlainTextEdit()
        self.diff_text.setReadOnly(True)
        self.diff_text.setFont(self.editor.font())
        self.diff_text.hide()
        diff_layout.addWidget(self.diff_text, 1)
        self.tabs.addTab(diff_box, "Diff")
        self.tabs.currentChanged.connect(self.refresh_diff)
        # The verdict ("valid ✓", "2 problems"; all of them in its tooltip) beside the Form/Diff tabs, where there
        # is room at any width; in the toolbar a narrow dock pushed it into the » menu.
        self.status.setContentsMargins(0, 0, 6, 0)
        self.tabs.setCornerWidget(self.status, QtCore.Qt.Corner.TopRightCorner)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setCollapsible(0, False)
        split.setCollapsible(1, False)
        self.editor.setMinimumWidth(self.editor.fontMetrics().horizontalAdvance("x" * 24))
        # Half each (see resizeEvent) until the user moves the handle: the form's wide rows must not squeeze the YAML.
        self.split = split
        self._split_by_user = False
        split.splitterMoved.connect(lambda *_: setattr(self, "_split_by_user", True))
        layout.addWidget(split, 1)

        self.run_name = QtWidgets.QLineEdit()
        self.run_name.setPlaceholderText("new run's folder name")
        self.run_name.textChanged.connect(self._refresh_launch)
        self.nproc = QtWidgets.QSpinBox()
        self.nproc.setRange(1, 256)
        self.nproc.setPrefix("processes ")
        self.nproc.setToolTip("Ranks on this machine (GPUs, or CPU processes); the batch must split over them")
        self.nproc.valueChanged.connect(self._nproc_changed)
        self.checkpoint = QtWidgets.QLineEdit()
        self.checkpoint.setPlaceholderText("checkpoint to fork from")
        self.checkpoint.setToolTip(
            "For a fork: the checkpoint whose weights (and, for a full one, optimizer and step) the new run starts from"
        )
        self.checkpoint.textChanged.connect(self._refresh_launch)
        browse = QtWidgets.QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a checkpoint folder")
        browse.clicked.connect(self._browse_checkpoint)
        self.start_button = self._button(
            "Start run with this config", self.start_run, "Start a new run in the runs folder with the config as edited"
        )
        self.start_button.setObjectName("primaryButton")
        self.fork_button = self._button(
            "Fork from checkpoint",
            self.fork_run,
            "Start a new run from the chosen checkpoint: its weights (and, for a full "
            "checkpoint, its optimizer and step), this config for everything else",
        )
        # Two rows, so neither action ends up in a toolbar's overflow menu in a dock of ordinary width.
        layout.addWidget(panel_toolbar(self.run_name, self.nproc, self.start_button))
        layout.addWidget(panel_toolbar(self.checkpoint, browse, self.fork_button))
        # Wide enough to read, narrow enough that the buttons stay on their rows in a dock of 500 px.
        for edit, width in ((self.run_name, 160), (self.checkpoint, 220)):
            edit.setMinimumWidth(width)
            edit.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.launch_problems = QtWidgets.QLabel()
        self.launch_problems.setObjectName("problems")
        self.launch_problems.setWordWrap(True)
        layout.addWidget(self.launch_problems)

        self._timer = QtCore.QTimer(self, singleShot=True, interval=VALIDATE_MS)
        self._timer.timeout.connect(self.validate_now)
        self.editor.setPlainText(document.text)
        self.editor.textChanged.connect(self._typed)
        self.editor.cursorPositionChanged.connect(self._cursor_moved)
        self.validate_now()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        width = self.split.width()
        if not self._split_by_user and width > 0:
            # The form gets the larger share: wide enough for its labels beside the fields, a row each.
            left = max(self.editor.minimumWidth(), int((width - self.split.handleWidth()) * EDITOR_SHARE))
            self.split.setSizes([left, width - left - self.split.handleWidth()])

    def _button(self, text: str, slot, tip: str) -> QtWidgets.QPushButton:
        button = QtWidgets.QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(lambda _checked=False: slot())  # clicked(bool) must not fill a defaulted parameter
        return button

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.highlighter.set_theme(theme)
        self.editor.theme = theme
        self.editor.gutter.update()

    # ----------------------------------------------------------- text <-> form

    def _typed(self) -> None:
        if not self._applying:
            self._timer.start()

    def validate_now(self) -> None:
        """Re-read the text now (normally VALIDATE_MS after the last keystroke)."""
        self._timer.stop()
        text = self.editor.toPlainText()
        if text != self.document.text:
            self.document.set_text(text)
        self._refresh()

    def _form_edited(self, path: str, value) -> None:
        self._timer.stop()
        if self.editor.toPlainText() != self.document.text:
            self.document.set_text(self.editor.toPlainText())  # keystrokes not yet validated come first
        done = self.document.reset_value(path) if value is FieldRow._RESET else self.document.set_value(path, value)
        if value is FieldRow._RESET and not done and self.document.is_set(path):
            self.document.set_value(path, None)
        self._apply_document_text()

    def _form_reset(self, path: str) -> None:
        if self.document.reset_value(path):
            self._apply_document_text()

    def _apply_document_text(self) -> None:
        self._applying = True
        try:
            self.editor.replace_text(self.document.text)
        finally:
            self._applying = False
        self._refresh()

    def _refresh(self) -> None:
        doc = self.document
        v = doc.validation
        self.editor.set_problems(v.problems)
        self.form.refresh()
        self.problem_list.clear()
        for p in sorted(v.problems, key=lambda p: (p.line or 0, p.severity)):
            item = QtWidgets.QListWidgetItem(("⚠ " if p.severity == "warning" else "✖ ") + p.text())
            item.setForeground(QtGui.QColor(ERROR_COLOR if p.severity == "error" else WARNING_COLOR))
            item.setData(QtCore.Qt.ItemDataRole.UserRole, p)
            self.problem_list.addItem(item)
        errors = len(v.errors())
        if v.syntax_error:
            self._status("YAML syntax error", ERROR_COLOR)
        elif errors:
            self._status(f"{errors} problem{'s' if errors != 1 else ''}", ERROR_COLOR)
        else:
            self._status("valid ✓", OK_COLOR)
        self.problem_list.setVisible(bool(v.problems))
        self.status.setToolTip("\n".join(p.text() for p in v.problems))
        self.save_button.setEnabled(v.ok and doc.path is not None and doc.dirty)
        self.save_as_button.setEnabled(v.ok)
        name = str(doc.path) if doc.path else "unsaved"
        self.file_label.setText(f"{name}{' (modified)' if doc.dirty and doc.path else ''}")
        self._refresh_launch()
        if self.tabs.currentIndex() == 1:
            self.refresh_diff()

    def _status(self, text: str, color: str) -> None:
        self.status.setText(f"<b style='color:{color}'>{html.escape(text)}</b>")

    def _problem_clicked(self, item: QtWidgets.QListWidgetItem) -> None:
        problem: Problem = item.data(QtCore.Qt.ItemDataRole.UserRole)
        if problem.line:
            self.editor.go_to_line(problem.line)
        if problem.path:
            self.form.focus_field(problem.path)

    def _goto_path(self, path: str) -> None:
        line = self.document.line_of(path)
        if line:
            self.editor.go_to_line(line)

    def _cursor_moved(self) -> None:
        # The form follows the caret: the field under it scrolls into view (without taking the focus).
        path = self.document.path_at_line(self.editor.textCursor().blockNumber() + 1)
        row = self.form.rows.get(path or "")
        if row is not None and self.editor.hasFocus():
            self.form.scroll_area.ensureWidgetVisible(row.container)

    # ------------------------------------------------------------------ diff

    def set_run(self, run_dir: Path | None) -> None:
        """The selected run: its config.yaml becomes a diff target and can be loaded."""
        config = Path(run_dir) / "config.yaml" if run_dir else None
        self.run_config = config if config is not None and config.is_file() else None
        current = self.compare.currentData()
        self.compare.blockSignals(True)
        self.compare.clear()
        self.compare.addItem("defaults", "defaults")
        if self.run_config is not None:
            self.compare.addItem(f"run {self.run_config.parent.name}", "run")
        self.compare.setCurrentIndex(max(0, self.compare.findData(current)))
        self.compare.blockSignals(False)
        self.run_button.setEnabled(self.run_config is not None)
        self.run_button.setToolTip(f"Load {self.run_config}" if self.run_config else "No run selected")
        self.refresh_diff()

    def refresh_diff(self) -> None:
        target = self.compare.currentData()
        label = "defaults"
        try:
            if target == "run" and self.run_config is not None:
                theirs = read_config_file(self.run_config)
                label = f"run {self.run_config.parent.name}"
            else:
                theirs = self.document.defaults
        except config_mod.ConfigError as exc:
            self.diff_tree.clear()
            self.diff_count.setText(f"cannot read {self.run_config}: {exc.problems[0] if exc.problems else exc}")
            return
        mine = self.document.effective()
        rows = diff(mine, theirs)
        self.diff_tree.setHeaderLabels(["Field", "This config", label])
        self.diff_tree.clear()
        for row in rows:
            item = QtWidgets.QTreeWidgetItem([row.path, row.mine, row.theirs])
            item.setToolTip(0, self.document.fields[row.path].description if row.path in self.document.fields else "")
            self.diff_tree.addTopLevelItem(item)
        for col in range(3):
            self.diff_tree.resizeColumnToContents(col)
        self.diff_count.setText(
            f"{len(rows)} field{'s' if len(rows) != 1 else ''} differ"
            + (" (the text is invalid: compared as written)" if self.document.validation.config is None else "")
        )
        self.diff_text.setPlainText(unified(mine, theirs, "this config", label) or "(no differences)")
        self.diff_tree.setVisible(not self.as_text.isChecked())
        self.diff_text.setVisible(self.as_text.isChecked())

    # ------------------------------------------------------------------ files

    def load_text(self, text: str, path: Path | None = None) -> None:
        """Replace the editor's text (an undoable edit) and validate it at once."""
        self.editor.replace_text(text)
        self.document.path = path
        self.document.saved_text = text if path else ""
        self.validate_now()

    def open_file(self, path: Path) -> bool:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            QtWidgets.QMessageBox.warning(self, "Open config", f"Cannot read {path}: {exc.strerror or exc}")
            return False
        self.load_text(text, Path(path))
        return True

    def open_dialog(self) -> None:
        start = str(self.document.path.parent if self.document.path else (self.workspace or Path.cwd()))
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open config", start, "YAML (*.yaml *.yml);;All files (*)"
        )
        if path:
            self.open_file(Path(path))

    def load_defaults(self) -> None:
        self.load_text(config_mod.defaults_yaml())

    def load_run_config(self) -> None:
        if self.run_config is not None:
            self.load_text(self.run_config.read_text())

    def save(self) -> Path | None:
        if self.document.path is None:
            return self.save_as_dialog()
        return self.save_to(self.document.path)

    def save_to(self, path: Path) -> Path | None:
        """Write the text to ``path``; None (and nothing written) while the config is invalid."""
        self.validate_now()
        try:
            written = self.document.save(path)
        except config_mod.ConfigError as exc:
            self.launch_problems.setText("Not saved: " + "; ".join(exc.problems[:3]))
            return None
        except OSError as exc:
            self.launch_problems.setText(f"Not saved: {exc.strerror or exc}")
            return None
        self._refresh()
        self.saved.emit(str(written))
        return written

    def save_as_dialog(self) -> Path | None:
        start = str(self.document.path or (self.workspace or Path.cwd()) / "config.yaml")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save config as", start, "YAML (*.yaml *.yml)")
        return self.save_to(Path(path)) if path else None

    # ----------------------------------------------------------------- launch

    def set_workspace(self, workspace: Path | None) -> None:
        self.workspace = Path(workspace) if workspace else None
        self._refresh_launch()

    def set_checkpoint(self, path: Path | None) -> None:
        self.checkpoint.setText(str(path) if path else "")

    def _nproc_changed(self, value: int) -> None:
        # The batch must split over the ranks: checked with the rest, at the batch's lines.
        self.document.set_nproc(value)
        self._refresh()

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

    def _refresh_launch(self) -> None:
        start = self.problems_for(False)
        fork = self.problems_for(True)
        self.start_button.setEnabled(not start)
        self.fork_button.setEnabled(not fork)
        self.start_button.setToolTip("; ".join(start) or "Start a new run in the runs folder with the config as edited")
        shown = [p for p in fork if p.startswith(("run name", "no runs folder"))] if self.run_name.text() else []
        self.launch_problems.setText("\n".join(shown))

    def start_run(self) -> LaunchRequest | None:
        return self._launch(fork=False)

    def fork_run(self) -> LaunchRequest | None:
        return self._launch(fork=True)

    def _launch(self, fork: bool) -> LaunchRequest | None:
        self.validate_now()
        problems = self.problems_for(fork)
        if problems:
            self.launch_problems.setText("Not started: " + "; ".join(problems[:4]))
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
        self.launch_problems.clear()
        self.startRequested.emit(request)
        return request
