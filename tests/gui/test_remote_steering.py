"""Stopping a remote run that does not answer: the app escalates to signals on the host, where the
launcher is checked against launcher.json before anything is signalled (a real sshd on loopback)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess

import pytest
from scripted import fake_engine_argv, write_run

from gui.session import RunSession

WAIT = 30000


@pytest.mark.slow  # starts podium on the host over ssh (a Python start per call)
def test_a_remote_run_that_ignores_stop_is_terminated_on_its_host(qtbot, remote, workspace):
    run = workspace / "stubborn"
    engine = subprocess.Popen(fake_engine_argv(run, "--interval", "0.05", "--ignore-stop"))
    try:
        qtbot.waitUntil(lambda: (run / "launcher.json").exists(), timeout=WAIT)
        session = RunSession(run, access=remote, poll_ms=30)
        session.stop_grace_s, session.term_grace_s = 0.5, 30.0
        session.start()
        qtbot.waitUntil(lambda: session.state == "running" and session.model.alive is True, timeout=WAIT)
        session.stop()
        qtbot.waitUntil(lambda: engine.poll() is not None, timeout=WAIT)
        assert engine.returncode == -signal.SIGTERM
        # Acknowledged in the app: which signal, to which pid, on which host.
        qtbot.waitUntil(lambda: bool([i for i in session.model.feed if "sent SIGTERM" in i.title]), timeout=WAIT)
        sent = [i for i in session.model.feed if i.title == "engine did not stop; sent SIGTERM"]
        assert f"pid {engine.pid} on 127.0.0.1" in sent[0].detail
        qtbot.waitUntil(lambda: session.state == "failed", timeout=WAIT)
        session.close()
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()


@pytest.mark.slow  # starts podium on the host over ssh
def test_the_host_signals_nothing_when_launcher_json_names_no_live_launcher(remote, workspace):
    run = write_run(workspace / "finished", steps=50).root
    # A crafted launcher.json naming a live process that is not this run's launcher (pid 1).
    crafted = {"host": socket.gethostname(), "pid": 1, "started": 1.0, "cmdline": ["x"]}
    (run / "launcher.json").write_text(json.dumps(crafted))
    with pytest.raises(ProcessLookupError, match="verifiably this run's launcher"):
        remote.signal_launcher(str(run), "TERM")


def test_podium_stop_refuses_a_folder_that_is_not_a_run(tmp_path):
    from engine.launcher.cli import main

    assert main(["stop", str(tmp_path)]) == 2
