"""``podium`` (no subcommand): the desktop app.

    podium                               open the app
    podium --open RUN_DIR [--open RUN2]  open a run (further ones overlaid)
    podium --workspace DIR               list the runs of DIR (or ssh://[user@]host/path: a server's)
    podium --open RUN_DIR --screenshot FILE.png [--theme dark] [--size 1600x1000]
                                         render the window offscreen, save it, exit

With no display (Linux without DISPLAY/WAYLAND_DISPLAY) the bare command
trains the default headless instead (engine.launcher.entry decides that).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path

from engine.contract.commandline import has_display

SHELL_DOCKS = ("system", "music", "info", "log", "events")
PANEL_DOCKS = ("samples", "alerts", "checkpoints", "config")  # gui/widgets/panels.py


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="podium", description="Podium desktop app")
    parser.add_argument(
        "--open",
        action="append",
        default=[],
        metavar="RUN_DIR",
        help="open this run; repeat to overlay more runs on its plots",
    )
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        help="folder whose runs are listed, or ssh://[user@]host[:port]/path on a server (default: the last one, "
        "else ./runs)",
    )
    parser.add_argument("--screenshot", metavar="FILE.png", help="render the window offscreen, save it as PNG and exit")
    parser.add_argument("--theme", choices=("light", "dark"), help="colour theme (default: the last one used)")
    parser.add_argument("--size", default="1600x1000", help="window size for --screenshot, WIDTHxHEIGHT")
    parser.add_argument(
        "--dock",
        choices=SHELL_DOCKS + PANEL_DOCKS,
        action="append",
        default=[],
        help="with --screenshot: bring this dock to the front",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.screenshot:
        # Renders without a display; a real one is not needed for a PNG.
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    elif not has_display():
        # A bare `podium` with no display trains headless instead (engine.launcher.entry); with options it cannot.
        print(
            "podium: no display (DISPLAY/WAYLAND_DISPLAY unset); use --screenshot, or QT_QPA_PLATFORM=offscreen",
            file=sys.stderr,
        )
        return 2

    from PySide6 import QtCore, QtWidgets

    from gui.main_window import MainWindow

    QtCore.QCoreApplication.setOrganizationName("Podium")
    QtCore.QCoreApplication.setApplicationName("Podium")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    if args.screenshot:
        # Screenshots are for docs and tests: the default layout, not this user's.
        scratch = tempfile.mkdtemp(prefix="podium-shot-")
        settings = QtCore.QSettings(str(Path(scratch) / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    else:
        settings = QtCore.QSettings()
    if args.theme:
        settings.setValue("theme", args.theme)
    window = MainWindow(settings, args.workspace)  # a folder or ssh://...: a URL is no Path
    for i, run in enumerate(args.open):
        if not Path(run).is_dir():
            print(f"podium: {run} is not a folder", file=sys.stderr)
            return 2
        if i == 0:
            window.open_run(Path(run))
        else:
            window.set_overlay(Path(run), True)
    if args.screenshot:
        return _screenshot(app, window, args)
    window.show()
    # What exists now (modules, Qt wrappers, the window) lives as long as the
    # app: keep it out of the cyclic collector's full passes, which would walk
    # all of it and stall the event loop while a run's events pour in.
    gc.freeze()
    return app.exec()


def _screenshot(app, window, args: argparse.Namespace) -> int:
    from PySide6 import QtCore

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"podium: --size {args.size!r}: expected WIDTHxHEIGHT", file=sys.stderr)
        return 2
    window.resize(width, height)
    _ = window.panels.alerts  # built after the first paint otherwise, which a one-shot render does not wait for
    window.show()
    docks = {
        "system": window.system_dock,
        "music": window.music_dock,
        "info": window.info_dock,
        "log": window.log_dock,
        "events": window.events_dock,
        **window.panels.docks,
    }
    app.processEvents()  # the default layout is made on the first show; tabs take their own sizes after it
    for name in args.dock:
        docks[name].raise_()
    for session in window.sessions.values():
        session.catch_up()
        session._check_process()  # liveness now, not half a second later
    # The runs list synchronously: no scan thread may outlive a one-shot render.
    window.watcher.stop()
    window.runs_panel._on_refreshed(window.watcher.root, window.watcher.index.refresh())
    for _ in range(3):
        app.processEvents()
    window.dashboard.redraw_all()
    window.update_actions()
    window.status.refresh()
    app.processEvents()
    window.events_view.table.scrollToBottom()  # the latest events, as a live view shows them
    app.processEvents()
    # Tabifying docks makes Qt replace a tab bar and delete the old one from the event loop, which a one-shot
    # render never runs: without this the stale bar is drawn over the docks (a second "Events | Log").
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete.value)
    ok = window.grab().save(args.screenshot)
    for session in window.sessions.values():
        session.close()
    if not ok:
        print(f"podium: could not write {args.screenshot}", file=sys.stderr)
        return 1
    print(args.screenshot)
    return 0
