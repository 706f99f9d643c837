"""The runs table: studies grouped with their trials, filter/sort/group, comparing runs, notes and tags."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from PySide6 import QtCore, QtWidgets
from scripted import write_run

from engine.contract.notes import NotesError, make_notes, read_notes, write_notes
from engine.contract.rundir import RunSummary
from engine.contract.studies import study_dir
from engine.studies.hpo import Controller, StudyOptions
from gui.models.lab import LabIndex, RunRow, TrialInfo
from gui.models.runs_query import Group, QueryError, arrange, parse
from tests.conftest import REPO, SMOKE
from tests.test_hpo import FAKE_TRIAL, SPACE_2D, fake_command

SHOTS = Path(os.environ.get("PODIUM_SCREENSHOTS") or "/tmp")


def _row(name: str, lr: float | None, layers: int, best: float | None, tags=(), note="", study=None) -> RunRow:
    summary = RunSummary(Path(f"/w/{name}"), name, "finished", 1e9, 100, 100, best, 1e9 + 60, "finished", best)
    config = {"model.n_layers": layers} | ({"optim.lr": lr} if lr is not None else {})
    notes = make_notes("", list(tags), note) if tags or note else None
    trial = TrialInfo(0, "COMPLETE", best, {"optim.lr": lr}) if study else None
    return RunRow(summary, config, notes, None, study, trial)


ROWS = [
    _row("a", 1e-4, 2, 2.5, tags=["baseline"]),
    _row("b", 3e-3, 4, 2.1, note="longer warmup helped"),
    _row("c", None, 4, None),
    _row("t0", 5e-4, 2, 2.3, study="sweep"),
]


def _names(entries) -> list[str]:
    return [e.title if isinstance(e, Group) else e.summary.name for e in entries]


# ------------------------------------------------------------------ query (Qt-free)


def test_filter_conditions_words_and_tags():
    fields = ["optim.lr", "model.n_layers"]

    def shown(text: str) -> list[str]:
        return [r.summary.name for r in ROWS if parse(text, fields).matches(r)]

    assert shown("optim.lr < 1e-3") == ["a", "t0"]  # c has no lr: a number condition leaves it out
    assert shown("model.n_layers >= 4 best_val<2.2") == ["b"]
    assert shown("tags = baseline") == ["a"]
    assert shown("warmup") == ["b"]  # a word of the note
    assert shown("study = sweep") == ["t0"]
    assert shown("note ~ WARM") == ["b"]
    assert shown("optim.lr != 1e-4") == ["b", "c", "t0"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("optim.lr <", "a value is missing after '<'"),
        ("optim.lrr < 1e-3", "'optim.lrr': no run has this field; did you mean"),
        ("state > running", "'>' compares numbers; 'running' is not one"),
        ("lr <= ", "a value is missing"),
        ("< 3", "write a condition as field op value"),
    ],
)
def test_a_bad_filter_says_what_is_wrong(text, says):
    with pytest.raises(QueryError, match=None) as caught:
        parse(text, ["optim.lr", "model.n_layers"])
    assert says in str(caught.value)


def test_sort_puts_missing_values_last_and_studies_group_their_trials():
    query = parse("", [])
    up = arrange(ROWS, query, "best_val", False, None, {"sweep": "1/1 trials"})
    assert _names(up) == ["b", "a", "c", "study sweep", "t0"]
    down = arrange(ROWS, query, "best_val", True, None, {"sweep": "1/1 trials"})
    assert _names(down) == ["a", "b", "c", "study sweep", "t0"]  # c, with no value, stays last
    grouped = arrange(ROWS, query, "optim.lr", False, "model.n_layers")
    assert _names(grouped) == ["model.n_layers = 2", "a", "t0", "model.n_layers = 4", "b", "c"]
    folded = arrange(ROWS, query, None, False, "model.n_layers", collapsed=frozenset({"model.n_layers=2"}))
    assert _names(folded) == ["model.n_layers = 2", "model.n_layers = 4", "b", "c"]


def test_groups_of_a_numeric_field_come_in_numeric_order():
    rows = [_row(f"r{layers}", 1e-3, layers, 2.0) for layers in (10, 2, 12, 4)]
    grouped = arrange(rows, parse("", []), None, False, "model.n_layers")
    assert [e.title for e in grouped if isinstance(e, Group)] == [f"model.n_layers = {n}" for n in (2, 4, 10, 12)], (
        "2 before 10, not as text"
    )


# ------------------------------------------------------------------ notes (contract)


def test_notes_round_trip_and_hostile_files_are_refused_by_name(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert read_notes(run) is None
    write_notes(run, make_notes(" Baseline ", ["lr", "lr", "short"], "first try"))
    notes = read_notes(run)
    assert (notes.name, notes.tags, notes.note) == ("Baseline", ("lr", "short"), "first try")
    with pytest.raises(NotesError, match="tag 'two words'"):
        make_notes(tags=["two words"])
    path = run / "notes.json"
    for text, says in [
        ("{not json", "notes.json: "),
        (json.dumps({"tags": "x"}), "tags"),
        (json.dumps({"name": 3}), "name"),
        (json.dumps({"evil": 1}), "evil"),
        ("x" * (300 << 10), "larger than 256 KiB"),
    ]:
        path.write_text(text)
        with pytest.raises(NotesError, match=says) as caught:
            read_notes(run)
        assert str(path) in str(caught.value)
    path.unlink()
    path.symlink_to(tmp_path)
    with pytest.raises(NotesError, match="not a regular file"):
        read_notes(run)


def test_cli_run_takes_name_tags_and_note(tmp_path, monkeypatch, capsys):
    from engine.launcher import cli, launch

    launched = []
    monkeypatch.setattr(launch, "launch", lambda opts: launched.append(opts.run_dir) or 0)
    run = tmp_path / "r"
    argv = ["run", "-r", str(run), "--tag", "baseline", "--tag", "cpu", "--note", "first", "--name", "Base"]
    assert cli.main(argv) == 0 and launched == [run]
    notes = read_notes(run)
    assert (notes.name, notes.tags, notes.note) == ("Base", ("baseline", "cpu"), "first")
    assert cli.main(["run", "-r", str(tmp_path / "bad"), "--tag", "no good"]) == 2
    assert "--name/--tag/--note: tags: tag 'no good': 1-64 characters without spaces" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------ the panel


def _config_run(path: Path, lr: float, t0: float, **kw) -> Path:
    run = write_run(path, steps=100, t0=t0, samples=False, anomalies=False, **kw)
    (run.root / "config.yaml").write_text(yaml.safe_dump({"optim": {"lr": lr}, "model": {"n_layers": 2}}))
    return run.root


@pytest.fixture
def scripted_study(workspace, tmp_path, monkeypatch) -> str:
    """Three finished trials from the stand-in launcher of tests/test_hpo.py."""
    fake = tmp_path / "fake_trial.py"
    fake.write_text(FAKE_TRIAL)
    monkeypatch.setenv("PODIUM_REPO", str(REPO))
    monkeypatch.setenv("FAKE_STEPS", "4")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE_2D)
    opts = StudyOptions(study="sweep", workspace=workspace, base=SMOKE, space=space, trials=3, seed=1)
    Controller(opts, command=fake_command(fake), out=lambda line: None).run()
    return "sweep"


def test_lab_index_reads_notes_and_survives_a_bad_file(workspace):
    good = _config_run(workspace / "good", 1e-3, time.time() - 100)
    bad = _config_run(workspace / "bad", 3e-3, time.time() - 50)
    write_notes(good, make_notes("Good one", ["keep"], ""))
    (bad / "notes.json").write_text('{"tags": [1, 2]}')
    scan = LabIndex(workspace).refresh()
    rows = {r.summary.name: r for r in scan.runs}
    assert rows["good"].title == "Good one" and rows["good"].tags == ("keep",)
    assert rows["good"].config["optim.lr"] == 1e-3
    assert rows["bad"].notes is None and "notes.json" in rows["bad"].problem and "tags.0" in rows["bad"].problem


@pytest.mark.slow
def test_studies_show_as_groups_open_the_panel_and_trials_open_like_runs(qtbot, make_window, workspace, scripted_study):
    _config_run(workspace / "plain", 1e-3, time.time() - 30)
    window = make_window()
    panel, table = window.runs_panel, window.runs_panel.model
    window.watcher.refresh()
    qtbot.waitUntil(lambda: len(table.run_rows()) == 4, timeout=20_000)
    names = _names(table.rows)
    assert names[0] == "plain" and names[1] == "study sweep"
    assert sorted(names[2:]) == ["trial-0000", "trial-0001", "trial-0002"]
    header = table.rows[1]
    assert "3/3 trials" in header.detail and "best val_loss" in header.detail
    # The study's parameters are columns; a trial's row shows what it tried.
    titles = [table.headerData(c, QtCore.Qt.Orientation.Horizontal) for c in range(table.columnCount())]
    assert "optim.lr" in titles and "model.n_layers" in titles
    trial = table.rows[2]
    lr_text = table.data(table.index(2, titles.index("optim.lr")))
    assert lr_text == f"{trial.trial.params['optim.lr']:.4g}"
    # Double-clicking the study's header opens its panel in the Studies dock.
    assert window.study_dock.isHidden()
    panel.table.doubleClicked.emit(table.index(1, 0))
    assert window.study_dock.isVisible() and window.study_panel.study_name == "sweep"
    qtbot.waitUntil(lambda: window.study_panel.table_model.rowCount() == 3, timeout=10_000)
    assert window.study_dock.toggleViewAction() in _panels_menu(window).actions()
    # A trial opens like any run.
    panel.table.doubleClicked.emit(table.index(2, 0))
    assert window.primary is not None and window.primary.run.root == trial.path.resolve()
    # New run still saves into the workspace, not the study.
    from gui.widgets.dialogs import NewRunDialog

    dialog = NewRunDialog(window.workspace, window.hardware(), SMOKE)
    assert dialog.workspace == workspace.resolve()
    # Picking the study's folder as the workspace means its workspace, with the study opened.
    window.set_workspace(study_dir(workspace, "sweep"))
    assert window.workspace == workspace.resolve() and window.study_panel.study_name == "sweep"
    for size in ((1600, 1000), (1280, 720)):
        window.resize(*size)
        qtbot.wait(50)
        assert window.grab().save(str(SHOTS / f"runs_table_{size[0]}x{size[1]}.png"))


def _painted_as_asked(view: QtWidgets.QTableView) -> None:
    """What the view's delegate paints in each cell (through multiData) is what data() says: the text, a
    check box only on a run's first cell, bold only where asked."""
    model, delegate = view.model(), view.itemDelegate()
    Role = QtCore.Qt.ItemDataRole
    for row in range(model.rowCount()):
        for column in range(model.columnCount()):
            index = model.index(row, column)
            option = QtWidgets.QStyleOptionViewItem()
            delegate.initStyleOption(option, index)
            assert option.text == (model.data(index, Role.DisplayRole) or "")
            checkable = model.data(index, Role.CheckStateRole) is not None
            has_box = bool(option.features & QtWidgets.QStyleOptionViewItem.ViewItemFeature.HasCheckIndicator)
            assert has_box == checkable == (column == 0 and isinstance(model.rows[row], RunRow))
            assert option.font.bold() == (model.data(index, Role.FontRole) is not None)


def _panels_menu(window) -> QtWidgets.QMenu:
    view = next(a.menu() for a in window.menuBar().actions() if a.menu() and a.text() == "&View")
    return next(a.menu() for a in view.actions() if a.menu() and a.text() == "Panels")


def test_filter_box_columns_compare_and_notes_in_the_window(qtbot, make_window, workspace):
    now = time.time()
    for i, lr in enumerate((1e-4, 1e-3, 1e-2)):
        _config_run(workspace / f"r{i}", lr, now - 100 + i)
    write_notes(workspace / "r2", make_notes("", ["hot"], ""))
    (workspace / "r1" / "notes.json").write_text("garbage")
    window = make_window()
    panel, table = window.runs_panel, window.runs_panel.model
    window.watcher.refresh()
    qtbot.waitUntil(lambda: len(table.run_rows()) == 3, timeout=10_000)
    assert table.rows[0].summary.name == "r2"  # newest first
    _painted_as_asked(panel.table)
    assert "notes.json" in table.tooltip(1)
    # Filter: a condition, a tag, then a bad expression that says why and keeps the last good filter.
    panel.filter.setText("optim.lr >= 1e-3")
    assert sorted(r.summary.name for r in table.run_rows()) == ["r1", "r2"]
    panel.filter.setText("hot")
    assert [r.summary.name for r in table.run_rows()] == ["r2"]
    panel.filter.setText("optim.lr <")
    assert panel.filter_problem.isVisibleTo(panel) and "a value is missing" in panel.filter_problem.text()
    assert [r.summary.name for r in table.run_rows()] == ["r2"]
    panel.filter.clear()
    assert not panel.filter_problem.isVisibleTo(panel)
    # A config field as a column, sorted by its value.
    table.set_fields(["optim.lr"])
    column = table.columnCount() - 2
    panel.table.sortByColumn(column, QtCore.Qt.SortOrder.AscendingOrder)
    assert [table.data(table.index(r, column)) for r in range(3)] == ["0.0001", "0.001", "0.01"]
    # Compare two: the config diff names the field that differs.
    diff = panel.compare_configs(table.run_rows()[:2])
    assert [f for f, _, _ in diff.differences()] == ["optim.lr"] and "1 field differ" in diff.summary.text()
    # Parallel coordinates of the three against best val.
    par = panel.show_parallel(table.run_rows())
    par.metric_combo.setCurrentText("best_val")
    lines = [i for i in par.parallel.items if i.__class__.__name__ == "PlotDataItem"]
    assert len(lines) == 3
    # Notes: edited in the app, saved to notes.json, searchable.
    run = next(r for r in table.run_rows() if r.summary.name == "r0")
    editor = panel.edit_notes(run)
    editor.tags.setText("baseline, cpu")
    editor.note.setPlainText("the reference run")
    assert editor.save()
    assert read_notes(workspace / "r0").tags == ("baseline", "cpu")
    panel.filter.setText("reference")
    qtbot.waitUntil(lambda: [r.summary.name for r in table.run_rows()] == ["r0"], timeout=10_000)
    # The list also takes a workspace's bare summaries (as bench/gui.py times them), without notes or config.
    panel.filter.clear()
    panel._on_refreshed(window.workspace, LabIndex(workspace).runs.refresh())
    assert sorted(r.summary.name for r in table.run_rows()) == ["r0", "r1", "r2"]
    assert all(r.notes is None for r in table.run_rows())
    # Overlay the selection from the menu's action.
    panel._overlay(table.run_rows()[:2], True)
    assert len(window.overlays) + (window.primary is not None) == 2


@pytest.mark.slow
def test_a_three_trial_study_started_from_the_app_is_grouped_in_the_runs_list(qtbot, make_window, workspace, tmp_path):
    base = tmp_path / "base.yaml"
    data = yaml.safe_load(SMOKE.read_text())
    data["run"].update(max_steps=10, eval_interval=10, log_interval=5)
    data["checkpoint"]["interval"] = 0
    data["sample"]["max_tokens"] = 16
    base.write_text(yaml.safe_dump(data))
    window = make_window()
    window.study_dock.toggleViewAction().trigger()  # View > Panels > Studies
    panel = window.study_panel
    assert panel is not None and window.study_dock.isVisible()
    panel.setup.study_combo.setEditText("live3")
    panel.setup.base_edit.setText(str(base))
    panel.setup.space_edit.setPlainText(SPACE_2D)
    panel.setup.trials_spin.setValue(3)
    panel.setup.pruner_combo.setCurrentText("none")
    qtbot.waitUntil(lambda: panel.setup.valid and panel.setup.start_button.isEnabled(), timeout=5000)
    try:
        assert panel.start()
        qtbot.waitUntil(lambda: panel.model.complete_count() == 3, timeout=400_000)
    finally:  # never leave a worker training behind a failed test
        if panel.workers_alive():
            panel.stop()
            qtbot.waitUntil(lambda: panel.workers_alive() == 0, timeout=120_000)
    table = window.runs_panel.model
    window.watcher.refresh()
    qtbot.waitUntil(lambda: len(table.run_rows()) == 3 and table.rows[0].detail.startswith("3/3"), timeout=20_000)
    header = table.rows[0]
    assert isinstance(header, Group) and header.study == "live3"
    assert [r.study for r in table.run_rows()] == ["live3"] * 3
    assert {r.state for r in table.run_rows()} == {"finished"}
    assert all(r.trial is not None and r.trial.state == "COMPLETE" for r in table.run_rows())
    # Closed, then opened again from the study's row in the runs list.
    window.study_dock.close()
    panel.select_study("")
    window.runs_panel.table.doubleClicked.emit(table.index(0, 0))
    assert window.study_dock.isVisible() and panel.study_name == "live3"
    qtbot.waitUntil(lambda: panel.table_model.rowCount() == 3, timeout=10_000)
