"""Work on a host waits in a nested event loop (gui.remote_workspace.in_background), so the window keeps
answering: the app can quit meanwhile, and the same action can be asked for again."""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from gui import remote_launch
from gui.access import Unreachable
from gui.remote_workspace import in_background


def test_quitting_the_app_while_it_waits_on_the_host_cancels_the_wait(qapp):
    release = threading.Event()
    outcome: list[object] = []

    def ask_the_host() -> None:
        try:
            outcome.append(in_background(lambda: release.wait(60)))
        except Unreachable as exc:
            outcome.append(exc)

    QtCore.QTimer.singleShot(0, ask_the_host)
    QtCore.QTimer.singleShot(100, qapp.quit)  # File > Quit while the host has not answered
    qapp.exec()
    release.set()
    assert len(outcome) == 1 and isinstance(outcome[0], Unreachable) and "cancelled" in str(outcome[0])


class SlowHost:
    """A host whose launch answers only when released; it refuses then, so no run session opens."""

    remote = True
    root = "/data/runs"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.launches: list[list[str]] = []

    def label(self) -> str:
        return "gpu1:/data/runs"

    def listdir(self, path: str) -> list[str]:
        return []

    def launch(self, argv: list[str], run_dir: str, log: str) -> int:
        self.launches.append(argv)
        self.release.wait(60)
        raise OSError("podium run on the host exited 2")


def test_a_second_resume_while_the_first_is_starting_is_refused(qtbot, monkeypatch):
    window = QtWidgets.QMainWindow()
    qtbot.addWidget(window)
    host = SlowHost()
    refusals: list[str] = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "critical", lambda parent, title, text: refusals.append(text))
    second: list[object] = []

    def resume_again() -> None:  # clicked while the first waits: the window answers meanwhile
        second.append(remote_launch.resume(window, host, Path("/data/runs/a")))
        second.append(window.statusBar().currentMessage())
        host.release.set()

    QtCore.QTimer.singleShot(200, resume_again)
    assert remote_launch.resume(window, host, Path("/data/runs/a")) is None
    assert second[0] is None and "still resuming a on gpu1" in str(second[1])
    assert len(host.launches) == 1, "a second launcher was started on the same run"
    assert refusals == ["gpu1:/data/runs: podium run on the host exited 2"]
    # Once the first has answered, Resume works again.
    assert remote_launch.resume(window, host, Path("/data/runs/a")) is None
    assert len(host.launches) == 2
