"""The ``podium`` command: the desktop app without a subcommand, the headless command line with one.

    podium                               open the desktop app
    podium --open RUN_DIR                open the app on a run (any option of the app: podium --help)
    podium run -c CONFIG -r RUN_DIR      train headless; every subcommand: podium --help
    podium --version

``python -m engine`` and a checkout's ``python main.py`` are the same command.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time

from engine.contract.commandline import UsageError, has_display

CLI_OPTIONS = {"-h", "--help", "--version"}
# Subcommands an app runs on a server at every look at its runs (the runs list, Stop's ladder): started with
# their own module alone, not the command line's (configs, studies, SLURM), which was most of their time.
LIGHT = {"runs": ("engine.launcher.runs_listing", "cmd_runs"), "stop": ("engine.launcher.stop_cli", "cmd_stop")}
# What the ``gui`` extra installs that the window cannot start without (audio is loaded only on Play).
APP_REQUIREMENTS = ("PySide6", "pyqtgraph")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wants_app = (not argv and has_display()) or (bool(argv) and argv[0].startswith("-") and argv[0] not in CLI_OPTIONS)
    if wants_app:
        return open_app(argv)
    if argv and argv[0] in LIGHT:
        return run_light(argv)
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


def run_light(argv: list[str]) -> int:
    """``podium runs|stop ...`` as the full command line runs them (the same parser, errors and exit codes)."""
    import argparse

    module_name, handler = LIGHT[argv[0]]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog="podium")
    module.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(getattr(module, handler)(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


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
