"""A remote run's checkpoints from the browser: deleted on the host over SFTP, with the same refusals as on
this disk, the run resumed on its host from its newest full checkpoint, and a new run forked there from one
of its checkpoints with a config edited here (a real sshd on loopback)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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


@pytest.mark.slow  # podium checkpoints list started on the host over ssh
def test_a_remote_runs_average_given_its_own_name_is_listed_as_on_this_disk(qtbot, remote, workspace):
    run = write_run(workspace / "finished", steps=100).root
    fake_checkpoint(run / "checkpoints" / "step-0000010", 10)
    inputs = [{"step": 10, "val_loss": 4.9, "used": True}]
    named = fake_checkpoint(
        run / "averages" / "soup for the paper", 10, kind="weights", provenance={"method": "greedy", "inputs": inputs}
    )
    browser = CheckpointBrowser(CheckpointModel())
    qtbot.addWidget(browser)
    browser.set_access(remote)
    browser.set_run(run)
    qtbot.waitUntil(lambda: len(browser.model.rows) == 2, timeout=HOST_MS)
    row = browser.model.row(named)
    assert row is not None and row.source == "average" and row.valid
    assert row.provenance == {"method": "greedy", "inputs": inputs}


@pytest.mark.slow  # a finished 2-rank run resumed on the host (torch there)
def test_a_remote_run_is_resumed_on_its_host_from_its_newest_full_checkpoint(
    qtbot, make_window, client, smoke_run, workspace, settings
):
    run = Path(shutil.copytree(smoke_run, workspace / "smoke"))
    events = run / "events.jsonl"
    settings.setValue("remote/127.0.0.1/podium", client.podium_command())
    window = make_window()
    assert window.workspaces.open(client.url(workspace))
    window.open_run(run)
    browser = window.panels.checkpoints
    qtbot.waitUntil(lambda: any(r.kind == "full" for r in browser.model.rows), timeout=HOST_MS)
    newest = next(r for r in browser.model.rows if browser.model.resume_mode(r) == "resume")
    browser.confirm = lambda _title, _text: True
    browser.select_paths([newest.path])
    assert browser.resume_button.isEnabled()
    ends = _count(events, "run_end")
    browser.resume_from()
    # podium run --resume ran on the host, from that checkpoint, and ended there.
    qtbot.waitUntil(lambda: _count(events, "run_end") > ends, timeout=HOST_MS)
    starts = [e for e in map(json.loads, events.read_text().splitlines()) if e["type"] == "run_start"]
    resumed = starts[-1]["resumed_from"]
    assert (resumed["step"] if isinstance(resumed, dict) else resumed) == newest.step
    session = window.sessions[run]
    assert session.access.remote
    qtbot.waitUntil(lambda: session.model.events == events.read_bytes().count(b"\n"), timeout=HOST_MS)


@pytest.mark.slow  # a finished 2-rank run forked on the host (torch there)
def test_a_fork_from_a_remote_checkpoint_trains_on_the_host_from_it_with_the_config_edited_here(
    qtbot, make_window, client, smoke_run, workspace, settings
):
    run = Path(shutil.copytree(smoke_run, workspace / "smoke"))
    settings.setValue("remote/127.0.0.1/podium", client.podium_command())
    window = make_window()
    assert window.workspaces.open(client.url(workspace))
    window.open_run(run)
    panels = window.panels
    browser = panels.checkpoints
    checkpoint = run / "checkpoints" / "step-0000015"
    qtbot.waitUntil(lambda: browser.model.row(checkpoint) is not None, timeout=HOST_MS)
    browser.select_paths([checkpoint])
    assert browser.fork_button.isEnabled()
    browser.fork_button.click()
    # The editor holds the config the checkpoint was trained with, read from its manifest on the host.
    assert panels.config.checkpoint.text() == str(checkpoint)
    assert "the config of" in panels.config.editor.toPlainText()
    panels.config.run_name.setText("forked")
    panels.config.nproc.setValue(1)
    lr = panels.config.form.rows["optim.lr"].editor
    lr.setText("0.0005")
    lr.textEdited.emit("0.0005")
    panels.config.fork_button.click()
    forked = workspace / "forked"
    qtbot.waitUntil(lambda: _count(forked / "events.jsonl", "run_end") == 1, timeout=3 * HOST_MS)
    events = [json.loads(line) for line in (forked / "events.jsonl").read_text().splitlines()]
    resumed = next(e for e in events if e["type"] == "run_start")["resumed_from"]
    assert (resumed["step"] if isinstance(resumed, dict) else resumed) == 15
    assert "lr: 0.0005" in (forked / "config.yaml").read_text()
    assert window.sessions[forked].access.remote


def _count(events: Path, kind: str) -> int:
    if not events.exists():
        return 0
    return sum(1 for line in events.read_text().splitlines() if json.loads(line)["type"] == kind)
