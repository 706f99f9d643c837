"""The samples panel in the side dock of a 1280x720 window (355 px wide): every shown column whole, the
sample names readable, and what a column that gave way said still in a tooltip."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtWidgets
from test_panels_samples import rounds, run_with_samples  # noqa: F401 (a fixture)

from gui.models.samples import SampleModel
from gui.theme import DARK, LIGHT
from gui.widgets.samples_panel import SamplesPanel

pytest.importorskip("symusic")


@pytest.fixture(params=[LIGHT, DARK], ids=["light", "dark"])
def panel(request, qtbot, run_with_samples):  # noqa: F811
    widget = SamplesPanel(SampleModel(run_with_samples), request.param)
    qtbot.addWidget(widget)
    widget.setStyleSheet(request.param.style_sheet())
    widget.resize(355, 620)
    widget.show()
    widget.ingest(rounds(run_with_samples))
    qtbot.waitUntil(lambda: widget.split.orientation() == QtCore.Qt.Orientation.Vertical, timeout=2000)
    return widget


def _shown(view: QtWidgets.QAbstractItemView, count: int) -> list[int]:
    return [c for c in range(count) if not view.isColumnHidden(c)]


def _whole(view: QtWidgets.QAbstractItemView, header: QtWidgets.QHeaderView, shown: list[int]) -> None:
    assert not view.horizontalScrollBar().isVisible()
    right = max(header.sectionViewportPosition(c) + header.sectionSize(c) for c in shown)
    last = shown[-1]
    # The last column may stretch to the edge; every column ends inside the view.
    assert right <= view.viewport().width() or header.stretchLastSection() and last == header.count() - 1


def test_sample_names_and_the_list_columns_are_whole_in_a_1280x720_dock(qtbot, panel):
    tree = panel.tree
    qtbot.waitUntil(lambda: tree.isColumnHidden(4), timeout=2000)  # Copied gave way first
    shown = _shown(tree, tree.columnCount())
    assert shown[:2] == [0, 1] and 3 in shown  # name, quality and syntax stay
    _whole(tree, tree.header(), shown)
    metrics = tree.fontMetrics()
    newest = tree.topLevelItem(0)
    for item in [newest, *(newest.child(i) for i in range(newest.childCount()))]:
        needed = metrics.horizontalAdvance(item.text(0)) + tree.indentation() * (1 + (item.parent() is not None))
        assert tree.columnWidth(0) >= needed, item.text(0)  # not elided
    sample = newest.child(0)
    assert f"{sample.text(2)} tokens" in sample.toolTip(0) and str(panel.current.path) in sample.toolTip(0)


def test_metric_table_keeps_names_values_and_z_whole_in_a_1280x720_dock(qtbot, panel):
    table = panel.metrics
    assert table.rowCount() >= 2
    qtbot.waitUntil(lambda: table.isColumnHidden(3), timeout=2000)  # the corpus column gave way
    shown = _shown(table, table.columnCount())
    assert shown == [0, 1, 2, 4]
    _whole(table, table.horizontalHeader(), shown)
    row = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == "pitch class entropy")
    # What the hidden column said is where a person looks: the value's and z's tooltips.
    assert table.item(row, 3).text() in table.item(row, 1).toolTip()
    assert table.item(row, 3).text() in table.item(row, 4).toolTip()
    shown_rows = table.viewport().height() // table.verticalHeader().defaultSectionSize()
    assert shown_rows >= min(3, table.rowCount())
    # Wider again, the corpus comes back.
    panel.resize(560, 900)
    qtbot.waitUntil(lambda: not table.isColumnHidden(3) and not panel.tree.isColumnHidden(4), timeout=2000)


def test_every_audio_button_and_what_it_did_are_in_view_in_a_1280x720_dock(qtbot, panel, tmp_path):
    """Not in the toolbar's overflow menu, whose button the app's style draws blank."""
    bar = panel.audio.toolbar
    for button in (panel.play_button, panel.stop_button, panel.wav_button, panel.midi_button):
        qtbot.waitUntil(button.isVisible, timeout=2000)
        assert bar.rect().contains(QtCore.QRect(button.mapTo(bar, QtCore.QPoint(0, 0)), button.size())), button.text()
    assert not panel.status.isVisible()  # no empty line under the toolbar
    assert panel.export_midi(tmp_path / "out.mid") is not None
    assert panel.status.isVisible() and panel.status.text().startswith("wrote out.mid")
