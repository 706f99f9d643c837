"""Regenerate remote-workspace.png: the app on a workspace served by a real sshd on loopback (tests/sshd.py).

    python docs/screenshots/remote.py [--size 1600x1000] [--out FILE.png]

Scripted runs (tests/gui/scripted.py) and a live fake engine (tests/gui/fake_engine.py) on the "server";
the window lists them through ``podium runs --json`` over SSH and follows the live one over SFTP.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "gui")]

from scripted import fake_engine_argv, write_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1600x1000")
    parser.add_argument("--out", type=Path, default=HERE / "remote-workspace.png")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    from PySide6 import QtCore, QtWidgets

    from gui.main_window import MainWindow
    from gui.models.hardware import Hardware
    from tests.sshd import SshServer

    with tempfile.TemporaryDirectory(prefix="podium-remote-shot-") as tmp:
        base = Path(tmp)
        server = SshServer(base / "ssh")
        server.start()
        server.trust()
        os.environ["HOME"] = str(server.home)
        os.environ.pop("SSH_AUTH_SOCK", None)
        runs = base / "runs"
        now = time.time()
        write_run(runs / "run-bach-baseline", steps=2000, t0=now - 7200, dt=1.5)
        write_run(runs / "run-bach-lr3e-4", steps=1500, end="stopped", t0=now - 5400, dt=1.5, seed=2)
        write_run(runs / "studies" / "lr" / "trial-0003", steps=600, end="pruned", t0=now - 9000, seed=3)
        engine = subprocess.Popen(fake_engine_argv(runs / "run-bach-live", "--interval", "0.01"))
        try:
            app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
            settings = QtCore.QSettings(str(base / "settings.ini"), QtCore.QSettings.Format.IniFormat)
            settings.setValue("remote/127.0.0.1/podium", server.podium_command())
            window = MainWindow(settings, server.url(runs), hardware=lambda: Hardware([], 2, "shot"))
            window.resize(width, height)
            window.show()
            _pump(app, lambda: (runs / "run-bach-live" / "events.jsonl").exists(), 20)
            session = window.open_run(runs / "run-bach-live")
            _pump(app, lambda: session.model.events > 600, 60)
            window.watcher.refresh()
            _pump(app, lambda: len(window.runs_panel.model.rows) == 4, 30)
            session.send("set_lr", lr=2e-4)
            _pump(app, lambda: not session.model.pending_commands(), 30)
            _pump(app, lambda: False, 1.5)
            window.dashboard.redraw_all()
            app.processEvents()
            ok = window.grab().save(str(args.out))
            session.send("stop")
            engine.wait(timeout=30)
            window._closing = True
            window.close()
        finally:
            if engine.poll() is None:
                engine.kill()
            server.stop()
    print(args.out if ok else f"could not write {args.out}")
    return 0 if ok else 1


def _pump(app, until, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if until():
            return True
        time.sleep(0.02)
    return False


if __name__ == "__main__":
    sys.exit(main())
