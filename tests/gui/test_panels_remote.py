"""The config editor, the checkpoint browser and the samples panel on a remote workspace, against a real
OpenSSH server on loopback (tests/sshd.py): every read goes through the run's access, and what needs the
engine (listing and hashing checkpoints) runs on the host."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from scripted import write_run
from test_panels_models import fake_checkpoint, write_symusic_midi

from gui.access.ssh import SshAccess
from gui.models.checkpoints import CheckpointModel
from gui.models.config_doc import ConfigDocument
from gui.models.samples import SampleModel
from gui.theme import LIGHT
from gui.widgets.checkpoint_browser import CheckpointBrowser
from gui.widgets.config_editor import ConfigEditorPanel
from gui.widgets.samples_panel import SamplesPanel

HOST_MS = 120_000  # podium started on the host over ssh, on 2 busy cores


def test_a_remote_runs_config_is_shown_diffed_and_loaded_and_an_away_host_is_said(qtbot, remote, client, workspace):
    run = workspace / "previous"
    run.mkdir()
    (run / "config.yaml").write_text("run:\n  max_steps: 77\n")
    editor = ConfigEditorPanel(ConfigDocument())
    qtbot.addWidget(editor)
    editor.access = remote
    editor.set_run(run)
    assert editor.run_button.isEnabled()
    editor.compare.setCurrentIndex(editor.compare.findData("run"))
    diffs = {editor.diff_tree.topLevelItem(i).text(0): i for i in range(editor.diff_tree.topLevelItemCount())}
    row = editor.diff_tree.topLevelItem(diffs["run.max_steps"])
    assert row.text(2) == "77" and editor.diff_tree.headerItem().text(2) == "run previous"
    editor.load_run_config()
    assert yaml.safe_load(editor.editor.toPlainText())["run"]["max_steps"] == 77
    # Read over SSH, not from this disk: with the host gone the run's config is not there to load, and it says so.
    client.kill()
    try:
        editor.set_run(run)
        assert not editor.run_button.isEnabled() and editor.compare.findData("run") < 0
        assert "cannot read" in editor.diff_count.text() and "previous/config.yaml" in editor.diff_count.text()
    finally:
        client.start()


def test_a_remote_samples_metrics_are_read_from_the_host_and_shown(qtbot, remote, client, workspace):
    run = write_run(workspace / "finished", steps=100, samples=False).root
    midi = run / "samples" / "gui" / "step-0000030-seed5.mid"
    midi.parent.mkdir(parents=True)
    write_symusic_midi(midi)
    # What `podium sample` leaves beside its MIDI on the host.
    midi.with_name(midi.name + ".metrics.json").write_text(json.dumps({"pitch_class_entropy": 2.75}))
    panel = SamplesPanel(SampleModel(run), LIGHT)
    qtbot.addWidget(panel)
    panel.model.access = remote
    item = panel.add_manual(midi, 30, "step-0000030", seed=5)
    rows = {panel.metrics.item(r, 0).text(): r for r in range(panel.metrics.rowCount())}
    assert float(panel.metrics.item(rows["pitch class entropy"], 1).text()) == 2.75
    assert item.metrics == {"pitch_class_entropy": 2.75}


@pytest.mark.slow  # podium checkpoints list/verify started on the host over ssh (a Python start each)
def test_a_remote_runs_checkpoints_are_listed_and_verified_on_the_host(qtbot, remote, workspace):
    run = write_run(workspace / "finished", steps=100).root
    for step in (10, 20):
        fake_checkpoint(run / "checkpoints" / f"step-{step:07d}", step)
    bad = run / "checkpoints" / "step-0000020" / "model.pt"
    data = bytearray(bad.read_bytes())
    data[7] ^= 0xFF  # same size: only hashing finds it
    bad.write_bytes(bytes(data))
    browser = CheckpointBrowser(CheckpointModel())
    qtbot.addWidget(browser)
    browser.set_access(remote)
    browser.set_run(run)
    model = browser.model
    assert model.remote and "on the host" in browser.details.text()  # listed off the GUI thread
    qtbot.waitUntil(lambda: len(model.rows) == 2, timeout=HOST_MS)
    qtbot.waitUntil(lambda: all(r.integrity in ("verified", "corrupt") for r in model.rows), timeout=HOST_MS)
    good, corrupt = model.row(run / "checkpoints" / "step-0000010"), model.row(bad.parent)
    assert good.integrity == "verified" and good.val_loss == pytest.approx(4.9)
    assert corrupt.integrity == "corrupt" and "sha256" in corrupt.problem and "model.pt" in corrupt.problem
    names = {browser.proxy.index(r, 0).data() for r in range(browser.proxy.rowCount())}
    assert any("step-0000010" in str(n) for n in names), names
    # Deleting, resuming and forking on the host: test_remote_checkpoints.py.
    browser.select_paths([good.path])
    assert browser.delete_button.isEnabled() and browser.fork_button.isEnabled()
    assert browser.sample_button.isEnabled()


@pytest.mark.slow  # a finished 2-rank run, then `podium sample` on the host (torch there)
def test_a_sample_generated_on_the_host_is_shown_with_the_metrics_left_beside_it(qtbot, client, smoke_run, tmp_path):
    run = Path(shutil.copytree(smoke_run, tmp_path / "runs" / "smoke"))
    access = SshAccess(client.url(run.parent), podium_command=client.podium_command())
    try:
        browser = CheckpointBrowser(CheckpointModel())
        qtbot.addWidget(browser)
        browser.set_access(access)
        browser.set_run(run)
        checkpoint = run / "checkpoints" / "step-0000030"
        qtbot.waitUntil(lambda: browser.model.row(checkpoint) is not None, timeout=HOST_MS)
        samples = SamplesPanel(SampleModel(run), LIGHT)
        qtbot.addWidget(samples)
        samples.model.access = access
        browser.sampleGenerated.connect(lambda path, step, source: samples.add_manual(path, step, source))
        browser.select_paths([checkpoint])
        browser.seed.setValue(7)
        with qtbot.waitSignal(browser.sampleGenerated, timeout=3 * HOST_MS) as made:
            browser.sample_button.click()
        path = made.args[0]
        assert path == run / "samples" / "gui" / "step-0000030-seed7.mid" and "notes" in browser.job_bar.last.text()
        assert browser.job_bar.output.toPlainText().startswith(f"$ {access.label()}: podium sample")
        assert samples.current is not None and samples.current.path == path and samples.roll.piece is not None
        metrics = {samples.metrics.item(r, 0).text() for r in range(samples.metrics.rowCount())}
        assert "pitch class entropy" in metrics, metrics
    finally:
        access.close()
