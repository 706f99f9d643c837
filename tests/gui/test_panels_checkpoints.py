"""The checkpoint browser on a real run's checkpoints: integrity, deletion rules, averaging and sampling through
the engine's CLI in child processes, and the sample shown in the samples panel."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from PySide6 import QtCore

from gui.models.checkpoints import CheckpointModel
from gui.models.samples import SampleModel
from gui.theme import LIGHT
from gui.widgets.checkpoint_browser import CheckpointBrowser
from gui.widgets.samples_panel import SamplesPanel

pytestmark = pytest.mark.slow  # every test copies the torchrun smoke run and starts engine children on it

# Screenshots go to a temporary folder; PODIUM_SCREENSHOTS=docs/screenshots regenerates the docs' copies.
SHOTS = Path(os.environ.get("PODIUM_SCREENSHOTS") or tempfile.gettempdir())
SCREENSHOT = SHOTS / "checkpoint_browser.png"
PROGRESS_SHOT = SHOTS / "checkpoint_browser_progress.png"
ENGINE_JOB_S = 180  # an engine child on 2 busy cores: import torch, load, validate or generate


@pytest.fixture
def run_copy(smoke_run, tmp_path) -> Path:
    """The session's finished smoke run (checkpoints at steps 15 and 30), copied: these tests change it."""
    return Path(shutil.copytree(smoke_run, tmp_path / "smoke"))


@pytest.fixture
def browser(qtbot, run_copy):
    widget = CheckpointBrowser(CheckpointModel(run_copy))
    qtbot.addWidget(widget)
    widget.setStyleSheet(LIGHT.style_sheet())
    widget.resize(1250, 420)
    widget.show()
    answers = []
    widget.confirm = lambda title, text: answers.append(text) or True
    widget.answers = answers
    return widget


def rows_by_name(widget: CheckpointBrowser) -> dict:
    return {r.name: r for r in widget.table_model.rows}


def table_texts(widget: CheckpointBrowser) -> dict[str, dict[str, str]]:
    out = {}
    model = widget.proxy
    for r in range(model.rowCount()):
        cells = {
            model.headerData(c, QtCore.Qt.Orientation.Horizontal): model.index(r, c).data()
            for c in range(model.columnCount())
        }
        out[cells["Name"].split(" ·")[0]] = cells
    return out


def test_corrupt_checkpoints_are_listed_as_corrupt_and_the_newest_valid_one_is_never_deleted(qtbot, browser, run_copy):
    ckpts = run_copy / "checkpoints"
    assert sorted(rows_by_name(browser)) == ["step-0000015", "step-0000030"]
    # A save that died mid-way (no manifest), one whose manifest is garbage, and a flipped byte in a weight file.
    (ckpts / "step-0000045").mkdir()
    (ckpts / "step-0000045" / "model.pt").write_bytes(b"half")
    (ckpts / "step-0000060").mkdir()
    (ckpts / "step-0000060" / "manifest.json").write_text('{"step": "sixty"')
    weights = ckpts / "step-0000015" / "model.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    browser.refresh()
    qtbot.waitUntil(lambda: all(r.integrity in ("verified", "corrupt") for r in browser.model.rows), timeout=30_000)
    texts = table_texts(browser)
    assert texts["step-0000045"]["Integrity"].startswith("corrupt:") and "missing" in texts["step-0000045"]["Integrity"]
    assert "unreadable" in texts["step-0000060"]["Integrity"]
    assert "sha256 mismatch" in texts["step-0000015"]["Integrity"], "a same-size change shows once hashed"
    assert texts["step-0000030"]["Integrity"] == "verified" and texts["step-0000030"]["Val loss"]
    assert "corrupt" in browser.details.text()
    # The newest valid checkpoint (step 30: the corrupt ones are newer) is kept, with or without asking.
    browser.select_paths([ckpts / "step-0000030"])
    assert browser.delete_button.isEnabled()
    browser.delete_selected()
    assert (ckpts / "step-0000030").is_dir() and browser.answers == [] and "newest valid" in browser.details.text()
    # Corrupt ones go, after the question.
    browser.select_paths([ckpts / "step-0000045", ckpts / "step-0000060", ckpts / "step-0000030"])
    browser.delete_selected()
    assert len(browser.answers) == 1 and "Kept: step-0000030" in browser.answers[0]
    assert sorted(rows_by_name(browser)) == ["step-0000015", "step-0000030"]
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000015", "step-0000030"]
    # Averaging refuses a corrupt input before starting anything.
    browser.select_paths([ckpts / "step-0000015", ckpts / "step-0000030"])
    assert not browser.average_button.isEnabled() and browser.average_selected() is None and browser.job is None


def test_averaging_two_checkpoints_from_the_browser_makes_a_third_that_names_both(qtbot, browser, run_copy):
    ckpts = run_copy / "checkpoints"
    inputs = [ckpts / "step-0000015", ckpts / "step-0000030"]
    browser.select_paths(inputs)
    assert browser.average_button.isEnabled()
    bar = browser.job_bar
    shown = []  # (value, maximum, stage text) of the bar as each progress line arrives

    def progressed(progress):
        shown.append((bar.bar.value(), bar.bar.maximum(), bar.last.text()))
        if progress.stage == "validate" and not PROGRESS_SHOT.exists():
            PROGRESS_SHOT.parent.mkdir(parents=True, exist_ok=True)
            browser.grab().save(str(PROGRESS_SHOT))

    PROGRESS_SHOT.unlink(missing_ok=True)
    browser.resize(1250, 240)  # room for about one row: the new one must be brought into view
    with qtbot.waitSignal(browser.averaged, timeout=ENGINE_JOB_S * 1000) as done:
        browser.average_button.click()
        assert bar.isVisible() and bar.bar.maximum() == 0, "busy until the child reports progress"
        assert not browser.average_button.isEnabled(), "one job at a time"
        browser.job.progressed.connect(progressed)
    # The bar filled as the child went, to 100%, with each stage in words (no JSON).
    values = [v for v, _, _ in shown]
    assert values == sorted(values) and shown[-1][:2] == (7, 7) and all(m == 7 for _, m, _ in shown)
    texts = [t for _, _, t in shown]
    assert texts[0].startswith("loading checkpoint 1 of 2") and "preparing the validation data" in texts
    assert any(t.startswith("average: val loss") for t in texts) and texts[-1].startswith("wrote ")
    assert bar.bar.value() == bar.bar.maximum() and "{" not in browser.job_bar.output.toPlainText()
    out = done.args[0]
    assert out == run_copy / "averages" / "uniform-15-30" and browser.job.exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "weights" and manifest["provenance"]["method"] == "uniform"
    assert [Path(i["path"]) for i in manifest["provenance"]["inputs"]] == [p.resolve() for p in inputs]
    # The result is in the table, selected, its validation loss next to the inputs'.
    texts = table_texts(browser)
    avg = texts["averages/uniform-15-30"]
    assert avg["Val loss"] == f"{manifest['metrics']['val_loss']:.4f}" and "uniform avg of 2" in avg["Kind"]
    assert [r.path for r in browser.selected_rows()] == [out]
    shown_row = browser.table.visualRect(browser.table.selectionModel().selectedRows()[0])
    assert browser.table.viewport().rect().contains(shown_row), "the new row is scrolled into view"
    browser.resize(1250, 420)
    losses = [f"{i['val_loss']:.4f}" for i in manifest["provenance"]["inputs"]]
    assert all(loss in browser.details.text() for loss in losses) and avg["Val loss"] in browser.details.text()
    assert "val loss" in browser.job_bar.last.text() and "step 15" in browser.job_bar.last.text()
    qtbot.waitUntil(lambda: rows_by_name(browser)["uniform-15-30"].integrity == "verified", timeout=30_000)
    # Resuming the run is offered for its newest full checkpoint only; any other forks.
    forks = []
    browser.forkRequested.connect(forks.append)
    browser.select_paths([out])
    browser.resume_button.click()
    assert forks == [out]
    browser.select_paths([inputs[1]])
    with qtbot.waitSignal(browser.resumeRequested, timeout=1000) as resumed:
        browser.resume_button.click()
    assert resumed.args[0] == run_copy
    browser.select_paths([out])
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.grab().save(str(SCREENSHOT)) and SCREENSHOT.stat().st_size < 300_000


def test_a_sample_generated_from_a_checkpoint_appears_in_the_samples_panel_with_its_note_count(
    qtbot, browser, run_copy
):
    symusic = pytest.importorskip("symusic")
    samples = SamplesPanel(SampleModel(run_copy), LIGHT)
    qtbot.addWidget(samples)
    browser.sampleGenerated.connect(lambda path, step, source: samples.add_manual(path, step, source))
    browser.select_paths([run_copy / "checkpoints" / "step-0000030"])
    browser.seed.setValue(7)
    with qtbot.waitSignal(browser.sampleGenerated, timeout=ENGINE_JOB_S * 1000) as made:
        browser.sample_button.click()
    path, step, source = made.args
    assert path == run_copy / "samples" / "gui" / "step-0000030-seed7.mid" and (step, source) == (30, "step-0000030")
    expected = sum(len(t.notes) for t in symusic.Score(str(path)).tracks)
    assert samples.current is not None and samples.current.path == path
    count = samples.roll.count_label.text()
    assert count.startswith(f"{expected:,} note"), count
    assert f"{expected} notes" in browser.job_bar.last.text()
