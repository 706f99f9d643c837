"""The piano roll's header in the samples dock of a 1280x720 window (355 px wide): the sample's title and its
note count are both whole, the count on a row of its own when the two do not fit side by side."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtWidgets
from test_panels_samples import run_with_samples  # noqa: F401 (a fixture)
from test_samples_dock import panel  # noqa: F401 (a fixture: the samples panel 355 px wide, both themes)

pytest.importorskip("symusic")


def _whole_in(label: QtWidgets.QLabel, roll: QtWidgets.QWidget) -> None:
    text_width = label.fontMetrics().horizontalAdvance(label.text())
    assert label.isVisible() and label.width() >= text_width, label.text()
    shown = QtCore.QRect(label.mapTo(roll, QtCore.QPoint(0, 0)), label.size())
    assert roll.rect().contains(shown), f"{label.text()!r} runs out of the roll at {shown}"


def test_note_count_and_title_are_whole_in_a_1280x720_dock(qtbot, panel):  # noqa: F811
    roll = panel.roll
    qtbot.waitUntil(lambda: " notes · " in roll.count_label.text() and roll.count_label.width() > 0)
    for label in (roll.title, roll.count_label):
        _whole_in(label, roll)
    title, count = (QtCore.QRect(w.mapTo(roll, QtCore.QPoint(0, 0)), w.size()) for w in (roll.title, roll.count_label))
    assert not title.intersects(count)
    assert roll.plot.geometry().top() >= count.bottom(), "the roll starts below the header"
