"""The runs table's columns and how a row's cells look (colours, bold, check box), for
:mod:`gui.models.runs_table`, which keeps them in Qt's own item model."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6 import QtCore, QtGui

from gui.format import format_duration_coarse, format_loss, format_param
from gui.models.lab import RunRow
from gui.models.runs_query import Entry, Group, value_of
from gui.models.table import ALIGN_RIGHT, Column, Role
from gui.theme import Theme

Checked, Unchecked = QtCore.Qt.CheckState.Checked, QtCore.Qt.CheckState.Unchecked
_ALIGN = int(Role.TextAlignmentRole)

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


def table_columns(fields: list[str], state_color: Callable[[Entry], str | None]) -> list[Column[Entry]]:
    """The base columns, then one per config field, then the tags."""
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
        Column(title, _runs_only(texts[key]), right=key in right, color=state_color if key == "state" else None)
        for key, title in BASE_COLUMNS
    ]
    columns += [Column(f, _runs_only(_field_text(f)), right=True) for f in fields]
    columns.append(Column("Tags", _runs_only(_tags_text)))
    return columns


def headings(columns: list[Column[Entry]], fields: list[str]) -> list[QtGui.QStandardItem]:
    """The header's items (in the cells too, so that a header's repaint asks no Python); a config field's says
    how to sort and filter by it."""
    items = []
    for column in columns:
        item = QtGui.QStandardItem(column.title)
        if column.title in fields:
            item.setToolTip(f"sorts by {column.title}; filter with e.g. {column.title} > 0")
        items.append(item)
    return items


def row_texts(entry: Entry, columns: list[Column[Entry]]) -> list[str]:
    """What a row's cells say: a group header's title (with its fold and detail) spans the row."""
    if isinstance(entry, Group):
        fold = "▸" if entry.collapsed else "▾"
        title = f"{fold} {entry.title}  ·  {entry.detail}" if entry.detail else f"{fold} {entry.title}"
        return [title] + [""] * (len(columns) - 1)
    return [c.text(entry) for c in columns]


class RowLook:
    """How a row's cells look: the state's colour, a problem in red, the primary run in bold, a group header
    shaded; the run's check box says whether it is overlaid on the plots."""

    def __init__(self, theme: Theme):
        self.theme = theme
        self.bold = QtGui.QFont()
        self.bold.setBold(True)
        self._colors: dict[str, QtGui.QColor] = {}

    def state_color(self, entry: Entry) -> str | None:
        return None if isinstance(entry, Group) else str(self.theme.state_colors.get(entry.state, self.theme.fg))

    def new_items(
        self, entry: Entry, texts: list[str], columns: list[Column[Entry]], overlaid: set[Path], primary: Path | None
    ) -> list[QtGui.QStandardItem]:
        """A row's cells, made with their look."""
        items = [QtGui.QStandardItem(t) for t in texts]
        for item, column in zip(items, columns):
            if column.right:
                item.setData(ALIGN_RIGHT, _ALIGN)  # an int: a Qt flag would cost a conversion per cell
        self.apply(entry, items, columns, overlaid, primary, fresh=True)
        return items

    def apply(
        self,
        entry: Entry,
        items: list[QtGui.QStandardItem],
        columns: list[Column[Entry]],
        overlaid: set[Path],
        primary: Path | None,
        fresh: bool = False,
    ) -> None:
        """``fresh`` items have no look yet, so nothing needs clearing (a table of 500 runs is made faster)."""
        if isinstance(entry, Group):
            if self.theme.name == "light":
                background = QtGui.QColor(self.theme.axis).lighter(170)
                for item in items:
                    item.setBackground(background)
            items[0].setFont(self.bold)
            return
        first = items[0]
        if fresh:
            first.setCheckable(True)
        first.setData(Checked if entry.path in overlaid else Unchecked, Role.CheckStateRole)
        for item, column in zip(items, columns):
            if column.color is not None:
                item.setData(self._color(column.color(entry)), Role.ForegroundRole)
        if entry.problem or not fresh:
            problem = self.theme.state_colors["failed"] if entry.problem else None
            first.setData(self._color(problem), Role.ForegroundRole)
        bold = entry.path == primary
        if bold or not fresh:
            for item in items:
                item.setData(self.bold if bold else None, Role.FontRole)

    def _color(self, name: str | None) -> QtGui.QColor | None:
        if name is None:
            return None
        color = self._colors.get(name)
        if color is None:
            color = self._colors[name] = QtGui.QColor(name)
        return color


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
