"""Runs the panels start through the window: a config editor's new run or fork, a checkpoint browser's resume.

Each goes through ``window.start_run`` with the window's ``engine_argv`` hook (the documented way to change
the engine command line), so a run started here is steered and shown like one from File > New run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gui.models.config_doc import LaunchRequest


def launch(window, request: LaunchRequest):
    """Write the edited config into the new run's folder and start it (forked from its checkpoint, if any)."""
    if window.workspaces.remote:  # on the host, the config copied there first
        return window.workspaces.start_edited(request)
    request.run_dir.mkdir(parents=True, exist_ok=True)
    config_path = request.run_dir / "config.yaml"
    config_path.write_text(request.config_text)
    extra = ["--from-checkpoint", str(request.from_checkpoint)] if request.from_checkpoint else []
    return _start(window, config_path, request.name, request.nproc, request.run_dir, extra)


def resume(window, run_dir: Path):
    run_dir = Path(run_dir)
    if window.workspaces.remote:  # on the host, with what its files say there
        return window.workspaces.resume(run_dir)
    from gui.access.local import LocalAccess
    from gui.models.checkpoint_files import resume_world_size

    nproc = resume_world_size(LocalAccess(run_dir.parent), str(run_dir))
    return _start(window, run_dir / "config.yaml", run_dir.name, nproc, run_dir, ["--resume"])


def _start(window, config: Path, name: str, nproc: int, run_dir: Path, extra: list[str]):
    from gui.widgets.dialogs import NewRunRequest

    base = window.engine_argv
    window.engine_argv = lambda *args, **kwargs: base(*args, **kwargs) + extra
    try:
        return window.start_run(NewRunRequest(config, name, nproc, [], run_dir))
    finally:
        window.engine_argv = base
