"""A tab bar too narrow for its tabs (the study charts' in a small dock) shows its scroll arrows."""

from __future__ import annotations

import pytest
from PySide6 import QtWidgets

from gui.theme import DARK, LIGHT


@pytest.mark.parametrize("theme", [LIGHT, DARK], ids=lambda t: t.name)
def test_the_scroll_arrows_of_a_narrow_tab_bar_are_drawn(qtbot, theme):
    tabs = QtWidgets.QTabWidget()
    tabs.setStyleSheet(theme.style_sheet())
    for name in ("History", "Intermediate", "Parallel", "Importances", "Scaling", "Worker log"):
        tabs.addTab(QtWidgets.QWidget(), name)
    qtbot.addWidget(tabs)
    tabs.resize(330, 200)
    tabs.show()
    qtbot.waitExposed(tabs)
    arrows = [b for b in tabs.tabBar().findChildren(QtWidgets.QToolButton) if b.isVisible()]
    assert len(arrows) == 2, "the tabs that do not fit cannot be reached"
    for button in arrows:
        image = button.grab().toImage()
        colours = {image.pixel(x, y) for x in range(image.width()) for y in range(image.height())}
        assert len(colours) > 2, f"{button.objectName()} is drawn blank"
