"""The config editor's form: one field per schema field, grouped by section, each with its problems."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from gui.models.config_doc import ConfigDocument, Problem
from gui.models.config_schema import FieldSpec, format_value
from gui.widgets.code_editor import ERROR_COLOR, WARNING_COLOR


class FieldRow:
    """The widgets of one field in the form."""

    def __init__(self, spec: FieldSpec, on_edit, on_reset, on_goto):
        self.spec = spec
        self.label = QtWidgets.QLabel(spec.name)
        self.label.setToolTip(spec.tooltip())
        self.label.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
        self.label.customContextMenuRequested.connect(lambda pos: self._menu(pos, on_reset, on_goto))
        self.editor: QtWidgets.QCheckBox | QtWidgets.QComboBox | QtWidgets.QLineEdit
        if spec.kind == "bool":
            check = self.editor = QtWidgets.QCheckBox()
            check.toggled.connect(lambda on: on_edit(spec.path, bool(on)))
        elif spec.kind == "choice":
            combo = self.editor = QtWidgets.QComboBox()
            for choice in spec.choices:
                combo.addItem(format_value(choice), choice)
            combo.activated.connect(lambda i: on_edit(spec.path, combo.itemData(i)))
        else:
            line = self.editor = QtWidgets.QLineEdit()
            line.setPlaceholderText(format_value(spec.default))
            line.textEdited.connect(lambda text: on_edit(spec.path, self._parsed(text)))
        self.editor.setToolTip(spec.tooltip())
        self.hint = QtWidgets.QLabel(spec.range_text())
        self.hint.setObjectName("muted")
        self.hint.setWordWrap(True)  # a long "one of: …" wraps rather than widen the form past its dock
        self.hint.setToolTip(spec.range_text())
        self.error = QtWidgets.QLabel()
        self.error.setObjectName("problems")
        self.error.setWordWrap(True)
        self.error.hide()
        self.container = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(self.container)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(1)
        grid.addWidget(self.editor, 0, 0)
        grid.addWidget(self.hint, 0, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        grid.addWidget(self.error, 1, 0, 1, 2)

    _RESET = object()

    def _parsed(self, text: str):
        # Clearing a field means "use the default": the key is taken out of the YAML.
        return FieldRow._RESET if not text.strip() else self.spec.parse(text)

    def _menu(self, pos, on_reset, on_goto) -> None:
        menu = QtWidgets.QMenu(self.label)
        menu.addAction(
            f"Reset {self.spec.name} to its default ({format_value(self.spec.default)})",
            lambda: on_reset(self.spec.path),
        )
        menu.addAction("Show in the YAML", lambda: on_goto(self.spec.path))
        menu.exec(self.label.mapToGlobal(pos))

    def show_value(self, value, explicit: bool) -> None:
        """Show ``value`` unless the user is typing in this very editor."""
        editor = self.editor
        if editor.hasFocus() and isinstance(editor, QtWidgets.QLineEdit):
            pass
        elif isinstance(editor, QtWidgets.QCheckBox):
            editor.blockSignals(True)
            editor.setChecked(bool(value))
            editor.blockSignals(False)
        elif isinstance(editor, QtWidgets.QComboBox):
            index = next((i for i in range(editor.count()) if editor.itemData(i) == value), -1)
            editor.blockSignals(True)
            if index < 0:
                # A value the schema does not allow (it is flagged): shown as written, not silently replaced.
                editor.addItem(format_value(value), value)
                index = editor.count() - 1
            editor.setCurrentIndex(index)
            editor.blockSignals(False)
        else:
            text = (
                ""
                if not explicit
                else (value if isinstance(value, str) and self.spec.kind == "str" else format_value(value))
            )
            if editor.text() != text:
                editor.setText(text)
        font = self.label.font()
        font.setBold(explicit)
        self.label.setFont(font)

    def show_problems(self, problems: list[Problem]) -> None:
        text = "\n".join(_strip_path(p.message, self.spec.path) for p in problems)
        self.error.setText(text)
        self.error.setToolTip(text)
        self.error.setVisible(bool(problems))
        # Hovering the field says what is wrong with it, whole, however narrow the form.
        self.editor.setToolTip(self.spec.tooltip() + (f"\n\n{text}" if text else ""))
        color = ERROR_COLOR if any(p.severity == "error" for p in problems) else WARNING_COLOR if problems else ""
        self.editor.setStyleSheet(
            f"border: 1px solid {color};" if color and isinstance(self.editor, QtWidgets.QLineEdit) else ""
        )


def _strip_path(message: str, path: str) -> str:
    return message[len(path) + 2 :] if message.startswith(path + ": ") else message


NARROW_FIELD_PX = 220  # below the label column plus this, the form puts each label above its field


class SchemaForm(QtWidgets.QWidget):
    """Every section and field of the config schema, with ranges and help; edits go out as ``edited``."""

    edited = QtCore.Signal(str, object)  # path, value (FieldRow._RESET: back to the default)
    resetRequested = QtCore.Signal(str)
    gotoRequested = QtCore.Signal(str)

    def __init__(self, document: ConfigDocument, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.rows: dict[str, FieldRow] = {}
        self.groups: dict[str, QtWidgets.QGroupBox] = {}
        self._forms: dict[str, QtWidgets.QFormLayout] = {}  # each group's layout, by section name
        self.section_problems: dict[str, QtWidgets.QLabel] = {}
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.filter = QtWidgets.QLineEdit()
        self.filter.setPlaceholderText("Filter fields (name or help text)…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter)
        layout.addWidget(self.filter)
        self.banner = QtWidgets.QLabel(
            "The YAML has a syntax error: the form shows the last values that parsed and "
            "is read-only until it is fixed."
        )
        self.banner.setObjectName("problems")
        self.banner.setWordWrap(True)
        self.banner.hide()
        layout.addWidget(self.banner)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        # Never sideways: hints and error messages wrap to the width there is instead of running off the edge.
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll_area = scroll
        inner = QtWidgets.QWidget()
        # One label width for every section, so the fields line up down the whole form.
        metrics = QtGui.QFontMetrics(
            QtGui.QFont(self.font().family(), self.font().pointSize(), QtGui.QFont.Weight.Bold)
        )
        label_width = (
            max((metrics.horizontalAdvance(f.name) for s in document.sections for f in s.fields), default=80) + 8
        )
        self.label_width = label_width
        self.narrow = False  # labels above their fields (see resizeEvent)
        column = QtWidgets.QVBoxLayout(inner)
        column.setContentsMargins(2, 2, 6, 2)
        for section in document.sections:
            box = QtWidgets.QGroupBox(section.name)
            box.setToolTip(section.description)
            form = QtWidgets.QFormLayout(box)
            form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            form.setLabelAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignTop)
            if section.description:
                about = QtWidgets.QLabel(section.description)
                about.setObjectName("muted")
                about.setWordWrap(True)
                form.addRow(about)
            # A rule about the section as a whole, wrapped here (a group box's title cannot wrap).
            problem = QtWidgets.QLabel()
            problem.setObjectName("problems")
            problem.setWordWrap(True)
            problem.hide()
            form.addRow(problem)
            self.section_problems[section.name] = problem
            for spec in section.fields:
                row = FieldRow(spec, self.edited.emit, self.resetRequested.emit, self.gotoRequested.emit)
                row.label.setMinimumWidth(label_width)
                row.label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
                self.rows[spec.path] = row
                form.addRow(row.label, row.container)
            self.groups[section.name] = box
            self._forms[section.name] = form
            column.addWidget(box)
        column.addStretch(1)
        scroll.setWidget(inner)
        layout.addWidget(scroll, 1)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        # Too narrow for a label column beside the fields (a side-by-side editor in a bottom dock of a small
        # screen): each label goes above its field, so nothing is cut off and nothing scrolls sideways.
        narrow = self.width() < self.label_width + NARROW_FIELD_PX
        if narrow != self.narrow:
            self.set_narrow(narrow)

    def set_narrow(self, narrow: bool) -> None:
        self.narrow = narrow
        policy = QtWidgets.QFormLayout.RowWrapPolicy
        for form in self._forms.values():
            form.setRowWrapPolicy(policy.WrapAllRows if narrow else policy.DontWrapRows)
        align = QtCore.Qt.AlignmentFlag.AlignLeft if narrow else QtCore.Qt.AlignmentFlag.AlignRight
        for row in self.rows.values():
            row.label.setMinimumWidth(0 if narrow else self.label_width)
            row.label.setAlignment(align | QtCore.Qt.AlignmentFlag.AlignVCenter)

    def refresh(self) -> None:
        doc = self.document
        syntax = doc.validation.syntax_error
        self.banner.setVisible(syntax)
        for path, row in self.rows.items():
            row.editor.setEnabled(not syntax)
            if not syntax:
                row.show_value(doc.value(path), doc.is_set(path))
            row.show_problems(doc.validation.for_path(path))
        for name, box in self.groups.items():
            section_problems = doc.validation.for_path(name)
            box.setTitle(f"{name}  ⚠" if section_problems else name)
            label = self.section_problems[name]
            text = "\n".join(_strip_path(p.message, name) for p in section_problems)
            label.setText(text)
            label.setToolTip(text)
            label.setVisible(bool(text))

    def focus_field(self, path: str) -> bool:
        row = self.rows.get(path)
        if row is None:
            box = self.groups.get(path.partition(".")[0])
            if box is not None:
                self.scroll_area.ensureWidgetVisible(box)
            return False
        self.scroll_area.ensureWidgetVisible(row.container)
        row.editor.setFocus()
        return True

    def _filter(self, text: str) -> None:
        words = text.lower().split()
        for name, box in self.groups.items():
            form = self._forms[name]
            any_shown = False
            for row in self.rows.values():
                if row.spec.section != name:
                    continue
                hay = f"{row.spec.path} {row.spec.description}".lower()
                shown = all(w in hay for w in words)
                form.setRowVisible(row.label, shown)
                any_shown |= shown
            box.setVisible(any_shown)
