"""A group header in a narrow runs dock: its text is elided inside the visible part of the table, so a figure
is never cut mid-number at the view's edge ("best val_loss 4." for 4.498), and the tooltip has it whole."""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtGui

from gui.models.lab import Scan, StudyInfo
from gui.models.runs_query import Group
from gui.theme import LIGHT
from gui.widgets.runs import RunsPanel, WorkspaceWatcher
from tests.gui.test_runs_table import ROWS


def test_a_study_header_wider_than_the_dock_is_elided_in_view_not_cut(qtbot, tmp_path):
    study = StudyInfo(
        "sweep", Path("/w/studies/sweep"), metric="val_loss", target=3, counts={"COMPLETE": 3},
        best={"value": 2.49791, "number": 2},
    )  # fmt: skip
    watcher = WorkspaceWatcher(tmp_path, interval_ms=3_600_000)
    panel = RunsPanel(watcher, LIGHT)
    qtbot.addWidget(panel)
    panel.resize(300, 400)  # the runs dock at 1280x720
    panel.show()
    qtbot.waitExposed(panel)
    panel._on_refreshed(watcher.root, Scan(watcher.root, list(ROWS), {"sweep": study}))
    model, view = panel.model, panel.table
    row = next(r for r, e in enumerate(model.rows) if isinstance(e, Group))
    text = model.index(row, 0).data()
    assert "best val_loss 2.498 (trial 2)" in text and "best val_loss 2.498 (trial 2)" in model.tooltip(row)
    viewport = view.viewport()
    assert view.columnSpan(row, 0) == model.columnCount()
    assert view.visualRect(model.index(row, 0)).width() > viewport.width()  # the header runs out of sight
    # Painted as the view paints it: the text ends (in an ellipsis) inside the view, not at its edge.
    image = viewport.grab().toImage()
    band = view.visualRect(model.index(row, 0)).intersected(viewport.rect())
    background = image.pixelColor(band.right() - 1, band.top() + 1)
    right_inked = max(
        (x for x in range(band.left(), band.right() + 1) for y in range(band.top(), band.bottom())
         if _ink(image.pixelColor(x, y), background)),
        default=-1,
    )  # fmt: skip
    assert 0 < right_inked < band.right() - 2, "the header's text runs into the view's edge"
    assert view.itemDelegateForRow(row) is not view.itemDelegateForRow(row + 1)  # runs' rows keep the plain one
    watcher.stop()


def _ink(color: QtGui.QColor, background: QtGui.QColor) -> bool:
    return abs(color.lightness() - background.lightness()) > 60
