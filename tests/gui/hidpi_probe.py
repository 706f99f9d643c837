"""Run in a process of its own (QT_SCALE_FACTOR must be set before Qt starts): a window showing a
200,000-point loss series; prints the loss plot's device pixel ratio, drawing width and points drawn."""

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtWidgets

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gui.main_window import MainWindow  # noqa: E402
from gui.models.hardware import Hardware  # noqa: E402
from gui.models.run_model import RunModel  # noqa: E402

app = QtWidgets.QApplication([])
workspace = Path(tempfile.mkdtemp())
settings = QtCore.QSettings(os.path.join(workspace, "settings.ini"), QtCore.QSettings.Format.IniFormat)
window = MainWindow(settings, workspace, hardware=lambda: Hardware([], 2, "test"))
window.resize(1400, 900)
window.show()
app.processEvents()
model = RunModel(name="big")
n = 200_000
model.store.get("metrics/loss").extend(np.arange(n), np.arange(n) * 0.1, np.sin(np.arange(n) / 7.0))
window.smoothing.setValue(0)
window.dashboard.set_models([model])
window.dashboard.redraw_all()
plot = window.dashboard.plots["loss"]
print(
    json.dumps(
        {
            "ratio": window.devicePixelRatioF(),
            "logical_width": plot.item.getViewBox().width(),
            "width": plot.view()[2],
            "points": len(plot.curves[0].line.getData()[0]),
        }
    )
)
window._closing = True
window.close()
