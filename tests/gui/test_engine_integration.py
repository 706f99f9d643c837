"""The GUI against the real engine: a 2-rank CPU smoke run (resources/smoke.yaml).

Started from the GUI and steered by its buttons; a headless run attached to;
an engine whose workers die shows the failed state. Skipped, with the reason,
where the engine cannot run here.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess

import pytest

from engine.contract.commandline import engine_command
from engine.contract.config import resources_dir
from gui.widgets.dialogs import NewRunRequest

SMOKE = resources_dir() / "smoke.yaml"
WAIT = 120_000  # ms: data preparation plus torchrun start-up on a busy 2-core machine

pytestmark = [
    pytest.mark.slow,  # every test starts real torchrun runs from the window
    pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch to run a real smoke training"),
]


def _request(window, name: str, *overrides: str) -> NewRunRequest:
    return NewRunRequest(config=SMOKE, name=name, nproc=2, overrides=list(overrides), run_dir=window.workspace / name)


def _ack(qtbot, session, cmd: str) -> str:
    qtbot.waitUntil(lambda: any(c.cmd == cmd and c.outcome for c in session.model.commands.values()), timeout=WAIT)
    return next(c.outcome for c in session.model.commands.values() if c.cmd == cmd and c.outcome)


def test_a_run_started_from_the_gui_plots_and_obeys_its_buttons(qtbot, make_window):
    window = make_window()
    # Long enough to steer; the stop button ends it.
    session = window.start_run(_request(window, "gui-smoke", "run.max_steps=100000", "checkpoint.interval=0"))
    assert session is not None and session.launched_here
    qtbot.waitUntil(lambda: len(session.model.series.get("metrics/loss", ())) >= 2, timeout=WAIT)
    qtbot.waitUntil(lambda: window.act_pause.isEnabled(), timeout=WAIT)
    loss = next(c for c in window.dashboard.plots["loss"].curves if c.label == "train")
    qtbot.waitUntil(lambda: loss.drawn is not None and loss.line.getOriginalDataset()[0] is not None, timeout=WAIT)
    window.act_pause.trigger()
    assert _ack(qtbot, session, "pause") == "done"
    qtbot.waitUntil(lambda: session.state == "paused" and window.act_resume.isEnabled(), timeout=WAIT)
    window.act_resume.trigger()
    assert _ack(qtbot, session, "resume") == "done"
    qtbot.waitUntil(lambda: session.state == "running", timeout=WAIT)
    window.set_lr(5e-4)
    assert _ack(qtbot, session, "set_lr") == "done"
    window.act_stop.trigger()
    with qtbot.waitSignal(session.ended, timeout=WAIT) as ended:
        pass
    assert ended.args == ["stopped"]
    assert _ack(qtbot, session, "stop") == "done"
    assert [m.kind for m in session.model.markers].count("control") >= 4
    qtbot.waitUntil(lambda: session.process_alive() is False, timeout=WAIT)


def test_attaching_to_a_headless_run_follows_it_to_the_end(qtbot, make_window):
    window = make_window()
    run_dir = window.workspace / "headless-smoke"
    proc = subprocess.Popen(
        engine_command("run", "-c", str(SMOKE), "-r", str(run_dir), "--nproc", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        qtbot.waitUntil(lambda: (run_dir / "events.jsonl").exists(), timeout=WAIT)
        session = window.open_run(run_dir)
        assert not session.launched_here
        with qtbot.waitSignal(session.ended, timeout=WAIT) as ended:
            pass
        assert ended.args == ["finished"]
        assert len(session.model.series["metrics/loss"]) >= 2 and "eval/val_loss" in session.model.series
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    # engine.log holds the launcher's lines though another process started the run; the Log pane shows it all.
    log = (run_dir / "engine.log").read_text(errors="replace").strip()
    assert "[launcher]: [running] training" in log and "[launcher]: run finished at step 30" in log
    qtbot.waitUntil(lambda: window.log_view.toPlainText().strip() == log, timeout=WAIT)


def test_an_engine_whose_workers_die_shows_failed(qtbot, make_window):
    psutil = pytest.importorskip("psutil")
    window = make_window()
    session = window.start_run(_request(window, "crash-smoke", "run.max_steps=100000", "checkpoint.interval=0"))
    qtbot.waitUntil(lambda: len(session.model.series.get("metrics/loss", ())) >= 1, timeout=WAIT)
    torchrun = psutil.Process(session.pid).children()[0]
    for proc in torchrun.children(recursive=True):  # the training ranks die as in a segfault
        proc.send_signal(signal.SIGKILL)
    with qtbot.waitSignal(session.ended, timeout=WAIT) as ended:
        pass
    assert ended.args == ["failed"]
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=WAIT)
    assert "failed" in window.banner.text.text()
