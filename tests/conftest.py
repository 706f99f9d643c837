"""Shared test set-up: offscreen Qt, and session-scoped fixtures for the costly things."""
from __future__ import annotations

import os

# Without this a display-less QApplication aborts the whole test process.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
