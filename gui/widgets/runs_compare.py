"""What the runs table does with the runs a person selected: a config diff of two, parallel coordinates of
any number against a metric, a run's name, tags and note; and the choice of its columns."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6 import QtCore, QtWidgets

from engine.contract.notes import NotesError, make_notes, write_notes
from gui.format import format_param
from gui.models.lab import RunRow
from gui.models.runs_query import BUILTIN, value_of
from gui.models.study_model import parallel_data
from gui.theme import Theme
from gui.widgets.parallel_plot import ParallelPlot
from gui.widgets.study_charts import themed_plot

if TYPE_CHECKING:
    from engine.contract.notes_model import RunNotes

METRICS = ("last_val", "best_val", "value", "steps", "duration")


class ColumnsDialog(QtWidgets.QDialog):
    """Tick the config fields to show as columns; a search box narrows the long list."""

    def __init__(self, fields: list[str], shown: list[str], parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Columns")
        layout = QtWidgets.QVBoxLayout(self)
        self.search = QtWidgets.QLineEdit(placeholderText="search fields, e.g. lr")
        self.search.setClearButtonEnabled(True)
        self.list = QtWidgets.QListWidget()
        # Shown ones first, in their order, then every other field alphabetically.
        for name in [*shown, *sorted(f for f in fields if f not in shown)]:
            item = QtWidgets.QListWidgetItem(name)
            item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(QtCore.Qt.CheckState.Checked if name in shown else QtCore.Qt.CheckState.Unchecked)
            self.list.addItem(item)
        self.search.textChanged.connect(self._narrow)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        layout.addWidget(buttons)
        self.resize(380, 520)

    def _narrow(self, text: str) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setHidden(text.lower() not in item.text().lower())

    def chosen(self) -> list[str]:
        items = [self.list.item(i) for i in range(self.list.count())]
        return [i.text() for i in items if i.checkState() == QtCore.Qt.CheckState.Checked]


class ConfigDiffDialog(QtWidgets.QDialog):
    """The config fields where two runs differ (every field on request)."""

    def __init__(self, a: RunRow, b: RunRow, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Config: {a.title} vs {b.title}")
        self.a, self.b = a, b
        layout = QtWidgets.QVBoxLayout(self)
        self.summary = QtWidgets.QLabel()
        self.summary.setWordWrap(True)
        self.show_all = QtWidgets.QCheckBox("Show equal fields too")
        self.show_all.toggled.connect(self._fill)
        self.table = QtWidgets.QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["field", a.title, b.title])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.summary)
        layout.addWidget(self.show_all)
        layout.addWidget(self.table, 1)
        self._fill()
        self.resize(760, 480)

    def differences(self) -> list[tuple[str, Any, Any]]:
        return [(f, x, y) for f, x, y in self._rows() if not _same(x, y)]

    def _rows(self) -> list[tuple[str, Any, Any]]:
        fields = sorted(set(self.a.config) | set(self.b.config))
        return [(f, self.a.config.get(f), self.b.config.get(f)) for f in fields]

    def _fill(self) -> None:
        rows = self._rows() if self.show_all.isChecked() else self.differences()
        self.table.setRowCount(len(rows))
        for r, (field, x, y) in enumerate(rows):
            for c, text in enumerate((field, _cell(x), _cell(y))):
                item = QtWidgets.QTableWidgetItem(text)
                if c and not _same(x, y):
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        n = len(self.differences())
        problems = [f"{r.title}: {r.problem}" for r in (self.a, self.b) if r.problem]
        text = f"{n} field{'s' if n != 1 else ''} differ" if n else "The configs are the same"
        self.summary.setText("\n".join([text, *problems]))


class ParallelDialog(QtWidgets.QDialog):
    """The selected runs' fields on parallel axes, ending in a metric; lines coloured by it."""

    def __init__(self, runs: list[RunRow], fields: list[str], theme: Theme, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Parallel coordinates of {len(runs)} runs")
        self.runs = runs
        # The fields where the selected runs differ: equal ones would be flat lines.
        varying = [f for f in _all_fields(runs) if len({repr(value_of(r, f)) for r in runs}) > 1]
        self.fields = [f for f in fields if f in varying] or varying[:8]
        layout = QtWidgets.QVBoxLayout(self)
        row = QtWidgets.QHBoxLayout()
        self.metric_combo = QtWidgets.QComboBox()
        self.metric_combo.addItems(list(METRICS))
        self.direction_combo = QtWidgets.QComboBox()
        self.direction_combo.addItems(["minimize", "maximize"])
        self.note = QtWidgets.QLabel()
        row.addWidget(QtWidgets.QLabel("Metric"))
        row.addWidget(self.metric_combo)
        row.addWidget(QtWidgets.QLabel("better is"))
        row.addWidget(self.direction_combo)
        row.addWidget(self.note, 1)
        layout.addLayout(row)
        self.chart = themed_plot(theme, "Parallel coordinates")
        self.parallel = ParallelPlot(self.chart, theme)
        layout.addWidget(self.chart, 1)
        self.metric_combo.currentTextChanged.connect(self.redraw)
        self.direction_combo.currentTextChanged.connect(self.redraw)
        self.redraw()
        self.resize(900, 480)

    def redraw(self) -> None:
        metric = self.metric_combo.currentText()
        rows = []
        for i, run in enumerate(self.runs):
            value = value_of(run, metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                rows.append((i, {f: value_of(run, f) for f in self.fields}, float(value)))
        data = parallel_data(self.fields, _space(self.runs, self.fields), metric, rows)
        self.parallel.draw(data, self.direction_combo.currentText())
        left_out = len(self.runs) - len(rows)
        self.note.setText(f"{left_out} run(s) without {metric} left out" if left_out else "")


class NotesDialog(QtWidgets.QDialog):
    """A run's name, tags and note, saved to its notes.json."""

    saved = QtCore.Signal()
    _written = QtCore.Signal(object)  # from the worker thread: None, or why the write failed

    def __init__(
        self,
        run: RunRow,
        parent: QtWidgets.QWidget | None = None,
        store: Callable[[Path, RunNotes], object] | None = None,
    ):
        """``store`` writes the notes where the run is (a server's, through its access), in a worker thread:
        an SSH round trip must not freeze the window. Without it they go to this disk, at once."""
        super().__init__(parent)
        self.run = run
        self.store = store
        self.setWindowTitle(f"Notes of {run.summary.name}")
        notes = run.notes
        form = QtWidgets.QFormLayout(self)
        self.name = QtWidgets.QLineEdit(notes.name if notes else "")
        self.name.setPlaceholderText(run.summary.name)
        self.tags = QtWidgets.QLineEdit(" ".join(notes.tags) if notes else "")
        self.tags.setPlaceholderText("words separated by spaces, e.g. baseline long-warmup")
        self.note = QtWidgets.QPlainTextEdit(notes.note if notes else "")
        self.problem = QtWidgets.QLabel(f"⚠ {run.problem}" if run.problem else "")
        self.problem.setWordWrap(True)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Save | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        self.save_button = buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Save)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        self._written.connect(self._on_written)
        form.addRow("Name", self.name)
        form.addRow("Tags", self.tags)
        form.addRow("Note", self.note)
        form.addRow(self.problem)
        form.addRow(buttons)
        self.resize(520, 360)

    def save(self) -> bool:
        """False when the notes are not valid or could not be written here; a server's write goes on in the
        background, the dialog saying "Saving…" and closing once the notes are there."""
        try:
            notes = make_notes(self.name.text(), self.tags.text().replace(",", " ").split(), self.note.toPlainText())
            if self.store is None:
                write_notes(self.run.path, notes)
        except (NotesError, OSError) as exc:
            self.problem.setText(f"Not saved: {exc}")
            return False
        if self.store is None:
            self._on_written(None)
            return True
        self.problem.setText("Saving…")
        self.save_button.setEnabled(False)
        store = self.store
        QtCore.QThreadPool.globalInstance().start(lambda: self._write(store, notes))
        return True

    def _write(self, store: Callable[[Path, RunNotes], object], notes: RunNotes) -> None:
        try:
            store(self.run.path, notes)
            failure = None
        except Exception as exc:  # whatever the write raised must reach the dialog, or it says "Saving…" forever
            failure = str(exc) or type(exc).__name__
        try:
            self._written.emit(failure)
        except RuntimeError:  # the dialog went away while the write ran
            pass

    def _on_written(self, failure: str | None) -> None:
        self.save_button.setEnabled(True)
        if failure is not None:  # the dialog stays open with what was typed, to retry or copy
            self.problem.setText(f"Not saved: {failure}")
            return
        self.problem.clear()
        self.saved.emit()
        self.accept()


def _all_fields(runs: list[RunRow]) -> list[str]:
    fields: dict[str, None] = {}
    for run in runs:
        fields.update(dict.fromkeys(run.trial.params if run.trial else {}))
    for run in runs:
        fields.update(dict.fromkeys(run.config))
    return [f for f in fields if f not in BUILTIN]


def _space(runs: list[RunRow], fields: list[str]) -> dict[str, dict[str, Any]]:
    """Log axes for positive numbers spanning two decades or more (learning rates), as a study's space says."""
    space: dict[str, dict[str, Any]] = {}
    for f in fields:
        values = [value_of(r, f) for r in runs]
        numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers and len(numbers) == len(values) and min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
            space[f] = {"log": True, "low": min(numbers), "high": max(numbers)}
    return space


def _same(x: Any, y: Any) -> bool:
    return bool(x == y) and type(x) is type(y)


def _cell(value: Any) -> str:
    return "(not set)" if value is None else format_param(value)
