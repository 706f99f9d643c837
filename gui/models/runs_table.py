"""The runs table's Qt model: runs and study trials under group headers, with the columns a person
compares runs by. Filtering, sorting and grouping are :mod:`gui.models.runs_query`'s."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui

from gui.format import format_duration_coarse, format_loss, format_param
from gui.models.lab import RunRow, Scan, StudyInfo
from gui.models.runs_query import Entry, Group, Query, QueryError, arrange, parse, value_of
from gui.models.table import Column, Index, Role, RowTableModel
from gui.theme import Theme

# (field the column sorts by, title, text); picked config fields follow these, then the tags.
BASE_COLUMNS: list[tuple[str, str]] = [
    ("name", "Run"),
    ("state", "State"),
    ("started", "Started"),
    ("duration", "Duration"),
    ("steps", "Steps"),
    ("best_val", "Best val"),
    ("last_val", "Last val"),
]


class RunsTableModel(RowTableModel[Entry]):
    """Rows are :class:`RunRow` or a :class:`Group` header; the check box on a run overlays it on the plots."""

    overlayToggled = QtCore.Signal(Path, bool)
    arranged = QtCore.Signal()  # the rows were rebuilt: the view lays out the group headers again

    def __init__(self, theme: Theme, parent: QtCore.QObject | None = None):
        super().__init__(parent=parent)
        self.theme = theme
        self.overlaid: set[Path] = set()
        self.primary: Path | None = None
        self.runs: list[RunRow] = []
        self.studies: dict[str, StudyInfo] = {}
        self.query = Query()
        self.sort_field: str | None = "started"
        self.descending = True
        self.group_by: str | None = None
        self.collapsed: set[str] = set()
        self.fields: list[str] = []  # config fields shown as columns
        self._picked = False  # the user chose the fields: studies no longer add theirs
        self.columns = self._columns()
        self._fields_known: list[str] = []

    # ------------------------------------------------------------ columns

    def _columns(self) -> list[Column[Entry]]:
        texts: dict[str, Callable[[RunRow], str]] = {
            "name": lambda r: r.title,
            "state": lambda r: r.state.replace("_", " "),
            "started": lambda r: _started(r.summary.start_time),
            "duration": lambda r: "" if r.duration_s is None else format_duration_coarse(r.duration_s),
            "steps": lambda r: (
                f"{r.summary.step}/{r.summary.total_steps}" if r.summary.total_steps else str(r.summary.step)
            ),
            "best_val": lambda r: format_loss(r.summary.best_val_loss),
            "last_val": lambda r: format_loss(r.summary.last_val_loss),
        }
        right = {"duration", "steps", "best_val", "last_val"}
        columns = [
            Column(title, _runs_only(texts[key]), right=key in right, color=self._color if key == "state" else None)
            for key, title in BASE_COLUMNS
        ]
        columns += [Column(f, _runs_only(_field_text(f)), right=True) for f in self.fields]
        columns.append(Column("Tags", _runs_only(_tags_text)))
        return columns

    def column_field(self, column: int) -> str | None:
        """The field a column sorts by (None: the tags column, sorted by its text)."""
        keys = [k for k, _ in BASE_COLUMNS] + self.fields
        return keys[column] if column < len(keys) else "tags"

    def set_fields(self, fields: list[str]) -> None:
        self._picked = True
        self._set_fields(fields)

    def _set_fields(self, fields: list[str]) -> None:
        if fields == self.fields:
            return
        self.fields = list(fields)
        self.beginResetModel()
        self.columns = self._columns()
        self.endResetModel()
        self.arranged.emit()

    def known_fields(self) -> list[str]:
        """Every config field some run has, and the studies' parameters: what a column or filter can name."""
        return self._fields_known

    # ---------------------------------------------------------------- data

    def set_scan(self, scan: Scan) -> None:
        self.runs = scan.runs
        self.studies = scan.studies
        known: dict[str, None] = {}
        for info in scan.studies.values():
            known.update(dict.fromkeys(info.params))
        for row in scan.runs:
            known.update(dict.fromkeys(row.config))
        self._fields_known = list(known)
        if not self._picked:
            # Until the user picks, the studies' parameters are the columns: a trial shows what was tried.
            self._set_fields([p for info in scan.studies.values() for p in info.params])
        self.apply()

    def set_filter(self, text: str) -> str | None:
        """Filter by ``text``; returns why it cannot (the previous filter stays) or None."""
        try:
            self.query = parse(text, self._fields_known)
        except QueryError as exc:
            return str(exc)
        self.apply()
        return None

    def set_group_by(self, field: str | None) -> None:
        self.group_by = field or None
        self.apply()

    def toggle_group(self, key: str) -> None:
        self.collapsed ^= {key}
        self.apply()

    def sort(self, column: int, order: QtCore.Qt.SortOrder = QtCore.Qt.SortOrder.AscendingOrder) -> None:
        self.sort_field = self.column_field(column)
        self.descending = order == QtCore.Qt.SortOrder.DescendingOrder
        self.apply()

    def apply(self) -> None:
        entries = arrange(
            self.runs,
            self.query,
            self.sort_field,
            self.descending,
            self.group_by,
            {name: info.summary() for name, info in self.studies.items()},
            frozenset(self.collapsed),
        )
        if [_identity(e) for e in entries] == [_identity(e) for e in self.rows]:
            # The same rows, newer figures: repainted in place, so the selection and scroll stay.
            self.rows = entries
            self._changed()
            return
        self.set_rows(entries)
        self.arranged.emit()

    def run_rows(self) -> list[RunRow]:
        return [e for e in self.rows if isinstance(e, RunRow)]

    # ------------------------------------------------------------ overlays

    def set_overlaid(self, paths: set[Path], primary: Path | None) -> None:
        self.overlaid, self.primary = set(paths), primary
        self._changed()

    def _changed(self) -> None:
        if self.rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(self.columns) - 1))

    # ------------------------------------------------------------- Qt model

    def _color(self, entry: Entry) -> str | None:
        if isinstance(entry, Group):
            return None
        return str(self.theme.state_colors.get(entry.state, self.theme.fg))

    def bold(self, entry: Entry, column: Column[Entry]) -> bool:
        return isinstance(entry, Group) or entry.path == self.primary

    def tooltip(self, entry: Entry) -> str:
        if isinstance(entry, Group):
            info = self.studies.get(entry.study or "")
            where = f"\n{info.folder}" if info else ""
            action = "double-click to open the study panel" if entry.study else "click to fold or unfold"
            return f"{entry.title}: {entry.detail}{where}\n{action}"
        run = entry.summary
        lines = [
            str(run.path),
            f"state: {entry.state}, step {run.step}" + (f" of {run.total_steps}" if run.total_steps else ""),
        ]
        if run.start_time:
            lines[-1] += time.strftime(", started %Y-%m-%d %H:%M", time.localtime(run.start_time))
        if run.end_reason:
            lines[-1] += f" ({run.end_reason})"
        if entry.trial is not None:
            t = entry.trial
            params = ", ".join(f"{k}={format_param(v)}" for k, v in t.params.items())
            lines.append(f"trial {t.number} of study {entry.study}: {t.state.lower()}, value {format_param(t.value)}")
            lines.append(params)
        if entry.notes is not None and entry.notes.note:
            lines.append("note: " + entry.notes.note[:300])
        if entry.problem:
            lines.append("⚠ " + entry.problem)
        lines.append("double-click to open; tick to overlay on the plots; right-click for more")
        return "\n".join(lines)

    def flags(self, index: Index) -> QtCore.Qt.ItemFlag:
        base = QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0 and isinstance(self.rows[index.row()], RunRow):
            base |= QtCore.Qt.ItemFlag.ItemIsUserCheckable
        return base

    def data(self, index: Index, role: int = Role.DisplayRole) -> Any:
        entry = self.rows[index.row()]
        if isinstance(entry, Group):
            if role == Role.DisplayRole and index.column() == 0:
                fold = "▸" if entry.collapsed else "▾"
                return f"{fold} {entry.title}  ·  {entry.detail}" if entry.detail else f"{fold} {entry.title}"
            if role == Role.BackgroundRole:
                return QtGui.QColor(self.theme.axis).lighter(170) if self.theme.name == "light" else None
            if role in (Role.FontRole, Role.ToolTipRole):
                return super().data(index, role)
            return None
        if role == Role.CheckStateRole and index.column() == 0:
            on = entry.path in self.overlaid
            return QtCore.Qt.CheckState.Checked if on else QtCore.Qt.CheckState.Unchecked
        if role == Role.ForegroundRole and index.column() == 0 and entry.problem:
            return QtGui.QColor(self.theme.state_colors["failed"])
        return super().data(index, role)

    def setData(self, index: Index, value: Any, role: int = Role.EditRole) -> bool:
        entry = self.rows[index.row()]
        if role == Role.CheckStateRole and index.column() == 0 and isinstance(entry, RunRow):
            on = QtCore.Qt.CheckState(value) == QtCore.Qt.CheckState.Checked
            self.overlayToggled.emit(entry.path, on)
            return True
        return False

    def headerData(self, section: int, orientation: QtCore.Qt.Orientation, role: int = Role.DisplayRole) -> Any:
        if orientation == QtCore.Qt.Orientation.Horizontal and role == Role.ToolTipRole:
            field = self.column_field(section)
            return f"sorts by {field}; filter with e.g. {field} > 0" if field in self.fields else None
        return super().headerData(section, orientation, role)


def _identity(entry: Entry) -> tuple[Any, ...]:
    return ("group", entry.key, entry.collapsed) if isinstance(entry, Group) else ("run", entry.path)


def _runs_only(text: Callable[[RunRow], str]) -> Callable[[Entry], str]:
    return lambda e: "" if isinstance(e, Group) else text(e)


def _field_text(field: str) -> Callable[[RunRow], str]:
    return lambda r: format_param(value_of(r, field))


def _tags_text(row: RunRow) -> str:
    text = " ".join(f"#{t}" for t in row.tags)
    if row.notes is not None and row.notes.note:
        text = f"{text} ✎" if text else "✎"
    return text


def _started(start: float | None) -> str:
    if not start:
        return "—"
    started = time.localtime(start)
    # Today's runs by time, older ones by date: the column stays narrow.
    same_day = time.strftime("%Y%m%d", started) == time.strftime("%Y%m%d")
    return time.strftime("%H:%M" if same_day else "%b %d", started)
