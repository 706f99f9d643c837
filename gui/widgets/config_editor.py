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
from gui.access.base import RunAccess
from gui.access.local import LocalAccess
from gui.models.config_doc import ConfigDocument, LaunchRequest, Problem
from gui.theme import LIGHT, Theme
from gui.widgets.code_editor import ERROR_COLOR, WARNING_COLOR, CodeEditor, YamlHighlighter
from gui.widgets.config_diff import ConfigDiffView
from gui.widgets.config_launch import LaunchRows
from gui.widgets.engine_job import panel_toolbar
from gui.widgets.schema_form import FieldRow, SchemaForm

VALIDATE_MS = 150  # after the last keystroke
EDITOR_SHARE = 0.42  # of the width, for the YAML beside the form, until the user moves the handle
OK_COLOR = "#15803d"
CONFIG_MAX_BYTES = 1 << 20  # a run's config.yaml is a few KiB; more is not one Podium wrote


class ConfigEditorPanel(QtWidgets.QWidget):
    saved = QtCore.Signal(str)

    def __init__(self, document: ConfigDocument, theme: Theme = LIGHT, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.theme = theme
        self.workspace: Path | None = None
        self.access: RunAccess = LocalAccess("/")  # where the selected run's files are read
        self.run_config: Path | None = None  # the selected run's config.yaml, for diff and load
        self.run_config_text = ""
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
        self.diff = ConfigDiffView(document, self._goto_path, self.editor.font())
        # The Diff tab's parts, under the names they have always had.
        self.compare, self.as_text = self.diff.compare, self.diff.as_text
        self.diff_tree, self.diff_text, self.diff_count = self.diff.tree, self.diff.text, self.diff.count
        self.tabs.addTab(self.diff, "Diff")
        self.tabs.currentChanged.connect(self.diff.refresh)
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

        self.launch = LaunchRows(document, self.validate_now, self._button)
        self.launch.nproc.valueChanged.connect(self._nproc_changed)
        self.startRequested = self.launch.startRequested
        self.run_name, self.nproc, self.checkpoint = self.launch.run_name, self.launch.nproc, self.launch.checkpoint
        self.start_button, self.fork_button = self.launch.start_button, self.launch.fork_button
        self.launch_problems = self.launch.problems
        layout.addWidget(self.launch)

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
        self.launch.refresh()
        if self.tabs.currentIndex() == 1:
            self.diff.refresh()

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
        """The selected run: its config.yaml, read through the workspace's access, becomes a diff target
        and can be loaded."""
        self.run_config, self.run_config_text = None, ""
        problem = ""
        if run_dir is not None:
            config = Path(run_dir) / "config.yaml"
            try:
                text = self.access.read(str(config), 0, CONFIG_MAX_BYTES).decode("utf-8", "replace")
            except OSError as exc:  # the host is away: said where the diff would be
                problem, text = f"cannot read {config}: {exc}", ""
            if text:
                self.run_config, self.run_config_text = config, text
        self.diff.set_run(self.run_config.parent.name if self.run_config else "", self.run_config_text, problem)
        self.run_button.setEnabled(self.run_config is not None)
        self.run_button.setToolTip(f"Load {self.run_config}" if self.run_config else "No run selected")

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
        if self.run_config_text:
            self.load_text(self.run_config_text)

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
        self.launch.set_workspace(self.workspace)

    def set_checkpoint(self, path: Path | None) -> None:
        self.launch.set_checkpoint(path)

    def _nproc_changed(self, value: int) -> None:
        # The batch must split over the ranks: checked with the rest, at the batch's lines.
        self.document.set_nproc(value)
        self._refresh()

    def start_run(self) -> LaunchRequest | None:
        return self.launch.start_run()

    def fork_run(self) -> LaunchRequest | None:
        return self.launch.fork_run()
