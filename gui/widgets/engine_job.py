"""Engine subcommands the app starts as child processes, and a bar that shows one.

:class:`EngineJob` owns one ``QProcess`` and turns its output into signals
(the panels' average and sample; :class:`EngineQuery` runs the ones that
answer in JSON, such as a study's importances and scaling fit);
:class:`JobBar` shows a job's progress (elapsed time, the latest output
line), its full output on demand, and a Cancel button. A command that prints
progress lines (:mod:`engine.contract.progress`; ``checkpoints average --progress
json``) gets a bar that fills as it goes and its stage in words; one that
prints none (``sample``) gets a busy bar that shows the child is alive.
"""

from __future__ import annotations

import collections
import json
import time

import shiboken6
from PySide6 import QtCore, QtWidgets

from engine.contract.progress import Progress, parse

CANCEL_GRACE_MS = 3000  # after terminate(), before kill()


def panel_toolbar(*items) -> QtWidgets.QToolBar:
    """A row of a panel's controls in a toolbar: when the dock is narrow the rest goes into the toolbar's
    » menu instead of forcing the window wider. ``None`` is a gap; ``"stretch"`` pushes what follows right."""
    bar = QtWidgets.QToolBar()
    bar.setMovable(False)
    bar.setFloatable(False)
    bar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
    for item in items:
        if item is None:
            bar.addSeparator()
        elif item == "stretch":
            spacer = QtWidgets.QWidget()
            spacer.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Preferred)
            bar.addWidget(spacer)
        else:
            bar.addWidget(item)
    return bar


class Job(QtCore.QObject):
    """What a :class:`JobBar` watches: an engine command here (:class:`EngineJob`) or on a workspace's host
    (``checkpoint_work.HostJob``), with its signals, its output lines and how long it has run."""

    output = QtCore.Signal(str)  # one line of stdout/stderr (a progress line as its message)
    progressed = QtCore.Signal(object)  # engine.contract.progress.Progress
    finished = QtCore.Signal(int, str)  # exit code (-1 when it crashed or was killed), the whole output

    def __init__(self, argv: list[str], title: str, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.argv = list(argv)
        self.title = title
        self.lines: collections.deque[str] = collections.deque(maxlen=2000)
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.exit_code: int | None = None
        self.cancelled = False

    def start(self) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.exit_code is None and self.started_at is not None

    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    def text(self) -> str:
        return "\n".join(self.lines)


class EngineJob(Job):
    """One engine subcommand as a child process: the app's only way to run one (panels, study queries)."""

    def __init__(
        self,
        argv: list[str],
        title: str,
        parent: QtCore.QObject | None = None,
        merge_stderr: bool = True,
    ):
        """``merge_stderr=False``: the output is stdout alone (a command that answers in JSON there) and
        stderr is kept apart, in :meth:`error_output`."""
        super().__init__(argv, title, parent)
        self.progress: Progress | None = None  # the latest progress line, if the command prints them
        self._partial = b""
        self._stderr = b""
        self.process = QtCore.QProcess(self)
        if merge_stderr:
            self.process.setProcessChannelMode(QtCore.QProcess.ProcessChannelMode.MergedChannels)
        else:
            self.process.readyReadStandardError.connect(self._read_stderr)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)
        self._kill_timer = QtCore.QTimer(self, singleShot=True, interval=CANCEL_GRACE_MS)
        self._kill_timer.timeout.connect(self.process.kill)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.process.start(self.argv[0], self.argv[1:])

    def cancel(self) -> None:
        if self.running:
            self.cancelled = True
            self.process.terminate()
            self._kill_timer.start()

    def kill(self) -> None:
        """End the child now and wait for it (a window closing)."""
        if self.running:
            self.process.kill()
            self.process.waitForFinished(2000)

    def error_output(self) -> str:
        """What the child wrote to stderr, when it was kept apart (``merge_stderr=False``)."""
        return self._stderr.decode("utf-8", "replace")

    def _read_stderr(self) -> None:
        self._stderr += bytes(self.process.readAllStandardError().data())

    def _read(self) -> None:
        data = self._partial + bytes(self.process.readAllStandardOutput().data())
        parts = data.split(b"\n")
        self._partial = parts.pop()
        for raw in parts:
            self._line(raw)

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1]
        progress = parse(line)
        if progress is not None:
            self.progress = progress
            line = progress.message  # the output pane and the bar show words, not JSON
        self.lines.append(line)
        self.output.emit(line)
        if progress is not None:
            self.progressed.emit(progress)

    def _finished(self, code: int, status: QtCore.QProcess.ExitStatus) -> None:
        if not shiboken6.isValid(self.process):  # emitted while the window (and so the process object) is torn down
            return
        self._read()
        if self.process.processChannelMode() != QtCore.QProcess.ProcessChannelMode.MergedChannels:
            self._read_stderr()
        if self._partial:
            self._line(self._partial)
            self._partial = b""
        self._kill_timer.stop()
        self._end(code if status == QtCore.QProcess.ExitStatus.NormalExit else -1)

    def _error(self, error: QtCore.QProcess.ProcessError) -> None:
        if error == QtCore.QProcess.ProcessError.FailedToStart:
            self.lines.append(f"could not start {self.argv[0]}: {self.process.errorString()}")
            self._end(-1)

    def _end(self, code: int) -> None:
        if self.exit_code is not None:
            return
        self.exit_code = code
        self.ended_at = time.monotonic()
        self.finished.emit(code, self.text())


class EngineQuery(QtCore.QObject):
    """An engine subcommand that answers in JSON (its last line of stdout) and is asked again as the data
    changes (a study's importances, its scaling fit): one child at a time; a request made meanwhile runs,
    with its own arguments, when the running one ends."""

    answered = QtCore.Signal(object)  # the parsed JSON, or {"error": text}

    def __init__(self, command: list[str], parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.command = list(command)  # what starts the engine's CLI; a request's arguments follow
        self.job: EngineJob | None = None
        self.pending: list[str] | None = None
        self.last_start = 0.0

    def request(self, args: list[str]) -> None:
        if self.job is not None:
            self.pending = args
            return
        self.last_start = time.monotonic()
        job = EngineJob([*self.command, *args], args[0], self, merge_stderr=False)
        job.finished.connect(lambda code, out, j=job: self._done(j, code, out))
        self.job = job
        job.start()

    def _done(self, job: EngineJob, code: int, out: str) -> None:
        if job is not self.job:  # killed: its answer is to a question no longer asked
            return
        self.job = None
        job.deleteLater()
        out, err = out.strip(), job.error_output().strip()
        try:
            result = json.loads(out.splitlines()[-1]) if out else {"error": err or f"exit code {code}"}
        except ValueError:
            result = {"error": err or out[-500:]}
        if code != 0 and "error" not in result:
            result["error"] = err or f"exit code {code}"
        self.answered.emit(result)
        if self.pending is not None:
            args, self.pending = self.pending, None
            self.request(args)

    def kill(self) -> None:
        self.pending = None
        job, self.job = self.job, None
        if job is not None:
            job.kill()


class JobBar(QtWidgets.QFrame):
    """Busy bar, title, elapsed time and last output line of the running job; Cancel; output on demand."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.job: Job | None = None
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 0)
        row = QtWidgets.QHBoxLayout()
        self.title = QtWidgets.QLabel()
        self.title.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.title.setMinimumWidth(60)
        self.bar = QtWidgets.QProgressBar()
        self.bar.setMaximumWidth(140)
        self.bar.setMaximumHeight(14)
        self.bar.setTextVisible(False)
        self.last = QtWidgets.QLabel()
        self.last.setObjectName("muted")
        self.last.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.last.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.show_output = QtWidgets.QToolButton()
        self.show_output.setText("Output")
        self.show_output.setCheckable(True)
        self.show_output.setToolTip("Everything the engine command printed")
        self.cancel = QtWidgets.QPushButton("Cancel")
        self.cancel.clicked.connect(self._cancel)
        for w in (self.title, self.bar):
            row.addWidget(w)
        row.addWidget(self.last, 1)
        row.addWidget(self.show_output)
        row.addWidget(self.cancel)
        layout.addLayout(row)
        self.output = QtWidgets.QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setMaximumBlockCount(2000)
        self.output.setMaximumHeight(140)
        self.output.setVisible(False)
        self.show_output.toggled.connect(self.output.setVisible)
        layout.addWidget(self.output)
        self._timer = QtCore.QTimer(self, interval=250)
        self._timer.timeout.connect(self._tick)
        self.hide()

    def watch(self, job: Job) -> None:
        self.job = job
        self.output.clear()
        self.output.appendPlainText("$ " + " ".join(job.argv))
        self.bar.setRange(0, 0)  # busy until the command reports a fraction done, if it ever does
        self.cancel.setEnabled(True)
        self.last.clear()
        job.output.connect(self._line)
        job.progressed.connect(self._progressed)
        job.finished.connect(self._done)
        self._timer.start()
        self._tick()
        self.show()

    def _line(self, line: str) -> None:
        self.output.appendPlainText(line)
        if line.strip():
            self.last.setText(line.strip())

    def _progressed(self, progress: Progress) -> None:
        self.bar.setRange(0, progress.total)
        self.bar.setValue(progress.done)
        self.bar.setToolTip(f"{progress.done} of {progress.total} steps: {progress.stage}")

    def _tick(self) -> None:
        if self.job is not None:
            self.title.setText(f"{self.job.title} — {self.job.elapsed():.0f} s")

    def _cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.last.setText("cancelling…")

    def _done(self, code: int, text: str) -> None:
        self._timer.stop()
        self._tick()
        if code == 0:
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
        elif self.bar.maximum() == 0:  # a busy bar stops; a filling one stays where the job got to
            self.bar.setRange(0, 1)
            self.bar.setValue(0)
        self.cancel.setEnabled(False)
        if code != 0:
            # A failure stays on screen with the output open: the reason is in it.
            self.show_output.setChecked(True)

    def finish(self, summary: str) -> None:
        """Replace the last-line text with what the panel made of the result."""
        self.last.setText(summary)
