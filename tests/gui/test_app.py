"""The entry point: no torch in the GUI process, --screenshot, and the no-display fallback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6 import QtGui
from scripted import write_run

import gui.app

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "miditok", "music21", "symusic")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(QT_QPA_PLATFORM="offscreen", **extra)
    return env


@pytest.mark.slow
def test_the_gui_process_never_imports_torch_or_the_music_libraries(tmp_path):
    """Build the whole window, open a run, start the new-run dialog's validation; then look at sys.modules."""
    run = write_run(tmp_path / "r", steps=200).root
    code = f"""
import sys, tempfile
from pathlib import Path
from PySide6 import QtCore, QtWidgets
import gui.app, gui.main_window
from gui.main_window import MainWindow
from gui.models.hardware import detect
from gui.widgets.dialogs import NewRunDialog
from engine.contract.config import default_config_path
app = QtWidgets.QApplication([])
settings = QtCore.QSettings(tempfile.mktemp(suffix='.ini'), QtCore.QSettings.Format.IniFormat)
w = MainWindow(settings, Path({str(tmp_path)!r}))
w.show()
s = w.open_run(Path({str(run)!r}))
s.catch_up()
w.dashboard.redraw_all()
d = NewRunDialog(Path({str(tmp_path)!r}), detect(), default_config_path())
d.validate()
print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_screenshot_renders_a_run_offscreen_and_exits(tmp_path):
    run = write_run(tmp_path / "runs" / "shot", steps=400, nan_at=[200]).root
    png = tmp_path / "shot.png"
    env = _env()
    env.pop("QT_QPA_PLATFORM")  # --screenshot must pick offscreen by itself
    out = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--open",
            str(run),
            "--screenshot",
            str(png),
            "--size",
            "1200x800",
            "--theme",
            "dark",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    image = QtGui.QImage(str(png))
    assert (image.width(), image.height()) == (1200, 800)
    # Dark theme and a real plot: many distinct colours, a dark top-left corner.
    assert QtGui.QColor(image.pixel(5, 60)).lightness() < 80
    colours = {image.pixel(x, y) for x in range(0, 1200, 7) for y in range(0, 800, 7)}
    assert len(colours) > 50


def test_open_rejects_a_missing_folder(tmp_path, capsys):
    assert gui.app.main(["--open", str(tmp_path / "nope"), "--screenshot", str(tmp_path / "x.png")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_no_display_falls_back_to_the_headless_default_run(monkeypatch, capsys):
    import engine.launcher.cli
    from engine.launcher.entry import main as podium

    calls = []
    monkeypatch.setattr(engine.launcher.cli, "main", lambda argv: calls.append(argv) or 0)
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert podium([]) == 0
    (argv,) = calls
    assert argv[:2] == ["run", "-r"] and argv[2].startswith("runs/run-")
    assert "no display" in capsys.readouterr().out
    assert podium(["--open", "somewhere"]) == 2  # GUI flags without a display: say so, do not train


def test_a_screenshot_shows_one_tab_bar_per_group_of_docks(qtbot, make_window, tmp_path):
    """Qt replaces a tab bar as docks are tabified and deletes the old one later; a one-shot render must not draw it
    over the docks (it showed as a second "Events | Log" on the Run info dock)."""
    from argparse import Namespace

    from PySide6 import QtWidgets

    window = make_window()
    png = tmp_path / "window.png"
    args = Namespace(size="1400x900", dock=["samples"], screenshot=str(png))
    assert gui.app._screenshot(QtWidgets.QApplication.instance(), window, args) == 0 and png.exists()
    groups = [tuple(bar.tabText(i) for i in range(bar.count())) for bar in window.findChildren(QtWidgets.QTabBar)]
    assert sorted(groups) == [
        ("Events", "Log", "Alerts", "Checkpoints", "Config editor"),
        ("System", "Music", "Samples"),
    ]
    assert not window.panels.docks["samples"].visibleRegion().isEmpty(), "--dock samples is the tab shown"
    assert window.music_dock.visibleRegion().isEmpty()


def test_main_help_lists_the_desktop_app_options():
    out = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--help"], capture_output=True, text=True, timeout=120, cwd=REPO
    ).stdout
    for option in ("--open RUN_DIR", "--screenshot FILE.png", "--workspace DIR"):
        assert option in out
