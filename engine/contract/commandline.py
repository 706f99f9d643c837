"""How any process starts an engine subcommand, and the error of bad input to one.

Children run the installed ``engine`` package with the parent's interpreter, so they work from any
directory and in a wheel install alike, without a checkout on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import sys


class UsageError(ValueError):
    """Bad input from the user: printed as is, exit code 2."""


def engine_command(*args: str, python: str = sys.executable) -> list[str]:
    """The command line of ``podium ARGS`` as a child process: ``python -m engine ARGS``."""
    return [python, "-m", "engine", *args]


def has_display() -> bool:
    """Whether a window can open here (Linux needs an X11 or Wayland display; Qt's platform may say offscreen)."""
    if os.environ.get("QT_QPA_PLATFORM") or sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
