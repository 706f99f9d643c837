"""A Qt table model over a list of rows, described column by column.

A table is its rows plus one :class:`Column` per column: the text, how it
sorts, its alignment and colour. Subclasses add only what is not per column
(a row's font, its tooltip). Views sort through a ``QSortFilterProxyModel``
with ``setSortRole(RowTableModel.SORT_ROLE)`` and find a row's object under
``ROW_ROLE``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PySide6 import QtCore, QtGui

Row = TypeVar("Row")
Role = QtCore.Qt.ItemDataRole
ALIGN_RIGHT = int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
Index = QtCore.QModelIndex | QtCore.QPersistentModelIndex
ROOT = QtCore.QModelIndex()  # a table's rows hang off the invalid index


@dataclass(frozen=True)
class Column(Generic[Row]):
    title: str
    text: Callable[[Row], str]
    sort: Callable[[Row], Any] | None = None  # the sort key; None: the text
    right: bool = False  # numbers: right-aligned, so their digits line up
    color: Callable[[Row], str | None] | None = None  # the text's colour (a "#rrggbb" name), None: the view's


class RowTableModel(QtCore.QAbstractTableModel, Generic[Row]):
    SORT_ROLE = Role.UserRole + 1
    ROW_ROLE = Role.UserRole + 2

    def __init__(self, columns: Sequence[Column[Row]] = (), parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.columns: list[Column[Row]] = list(columns)
        self.rows: list[Row] = []

    def set_rows(self, rows: Sequence[Row], columns: Sequence[Column[Row]] | None = None) -> None:
        """Show these rows (and these columns, when they change with the data)."""
        self.beginResetModel()
        self.rows = list(rows)
        if columns is not None:
            self.columns = list(columns)
        self.endResetModel()

    def bold(self, row: Row, column: Column[Row]) -> bool:
        """Whether the cell is set in bold (a row that stands out)."""
        return False

    def tooltip(self, row: Row) -> str | None:
        return None

    def rowCount(self, parent: Index = ROOT) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = ROOT) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: QtCore.Qt.Orientation, role: int = Role.DisplayRole) -> Any:
        if orientation == QtCore.Qt.Orientation.Horizontal and role == Role.DisplayRole:
            return self.columns[section].title
        return None

    def data(self, index: Index, role: int = Role.DisplayRole) -> Any:
        row = self.rows[index.row()]
        column = self.columns[index.column()]
        if role == Role.DisplayRole:
            return column.text(row)
        if role == self.SORT_ROLE:
            return column.sort(row) if column.sort is not None else column.text(row)
        if role == self.ROW_ROLE:
            return row
        if role == Role.ForegroundRole and column.color is not None:
            color = column.color(row)
            return QtGui.QColor(color) if color is not None else None
        if role == Role.FontRole and self.bold(row, column):
            font = QtGui.QFont()
            font.setBold(True)
            return font
        if role == Role.ToolTipRole:
            return self.tooltip(row)
        if role == Role.TextAlignmentRole and column.right:
            return ALIGN_RIGHT
        return None
