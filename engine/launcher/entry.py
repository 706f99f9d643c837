"""The ``podium`` command: the desktop app without a subcommand, the headless command line with one.

    podium                               open the desktop app
    podium --open RUN_DIR                open the app on a run (any option of the app: podium --help)
    podium run -c CONFIG -r RUN_DIR      train headless; every subcommand: podium --help
    podium --version

``python -m engine`` and a checkout's ``python main.py`` are the same command.
"""

from __future__ import annotations

import importlib.util
import sys
import time

from engine.contract.commandline import has_display

CLI_OPTIONS = {"-h", "--help", "--version"}
# What the ``gui`` extra installs that the window cannot start without (audio is loaded only on Play).
APP_REQUIREMENTS = ("PySide6", "pyqtgraph")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wants_app = (not argv and has_display()) or (bool(argv) and argv[0].startswith("-") and argv[0] not in CLI_OPTIONS)
    if wants_app:
        return open_app(argv)
    # Imported only now: the app's first paint does not wait for every subcommand's modules.
    from engine.launcher.cli import main as cli_main

    if not argv:
        name = time.strftime("runs/run-%Y%m%d-%H%M%S")
        print(
            f"podium: no display found; running the default training headless in {name} "
            f"(watch it later with: podium --open {name})",
            flush=True,
        )
        return cli_main(["run", "-r", name])
    return cli_main(argv)


def open_app(argv: list[str]) -> int:
    missing = [name for name in APP_REQUIREMENTS if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"podium: the desktop app needs the 'gui' extra ({', '.join(missing)} not installed): "
            "pip install 'podium[gui]'; headless subcommands work without it (podium --help)",
            file=sys.stderr,
        )
        return 2
    # The only place the engine package reaches the app: imported here, when the app is asked for, so that
    # headless use and servers never load Qt.
    from gui.app import main as app_main

    return app_main(argv)
