"""Podium's desktop app (PySide6 + pyqtgraph). Never imports torch."""
