"""Podium's desktop app (PySide6 + pyqtgraph). Never imports torch."""
from gui import _refcount_guard

_refcount_guard.apply()
