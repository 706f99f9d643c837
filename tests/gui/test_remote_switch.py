"""Switching between a server's workspace and a local folder of the same path: a scan of the workspace
left behind, finishing after the switch, never fills the new one's runs list."""

from __future__ import annotations

import threading
from pathlib import Path

from scripted import write_run

from engine.contract.rundir import RunSummary

WAIT = 20000


class SlowServerIndex:
    """A server's runs list whose answer is held back until ``release`` (as a slow host's would be)."""

    def __init__(self, root: Path):
        self.root = root
        self.release = threading.Event()
        self.started = threading.Event()

    def refresh(self, now: float | None = None) -> list[RunSummary]:
        self.started.set()
        self.release.wait(WAIT / 1000)
        return [RunSummary(self.root / "on-the-server", "on-the-server", "running", None, 5, None, None, None, None)]


def test_a_late_scan_of_a_server_with_the_same_path_does_not_fill_the_local_list(qtbot, make_window, workspace):
    write_run(workspace / "here", steps=20)
    window = make_window()
    shown: list[list[str]] = []
    window.watcher.refreshed.connect(lambda _root, _scan: shown.append(_names(window)))
    server = SlowServerIndex(Path(workspace))
    window.watcher.index = server  # the server's workspace, at this machine's path
    window.watcher.refresh()
    assert server.started.wait(WAIT / 1000)
    assert window.workspaces.open(str(workspace))  # back to the local folder while the server still answers
    server.release.set()
    qtbot.waitUntil(lambda: "here" in _names(window), timeout=WAIT)
    assert all("on-the-server" not in names for names in shown)
    assert "on-the-server" not in _names(window)


def _names(window) -> list[str]:
    return [row.summary.name for row in window.runs_panel.model.run_rows()]
