"""The runs table's Qt model: runs and study trials under group headers, with the columns a person
compares runs by. What is shown, in which order and under which header is :mod:`gui.models.runs_query`'s.

The cells live in Qt's own item model, so that a repaint asks no Python for anything: the table is a
``QSortFilterProxyModel`` over a ``QStandardItemModel`` of every run and group header. A sort is Qt's,
by a key that :func:`~gui.models.runs_query.arrange` worked out once per field for every row (groups
and rows without a value included); a filter or a fold sets the rows' shown flag and Qt filters.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui

from gui.format import format_param
from gui.models.lab import RunRow, Scan, StudyInfo
from gui.models.runs_cells import BASE_COLUMNS, RowLook, headings, row_texts, table_columns
from gui.models.runs_query import Entry, Group, Query, QueryError, SortKeys, arrange, parse
from gui.models.table import Index, Role
from gui.theme import Theme

__all__ = ["BASE_COLUMNS", "RunsTableModel", "describe"]
Order = QtCore.Qt.SortOrder
SHOWN = Role.UserRole + 10  # on a row's first cell: "1" when the filter and the folds let it through
KEYS = Role.UserRole + 11  # then a role per field and direction sorted by: the rows' places


class RunsTableModel(QtCore.QSortFilterProxyModel):
    """Rows are :class:`RunRow` or a :class:`Group` header; the check box on a run overlays it on the plots."""

    overlayToggled = QtCore.Signal(Path, bool)
    arranged = QtCore.Signal()  # the rows were rebuilt or moved: the view lays out the group headers again

    def __init__(self, theme: Theme, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.overlaid: set[Path] = set()
        self.primary: Path | None = None
        self.runs: list[RunRow] = []
        self.studies: dict[str, StudyInfo] = {}
        self.query = Query()
        self.sort_field: str = "started"
        self.descending = True
        self.group_by: str | None = None
        self.collapsed: set[str] = set()
        self.fields: list[str] = []  # config fields shown as columns
        self._picked = False  # the user chose the fields: studies no longer add theirs
        self.look = RowLook(theme)
        self.columns = table_columns(self.fields, self.look.state_color)
        self._fields_known: list[str] = []
        self._keys = SortKeys([])
        self._matching: list[RunRow] | None = None  # the runs the filter lets through, until it or they change
        self._cells = QtGui.QStandardItemModel(self)
        self._entries: list[Entry] = []  # by source row: the runs, then the group headers
        self._ids: list[tuple[Any, ...]] = []  # by source row: its entry's identity
        self._where: dict[tuple[Any, ...], int] = {}  # an entry's identity -> its source row
        self._search: list[str] | None = None  # by run: what a filter's words are looked for in
        self._texts: list[list[str]] = []
        self._shown: list[bool] = []  # by source row: what its SHOWN flag says
        self._key_roles: dict[tuple[str, bool], int] = {}  # (field, descending) whose keys the cells hold: role
        self._rows: list[Entry] | None = None  # the entries in the table's order, until it changes
        self.setDynamicSortFilter(False)  # rows move and hide when asked, not on every change of a cell
        self.setFilterKeyColumn(0)
        self.setFilterRole(SHOWN)
        self.setFilterRegularExpression("^1$")
        for signal in (self.layoutChanged, self.modelReset, self.rowsInserted, self.rowsRemoved):
            signal.connect(self._forget_order)
        self.theme = theme

    @property
    def theme(self) -> Theme:
        return self._theme

    @theme.setter
    def theme(self, theme: Theme) -> None:
        self._theme = theme
        self.look = RowLook(theme)
        self.columns = table_columns(self.fields, self.look.state_color)
        self._rebuild()

    @property
    def rows(self) -> list[Entry]:
        """The entries in the order the table shows them."""
        if self._rows is None:
            at = self.mapToSource
            self._rows = [self._entries[at(self.index(r, 0)).row()] for r in range(self.rowCount())]
        return self._rows

    def group_rows(self) -> list[int]:
        """Where the group headers are in the table (without working out every row's place)."""
        cells, at = self._cells, self.mapFromSource
        first = len(self.runs)  # the headers follow the runs
        places = (at(cells.index(source, 0)).row() for source in range(first, len(self._entries)))
        return [row for row in places if row >= 0]

    def run_rows(self) -> list[RunRow]:
        return [e for e in self.rows if isinstance(e, RunRow)]

    def _forget_order(self, *_: object) -> None:
        self._rows = None

    # ------------------------------------------------------------ columns

    def column_field(self, column: int) -> str:
        """The field a column sorts by (the tags column: its text)."""
        keys = [k for k, _ in BASE_COLUMNS] + self.fields
        return keys[column] if column < len(keys) else "tags"

    def set_fields(self, fields: list[str]) -> None:
        self._picked = True
        if fields == self.fields:
            return
        self.fields = list(fields)
        self.columns = table_columns(self.fields, self.look.state_color)
        self._rebuild()

    def known_fields(self) -> list[str]:
        """Every config field some run has, and the studies' parameters: what a column or filter can name."""
        return self._fields_known

    # ---------------------------------------------------------------- data

    def set_scan(self, scan: Scan) -> None:
        before = self.runs
        same = [r.path for r in scan.runs] == [r.path for r in before] and scan.studies.keys() == self.studies.keys()
        self.runs = scan.runs
        self._keys = SortKeys(scan.runs)
        self._matching = None
        self._search = None
        self.studies = scan.studies
        known: dict[str, None] = {}
        for info in scan.studies.values():
            known.update(dict.fromkeys(info.params))
        for row in scan.runs:
            known.update(dict.fromkeys(row.config))
        self._fields_known = list(known)
        fields = self.fields if self._picked else [p for info in scan.studies.values() for p in info.params]
        # Until the user picks, the studies' parameters are the columns: a trial shows what was tried.
        if fields == self.fields and (same or self._splice(before)):
            self._refigure(moved=not same)
        else:
            self.fields = fields
            self.columns = table_columns(self.fields, self.look.state_color)
            self._rebuild()

    def set_filter(self, text: str) -> str | None:
        """Filter by ``text``; returns why it cannot (the previous filter stays) or None."""
        try:
            self.query = parse(text, self._fields_known)
        except QueryError as exc:
            return str(exc)
        self._matching = None
        self._show()
        return None

    def set_group_by(self, field: str | None) -> None:
        self.group_by = field or None
        self._rebuild()

    def toggle_group(self, key: str) -> None:
        self.collapsed ^= {key}
        self._show()

    def sort(self, column: int, order: Order = Order.AscendingOrder) -> None:
        field, descending = self.column_field(column), order == Order.DescendingOrder
        if (field, descending) == (self.sort_field, self.descending):
            return  # the rows are in this order already (QTableView.sortByColumn asks twice)
        self.sort_field, self.descending = field, descending
        self._sort()

    # --------------------------------------------------------------- cells

    def _rebuild(self) -> None:
        """Every run's and group header's cells, made again: the runs, the columns or the groups changed."""
        groups = self._arrange(self.runs)
        self._entries = [*self.runs, *(e for e in groups if isinstance(e, Group))]
        self._ids = [_identity(e) for e in self._entries]
        self._where = {identity: i for i, identity in enumerate(self._ids)}
        self._texts = [row_texts(e, self.columns) for e in self._entries]
        self._shown = [False] * len(self._entries)
        self._key_roles.clear()
        cells = QtGui.QStandardItemModel(0, len(self.columns), self)
        for section, heading in enumerate(headings(self.columns, self.fields)):
            cells.setHorizontalHeaderItem(section, heading)
        for entry, texts in zip(self._entries, self._texts):
            cells.appendRow(self._new_items(entry, texts))
        old, self._cells = self._cells, cells
        self.setSourceModel(cells)
        old.deleteLater()
        self._matching = None
        self._show(sort=True)

    def _new_items(self, entry: Entry, texts: list[str]) -> list[QtGui.QStandardItem]:
        return self.look.new_items(entry, texts, self.columns, self.overlaid, self.primary)

    def _splice(self, before: list[RunRow]) -> bool:
        """A scan that added or removed runs (the others in their order): only their rows, and the group headers
        that came or went, are made or removed, so the other rows' cells, the selection and the scroll stay.
        False when the runs moved among themselves or most of them changed: the table is made again."""
        new, old = {r.path for r in self.runs}, {r.path for r in before}
        survivors = [r.path for r in before if r.path in new]
        if survivors != [r.path for r in self.runs if r.path in old] or 2 * len(new ^ old) > len(self.runs):
            return False
        headers = {_identity(e): e for e in self._arrange(self.runs) if isinstance(e, Group)}
        rows = {  # identity -> entry, texts, shown: the rows that stay
            i: (self._entries[s], self._texts[s], self._shown[s])
            for s, i in enumerate(self._ids)
            if i in headers or (s < len(before) and before[s].path in new)
        }
        for source in reversed(range(len(self._ids))):
            if self._ids[source] not in rows:
                self._cells.removeRow(source)
        ids = [*(_identity(r) for r in self.runs), *(i for i in rows if i[0] == "group")]
        for source, row in enumerate(self.runs):
            if row.path not in old:
                rows[ids[source]] = (row, row_texts(row, self.columns), False)
                self._cells.insertRow(source, self._new_items(row, rows[ids[source]][1]))
        for identity, header in headers.items():
            if identity not in rows:
                rows[identity] = (header, row_texts(header, self.columns), False)
                self._cells.appendRow(self._new_items(header, rows[identity][1]))
                ids.append(identity)
        self._ids, self._where = ids, {identity: i for i, identity in enumerate(ids)}
        self._entries, self._texts = [rows[i][0] for i in ids], [rows[i][1] for i in ids]
        self._shown = [rows[i][2] for i in ids]
        return True

    def _items(self, source: int) -> list[QtGui.QStandardItem]:
        return [self._cells.item(source, c) for c in range(len(self.columns))]

    def tooltip(self, row: int) -> str:
        """The tooltip of the table's ``row`` (shown by the view over any of its cells)."""
        return describe(self.entry(row), self.studies)

    def entry(self, row: int) -> Entry:
        return self._entries[self.mapToSource(self.index(row, 0)).row()]

    def _refigure(self, moved: bool = False) -> None:
        """A scan of the same runs (``moved``: some came or went): the cells whose figures changed are set again,
        in place (the selection and the scroll stay), and the order and the filter are worked out again when
        any did."""
        changed = moved
        for source, row in enumerate(self.runs):
            before = self._entries[source]
            self._entries[source] = row
            if _same(row, before):
                continue
            changed = True  # a figure changed, whether a column shows it or not (a sort key, a filter's field)
            items, texts = self._items(source), row_texts(row, self.columns)
            for item, was, text in zip(items, self._texts[source], texts):
                if was != text:
                    item.setText(text)
            self._texts[source] = texts
            self.look.apply(row, items, self.columns, self.overlaid, self.primary)
        if changed:
            self._key_roles.clear()
        self._show(sort=changed)  # the filter may name a field no column shows

    def _show(self, sort: bool = False) -> None:
        """Which rows the filter and the folds let through, with the headers' counts; the order again when
        ``sort`` (the keys changed)."""
        if self._matching is None:
            if self._search is None:
                self._search = [r.search_text() for r in self.runs]
            matches = self.query.matches
            self._matching = [r for r, text in zip(self.runs, self._search) if matches(r, text)]
        shown = self._arrange(self._matching, collapsed=frozenset(self.collapsed))
        visible = {_identity(e): e for e in shown}
        first_header = len(self.runs)
        for source in range(first_header, len(self._ids)):  # a header's count or fold, said in its cell
            header = visible.get(self._ids[source])
            if header is not None and header != self._entries[source]:
                self._entries[source] = header
                self._cells.item(source, 0).setText(row_texts(header, self.columns)[0])
        flips = [(s, i in visible) for s, i in enumerate(self._ids) if (i in visible) != self._shown[s]]
        for source, on in flips:
            self._shown[source] = on
        _set_quietly(self._cells, ((s, "1" if on else "0") for s, on in flips), SHOWN)  # Qt filters once below
        flipped, revealed = bool(flips), any(on for _, on in flips)
        if flipped and hasattr(self, "endFilterChange"):  # Qt 6.10 on
            self.beginFilterChange()
            self.endFilterChange(QtCore.QSortFilterProxyModel.Direction.Rows)
        elif flipped:
            self.invalidateRowsFilter()
        if sort or revealed:  # Qt adds the rows a filter lets through again at the end, not in their place
            self._sort()
        if flipped:
            self.arranged.emit()

    def _sort(self) -> None:
        role = self._key_role(self.sort_field, self.descending)
        if self.sortColumn() == 0 and self.sortRole() != role:
            self.setSortRole(role)  # which sorts by it: Qt does on a new sort role, dynamic sorting or not
        else:
            self.setSortRole(role)
            super().sort(0, Order.AscendingOrder)
        self._rows = None  # the headers stay where they were: a sort moves rows only within their group

    def _key_role(self, field: str, descending: bool) -> int:
        """The role of ``field``'s key one way, put in the cells the first time it is sorted by so: each row's
        place in :func:`arrange`'s order of every row (Qt sorts ascending by either key: its descending order
        would also put the headers last)."""
        role = self._key_roles.get((field, descending))
        if role is not None:
            return role
        role = self._key_roles[field, descending] = KEYS + len(self._key_roles)
        ordered = self._arrange(self.runs, field, descending)
        _set_quietly(self._cells, ((self._where[_identity(e)], place) for place, e in enumerate(ordered)), role)
        return role

    def _arrange(
        self,
        runs: list[RunRow],
        field: str | None = None,
        descending: bool = False,
        collapsed: frozenset[str] = frozenset(),
    ) -> list[Entry]:
        """Every run, shown or not, grouped as asked (a sort's and a rescan's order); or those ``runs`` folded."""
        details = {name: info.summary() for name, info in self.studies.items()}
        keys = self._keys if runs is self.runs else None
        return arrange(runs, Query(), field, descending, self.group_by, details, collapsed, keys=keys)

    # ------------------------------------------------------------ overlays

    def set_overlaid(self, paths: set[Path], primary: Path | None) -> None:
        touched = (self.overlaid ^ set(paths)) | {self.primary, primary}
        self.overlaid, self.primary = set(paths), primary
        for path in touched:
            source = self._where.get(("run", path))
            if source is not None:
                self.look.apply(self._entries[source], self._items(source), self.columns, self.overlaid, primary)

    def setData(self, index: Index, value: Any, role: int = Role.EditRole) -> bool:
        entry = self.entry(index.row())
        if role == Role.CheckStateRole and index.column() == 0 and isinstance(entry, RunRow):
            on = QtCore.Qt.CheckState(value) == QtCore.Qt.CheckState.Checked
            self.overlayToggled.emit(entry.path, on)
            return True
        return False


def _set_quietly(cells: QtGui.QStandardItemModel, values: Iterable[tuple[int, Any]], role: int) -> None:
    """A value in each source row's first cell, without a signal per cell (the caller tells the proxy once)."""
    cells.blockSignals(True)
    try:
        for source, value in values:
            cells.item(source, 0).setData(value, role)
    finally:
        cells.blockSignals(False)


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


def _same(row: RunRow, old: Entry) -> bool:
    """Whether a scan's row shows what the one before it did."""
    return isinstance(old, RunRow) and (
        (row.summary, row.config, row.notes, row.problem, row.study, row.trial)
        == (old.summary, old.config, old.notes, old.problem, old.study, old.trial)
    )


def _identity(entry: Entry) -> tuple[Any, ...]:
    if isinstance(entry, Group):
        return ("group", entry.key)
    return ("run", entry.summary.path)
