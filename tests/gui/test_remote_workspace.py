"""A remote workspace in the app, against a real OpenSSH server on loopback: the runs list computed on the
host, the first contact's host-key question, steering and a live run read through SSH."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from scripted import fake_engine_argv, write_run

from engine.contract.errors import CommandError
from engine.launcher.runs_listing import list_runs
from gui.access import Unreachable
from gui.access.ssh import SshAccess
from gui.models.midi import MidiError
from gui.models.workspace import WorkspaceIndex
from gui.remote_workspace import RemoteIndex, connect, podium_command, recent_workspaces, remember, summary_of
from tests.helpers import wait_until

NOW = 1_700_100_000.0


def _workspace_with_a_study(workspace: Path) -> None:
    write_run(workspace / "finished", steps=300, t0=NOW - 3600)
    write_run(workspace / "stopped", steps=200, end="stopped", t0=NOW - 7200)
    write_run(workspace / "live", steps=100, end=None, t0=NOW - 60)
    write_run(workspace / "studies" / "lr" / "trial-0000", steps=100, end="pruned", t0=NOW - 9000)
    (workspace / "not-a-run").mkdir()


def test_podium_runs_json_lists_what_the_local_runs_list_shows_and_the_studies_trials(workspace):
    _workspace_with_a_study(workspace)
    listed = {s["name"]: s for s in list_runs(workspace, now=NOW)}
    assert set(listed) == {"finished", "stopped", "live", "trial-0000"}
    assert listed["trial-0000"]["state"] == "pruned"
    assert listed["trial-0000"]["path"] == str(workspace / "studies" / "lr" / "trial-0000")
    # The host's listing and the app's own index agree field by field on every run they both show.
    local = {s.name: dataclasses.asdict(s) for s in WorkspaceIndex(workspace).refresh(now=NOW)}
    for name, summary in local.items():
        assert {k: str(v) if k == "path" else v for k, v in summary.items()} == {
            k: v for k, v in listed[name].items() if k not in ("alive", "notes")
        }
    assert listed["finished"]["best_val_loss"] is not None and listed["live"]["state"] == "running"


@pytest.mark.slow  # starts podium on the host over ssh (a Python start per call)
def test_a_remote_runs_list_comes_from_one_call_on_the_host(remote, workspace):
    _workspace_with_a_study(workspace)
    runs = RemoteIndex(remote).refresh()
    assert {r.name: r.state for r in runs}["finished"] == "finished"
    assert {r.name for r in runs} == {"finished", "stopped", "live", "trial-0000"}
    assert all(isinstance(r.path, Path) and r.path.is_absolute() for r in runs)


def test_a_host_without_podium_on_its_path_says_how_to_set_it(client, workspace):
    access = SshAccess(client.url(workspace), podium_command="no-such-podium")
    try:
        index = RemoteIndex(access)
        assert index.refresh() == []
        assert "no-such-podium" in (index.problem or "") and "File > Open workspace" in (index.problem or "")
    finally:
        access.close()


def test_a_hostile_listing_row_is_dropped_not_shown(remote):
    assert summary_of({"path": "relative", "name": "x", "state": "running"}) is None
    assert summary_of(["not", "a", "row"]) is None
    odd = summary_of({"path": "/r", "name": "r", "state": "running", "step": True, "best_val_loss": float("nan")})
    assert odd is not None and odd.step == 0 and odd.best_val_loss is None


@pytest.mark.slow  # starts podium on the host over ssh (a Python start per call)
def test_a_dropped_host_keeps_the_last_list_and_says_disconnected(remote, client, workspace):
    write_run(workspace / "finished", steps=100)
    index = RemoteIndex(remote)
    assert [r.name for r in index.refresh()] == ["finished"] and index.problem is None
    client.kill()
    try:
        assert [r.name for r in index.refresh()] == ["finished"]
        assert index.problem == "disconnected, retrying"
    finally:
        client.start()
    wait_until(lambda: index.refresh() and index.problem is None, 20, "the list to come back")


def test_the_first_contact_asks_about_an_unknown_host_and_refuses_without_a_yes(qtbot, sshd, monkeypatch, settings):
    monkeypatch.setenv("HOME", str(sshd.home))
    sshd.known_hosts.unlink(missing_ok=True)
    asked = []
    assert connect(sshd.url("/tmp"), settings, ask=lambda _p, u: asked.append(u) or False) is None
    assert len(asked) == 1 and not sshd.known_hosts.exists()
    access = connect(sshd.url("/tmp"), settings, ask=lambda _p, u: True)
    assert access is not None and access.listdir("/tmp") != []
    access.close()
    assert f"[127.0.0.1]:{sshd.port}" in sshd.known_hosts.read_text()


def test_the_remote_podium_command_and_the_workspace_are_remembered(settings):
    assert podium_command(settings, "gpu1") == "podium"
    remember(settings, "ssh://gpu1/data/runs")
    remember(settings, "/home/me/runs")
    remember(settings, "ssh://gpu1/data/runs")
    assert recent_workspaces(settings) == ["ssh://gpu1/data/runs", "/home/me/runs"]
    assert settings.value("workspace") == "ssh://gpu1/data/runs"


@pytest.mark.slow  # starts podium on the host over ssh (a Python start per call)
def test_steering_a_live_run_over_ssh_is_acknowledged_and_refused_when_disconnected(remote, client, workspace):
    import subprocess

    run = workspace / "live"
    engine = subprocess.Popen(fake_engine_argv(run, "--interval", "0.02"))
    try:
        wait_until(lambda: (run / "events.jsonl").exists(), 20, "the fake engine's first events")
        # Liveness as the host sees it (launcher.json's pid, start time and command line), asked in the background.
        wait_until(lambda: remote.process_alive(str(run)) is True, 30, "the host to say the engine lives")
        sent = {
            remote.send_command(str(run), "pause"): "pause",
            remote.send_command(str(run), "resume"): "resume",
            remote.send_command(str(run), "set_lr", lr=2e-4): "set_lr",
            remote.send_command(str(run), "save_checkpoint"): "save_checkpoint",
            remote.send_command(str(run), "profile", steps=5): "profile",
        }

        def acks() -> dict:
            lines = remote.read(str(run / "events.jsonl")).decode().splitlines()
            return {
                e["id"]: e["outcome"] for e in map(json.loads, lines) if e["type"] == "control_ack" and e["id"] in sent
            }

        assert wait_until(lambda: len(acks()) == len(sent) and acks(), 30, "every acknowledgement") == dict.fromkeys(
            sent, "done"
        )
        with pytest.raises(CommandError, match="lr"):
            remote.send_command(str(run), "set_lr", lr=-1.0)  # the command's model refuses it before the wire
        client.kill()
        try:
            with pytest.raises(Unreachable):
                remote.send_command(str(run), "pause")
        finally:
            client.start()
        stop_id = wait_until(lambda: _try_send(remote, str(run), "stop"), 20, "the stop after reconnecting")
        sent[stop_id] = "stop"
        assert engine.wait(timeout=30) == 0
        assert acks()[stop_id] == "done"
        with pytest.raises(CommandError, match="has ended"):
            remote.send_command(str(run), "pause")  # the host's podium control refuses an ended run
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()


def _try_send(remote: SshAccess, run: str, cmd: str) -> str | None:
    try:
        return remote.send_command(run, cmd)
    except Unreachable:
        return None


@pytest.mark.slow  # starts podium on the host over ssh (a Python start per call)
def test_the_window_lists_a_remote_workspace_and_says_when_it_is_away(qtbot, make_window, client, workspace, settings):
    write_run(workspace / "finished", steps=200)
    write_run(workspace / "studies" / "lr" / "trial-0000", steps=100, end="pruned")
    settings.setValue("remote/127.0.0.1/podium", client.podium_command())
    window = make_window()
    assert window.workspaces.open(client.url(workspace))
    table = window.runs_panel.model
    heading = window.runs_panel.folder
    assert f"127.0.0.1:{workspace}" in heading.text()  # at once, before the host has answered
    # The list the host computed, studies' trials included (a local scan of this same folder lists no trial).
    qtbot.waitUntil(
        lambda: (
            sorted(r.summary.name for r in table.run_rows()) == ["finished", "trial-0000"]
            and "Runs on" in heading.text()
        ),
        timeout=20000,
    )
    assert f"127.0.0.1:{workspace}" in heading.text() and "retrying" not in heading.text()
    assert settings.value("workspace") == client.url(workspace)
    client.kill()
    try:
        window.watcher.refresh()
        qtbot.waitUntil(lambda: "disconnected, retrying" in heading.text(), timeout=20000)
        assert sorted(r.summary.name for r in table.run_rows()) == ["finished", "trial-0000"]  # the last list stays
    finally:
        client.start()
    # Back to a local folder: the remote connection is closed, the local runs listed.
    assert window.workspaces.open(str(workspace)) and not window.workspaces.remote


@pytest.mark.slow  # starts podium on the host over ssh (a Python start per call)
def test_a_live_remote_run_is_plotted_steered_and_read_whole_across_an_outage(
    qtbot, make_window, client, workspace, settings
):
    import subprocess

    run = workspace / "live"
    engine = subprocess.Popen(fake_engine_argv(run, "--interval", "0.02"))
    try:
        qtbot.waitUntil(lambda: (run / "events.jsonl").exists(), timeout=20000)
        settings.setValue("remote/127.0.0.1/podium", client.podium_command())
        window = make_window()
        assert window.workspaces.open(client.url(workspace))
        session = window.open_run(run)
        assert session.access is window.workspaces.access and session.access.remote
        qtbot.waitUntil(
            lambda: session.model.events > 20 and bool(window.dashboard.plots["loss"].curves), timeout=20000
        )
        acked: list = []
        session.ackReceived.connect(acked.append)
        for cmd, args in [("pause", {}), ("resume", {}), ("set_lr", {"lr": 2e-4}), ("save_checkpoint", {})]:
            window.send(cmd, **args)
        qtbot.waitUntil(lambda: len(acked) == 4, timeout=30000)
        assert [c.outcome for c in acked] == ["done"] * 4

        client.kill()
        try:
            qtbot.waitUntil(lambda: session.disconnected is not None, timeout=20000)
            feed = session.model.feed
            qtbot.waitUntil(lambda: any(f.title == "disconnected, retrying" for f in feed), timeout=5000)
            session.send("pause")  # refused visibly, never queued
            qtbot.waitUntil(
                lambda: any(f.title == "could not send pause" and f.severity == "critical" for f in feed), timeout=20000
            )
        finally:
            client.start()
        qtbot.waitUntil(lambda: session.disconnected is None, timeout=30000)
        session.send("stop")
        qtbot.waitUntil(lambda: engine.poll() is not None, timeout=30000)
        assert engine.returncode == 0
        lines = (run / "events.jsonl").read_bytes().count(b"\n")
        qtbot.waitUntil(lambda: session.model.events == lines, timeout=30000)
        qtbot.waitUntil(lambda: session.state == "stopped", timeout=30000)
        steps = session.model.series["metrics/loss"].steps
        assert len(set(steps.tolist())) == len(steps)  # nothing read twice across the outage
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()


@pytest.mark.slow  # starts podium on the host over ssh (a Python start per call)
def test_a_remote_samples_midi_is_fetched_to_show_and_play(qtbot, make_window, client, workspace, settings):
    from test_panels_models import sample_round, write_symusic_midi

    run = write_run(workspace / "finished", steps=100, samples=False).root
    (run / "samples").mkdir()
    write_symusic_midi(run / "samples" / "step-100.mid")
    with open(run / "events.jsonl", "a") as f:
        f.write(json.dumps(sample_round(100, ["samples/step-100.mid"])) + "\n")
    settings.setValue("remote/127.0.0.1/podium", client.podium_command())
    window = make_window()
    assert window.workspaces.open(client.url(workspace))
    window.open_run(run)
    samples = window.panels.samples.model
    qtbot.waitUntil(lambda: bool(samples.rounds), timeout=20000)
    item = samples.rounds[-1].samples[0]
    piece = samples.piece(item)
    assert piece.n_notes > 0
    local = samples.fetch(item.path)
    assert local != item.path and local.read_bytes() == item.path.read_bytes()
    item.path.unlink()  # gone on the host: the panel says so for that sample instead of failing
    samples._pieces.clear()
    with pytest.raises(MidiError, match="step-100.mid"):
        samples.piece(item)


def test_the_open_workspace_dialog_takes_a_url_and_the_hosts_podium_command(qtbot, settings, tmp_path):
    from gui.remote_workspace import WorkspaceDialog

    dialog = WorkspaceDialog(settings, str(tmp_path))
    qtbot.addWidget(dialog)
    assert not dialog.command.isEnabled()  # a local folder has no host
    dialog.location.setCurrentText("ssh://gpu1:notaport/data")
    dialog._accept()
    assert "port" in dialog.error.text() and not dialog.result()
    dialog.location.setCurrentText(str(tmp_path / "missing"))
    dialog._accept()
    assert "not a folder" in dialog.error.text()
    dialog.location.setCurrentText("ssh://ann@gpu1/data/runs")
    assert dialog.command.isEnabled()
    dialog.command.setText("~/venv/bin/python -m engine")
    dialog._accept()
    assert dialog.result() == dialog.DialogCode.Accepted and dialog.url() == "ssh://ann@gpu1/data/runs"
    assert podium_command(settings, "gpu1") == "~/venv/bin/python -m engine"
    again = WorkspaceDialog(settings, "ssh://gpu1/other")
    qtbot.addWidget(again)
    assert again.command.text() == "~/venv/bin/python -m engine"  # remembered per host
