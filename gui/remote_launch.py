"""Starting runs on a remote workspace's host: a new run (its config copied beside it first) and a resume
of a server's run from its newest full checkpoint. Each is ``podium run`` there, detached from the SSH
session (:meth:`gui.access.ssh.SshAccess.launch`), and opens in the window like a run started here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtWidgets

from gui.access import RunAccess
from gui.models.checkpoint_files import resume_world_size
from gui.remote_workspace import Cancelled, in_background

# What this app is starting on a host right now (at most one: its window keeps answering meanwhile).
_starting: list[str] = []


def start_run(window: Any, access: RunAccess, request: Any) -> Any:
    """File > New run: the config file chosen here, copied beside the new run on the host."""
    overrides = [arg for item in request.overrides for arg in ("--set", item)]
    return _start_new(window, access, request.name, request.nproc, lambda: Path(request.config).read_bytes(), overrides)


def start_edited(window: Any, access: RunAccess, request: Any) -> Any:
    """The config editor's text, forked from one of the host's checkpoints when the request names one."""
    fork = ["--from-checkpoint", str(request.from_checkpoint)] if request.from_checkpoint is not None else []
    return _start_new(window, access, request.name, request.nproc, lambda: request.config_text.encode(), fork)


def _start_new(
    window: Any, access: RunAccess, name: str, nproc: int, config_bytes: Callable[[], bytes], extra: list[str]
) -> Any:
    root = access.root
    run_dir = posixpath.join(root, name)
    config = posixpath.join(root, f".{name}.config.yaml")
    argv = ["run", "-c", config, "-r", run_dir, "--nproc", str(nproc), *extra]
    log = posixpath.join(root, f".{name}.launch.log")

    def launch() -> None:
        access.write(config, config_bytes())
        access.launch(argv, run_dir, log)

    return _open(window, access, run_dir, log, launch, f"started {name}")


def resume(window: Any, access: RunAccess, run_dir: Path) -> Any:
    """With the run's own config and as many processes as its newest checkpoint was saved from."""
    run = str(run_dir)
    log = posixpath.join(posixpath.dirname(run), f".{run_dir.name}.resume.log")

    def launch() -> None:
        nproc = resume_world_size(access, run)
        argv = ["run", "--resume", "-c", posixpath.join(run, "config.yaml"), "-r", run, "--nproc", str(nproc)]
        access.launch(argv, run, log)

    return _open(window, access, run, log, launch, f"resuming {run_dir.name}")


def _open(window: Any, access: RunAccess, run_dir: str, log: str, launch: Callable[[], None], done: str) -> Any:
    from gui.session import RunSession

    if _starting:  # a second Resume meanwhile would start a second launcher on the same folder
        window.statusBar().showMessage(f"still {_starting[0]}; try again when the host answers", 5000)
        return None
    window.statusBar().showMessage(f"{done} on {access.label()}…")
    _starting.append(f"{done} on {access.label()}")
    try:
        in_background(launch)  # the window paints while the host answers
    except Cancelled:
        return None
    except OSError as exc:
        window.statusBar().clearMessage()
        QtWidgets.QMessageBox.critical(window, "Could not start the run", f"{access.label()}: {exc}")
        return None
    finally:
        _starting.clear()
    # The launcher's pid is the host's: its liveness comes from launcher.json there, as for any remote run.
    session = RunSession(Path(run_dir), window, launch_log=log, access=access)
    old = window.sessions.pop(session.run.root, None)
    if old is not None:
        old.close()
    window.sessions[session.run.root] = session
    window._wire(session)
    session.start()
    window.open_run(session.run.root)
    window.watcher.refresh()
    window.statusBar().showMessage(f"{done} on {access.label()}", 5000)
    return session
