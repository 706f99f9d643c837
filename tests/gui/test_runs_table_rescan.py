"""A rescan that brings one new run among 500 makes only that run's row (and its group's header) again: the
other rows keep their cells, the selection and the scroll stay, and the table is still what the query arranges."""

from __future__ import annotations

import shiboken6
from PySide6 import QtCore

from bench.runs_table import synthetic
from gui.models.lab import Scan
from gui.models.runs_query import Group, arrange
from gui.theme import LIGHT
from gui.widgets.runs import GROUP_BY_STUDY, RunsPanel, WorkspaceWatcher

NEW = 251  # a plain run (every tenth is a study's trial) in the middle of the workspace's order


def _cells(model) -> dict[str, list[int]]:
    """Each row's cells by what the row is, as the C++ objects they are (a row made again has new ones)."""
    source = model.sourceModel()
    rows = {}
    for r in range(source.rowCount()):
        items = [source.item(r, c) for c in range(source.columnCount())]
        entry = model._entries[r]
        key = f"group {entry.key}" if isinstance(entry, Group) else str(entry.path)
        rows[key] = [shiboken6.getCppPointer(i)[0] for i in items]
    return rows


def _arranged(model, scan: Scan) -> list[str]:
    details = {name: info.summary() for name, info in scan.studies.items()}
    rows = arrange(scan.runs, model.query, model.sort_field, model.descending, model.group_by, details,
                   frozenset(model.collapsed))  # fmt: skip
    return [e.title + e.detail if isinstance(e, Group) else str(e.path) for e in rows]


def _shown(model) -> list[str]:
    for r, entry in enumerate(model.rows):  # each cell says its own run
        assert entry.title in model.index(r, 0).data()
    return [e.title + e.detail if isinstance(e, Group) else str(e.path) for e in model.rows]


def test_one_new_run_among_500_touches_only_its_own_row(qtbot, tmp_path):
    full = synthetic(501)
    without = Scan(full.root, [r for i, r in enumerate(full.runs) if i != NEW], full.studies)
    watcher = WorkspaceWatcher(tmp_path, interval_ms=3_600_000)
    panel = RunsPanel(watcher, LIGHT)
    qtbot.addWidget(panel)
    panel.resize(900, 500)
    panel.show()
    panel._on_refreshed(watcher.root, without)
    model, view = panel.model, panel.table
    panel.group_combo.setEditText("model.n_layers")
    view.sortByColumn(5, QtCore.Qt.SortOrder.AscendingOrder)  # best val
    assert _shown(model) == _arranged(model, without)
    chosen = model.run_rows()[200]
    view.selectRow(model.rows.index(chosen))
    view.scrollTo(model.index(model.rows.index(chosen), 0))
    scrolled = view.verticalScrollBar().value()
    assert scrolled > 0
    before = _cells(model)
    changed: list[int] = []
    resets: list[bool] = []
    model.sourceModel().dataChanged.connect(lambda top, bottom: changed.extend(range(top.row(), bottom.row() + 1)))
    model.modelReset.connect(lambda: resets.append(True))

    panel._on_refreshed(watcher.root, full)

    after = _cells(model)
    new = str(full.runs[NEW].path)
    header = f"group model.n_layers={full.runs[NEW].config['model.n_layers']}"
    assert set(after) == set(before) | {new}
    assert {k for k in before if after[k] != before[k]} == set(), "the other rows' cells were made again"
    assert not resets
    # Only the new run's group header says something new (its count).
    assert {model._entries[r].key for r in set(changed)} == {header.removeprefix("group ")}
    assert _shown(model) == _arranged(model, full)
    assert [r.path for r in panel.selected_runs()] == [chosen.path]
    assert view.verticalScrollBar().value() == scrolled

    # And it goes again: the run's row and nothing else is removed; grouped by study this time.
    panel.group_combo.setEditText(GROUP_BY_STUDY)
    view.selectRow(model.rows.index(chosen))
    before = _cells(model)
    panel._on_refreshed(watcher.root, without)
    after = _cells(model)
    assert set(before) - set(after) == {new} and all(after[k] == before[k] for k in after)
    assert _shown(model) == _arranged(model, without)
    assert [r.path for r in panel.selected_runs()] == [chosen.path]
    watcher.stop()
