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
from gui.models.runs_query import Entry, Group, Query, QueryError, SortKeys, arrange, parse, value_of
from gui.models.table import ALIGN_RIGHT, Column, Index, Role, RowTableModel
from gui.theme import Theme

_DISPLAY, _FONT, _FOREGROUND, _BACKGROUND, _CHECK, _ALIGN, _TOOLTIP = (
    int(r.value)
    for r in (
        Role.DisplayRole,
        Role.FontRole,
        Role.ForegroundRole,
        Role.BackgroundRole,
        Role.CheckStateRole,
        Role.TextAlignmentRole,
        Role.ToolTipRole,
    )
)
_ROLES = frozenset(
    (
        _DISPLAY,
        _FONT,
        _FOREGROUND,
        _BACKGROUND,
        _CHECK,
        _ALIGN,
        _TOOLTIP,
        RowTableModel.SORT_ROLE,
        RowTableModel.ROW_ROLE,
    )
)
_PAINTED = frozenset((_DISPLAY, _FONT, _FOREGROUND, _BACKGROUND, _CHECK, _ALIGN))  # what a repaint asks for
_PLAIN = QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable
_CHECKABLE = _PLAIN | QtCore.Qt.ItemFlag.ItemIsUserCheckable

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
        self._keys = SortKeys([])
        self._matching: list[RunRow] | None = None  # the runs the filter lets through, until it or they change
        # A row's texts and painted values by its identity, so a sort that only moves rows works out nothing again.
        self._texts: dict[tuple[Any, ...], list[str]] = {}
        self._cells: dict[tuple[Any, ...], list[dict[int, Any]]] = {}
        self._colors: dict[str | None, QtGui.QColor] = {}
        self._bold_font = QtGui.QFont()
        self._bold_font.setBold(True)
        self._group_background: QtGui.QColor | None = None
        self.set_theme(theme)

    @property
    def theme(self) -> Theme:
        return self._theme

    @theme.setter
    def theme(self, theme: Theme) -> None:
        self.set_theme(theme)

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self._colors.clear()
        self._group_background = QtGui.QColor(theme.axis).lighter(170) if theme.name == "light" else None
        self._changed()

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
        self._forget_cells()
        self.columns = self._columns()
        self.endResetModel()
        self.arranged.emit()

    def known_fields(self) -> list[str]:
        """Every config field some run has, and the studies' parameters: what a column or filter can name."""
        return self._fields_known

    # ---------------------------------------------------------------- data

    def set_scan(self, scan: Scan) -> None:
        self.runs = scan.runs
        self._keys = SortKeys(scan.runs)
        self._matching = None
        self._forget_cells()
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
        self.apply(refigured=True)

    def set_filter(self, text: str) -> str | None:
        """Filter by ``text``; returns why it cannot (the previous filter stays) or None."""
        try:
            self.query = parse(text, self._fields_known)
        except QueryError as exc:
            return str(exc)
        self._matching = None
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

    def apply(self, refigured: bool = False) -> None:
        """Filter, sort and group the runs again; ``refigured``: a scan brought newer figures for them."""
        if self._matching is None:
            self._matching = [r for r in self.runs if self.query.matches(r)]
        entries = arrange(
            self._matching,
            Query(),
            self.sort_field,
            self.descending,
            self.group_by,
            {name: info.summary() for name, info in self.studies.items()},
            frozenset(self.collapsed),
            self._keys,
        )
        old = [_identity(e) for e in self.rows]
        new = [_identity(e) for e in entries]
        if new == old:
            # The same rows, newer figures: repainted in place, so the selection and scroll stay.
            self.rows = entries
            if refigured:
                self._changed()
        elif len(new) == len(old) and set(new) == set(old):
            self._reorder(entries, new)
        else:
            self.set_rows(entries)
            self.arranged.emit()

    def _reorder(self, entries: list[Entry], identities: list[tuple[Any, ...]]) -> None:
        """The same rows in another order (a sort): one layout change, the selection following its rows."""
        self.layoutAboutToBeChanged.emit()
        where = {identity: row for row, identity in enumerate(identities)}
        moved = self.persistentIndexList()
        self.changePersistentIndexList(
            moved, [self.index(where[_identity(self.rows[i.row()])], i.column()) for i in moved]
        )
        self.rows = entries
        self.layoutChanged.emit()
        if any(isinstance(e, Group) for e in entries):
            self.arranged.emit()

    def run_rows(self) -> list[RunRow]:
        return [e for e in self.rows if isinstance(e, RunRow)]

    # ------------------------------------------------------------ overlays

    def set_overlaid(self, paths: set[Path], primary: Path | None) -> None:
        self.overlaid, self.primary = set(paths), primary
        self._changed()

    def _changed(self) -> None:
        self._forget_cells()
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
        return describe(entry, self.studies)

    # A table repaint asks each visible cell for several roles through the Python bridge: the answers are
    # kept per row until the rows or their figures change, and roles nobody sets here return at once.

    def flags(self, index: Index) -> QtCore.Qt.ItemFlag:
        if index.column() == 0 and not isinstance(self.rows[index.row()], Group):
            return _CHECKABLE
        return _PLAIN

    def data(self, index: Index, role: int = Role.DisplayRole) -> Any:
        if role not in _ROLES:
            return None
        if role in (RowTableModel.SORT_ROLE, RowTableModel.ROW_ROLE):
            return super().data(index, role)
        return self._value(index.row(), index.column(), role)

    def multiData(self, index: Index, span: QtCore.QModelRoleDataSpan | QtCore.QModelRoleData) -> None:
        """Every role a cell's painting asks for, in one call (Qt's default asks ``data`` once per role),
        from the row's painted values, worked out once per row until its figures change."""
        row, column = index.row(), index.column()
        key = _identity(self.rows[row])
        cells = self._cells.get(key)
        if cells is None:
            cells = self._cells[key] = [
                {r: v for r in _PAINTED if (v := self._value(row, c, r)) is not None} for c in range(len(self.columns))
            ]
        values = cells[column]
        roles: Any = span  # a sequence of QModelRoleData at run time; PySide's stubs do not say so
        for i in range(len(roles)):
            slot = roles[i]
            role = slot.role()
            value = values.get(role) if role in _PAINTED else self._value(row, column, role) if role in _ROLES else None
            if value is None:
                slot.clearData()
            else:
                slot.setData(value)

    def _value(self, row: int, column: int, role: int) -> Any:
        if role == _DISPLAY:
            entry = self.rows[row]
            key = _identity(entry)
            texts = self._texts.get(key)
            if texts is None:
                texts = self._texts[key] = self._row_texts(entry)
            return texts[column]
        entry = self.rows[row]
        if isinstance(entry, Group):
            if role == _BACKGROUND:
                return self._group_background
            if role == _FONT:
                return self._bold_font
            return self.tooltip(entry) if role == _TOOLTIP else None
        if role == _CHECK:
            if column:
                return None
            on = entry.path in self.overlaid
            return QtCore.Qt.CheckState.Checked if on else QtCore.Qt.CheckState.Unchecked
        if role == _FOREGROUND:
            if column == 0 and entry.problem:
                return self._colors.setdefault("failed", QtGui.QColor(self.theme.state_colors["failed"]))
            color = self.columns[column].color
            name = color(entry) if color is not None else None
            return self._colors.setdefault(name, QtGui.QColor(name)) if name else None
        if role == _FONT:
            return self._bold_font if entry.path == self.primary else None
        if role == _ALIGN:
            return ALIGN_RIGHT if self.columns[column].right else None
        if role == _TOOLTIP:
            return self.tooltip(entry)
        return None

    def _forget_cells(self) -> None:
        self._texts.clear()
        self._cells.clear()

    def _row_texts(self, entry: Entry) -> list[str]:
        if isinstance(entry, Group):
            fold = "▸" if entry.collapsed else "▾"
            title = f"{fold} {entry.title}  ·  {entry.detail}" if entry.detail else f"{fold} {entry.title}"
            return [title] + [""] * (len(self.columns) - 1)
        return [c.text(entry) for c in self.columns]

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


def describe(entry: Entry, studies: dict[str, StudyInfo]) -> str:
    """A row's tooltip: where the run is, how far it got, its trial and note, what to do with it."""
    if isinstance(entry, Group):
        info = studies.get(entry.study or "")
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


def _identity(entry: Entry) -> tuple[Any, ...]:
    if isinstance(entry, Group):
        return ("group", entry.key, entry.collapsed, entry.detail)
    return ("run", entry.summary.path)


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
