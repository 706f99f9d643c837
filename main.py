"""Podium's entry point: the desktop app by default, subcommands for headless work.

python main.py                      open the desktop app
python main.py --open RUN_DIR       open the app on a run
python main.py --workspace DIR      open the app on another runs folder
python main.py --open RUN_DIR --screenshot FILE.png   save a PNG of the window and exit
python main.py run -c CONFIG -r RUN_DIR [--nproc N] [--set key=value ...]
python main.py --help               every subcommand
"""

from __future__ import annotations

import sys

GUI_FLAGS = {"--open", "--screenshot", "--workspace"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in GUI_FLAGS or argv[0].split("=")[0] in GUI_FLAGS:
        # Imported late so headless subcommands never load Qt.
        from gui.app import main as gui_main

        return gui_main(argv)
    from engine.launcher.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
