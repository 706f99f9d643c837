"""A panel's toolbar too narrow for its controls puts the rest in its » menu, and that button can be seen."""

from __future__ import annotations

import pytest
from PySide6 import QtWidgets

from gui.theme import DARK, LIGHT
from gui.widgets.engine_job import panel_toolbar


@pytest.mark.parametrize("theme", [LIGHT, DARK], ids=lambda t: t.name)
def test_the_overflow_button_of_a_narrow_panel_toolbar_shows_its_arrow(qtbot, theme):
    panel = QtWidgets.QWidget()
    panel.setStyleSheet(theme.style_sheet())
    bar = panel_toolbar(*[QtWidgets.QPushButton(f"Action {i}") for i in range(8)])
    QtWidgets.QVBoxLayout(panel).addWidget(bar)
    qtbot.addWidget(panel)
    panel.resize(400, 60)
    panel.show()
    qtbot.waitExposed(panel)
    button = bar.findChild(QtWidgets.QToolButton, "qt_toolbar_ext_button")
    assert button is not None and button.isVisible()
    image = button.grab().toImage()
    colours = {image.pixel(x, y) for x in range(image.width()) for y in range(image.height())}
    assert len(colours) > 2, "the » button is drawn blank: the controls it holds cannot be found"
