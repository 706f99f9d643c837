"""What the app loads before its first paint (#20): each module here is one the window does not need until a run
is opened or a panel shown, and brought back to the start path it costs every start-up its import time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FIRST_PAINT = """
import json, sys, tempfile
from pathlib import Path
from PySide6 import QtCore, QtWidgets
from gui.main_window import MainWindow
app = QtWidgets.QApplication([])
settings = QtCore.QSettings(str(Path(tempfile.mkdtemp()) / 's.ini'), QtCore.QSettings.Format.IniFormat)
window = MainWindow(settings, Path(tempfile.mkdtemp()))
window.resize(1280, 720)
window.show()
window.repaint()  # painted: what the timers started here load later is not on the start path
print(json.dumps({'visible': window.isVisible(), 'modules': sorted(sys.modules)}))
"""

# Loaded when a run is opened, a panel first shown or a server first reached.
NOT_BEFORE_FIRST_PAINT = [
    "asyncssh",
    "psutil",
    "gui.access.ssh",
    "gui.session",
    "gui.models.run_reader",
    "gui.models.run_model",
    "gui.models.run_feed",
    "gui.models.columns",
    "gui.models.slurm_state",
    "gui.widgets.alerts_panel",
    "gui.widgets.checkpoint_browser",
    "gui.widgets.config_editor",
    "gui.widgets.samples_panel",
    "gui.widgets.study_panel",
    "engine.contract.launcher_record",
    "engine.contract.manifest",
]


def _loaded(code: str) -> dict:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def first_paint() -> dict:
    return _loaded(FIRST_PAINT)


def test_the_first_paint_waits_for_nothing_a_run_or_a_panel_brings(first_paint):
    assert first_paint["visible"]
    assert [m for m in NOT_BEFORE_FIRST_PAINT if m in first_paint["modules"]] == []


def test_the_first_paint_loads_no_pydantic_model_or_yaml(first_paint):
    assert [m for m in ("pydantic", "yaml") if m in first_paint["modules"]] == []


def test_the_run_directory_layout_loads_without_pydantic_or_psutil():
    loaded = _loaded(
        "import json, sys\n"
        "from engine.contract.rundir import RunDir\n"
        "print(json.dumps({'modules': sorted(sys.modules)}))"
    )["modules"]
    assert [m for m in ("pydantic", "psutil", "engine.contract.events") if m in loaded] == []


def test_the_launcher_record_is_still_read_through_the_run_directory(tmp_path):
    from engine.contract import rundir
    from engine.contract.launcher_record import ProcessIdentity

    run = rundir.RunDir(tmp_path)
    run.write_launcher(os.getpid())
    assert rundir.ProcessIdentity is ProcessIdentity
    assert run.launcher_alive() is True
    assert run.launcher_process() is None  # alive, but this process is no podium launcher: never signalled
    run.launcher.write_text('{"host": "x", "pid": -1}')  # hostile: refused, not trusted
    assert run.launcher_identity() is None and run.launcher_alive() is None
