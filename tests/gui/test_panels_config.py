"""The config editor: YAML and form kept in step, validation at the right line, diff, files, launching."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml
from PySide6 import QtCore, QtGui, QtWidgets

from gui.models.config_doc import ConfigDocument
from gui.theme import LIGHT
from gui.widgets.config_editor import ConfigEditorPanel

REPO = Path(__file__).resolve().parents[2]
SMOKE_TEXT = (REPO / "resources" / "smoke.yaml").read_text()
# Screenshots go to a temporary folder; PODIUM_SCREENSHOTS=docs/screenshots regenerates the docs' copies.
SHOTS = Path(os.environ.get("PODIUM_SCREENSHOTS") or tempfile.gettempdir())
SCREENSHOT = SHOTS / "config_editor.png"


@pytest.fixture
def editor(qtbot, workspace):
    panel = ConfigEditorPanel(ConfigDocument(SMOKE_TEXT), LIGHT)
    qtbot.addWidget(panel)
    panel.setStyleSheet(LIGHT.style_sheet())
    panel.set_workspace(workspace)
    panel.nproc.setValue(2)
    panel.resize(1400, 820)
    panel.show()
    return panel


def type_into(qtbot, editor: ConfigEditorPanel, old: str, new: str) -> None:
    """Select ``old`` in the YAML and type ``new`` over it, key by key, as a user would."""
    text = editor.editor.toPlainText()
    start = text.index(old)
    cursor = editor.editor.textCursor()
    cursor.setPosition(start)
    cursor.setPosition(start + len(old), QtGui.QTextCursor.MoveMode.KeepAnchor)
    editor.editor.setTextCursor(cursor)
    editor.editor.setFocus()
    qtbot.keyClicks(editor.editor, new)


def line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


def problem_lines(editor: ConfigEditorPanel) -> dict[int, str]:
    return {line: " ".join(p.message for p in items) for line, items in editor.editor.problems.items()}


@pytest.mark.slow
def test_an_invalid_value_is_flagged_at_its_line_and_field_and_nothing_is_saved_or_started(qtbot, editor, tmp_path):
    started = []
    editor.startRequested.connect(started.append)
    type_into(qtbot, editor, "lr: 0.003", "lr: 7")
    line = line_of(editor.editor.toPlainText(), "lr: 7")
    qtbot.waitUntil(lambda: line in problem_lines(editor), timeout=3000)  # validated as you type, no button
    assert "optim.lr" in problem_lines(editor)[line] and "less than or equal to 1" in problem_lines(editor)[line]
    assert editor.problem_list.item(0).text().startswith(f"✖ line {line}: optim.lr")
    row = editor.form.rows["optim.lr"]
    assert row.error.isVisible() and "less than or equal to 1" in row.error.text() and row.editor.text() == "7"
    assert "problem" in editor.status.text()
    # Clicking the problem puts the caret on its line.
    editor.problem_list.itemClicked.emit(editor.problem_list.item(0))
    assert editor.editor.textCursor().blockNumber() + 1 == line
    # Nothing is saved or started.
    target = tmp_path / "out.yaml"
    assert not editor.save_as_button.isEnabled() and editor.save_to(target) is None and not target.exists()
    editor.run_name.setText("new-run")
    assert not editor.start_button.isEnabled()
    assert editor.start_run() is None and editor.fork_run() is None and started == []
    assert "Not started" in editor.launch_problems.text() and "optim.lr" in editor.launch_problems.text()
    # Fixing it in the form fixes the YAML line and clears the problem.
    row.editor.setFocus()
    row.editor.selectAll()
    qtbot.keyClicks(row.editor, "0.002")
    assert "lr: 0.002" in editor.editor.toPlainText() and editor.document.validation.ok
    assert editor.start_button.isEnabled()
    assert editor.save_to(target) == target and yaml.safe_load(target.read_text())["optim"]["lr"] == 0.002


def test_a_yaml_syntax_error_points_at_its_line_and_freezes_the_form(qtbot, editor, tmp_path):
    type_into(qtbot, editor, "seq_len: 64", "seq_len: [64")
    qtbot.waitUntil(lambda: editor.document.validation.syntax_error, timeout=3000)
    (problem,) = editor.document.validation.problems
    text = editor.editor.toPlainText()
    # PyYAML reports an unclosed flow sequence where it finds the next token: the following key's line.
    assert problem.line in (line_of(text, "seq_len: [64"), line_of(text, "seq_len: [64") + 1)
    assert "YAML syntax error" in problem.message and problem.line in problem_lines(editor)
    assert editor.form.banner.isVisible() and not editor.form.rows["optim.lr"].editor.isEnabled()
    assert editor.form.rows["data.seq_len"].editor.text() == "64", "the form keeps the last values that parsed"
    assert editor.save_to(tmp_path / "x.yaml") is None and not (tmp_path / "x.yaml").exists()
    editor.run_name.setText("r1")
    assert editor.start_run() is None
    editor.editor.undo()
    qtbot.waitUntil(lambda: editor.document.validation.ok, timeout=3000)
    assert not editor.form.banner.isVisible()


def test_form_and_yaml_follow_each_other(qtbot, editor):
    # YAML -> form
    type_into(qtbot, editor, "n_layers: 2", "n_layers: 3")
    qtbot.waitUntil(lambda: editor.form.rows["model.n_layers"].editor.text() == "3", timeout=3000)
    # form -> YAML, comments kept: a combo box, a check box and a field not in the text yet
    precision = editor.form.rows["run.precision"].editor
    precision.setCurrentIndex(precision.findData("bf16"))
    precision.activated.emit(precision.currentIndex())
    editor.form.rows["ema.enabled"].editor.setChecked(True)
    schedule = editor.form.rows["optim.schedule"].editor
    schedule.activated.emit(schedule.findData("linear"))
    data = yaml.safe_load(editor.editor.toPlainText())
    assert data["run"]["precision"] == "bf16" and data["ema"] == {"enabled": True}
    assert data["optim"]["schedule"] == "linear" and data["model"]["n_layers"] == 3
    assert editor.editor.toPlainText().startswith("# A tiny run for tests")
    # A cross-field rule shows at the field it names: 3 heads do not divide d_model 32.
    field = editor.form.rows["model.n_heads"].editor
    field.setFocus()
    field.selectAll()
    qtbot.keyClicks(field, "3")
    assert editor.form.rows["model.n_heads"].error.isVisible()
    assert "must divide d_model" in editor.form.rows["model.n_heads"].error.text()
    # Clearing a field takes the key out (back to its default).
    field.selectAll()
    qtbot.keyClick(field, QtCore.Qt.Key.Key_Backspace)
    assert "n_heads" not in editor.editor.toPlainText() and editor.document.validation.ok
    # Undo in the YAML undoes a form edit.
    editor.editor.undo()
    assert "n_heads: 3" in editor.editor.toPlainText()


def test_diff_against_defaults_and_the_selected_runs_config(qtbot, editor, smoke_like_run):
    editor.tabs.setCurrentIndex(1)

    def fields():
        return {
            editor.diff_tree.topLevelItem(i).text(0): editor.diff_tree.topLevelItem(i)
            for i in range(editor.diff_tree.topLevelItemCount())
        }

    assert fields()["run.max_steps"].text(1) == "30" and fields()["run.max_steps"].text(2) == "2000"
    editor.set_run(smoke_like_run)
    editor.compare.setCurrentIndex(editor.compare.findData("run"))
    assert editor.diff_tree.headerItem().text(2) == f"run {smoke_like_run.name}"
    assert set(fields()) == {"run.max_steps"}, "the run's config differs only in max_steps"
    assert fields()["run.max_steps"].text(2) == "10"
    editor.as_text.setChecked(True)
    assert "-  max_steps: 10" in editor.diff_text.toPlainText() and "+  max_steps: 30" in editor.diff_text.toPlainText()


@pytest.fixture
def smoke_like_run(workspace) -> Path:
    from engine.contract import config as config_mod

    run = workspace / "previous"
    run.mkdir()
    cfg = config_mod.validate(config_mod.apply_overrides(yaml.safe_load(SMOKE_TEXT), ["run.max_steps=10"]))
    (run / "config.yaml").write_text(config_mod.dump(cfg))
    return run


def test_open_save_and_start_requests(qtbot, editor, workspace, tmp_path):
    source = tmp_path / "mine.yaml"
    source.write_text("# mine\nrun:\n  max_steps: 12\n")
    assert editor.open_file(source) and editor.document.path == source and not editor.document.dirty
    type_into(qtbot, editor, "max_steps: 12", "max_steps: 13")
    qtbot.waitUntil(lambda: editor.save_button.isEnabled(), timeout=3000)
    assert "(modified)" in editor.file_label.text()
    assert editor.save() == source and source.read_text() == "# mine\nrun:\n  max_steps: 13\n"
    editor.run_name.setText("fresh")
    with qtbot.waitSignal(editor.startRequested, timeout=2000) as started:
        editor.start_button.click()
    request = started.args[0]
    assert request.run_dir == workspace / "fresh" and request.nproc == 2 and request.from_checkpoint is None
    assert request.config_text == editor.editor.toPlainText()
    # A fork needs a checkpoint folder; with one it carries it.
    assert not editor.fork_button.isEnabled()
    checkpoint = tmp_path / "step-0000010"
    checkpoint.mkdir()
    (checkpoint / "manifest.json").write_text("{}")
    editor.set_checkpoint(checkpoint)
    with qtbot.waitSignal(editor.startRequested, timeout=2000) as forked:
        editor.fork_button.click()
    assert forked.args[0].from_checkpoint == checkpoint


def test_screenshot_of_the_config_editor(qtbot, editor, smoke_like_run):
    editor.set_run(smoke_like_run)
    type_into(qtbot, editor, "d_model: 32", "d_model: 36")
    type_into(qtbot, editor, "lr: 0.003", "lr: 3e-3")
    editor.run_name.setText("smoke-wider")
    editor.validate_now()
    editor.form.focus_field("model.d_model")
    editor.editor.go_to_line(line_of(editor.editor.toPlainText(), "d_model"))
    QtWidgets.QApplication.processEvents()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert editor.grab().save(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size < 300_000


def test_in_a_small_dock_the_yaml_gets_half_and_field_errors_wrap_in_full(qtbot, editor):
    editor.resize(540, 350)  # the bottom dock of a 1366x768 screen
    type_into(qtbot, editor, "max_steps: 30", "max_steps: 0")
    editor.validate_now()
    qtbot.waitUntil(lambda: editor.editor.width() > 0.4 * editor.split.width(), timeout=2000)
    form = editor.form
    assert form.narrow, "labels go above their fields rather than off the edge"
    inner = form.scroll_area.widget()
    # the form never scrolls sideways (once the relayout the narrow form asked for is done)
    qtbot.waitUntil(lambda: inner.width() <= form.scroll_area.viewport().width(), timeout=2000)
    row = form.rows["run.max_steps"]
    assert row.error.isVisible() and "greater than or equal to 1" in row.error.text()
    assert row.error.wordWrap() and row.error.width() <= form.scroll_area.viewport().width()
    # the whole message fits its label at that width (wrapped onto as many lines as it needs)
    assert row.error.height() >= row.error.heightForWidth(row.error.width())
    assert "greater than or equal to 1" in row.editor.toolTip()
    assert "1 problem" in editor.status.text() and "max_steps" in editor.status.toolTip()
    assert editor.status.isVisible(), "the verdict is in view, not in a toolbar's » menu"
    # Wide again: labels beside their fields.
    editor.resize(1400, 820)
    qtbot.waitUntil(lambda: not form.narrow, timeout=2000)
