"""Fixtures for the GUI tests: isolated settings, scripted runs, a window factory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scripted import write_run  # noqa: E402


@pytest.fixture
def settings(tmp_path):
    from PySide6 import QtCore

    return QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)


@pytest.fixture
def workspace(tmp_path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


@pytest.fixture
def finished_run(workspace) -> Path:
    return write_run(workspace / "finished", steps=1000, nan_at=[500]).root


@pytest.fixture
def make_window(qtbot, settings, workspace):
    """A MainWindow on an empty workspace; closed without questions at teardown."""
    from gui.main_window import MainWindow
    from gui.models.hardware import Hardware

    windows = []

    def make(**kwargs):
        kwargs.setdefault("hardware", lambda: Hardware([], 2, "test"))
        window = MainWindow(settings, workspace, **kwargs)
        # pytest-qt closes its widgets before this fixture's teardown: quiet them first, or a launcher still
        # winding down (a run that just failed) makes closeEvent ask "leave it running?" in a modal that
        # nobody answers, and the whole test session hangs.
        qtbot.addWidget(window, before_close_func=_quiet)
        window.resize(1400, 900)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        _quiet(window)
        window.close()


def _quiet(window) -> None:
    """No "leave it running?" question when the test's window is closed."""
    window._closing = True
    for session in window.sessions.values():
        session.launched_here = False


@pytest.fixture
def remote(client, workspace):
    """The workspace fixture's folder, reached over SSH (tests/sshd.py)."""
    from gui.access.ssh import SshAccess

    access = SshAccess(client.url(workspace), podium_command=client.podium_command())
    yield access
    access.close()
