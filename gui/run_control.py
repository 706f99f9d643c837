"""Starting and steering runs: launching, the open run's commands, the actions each state allows, and what
closing the window does to the runs it launched."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6 import QtWidgets

from engine.contract.rundir import RunDir
from gui.widgets.dialogs import NewRunDialog, NewRunRequest, SetLrDialog

# A session (its reader, the event models, pydantic) and the SLURM watch (the run access layer) load when a run
# is first opened or started, not before the window's first paint.
if TYPE_CHECKING:
    from gui.main_window import MainWindow
    from gui.models.slurm_state import SlurmWatch
    from gui.session import RunSession

# Which run actions each state allows. The engine reads commands between
# steps, so a command also works while preparing, but it waits until then.
ACTION_STATES = {
    "pause": ("running",),
    "resume": ("paused",),
    "save_checkpoint": ("running", "paused"),
    "set_lr": ("running", "paused"),
    "profile": ("running", "paused"),
    "stop": ("starting", "preparing", "running", "paused", "stalled"),
}


class RunControl:
    """New runs, the commands the window's actions send to its primary run, and which of them are enabled."""

    def __init__(self, window: MainWindow):
        self.window = window
        self._slurm: SlurmWatch | None = None
        self._slurm_shown = -1

    @property
    def slurm(self) -> SlurmWatch:
        """The primary run's SLURM job, when it has one."""
        if self._slurm is None:
            from gui.models.slurm_state import SlurmWatch

            self._slurm = SlurmWatch()
        return self._slurm

    def is_run(self, path: Path) -> bool:
        """Whether ``path`` holds a run (or one launched here that has yet to write); says why not on the
        banner. Following a folder that is not a run would show it as starting forever and let Stop write
        into it."""
        w = self.window
        path = w._key(path)
        if path in w.sessions or self._holds_run(path):
            return True
        w.banner.show_notice(
            f"{path} is not a run folder",
            "It holds no events.jsonl, config.yaml or launcher.json. Open the folder of one run "
            "(one of the folders in the runs list), or start a new run.",
        )
        w.statusBar().showMessage(f"not a run folder: {path}", 8000)
        return False

    def _holds_run(self, path: Path) -> bool:
        from gui.access.base import Unreachable

        access = self.window.workspaces.access_for(path)
        if access is None:
            run = RunDir(path)
            return run.exists() or run.launcher.exists()
        names = (RunDir(path).events, RunDir(path).config, RunDir(path).launcher)
        try:
            return any(access.stat(str(name)) is not None for name in names)
        except Unreachable:
            return True  # the session says the server is away; refusing would hide a real run

    def new_run(self) -> None:
        # The config schema pulls in pydantic (0.3 s): loaded when first needed, not at start-up.
        from engine.contract.config import default_config_path

        w = self.window
        last_nproc = w.settings.value("new_run/nproc")
        dialog = NewRunDialog(
            w.workspace,
            w.hardware(),
            default_config_path(),
            last_config=str(w.settings.value("new_run/config", "") or ""),
            last_nproc=int(last_nproc) if last_nproc else None,
            parent=w,
        )
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            request = dialog.request()
            w.settings.setValue("new_run/config", "" if dialog.use_default.isChecked() else str(request.config))
            w.settings.setValue("new_run/nproc", request.nproc)
            self.start_run(request)

    def start_run(self, request: NewRunRequest) -> RunSession | None:
        """Launch the engine for ``request`` and open its run."""
        from gui.session import RunSession

        w = self.window
        argv = w.engine_argv(request.config, request.run_dir, request.nproc, request.overrides)
        request.run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            session = RunSession.launch(request.run_dir, argv, w)
        except OSError as exc:
            QtWidgets.QMessageBox.critical(w, "Could not start the run", str(exc))
            return None
        w.adopt(session)
        w.statusBar().showMessage(f"started {request.name} with {request.nproc} process(es)", 5000)
        return session

    def send(self, cmd: str, **args) -> None:
        w = self.window
        if w.primary is None:
            return
        command = w.primary.send(cmd, **args)
        if command is not None:
            w.statusBar().showMessage(f"sent {cmd} — waiting for the engine to answer…", 4000)
        self.update_actions()

    def set_lr(self, lr: float | None = None) -> None:
        w = self.window
        if w.primary is None:
            return
        if lr is None:
            m = w.primary.model
            # The run's own figure (after set_lr commands from anywhere and anomaly LR cuts), else the config's.
            peak = m.peak_lr if m.peak_lr is not None else ((m.config or {}).get("optim") or {}).get("lr")
            dialog = SetLrDialog(m.latest.get("lr"), peak if isinstance(peak, (int, float)) else None, w)
            lr = dialog.value() if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted else None
            if lr is None:
                return
        self.send("set_lr", lr=float(lr))

    def profile_steps(self, steps: int | None = None) -> None:
        """Ask how many steps to record with torch.profiler, then send the engine's ``profile`` command."""
        w = self.window
        if w.primary is None:
            return
        if steps is None:
            last = int(str(w.settings.value("run/profile_steps", 10) or 10))
            steps, ok = QtWidgets.QInputDialog.getInt(
                w,
                "Profile",
                "Steps to record with torch.profiler (1–1000).\n"
                "The trace goes to the run's profiles/ folder; the top operators appear in the Events pane.",
                last,
                1,
                1000,
            )
            if not ok:
                return
            w.settings.setValue("run/profile_steps", steps)
        self.send("profile", steps=int(steps))

    def stop_run(self) -> None:
        w = self.window
        if w.primary is None:
            return
        if self.slurm.cancel():  # a job still in the queue has no run to stop yet
            w.statusBar().showMessage(self.slurm.message, 6000)
            self.update_actions()
            return
        w.primary.stop()
        w.statusBar().showMessage("stopping: sent the stop command (SIGTERM follows if the engine does not end)", 6000)
        self.update_actions()

    def acknowledged(self, command) -> None:
        """The engine answered a command of the primary run."""
        text = f"{command.cmd}: {command.outcome}" + (f" — {command.reason}" if command.reason else "")
        self.window.statusBar().showMessage(f"engine answered {text}", 8000)
        self.update_actions()

    def update_actions(self) -> None:
        w = self.window
        s = w.primary
        state = s.state if s is not None else "none"
        pending = {c.cmd for c in s.model.pending_commands()} if s is not None else set()
        self._show_slurm(s)
        job = self._slurm.job if self._slurm is not None else None
        for cmd, action in (
            ("pause", w.act_pause),
            ("resume", w.act_resume),
            ("save_checkpoint", w.act_ckpt),
            ("set_lr", w.act_lr),
            ("profile", w.act_profile),
            ("stop", w.act_stop),
        ):
            ok = state in ACTION_STATES[cmd] and cmd not in pending
            if cmd == "stop" and s is not None and s.stopping and state != "stalled":
                ok = False
            if (
                cmd == "stop" and s is not None and job is not None and not s.model.events
            ):  # nothing runs yet: the queue decides
                ok = job.waiting and not self.slurm.cancelling
            action.setEnabled(ok)
        if s is not None:
            w.banner.check(s)

    def _show_slurm(self, s: RunSession | None) -> None:
        """The primary run's SLURM job in the status bar and the run information pane."""
        if s is None and self._slurm is None:
            return  # no run was ever opened: no job to show
        w = self.window
        self.slurm.follow(s.access if s is not None else None, str(s.run.root) if s is not None else None)
        message = self.slurm.message
        self.slurm.poll()
        if self.slurm.version == self._slurm_shown:
            return
        self._slurm_shown = self.slurm.version
        job, error = self.slurm.job, self.slurm.error
        details = job.details() if job is not None else ""
        if error:
            details = f"{details} (now: {error})" if details else f"queue state unknown: {error}"
        w.status.set_slurm(job.label() if job is not None else ("SLURM: ?" if error else ""), details)
        w.info_view.set_slurm(details)
        if self.slurm.message and self.slurm.message != message:
            w.statusBar().showMessage(self.slurm.message, 8000)

    # ------------------------------------------------------------- closing

    def close(self) -> None:
        """Its worker thread would otherwise hold the exit open until a squeue call times out."""
        if self._slurm is not None:
            self._slurm.close()

    def live_launched(self) -> list[RunSession]:
        return [s for s in self.window.sessions.values() if s.launched_here and s.process_alive()]

    def may_close(self) -> bool:
        """Whether the window may close now: asks what to do with the runs it launched that still go."""
        w = self.window
        live = self.live_launched()
        if live and w._closing:
            return False  # still waiting for a stop to finish
        if not live:
            return True
        names = ", ".join(s.model.name for s in live)
        box = QtWidgets.QMessageBox(w)
        box.setIcon(QtWidgets.QMessageBox.Icon.Question)
        box.setWindowTitle("A run is still going")
        box.setText(f"{names} {'is' if len(live) == 1 else 'are'} still running.")
        box.setInformativeText(
            "Leave it running headless (reopen its folder later to watch and steer it again), "
            "or stop it gracefully before closing?"
        )
        leave = box.addButton("Leave running", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop and close", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(leave)
        box.exec()
        choice = box.clickedButton()
        if choice is stop:
            w._closing = True
            for s in live:
                s.stop()
            w.statusBar().showMessage("stopping runs; the window closes when they have ended")
            return False
        return choice is leave

    def finish_closing(self) -> None:
        """After "Stop and close": close once every run launched here has exited.
        Checked on each run's end and every second, because a run's end event
        comes a moment before its process is gone."""
        w = self.window
        if w._closing and w.isVisible() and not self.live_launched():
            w.close()


def engine_argv(
    config: str | os.PathLike[str], run_dir: str | os.PathLike[str], nproc: int, overrides: Sequence[str] = ()
) -> list[str]:
    """:func:`gui.session.engine_argv`, importing the session module when a run is first started."""
    from gui.session import engine_argv as argv

    return argv(config, run_dir, nproc, overrides)
