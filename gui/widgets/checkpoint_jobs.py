"""The checkpoint browser's engine jobs: averaging the selected checkpoints and generating a sample from
one, with ``podium checkpoints average`` and ``podium sample`` in a child process here, or on a remote
workspace's host through its access. One at a time; the job bar shows it, and what it made is announced."""

from __future__ import annotations

import html
from collections.abc import Callable

from PySide6 import QtCore

from engine.contract.commandline import engine_command
from engine.contract.rundir import RunDir
from gui.access.base import RunAccess
from gui.models.checkpoints import CheckpointModel, CheckpointRow, parse_average_report, parse_sample_report
from gui.widgets.checkpoint_work import HostJob
from gui.widgets.engine_job import EngineJob, JobBar


class CheckpointJobs(QtCore.QObject):
    averaged = QtCore.Signal(object)  # Path of the new averaged checkpoint
    sampleGenerated = QtCore.Signal(object, int, str)  # midi path, checkpoint step, checkpoint name
    changed = QtCore.Signal()  # a job started or ended: what the buttons allow follows

    def __init__(self, model: CheckpointModel, bar: JobBar, say: Callable[[str], None], parent: QtCore.QObject):
        """``say(html)`` puts a line where the panel shows its details."""
        super().__init__(parent)
        self.model = model
        self.bar = bar
        self._say = say
        self.access: RunAccess | None = None  # a remote workspace's, whose host runs the jobs; None: here
        self.job: EngineJob | HostJob | None = None
        self._kind = ""
        self._run: RunDir | None = None  # the run the job was started on
        self._average_inputs: list[CheckpointRow] = []
        self._sample_row: CheckpointRow | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def _start(self, kind: str, args: list[str], title: str) -> EngineJob | HostJob | None:
        if self.job is not None and self.job.running:
            self._say(f"Busy: {html.escape(self.job.title)}")
            return None
        job: EngineJob | HostJob
        if self.access is not None and self.access.remote:
            job = HostJob(self.access, args, title, self)
        else:
            job = EngineJob(engine_command(*args), title, self)
        self.job, self._kind, self._run = job, kind, self.model.run
        job.finished.connect(self._finished)
        self.bar.watch(job)
        job.start()
        self.changed.emit()
        return job

    def average(self, rows: list[CheckpointRow], method: str) -> EngineJob | HostJob | None:
        problems = self.model.average_problems(rows, method)
        if problems:
            self._say(html.escape("; ".join(problems)))
            return None
        out = self.model.average_out(rows, method)
        self._average_inputs = rows
        steps = ", ".join(str(r.step) for r in rows)
        return self._start("average", self.model.average_args(rows, method, out), f"{method} average of steps {steps}")

    def sample(self, row: CheckpointRow, seed: int) -> EngineJob | HostJob | None:
        out = self.model.sample_out(row, seed)
        self._sample_row = row
        return self._start("sample", self.model.sample_args(row, seed, out), f"sample from {row.name} (seed {seed})")

    def kill(self) -> None:
        if self.job is not None:
            self.job.kill()

    def _finished(self, code: int, text: str) -> None:
        kind = self._kind
        if code == 0 and self.model.run != self._run:
            # Another run was opened meanwhile: the result belongs to the one the job was started on.
            where = parse_average_report(text) if kind == "average" else parse_sample_report(text)
            self.bar.finish(
                f"done; wrote {where['path'] if where else 'its result'} in "
                f"{self._run.root.name if self._run else 'the previous run'}"
            )
        elif code != 0:
            why = "cancelled" if self.job is not None and self.job.cancelled else f"failed (exit {code})"
            last = next((line for line in reversed(text.splitlines()) if line.strip()), "")
            self.bar.finish(f"{why}: {last}" if last else why)
        elif kind == "average":
            result = parse_average_report(text)
            if result is not None:
                inputs = ", ".join(
                    f"step {r.step} {r.val_loss:.4f}" if r.val_loss is not None else f"step {r.step}"
                    for r in self._average_inputs
                )
                loss = f"{result['val_loss']:.4f}" if result["val_loss"] is not None else "?"
                self.bar.finish(f"{result['method']} average → val loss {loss} (inputs: {inputs})")
                self.averaged.emit(result["path"])
        elif kind == "sample":
            result = parse_sample_report(text)
            row = self._sample_row
            if result is not None and row is not None:
                self.bar.finish(f"{result['notes']} notes, {result['tokens']} tokens → {result['path'].name}")
                self.sampleGenerated.emit(result["path"], row.step or 0, row.name)
        self.changed.emit()
