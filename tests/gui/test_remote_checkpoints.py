"""Deleting a remote run's checkpoints from the browser: removed on the host over SFTP, with the same
refusals as on this disk (a real sshd on loopback)."""

from __future__ import annotations

import pytest
from scripted import write_run
from test_panels_models import fake_checkpoint

from gui.models.checkpoints import CheckpointModel
from gui.widgets.checkpoint_browser import CheckpointBrowser

HOST_MS = 120_000  # podium started on the host over ssh, on 2 busy cores


@pytest.mark.slow  # podium checkpoints list started on the host over ssh
def test_a_remote_checkpoint_is_deleted_on_the_host_and_the_newest_is_refused(qtbot, remote, workspace):
    run = write_run(workspace / "finished", steps=100).root
    folders = [fake_checkpoint(run / "checkpoints" / f"step-{step:07d}", step) for step in (10, 20, 30)]
    browser = CheckpointBrowser(CheckpointModel())
    qtbot.addWidget(browser)
    browser.set_access(remote)
    browser.set_run(run)
    qtbot.waitUntil(lambda: len(browser.model.rows) == 3, timeout=HOST_MS)
    asked: list[str] = []
    browser.confirm = lambda _title, text: asked.append(text) or True
    browser.select_paths(folders)
    assert browser.delete_button.isEnabled()
    with qtbot.waitSignal(browser.lister.listed, timeout=HOST_MS):  # the host lists what it holds now
        browser.delete_selected()
    # The newest (full) checkpoint is the one the run resumes from: it stays, and the user is told why.
    assert "step-0000030" in asked[0] and "newest" in asked[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000030"]
    assert [r.name for r in browser.model.rows] == ["step-0000030"]
    browser.select_paths([folders[2]])
    browser.delete_selected()
    assert (run / "checkpoints" / "step-0000030").is_dir()
    assert "newest" in browser.details.text()
