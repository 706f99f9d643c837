"""The study panel: its Qt-free model, the panel on a scripted study, and a real study started and stopped from it."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PySide6 import QtCore

from engine.contract.events import read_events
from engine.contract.studies import request_stop, study_dir
from engine.studies.hpo import Controller, StudyOptions
from gui.models.study_model import JournalSource, StudyModel
from tests.conftest import REPO, SMOKE
from tests.test_hpo import FAKE_TRIAL, SPACE_2D, fake_command

# Screenshots go to a temporary folder; PODIUM_SCREENSHOTS=docs/screenshots regenerates the docs' copies.
SHOTS = Path(os.environ.get("PODIUM_SCREENSHOTS") or tempfile.gettempdir())
SCREENSHOT = SHOTS / "study_panel.png"


@pytest.fixture
def scripted_study(workspace, tmp_path, monkeypatch) -> str:
    """Eight finished trials from the stand-in launcher (tests/test_hpo.py): known values, two pruned."""
    fake = tmp_path / "fake_trial.py"
    fake.write_text(FAKE_TRIAL)
    monkeypatch.setenv("PODIUM_REPO", str(REPO))
    monkeypatch.setenv("FAKE_STEPS", "4")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE_2D)
    opts = StudyOptions(study="scripted", workspace=workspace, base=SMOKE, space=space, trials=8, seed=1)
    Controller(opts, command=fake_command(fake), out=lambda line: None).run()
    return "scripted"


def snapshot_of(workspace: Path, name: str) -> dict:
    return JournalSource(workspace, name).read()


# ------------------------------------------------------------------ model


@pytest.mark.slow
def test_model_derives_history_best_so_far_and_parallel_coordinates(workspace, scripted_study):
    model = StudyModel()
    snap = snapshot_of(workspace, scripted_study)
    assert model.update(snap) and not model.update(snap), "an unchanged study is not a change"
    assert model.name == "scripted" and len(model.trials) == 8 and model.param_names == ["optim.lr", "model.n_layers"]
    numbers, values, states, best = model.history()
    complete = [t for t in model.trials if t.state == "COMPLETE"]
    assert len(numbers) == len([t for t in model.trials if t.value is not None])
    # Best so far never gets worse and ends at the study's best (minimize).
    finite = best[np.isfinite(best)]
    assert np.all(np.diff(finite) <= 0) and finite[-1] == min(t.value for t in complete) == model.best["value"]
    par = model.parallel()
    assert par.axes == ["optim.lr", "model.n_layers", "val_loss"] and par.lines.shape == (len(complete), 3)
    assert np.nanmin(par.lines) >= 0 and np.nanmax(par.lines) <= 1
    # The log-scale lr axis: 1e-4 -> 0, 1e-1 -> 1, so lr = 10^-2.5 sits at 0.5.
    lr = np.array([t.params["optim.lr"] for t in complete])
    assert np.allclose(par.lines[:, 0], (np.log10(lr) + 4) / 3)
    assert "8/8 trials done" in model.summary() and "pruned" in model.summary()


def test_model_best_so_far_follows_a_maximized_metric():
    model = StudyModel()

    def trial(n, v, s="COMPLETE"):
        return {"number": n, "state": s, "value": v, "params": {}, "intermediate": [[1, v]]}

    model.update(
        {
            "study": "m",
            "direction": "maximize",
            "metric": "quality_score",
            "trials": [trial(0, 0.2), trial(1, 0.5), trial(2, 0.9, "PRUNED"), trial(3, 0.4), trial(4, 0.7)],
        }
    )
    _, _, _, best = model.history()
    assert list(best) == [0.2, 0.5, 0.5, 0.5, 0.7]  # a pruned trial's last value is not a result


# ------------------------------------------------------------------ panel


@pytest.fixture
def panel(qtbot, workspace):
    from gui.widgets.study_panel import StudyPanel

    widget = StudyPanel(workspace, poll_ms=200)
    qtbot.addWidget(widget)
    widget.resize(1500, 860)
    widget.show()
    yield widget
    widget.analyses.kill()


@pytest.mark.slow
def test_panel_shows_a_study_table_plots_importances_and_opens_runs(qtbot, panel, workspace, scripted_study):
    from gui.models.study_table import STATE_NAMES

    panel.refresh_studies()
    panel.select_study(scripted_study)
    qtbot.waitUntil(lambda: panel.table_model.rowCount() == 8, timeout=10_000)
    model = panel.model
    pruned = [t for t in model.trials if t.state == "PRUNED"]
    assert pruned, "seed 1 prunes trials 6 and 7 of this study"
    # Table: one row per trial, state names, the metric, each parameter, the run or the reason.
    table = panel.table_model
    headers = [table.headerData(i, QtCore.Qt.Orientation.Horizontal) for i in range(table.columnCount())]
    assert headers[:5] == ["#", "State", "val_loss", "optim.lr", "model.n_layers"]
    for row, trial in enumerate(panel.table_model.rows):
        index = functools.partial(panel.table_model.index, row)
        assert panel.table_model.data(index(1)) == STATE_NAMES[trial.state]
        last = panel.table_model.data(index(len(headers) - 1))
        assert last == (trial.reason if trial.state == "PRUNED" else trial.run_dir.name)
    # Plots: a history point per valued trial, a curve per trial (pruned dashed, with a cross at their end),
    # a parallel-coordinates line per complete trial.
    assert len(panel.charts.history_points.data) == len([t for t in model.trials if t.value is not None])
    assert set(panel.charts.inter_curves) == {t.number for t in model.trials}
    for trial in pruned:
        assert panel.charts.inter_curves[trial.number].opts["pen"].style() == QtCore.Qt.PenStyle.DashLine
    marks = panel.charts.pruned_marks.getData()
    assert len(marks[0]) == len(pruned) and list(marks[0]) == [t.steps[-1] for t in pruned]
    lines = [i for i in panel.charts.parallel.items if i.__class__.__name__ == "PlotDataItem"]
    assert len(lines) == model.complete_count()
    # Importances and the scaling fit come from child processes.
    analyses = panel.analyses
    qtbot.waitUntil(lambda: analyses.importances is not None and analyses.scaling is not None, timeout=60_000)
    assert set(analyses.importances["values"]) == {"optim.lr", "model.n_layers"}
    assert panel.charts.importance_bars is not None
    # The stand-in's runs all see 300 tokens: no scaling fit, and the panel says why.
    assert panel.charts.scaling_note.textItem.toPlainText().startswith("No fit: ")
    # Activating a row asks the main window to open that trial's run.
    best = model.best["number"]
    panel.select_trial(best)
    index = panel.table.currentIndex()
    panel.table.scrollTo(index)
    center = panel.table.visualRect(index).center()
    with qtbot.waitSignal(panel.open_run_requested, timeout=2000) as opened:
        # An item view takes a double-click on the row its press began on: press first, as a hand does.
        qtbot.mouseClick(panel.table.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=center)
        qtbot.mouseDClick(panel.table.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=center)
    assert opened.args == [study_dir(workspace, scripted_study) / f"trial-{best:04d}"]
    assert panel.charts.inter_curves[best].opts["pen"].widthF() > 3
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert panel.grab().save(str(SCREENSHOT))


def test_space_editor_validates_as_you_type_and_gates_start(qtbot, panel):
    panel.setup.study_combo.setEditText("fresh")
    panel.setup.base_edit.setText(str(SMOKE))
    panel.setup.space_edit.setPlainText(
        "optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\nmodel.n_layer: {type: int, low: 1, high: 3}\n"
    )
    qtbot.waitUntil(
        lambda: "line 2, model.n_layer: unknown key 'n_layer' in model" in panel.setup.validation.text(), timeout=5000
    )
    assert not panel.setup.start_button.isEnabled() and not panel.start()
    assert {s.cursor.blockNumber() for s in panel.setup.space_edit.extraSelections()} == {1}  # line 2 marked
    panel.setup.space_edit.setPlainText(SPACE_2D)
    qtbot.waitUntil(lambda: panel.setup.validation.text().startswith("✓ valid"), timeout=5000)
    assert panel.setup.start_button.isEnabled() and panel.setup.space_edit.extraSelections() == []
    panel.setup.study_combo.setEditText("bad name!")
    qtbot.waitUntil(lambda: "name 'bad name!'" in panel.setup.validation.text(), timeout=5000)
    assert not panel.setup.start_button.isEnabled()


@pytest.mark.slow
def test_a_real_study_started_from_the_panel_and_stopped_ends_its_running_trial(qtbot, panel, workspace, tmp_path):
    base = tmp_path / "base.yaml"
    data = yaml.safe_load(SMOKE.read_text())
    data["run"].update(max_steps=100000, log_interval=2, eval_interval=1000)
    data["checkpoint"]["interval"] = 0
    base.write_text(yaml.safe_dump(data))
    panel.setup.study_combo.setEditText("live")
    panel.setup.base_edit.setText(str(base))
    panel.setup.space_edit.setPlainText(SPACE_2D)
    panel.setup.trials_spin.setValue(2)
    panel.setup.pruner_combo.setCurrentText("none")
    qtbot.waitUntil(lambda: panel.setup.valid, timeout=5000)
    try:
        assert panel.start()
        qtbot.waitUntil(lambda: any(t.state == "RUNNING" for t in panel.model.trials), timeout=60_000)
        run_dir = study_dir(workspace, "live") / "trial-0000"
        qtbot.waitUntil(
            lambda: any(e["type"] == "metrics" for e in read_events(run_dir / "events.jsonl")[0]), timeout=180_000
        )
        assert panel.stop_button.isEnabled() and panel.status.text().endswith("1 worker running")
        panel.stop()
        qtbot.waitUntil(lambda: panel.workers_alive() == 0, timeout=120_000)
    finally:  # never leave a worker training behind a failed test
        if panel.workers_alive():
            request_stop(workspace, "live")
            qtbot.waitUntil(lambda: panel.workers_alive() == 0, timeout=120_000)
    events, _ = read_events(run_dir / "events.jsonl")
    assert events[-1]["type"] == "run_end" and events[-1]["reason"] == "stopped"
    qtbot.waitUntil(lambda: [t.state for t in panel.model.trials] == ["FAIL", "WAITING"], timeout=10_000)
    assert panel.model.trials[0].reason.startswith("not finished: the study was stopped")
    qtbot.waitUntil(lambda: not panel.stop_button.isEnabled(), timeout=5000)  # the next poll sees nothing running
    assert panel.setup.start_button.text() == "Resume" and panel.setup.start_button.isEnabled()
    assert "stop requested" in panel.log_view.toPlainText()


@pytest.mark.slow
def test_the_panel_never_loads_torch_or_the_music_libraries(workspace, scripted_study):
    code = f"""
import sys
blocked = {{"torch", "miditok", "music21", "symusic", "sqlalchemy"}}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in blocked:
            raise ImportError(name + ' is blocked in this test')
sys.meta_path.insert(0, Block())
import gui.widgets.study_panel
from gui.models.study_model import JournalSource, StudyModel
model = StudyModel()
assert model.update(JournalSource({str(workspace)!r}, {scripted_study!r}).read())
print(len(model.trials))
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["8"]


@pytest.mark.slow
def test_hpo_show_json_is_strict_json_for_the_panel(workspace, scripted_study):
    out = subprocess.run(
        [sys.executable, "main.py", "hpo", "show", "--study", scripted_study, "--workspace", str(workspace), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    snap = json.loads(out.stdout, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    assert StudyModel().update(snap)


def test_a_percent_encoded_database_password_is_taken_as_the_user_wrote_it():
    from gui.models.study_model import split_password

    url, password = split_password("postgresql://u:p%40ss%2Fw@db:5432/studies")
    assert password == "p@ss/w"  # what libpq must receive, not the URL's escaped form
    assert url == "postgresql://u@db:5432/studies"
