"""The runs panel as a person keeps using it: sorting keeps their selection, filters, folds and sorts show
what the query arranges, their columns and grouping come back at the next start, notes on a server's runs;
and a run with one system sample still plots it."""

from __future__ import annotations

import shutil
import threading

import pytest
from PySide6 import QtCore, QtWidgets
from scripted import write_run

from bench.runs_table import synthetic
from engine.contract.notes import make_notes, read_notes, write_notes
from gui.format import format_loss
from gui.models.lab import LabIndex, RemoteNotes, Scan
from gui.models.runs_query import Group, arrange
from gui.models.runs_table import BASE_COLUMNS
from gui.theme import LIGHT
from gui.widgets.runs import GROUP_BY_STUDY, RunsPanel, WorkspaceWatcher
from gui.widgets.runs_compare import NotesDialog
from tests.gui.test_runs_table import ROWS


@pytest.fixture
def panel(qtbot, tmp_path):
    watcher = WorkspaceWatcher(tmp_path, interval_ms=3_600_000)
    panel = RunsPanel(watcher, LIGHT)
    qtbot.addWidget(panel)
    panel.resize(900, 500)
    panel.show()
    panel._on_refreshed(watcher.root, Scan(watcher.root, list(ROWS), {}))
    yield panel
    watcher.stop()


def _names(panel: RunsPanel) -> list[str]:
    return [r.summary.name for r in panel.model.run_rows()]


def test_sorting_reorders_rows_and_the_selection_stays_on_its_run(panel):
    model, view = panel.model, panel.table
    best = [key for key, _ in BASE_COLUMNS].index("best_val")
    row_b = _names(panel).index("b")
    view.selectRow(row_b)
    view.sortByColumn(best, QtCore.Qt.SortOrder.AscendingOrder)
    assert _names(panel)[:3] == ["b", "a", "c"]  # c has no best value: last
    assert [r.summary.name for r in panel.selected_runs()] == ["b"]
    view.sortByColumn(best, QtCore.Qt.SortOrder.DescendingOrder)
    assert _names(panel)[:3] == ["a", "b", "c"]  # still last the other way round
    assert [r.summary.name for r in panel.selected_runs()] == ["b"]
    # What a cell says moves with its run.
    shown = {model.data(model.index(r, 0)): model.data(model.index(r, best)) for r in range(3)}
    assert shown == {name: format_loss(row.summary.best_val_loss) for name, row in zip("abc", ROWS)}


def test_chosen_columns_and_grouping_come_back_at_the_next_start(qtbot, tmp_path, settings):
    def start() -> RunsPanel:
        watcher = WorkspaceWatcher(tmp_path, interval_ms=3_600_000)
        panel = RunsPanel(watcher, LIGHT)
        qtbot.addWidget(panel)
        panel.keep_choices(settings)
        panel._on_refreshed(watcher.root, Scan(watcher.root, list(ROWS), {}))
        watcher.stop()
        return panel

    first = start()
    assert first.model.fields == [] and first.model.group_by is None  # nothing chosen yet
    first.choose_columns(["optim.lr", "model.n_layers"])
    first.group_combo.setEditText("model.n_layers")
    settings.sync()
    again = start()
    titles = [again.model.headerData(c, QtCore.Qt.Orientation.Horizontal) for c in range(again.model.columnCount())]
    assert titles[-3:] == ["optim.lr", "model.n_layers", "Tags"]
    headers = [e.title for e in again.model.rows if isinstance(e, Group)]
    assert headers == ["model.n_layers = 2", "model.n_layers = 4"]
    assert again.group_combo.currentText() == "model.n_layers"
    # Back to studies: that too is remembered.
    again.group_combo.setEditText(GROUP_BY_STUDY)
    assert start().model.group_by is None


def test_a_run_with_one_system_sample_shows_it_as_a_point(qtbot, make_window, workspace):
    run = write_run(workspace / "short", steps=50).root  # one system event, at step 50
    window = make_window()
    session = window.open_run(run)
    plots = window.dashboard.plots
    qtbot.waitUntil(lambda: session.reader.offset > 0 and bool(plots["host"].curves), timeout=10_000)
    qtbot.waitUntil(lambda: all(c.drawn for c in plots["host"].curves), timeout=10_000)
    for curve in plots["host"].curves:
        assert len(curve.series) == 1
        dots = curve.line.scatter
        assert dots.isVisible() and len(dots.data) == 1, curve.label
    # A series that grows into a line loses the dot again: the loss curve has many points and none.
    loss = plots["loss"].curves[0]
    assert len(loss.series) > 1 and loss.line.opts["symbol"] is None


@pytest.mark.slow  # starts podium on the host over ssh
def test_notes_and_tags_of_a_servers_runs_are_shown_and_edited_there(qtbot, make_window, client, workspace, settings):
    write_run(workspace / "kept", steps=100)
    write_run(workspace / "odd", steps=100)
    write_notes(workspace / "kept", make_notes("", ["baseline"], "the reference"))
    (workspace / "odd" / "notes.json").write_text('{"tags": ["two words"]}')
    settings.setValue("remote/127.0.0.1/podium", client.podium_command())
    window = make_window()
    assert window.workspaces.open(client.url(workspace))
    panel, table = window.runs_panel, window.runs_panel.model
    window.watcher.refresh()
    qtbot.waitUntil(lambda: len(table.run_rows()) == 2, timeout=20_000)
    rows = {r.summary.name: r for r in table.run_rows()}
    assert rows["kept"].tags == ("baseline",)
    panel.filter.setText("reference")
    assert [r.summary.name for r in table.run_rows()] == ["kept"]
    panel.filter.clear()
    assert "127.0.0.1" in rows["odd"].problem and "notes.json" in rows["odd"].problem  # which file, which host
    menu = QtWidgets.QMenu()
    panel._run_menu(menu, rows["odd"])
    assert next(a for a in menu.actions() if a.text().startswith("Name, tags")).isEnabled()
    editor = panel.edit_notes(rows["odd"])
    editor.tags.setText("fixed, remote")
    assert editor.save()
    qtbot.waitUntil(lambda: not editor.isVisible(), timeout=20_000)
    assert read_notes(workspace / "odd").tags == ("fixed", "remote")  # written on the host's disk
    window.watcher.refresh()
    qtbot.waitUntil(
        lambda: any(r.tags == ("fixed", "remote") and r.problem is None for r in table.run_rows()), timeout=20_000
    )


@pytest.mark.slow  # starts podium on the host over ssh
def test_saving_a_servers_note_keeps_the_window_alive_and_keeps_the_text_when_it_fails(qtbot, remote, workspace):
    write_run(workspace / "kept", steps=100)
    run = next(r for r in LabIndex(workspace).refresh().runs if r.summary.name == "kept")
    notes = RemoteNotes(remote)
    held = threading.Event()  # the host's write waits for it: a slow link, made certain

    def slow_write(path, run_notes):
        held.wait(20)
        notes.write(path, run_notes)

    ticks = []
    timer = QtCore.QTimer(interval=10, timeout=lambda: ticks.append(1))
    timer.start()
    editor = NotesDialog(run, store=slow_write)
    qtbot.addWidget(editor)
    editor.show()
    editor.note.setPlainText("written over ssh")
    assert editor.save()
    qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=5_000)  # the event loop turns while the write waits
    assert editor.isVisible() and editor.problem.text() == "Saving…" and not editor.save_button.isEnabled()
    assert read_notes(workspace / "kept") is None
    held.set()
    qtbot.waitUntil(lambda: not editor.isVisible(), timeout=20_000)
    assert read_notes(workspace / "kept").note == "written over ssh"  # on the host's disk
    # A write the host refuses (the run's folder is gone) says why; the dialog keeps what was typed.
    gone = LabIndex(workspace).refresh().runs[0]
    shutil.rmtree(workspace / "kept")
    editor = NotesDialog(gone, store=notes.write)
    qtbot.addWidget(editor)
    editor.show()
    editor.note.setPlainText("kept on failure")
    assert editor.save()
    qtbot.waitUntil(lambda: editor.problem.text().startswith("Not saved:"), timeout=20_000)
    assert "127.0.0.1" in editor.problem.text() and "notes.json" in editor.problem.text()
    assert editor.isVisible() and editor.save_button.isEnabled()
    assert editor.note.toPlainText() == "kept on failure"
    timer.stop()


def test_a_note_saved_while_the_watcher_reads_the_old_one_is_the_one_shown(tmp_path):
    from gui.access.local import LocalAccess

    write_run(tmp_path / "kept", steps=10)
    summary = next(r.summary for r in LabIndex(tmp_path).refresh().runs if r.summary.name == "kept")
    reading, release = threading.Event(), threading.Event()

    class SlowHost(LocalAccess):  # the watcher's read of notes.json is slow: the app's save overtakes it
        def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
            data = super().read(path, offset, size)
            if path.endswith("notes.json"):
                reading.set()
                release.wait(10)
            return data

    notes = RemoteNotes(SlowHost(tmp_path))
    watcher = threading.Thread(target=notes.rows, args=([summary],))
    watcher.start()
    assert reading.wait(10)
    notes.write(summary.path, make_notes(note="saved from the app"))
    release.set()
    watcher.join(10)
    shown = notes.rows([summary])[0].notes
    assert shown is not None and shown.note == "saved from the app"


def test_the_table_shows_the_runs_as_the_query_arranges_them_through_filters_folds_and_sorts(qtbot, tmp_path):
    """Qt sorts and filters the cells; what a person sees must still be :func:`arrange`'s order and rows,
    group headers with their counts included, whatever they did before."""
    scan = synthetic(60, seed=3)
    watcher = WorkspaceWatcher(tmp_path, interval_ms=3_600_000)
    panel = RunsPanel(watcher, LIGHT)
    qtbot.addWidget(panel)
    panel._on_refreshed(watcher.root, scan)
    model = panel.model
    model.set_fields(["optim.lr", "model.n_layers"])

    shown_scan = [scan]

    def expected() -> list[str]:
        details = {name: info.summary() for name, info in scan.studies.items()}
        rows = arrange(shown_scan[0].runs, model.query, model.sort_field, model.descending, model.group_by, details,
                       frozenset(model.collapsed))  # fmt: skip
        return [e.title + e.detail if isinstance(e, Group) else str(e.path) for e in rows]

    def shown() -> list[str]:
        titles = [model.index(r, 0).data() for r in range(model.rowCount())]
        rows = [e.title + e.detail if isinstance(e, Group) else str(e.path) for e in model.rows]
        for title, entry in zip(titles, model.rows):  # each cell says its own run
            assert entry.title in title
        return rows

    rescanned = synthetic(60, seed=3)
    rescanned.runs[7].summary.best_val_loss = 0.5  # the lowest: the run moves to the top

    def rescan() -> None:
        shown_scan[0] = rescanned
        panel._on_refreshed(watcher.root, rescanned)

    steps = [
        lambda: panel.table.sortByColumn(5, QtCore.Qt.SortOrder.AscendingOrder),  # best val
        lambda: panel.filter.setText("optim.lr < 1e-3"),
        lambda: panel.table.sortByColumn(8, QtCore.Qt.SortOrder.DescendingOrder),  # model.n_layers
        lambda: model.toggle_group("study:study1"),
        lambda: panel.group_combo.setEditText("model.n_layers"),
        lambda: panel.table.sortByColumn(0, QtCore.Qt.SortOrder.AscendingOrder),
        lambda: model.toggle_group("model.n_layers=4"),
        lambda: panel.filter.setText("state = failed"),
        lambda: panel.filter.clear(),
        lambda: panel._on_refreshed(watcher.root, synthetic(60, seed=3)),  # the same runs, scanned again
        lambda: panel.table.sortByColumn(5, QtCore.Qt.SortOrder.AscendingOrder),
        lambda: panel.group_combo.setEditText(GROUP_BY_STUDY),
        rescan,
    ]
    for number, step in enumerate(steps):
        step()
        assert shown() == expected(), f"after step {number}"
        for row in model.group_rows():
            assert isinstance(model.rows[row], Group) and panel.table.columnSpan(row, 0) == model.columnCount()
    assert model.rows[0].path.name == "run-0007"  # the rescan's new figure moved it
    watcher.stop()
