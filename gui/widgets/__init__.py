"""Widgets of the desktop app. Each takes its model or session in ``__init__``."""
