"""A live run end to end against the stand-in engine (tests/gui/fake_engine.py):
tailing, attaching, the run buttons and their acks, crashes, graceful stop."""

from __future__ import annotations

import signal
import subprocess

import pytest
from PySide6 import QtWidgets
from scripted import fake_engine_argv

from engine.contract.event_models import RunEnd
from engine.contract.events import read_events
from gui import run_control
from gui.session import RunSession
from gui.widgets.dialogs import NewRunRequest, SetLrDialog

WAIT = 20_000  # ms; generous for a loaded 2-core machine


@pytest.fixture
def engines():
    procs = []

    def start(run_dir, *extra):
        proc = subprocess.Popen(fake_engine_argv(run_dir, *extra))
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _fake_launcher(extra: tuple[str, ...] = ()):
    """Stands in for engine_argv: the window launches the fake engine instead of torchrun."""

    def argv(config, run_dir, nproc, overrides=()):
        return fake_engine_argv(run_dir, *extra)

    return argv


def _ack(qtbot, window, cmd: str):
    model = window.primary.model
    qtbot.waitUntil(lambda: any(c.cmd == cmd and c.outcome for c in model.commands.values()), timeout=WAIT)
    return next(c for c in model.commands.values() if c.cmd == cmd and c.outcome)


def test_session_follows_a_live_run_and_reports_progress(qtbot, engines, tmp_path):
    run_dir = tmp_path / "live"
    engines(run_dir, "--interval", "0.02", "--steps", "300")
    session = RunSession(run_dir, poll_ms=30)
    updates = []
    session.updated.connect(lambda: updates.append(session.model.step))
    with qtbot.waitSignal(session.ended, timeout=WAIT) as ended:
        session.start()
    assert ended.args == ["finished"]
    assert len(session.model.series["metrics/loss"]) == 30
    assert len(updates) > 3  # arrived in several polls, live, not in one read at the end
    assert updates == sorted(updates)
    session.close()


@pytest.mark.slow
def test_buttons_steer_the_run_and_every_ack_is_shown(qtbot, make_window, monkeypatch):
    window = make_window()
    window.engine_argv = _fake_launcher(("--interval", "0.05"))
    session = window.start_run(
        NewRunRequest(config=None, name="steer", nproc=2, overrides=[], run_dir=window.workspace / "steer")
    )
    assert session is window.primary and session.launched_here
    qtbot.waitUntil(lambda: session.state == "running" and window.act_pause.isEnabled(), timeout=WAIT)
    assert not window.act_resume.isEnabled()
    window.act_pause.trigger()
    assert not window.act_pause.isEnabled()  # pending: no double pause
    assert _ack(qtbot, window, "pause").outcome == "done"
    qtbot.waitUntil(lambda: session.state == "paused" and window.act_resume.isEnabled(), timeout=WAIT)
    assert not window.act_pause.isEnabled() and window.act_lr.isEnabled() and window.act_ckpt.isEnabled()
    window.status.refresh()
    assert window.status.speed.text() == "paused: 0 tok/s"  # not the last interval's speed
    window.act_resume.trigger()
    _ack(qtbot, window, "resume")
    qtbot.waitUntil(lambda: session.state == "running", timeout=WAIT)
    # Set LR from its action (toolbar button, Run menu and Ctrl+L share it): the dialog opens, its value is sent.
    opened = []

    class Dialog(SetLrDialog):
        def exec(self):
            opened.append(self)
            self.edit.setText("3e-4")
            return QtWidgets.QDialog.DialogCode.Accepted

    monkeypatch.setattr(run_control, "SetLrDialog", Dialog)
    window.act_lr.trigger()
    assert len(opened) == 1
    assert "could not send" not in window.statusBar().currentMessage()
    assert _ack(qtbot, window, "set_lr").args == {"lr": 3e-4}
    qtbot.waitUntil(lambda: session.model.latest.get("lr") == 3e-4, timeout=WAIT)
    window.act_ckpt.trigger()
    _ack(qtbot, window, "save_checkpoint")
    qtbot.waitUntil(lambda: session.model.last_checkpoint is not None, timeout=WAIT)
    assert "engine answered" in window.statusBar().currentMessage()
    kinds = [m.kind for m in session.model.markers]
    assert kinds.count("control") == 4
    window.act_stop.trigger()
    with qtbot.waitSignal(session.ended, timeout=WAIT) as ended:
        pass
    assert ended.args == ["stopped"]
    qtbot.waitUntil(lambda: not window.act_stop.isEnabled(), timeout=WAIT)
    acks = [i.title for i in session.model.feed if i.kind == "ack"]
    assert acks == ["pause: done", "resume: done", "set_lr(lr=0.0003): done", "save_checkpoint: done", "stop: done"]
    log = window.log_view.toPlainText()
    assert "fake engine pid" in log and "command pause: done" in log


@pytest.mark.slow
def test_attaching_to_a_headless_run_gives_the_same_view_and_control(qtbot, make_window, engines):
    window = make_window()
    run_dir = window.workspace / "headless"
    engines(run_dir, "--interval", "0.05")
    qtbot.waitUntil(lambda: (run_dir / "events.jsonl").exists(), timeout=WAIT)
    session = window.open_run(run_dir)
    assert not session.launched_here
    qtbot.waitUntil(lambda: len(session.model.series.get("metrics/loss", ())) > 5, timeout=WAIT)
    first = len(session.model.series["metrics/loss"])
    qtbot.waitUntil(lambda: len(session.model.series["metrics/loss"]) > first + 5, timeout=WAIT)  # it is live
    qtbot.waitUntil(
        lambda: bool(window.dashboard.plots["loss"].curves[0].line.getOriginalDataset()[0] is not None), timeout=WAIT
    )
    assert session.process_alive() is True
    window.act_stop.trigger()
    with qtbot.waitSignal(session.ended, timeout=WAIT) as ended:
        pass
    assert ended.args == ["stopped"]


@pytest.mark.slow
def test_an_engine_that_dies_shows_failed_with_its_last_log_lines(qtbot, make_window):
    window = make_window()
    window.engine_argv = _fake_launcher(("--interval", "0.02", "--crash-at", "60"))
    session = window.start_run(
        NewRunRequest(config=None, name="crash", nproc=1, overrides=[], run_dir=window.workspace / "crash")
    )
    with qtbot.waitSignal(session.ended, timeout=WAIT) as ended:
        pass
    assert ended.args == ["failed"]
    assert "exited without ending the run" in session.model.exit_note
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=WAIT)
    text = window.banner.text.text()
    assert "crash failed" in text and "simulated crash in the training step" in text
    window.status.refresh()
    assert "failed" in window.status.state.text()
    assert not window.act_stop.isEnabled()


def test_stop_escalates_to_sigterm_when_the_engine_ignores_the_command(qtbot, engines, tmp_path):
    run_dir = tmp_path / "stubborn"
    proc = engines(run_dir, "--interval", "0.05", "--ignore-stop")
    qtbot.waitUntil(lambda: (run_dir / "launcher.json").exists(), timeout=WAIT)
    session = RunSession(run_dir, poll_ms=30)
    session.stop_grace_s, session.term_grace_s = 0.5, 5.0
    session.start()
    qtbot.waitUntil(lambda: session.state == "running", timeout=WAIT)
    session.stop()
    qtbot.waitUntil(lambda: proc.poll() is not None, timeout=WAIT)
    assert proc.returncode == -signal.SIGTERM
    qtbot.waitUntil(lambda: session.state == "failed", timeout=WAIT)
    assert any("sent SIGTERM" in i.title for i in session.model.feed)
    session.close()


@pytest.mark.slow
def test_stop_kills_an_engine_that_ignores_sigterm_too(qtbot, engines, tmp_path):
    run_dir = tmp_path / "deaf"
    proc = engines(run_dir, "--interval", "0.05", "--ignore-stop", "--ignore-term")
    qtbot.waitUntil(lambda: (run_dir / "launcher.json").exists(), timeout=WAIT)
    session = RunSession(run_dir, poll_ms=30)
    session.stop_grace_s, session.term_grace_s = 0.2, 0.2
    session.start()
    session.stop()
    qtbot.waitUntil(lambda: proc.poll() is not None, timeout=WAIT)
    assert proc.returncode == -signal.SIGKILL
    assert [i.title for i in session.model.feed if "sent SIG" in i.title] == [
        "engine did not stop; sent SIGTERM",
        "engine did not stop; sent SIGTERM",
        "engine did not stop; sent SIGKILL",
    ]
    session.close()


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["leave", "stop"])
def test_closing_with_a_run_going_asks_to_leave_it_headless_or_stop_it(qtbot, make_window, monkeypatch, choice):
    window = make_window()
    window.engine_argv = _fake_launcher(("--interval", "0.05"))
    session = window.start_run(
        NewRunRequest(
            config=None, name=f"close-{choice}", nproc=1, overrides=[], run_dir=window.workspace / f"close-{choice}"
        )
    )
    qtbot.waitUntil(lambda: session.state == "running", timeout=WAIT)
    asked = []

    def answer(box):
        asked.append(box.text())
        wanted = "Leave running" if choice == "leave" else "Stop and close"
        button = next(b for b in box.buttons() if b.text() == wanted)
        box.clickedButton = lambda: button
        return 0

    monkeypatch.setattr(QtWidgets.QMessageBox, "exec", answer)
    window.close()
    assert asked and "close-" in asked[0]
    if choice == "leave":
        assert not window.isVisible()
        assert session.process_alive() is True  # detached: it outlives the window
        session.send("stop")  # tidy up: the test must not leave an engine behind
        qtbot.waitUntil(lambda: session.process_alive() is False, timeout=WAIT)
    else:
        assert window.isVisible()  # waits for the run to end
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=WAIT)
        # The window may close before its reader hands over the last line; the run's own record says how it ended.
        records, _ = read_events(session.run.events)
        assert [r.reason for r in records if isinstance(r, RunEnd)] == ["stopped"]


def test_profile_next_steps_from_the_run_menu_shows_the_trace_in_the_events_pane(qtbot, make_window, monkeypatch):
    window = make_window()
    window.engine_argv = _fake_launcher(("--interval", "0.05"))
    session = window.start_run(
        NewRunRequest(config=None, name="prof", nproc=2, overrides=[], run_dir=window.workspace / "prof")
    )
    qtbot.waitUntil(lambda: session.state == "running" and window.act_profile.isEnabled(), timeout=WAIT)
    assert window.act_profile in window.menuBar().actions()[1].menu().actions()  # Run menu
    monkeypatch.setattr(QtWidgets.QInputDialog, "getInt", staticmethod(lambda *a, **k: (7, True)))
    window.act_profile.trigger()
    assert _ack(qtbot, window, "profile").args == {"steps": 7}
    view = window.events_view
    qtbot.waitUntil(lambda: any(f.kind == "profile" for f in session.model.feed), timeout=WAIT)
    view.refresh()
    rows = [view.table.topLevelItem(i) for i in range(view.table.topLevelItemCount())]
    row = next(r for r in rows if r.text(2) == "profile")
    assert (
        "7 step(s) recorded" in row.text(3)
        and "host.pt.trace.json" in row.text(3)
        and "aten::mm 12.5 ms" in row.text(3)
    )
    view.filter.setCurrentText("Profiles")
    assert [r.text(2) for r in rows if not r.isHidden()] == ["profile"]
    # Its details offer to open the trace's folder.
    opened = []
    monkeypatch.setattr(view, "open_folder", lambda path: opened.append(view.folder_of(path)))
    view._details(row)
    button = next(b for b in view._box.buttons() if b.text() == "Open folder")
    button.click()
    assert opened == [session.run.root / "profiles" / opened[0].name] and opened[0].is_dir()
    view._box.close()
    with qtbot.waitSignal(session.ended, timeout=WAIT):
        window.act_stop.trigger()
