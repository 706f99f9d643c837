"""How any process starts an engine subcommand, and the error of bad input to one.

Children run the installed ``engine`` package with the parent's interpreter, so they work from any
directory and in a wheel install alike, without a checkout on ``PYTHONPATH``.
"""

from __future__ import annotations

import sys


class UsageError(ValueError):
    """Bad input from the user: printed as is, exit code 2."""


def engine_command(*args: str, python: str = sys.executable) -> list[str]:
    """The command line of ``podium ARGS`` as a child process: ``python -m engine ARGS``."""
    return [python, "-m", "engine", *args]
