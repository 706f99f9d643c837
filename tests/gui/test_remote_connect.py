"""The first contact with a server happens off the GUI thread: while a host accepts the connection and
then says nothing, the window keeps painting and shows that it is connecting."""

from __future__ import annotations

import socket
import threading
import time

WAIT = 30000


class StallingHost:
    """Accepts TCP connections on loopback and never answers (a host whose sshd hangs)."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


def test_connecting_to_a_stalling_host_keeps_the_window_responsive(qtbot, make_window, monkeypatch, tmp_path):
    from PySide6 import QtCore

    import gui.access.ssh as ssh

    monkeypatch.setenv("HOME", str(tmp_path))  # no known_hosts, keys or config of the machine's user
    monkeypatch.setattr(ssh, "CONNECT_TIMEOUT", 2.0)
    window = make_window()
    host = StallingHost()
    seen: list[tuple[float, str]] = []
    timer = QtCore.QTimer(interval=20)
    timer.timeout.connect(lambda: seen.append((time.monotonic(), window.runs_panel.folder.text())))
    timer.start()
    try:
        started = time.monotonic()
        assert window.workspaces.open(f"ssh://127.0.0.1:{host.port}/data/runs")
        took = time.monotonic() - started
    finally:
        timer.stop()
        host.close()
    during = [t for t, _ in seen if t >= started]
    assert took >= ssh.CONNECT_TIMEOUT  # the host really stalled the contact this long
    # The event loop kept turning while the host stalled: a blocked loop ticks at most once, after the connect.
    assert len(during) >= 5, f"{len(during)} ticks of a 20 ms timer in {took:.1f} s"
    assert any("Connecting to 127.0.0.1…" in text for _, text in seen)
    # It answered with nothing: the workspace is the server's, shown as unreachable, not as connecting.
    assert window.workspaces.remote
    qtbot.waitUntil(lambda: "disconnected" in window.runs_panel.folder.text(), timeout=WAIT)
    assert "Connecting to" not in window.runs_panel.folder.text()
