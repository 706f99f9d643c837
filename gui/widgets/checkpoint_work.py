"""The checkpoint browser's work off the GUI thread: hashing checkpoints (:class:`Verifier`), listing a
remote run's (:class:`Lister`), an engine subcommand run on a remote workspace's host (:class:`HostJob`,
which a :class:`~gui.widgets.engine_job.JobBar` shows as it shows a local :class:`EngineJob`), and deleting
a remote run's checkpoints."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6 import QtCore

from engine.contract.progress import parse
from gui.access.base import RunAccess
from gui.widgets.engine_job import Job

if TYPE_CHECKING:
    from gui.models.checkpoints import CheckpointModel, CheckpointRow

HOST_JOB_TIMEOUT = 6 * 3600.0  # an average of many large checkpoints on a busy host


class Verifier(QtCore.QObject):
    """Hashes checkpoints on a worker thread, one at a time; results come back by signal."""

    checked = QtCore.Signal(str, object, object)  # path, None or the problem, the files' signature when hashed
    done = QtCore.Signal()

    def __init__(self, verify: Callable[[Path], tuple[Any, str | None]], parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.verify = verify  # a folder -> (its signature when hashing began, None or what is wrong)
        self._generation = 0
        self._thread: threading.Thread | None = None

    def start(self, paths: list[Path]) -> None:
        self._generation += 1
        generation = self._generation
        self._thread = threading.Thread(
            target=self._work, args=(list(paths), generation), daemon=True, name="podium-verify"
        )
        self._thread.start()

    def cancel(self) -> None:
        """Results of the running pass are dropped (the run changed); the thread ends after its file."""
        self._generation += 1

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel and wait for the thread (it finishes the file it hashes): a thread still running when
        Qt deletes this object at quit emits into a dead object and prints a traceback."""
        self.cancel()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _work(self, paths: list[Path], generation: int) -> None:
        for path in paths:
            if generation != self._generation:
                return
            signature, problem = self.verify(path)
            if generation != self._generation:
                return
            try:
                self.checked.emit(str(path), problem, signature)
            except RuntimeError:  # the browser closed while a host still hashed: nobody to tell
                return
        self.done.emit()


class Lister(QtCore.QObject):
    """Lists a run's checkpoints on a worker thread (a remote host's ``podium checkpoints list``); the
    answer to an older request (another run opened since) is dropped."""

    listed = QtCore.Signal(object, str)  # the listing (None on failure), the reason it failed
    _answer = QtCore.Signal(int, object, str)  # from the worker thread, queued to this object's

    def __init__(self, listing: Callable[[], list[dict[str, Any]]], parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.listing = listing
        self._generation = 0
        self._running = False
        self._again = False
        self._answer.connect(self._answered)

    def start(self) -> None:
        if self._running:
            self._again = True  # once the running one answers: it may predate what changed
            return
        self._running, self._again = True, False
        self._generation += 1
        threading.Thread(target=self._work, args=(self._generation,), daemon=True, name="podium-list").start()

    def cancel(self) -> None:
        self._generation += 1
        self._again = False

    def _work(self, generation: int) -> None:
        try:
            rows, error = self.listing(), ""
        except OSError as exc:  # the host away, or podium failed there: said in the panel
            rows, error = None, str(exc)
        try:
            self._answer.emit(generation, rows, error)
        except RuntimeError:  # the browser closed while the host answered
            pass

    def _answered(self, generation: int, rows: Any, error: str) -> None:
        self._running = False
        if generation == self._generation:
            self.listed.emit(rows, error)
        if self._again:
            self.start()


class HostJob(Job):
    """``podium ARGS`` on a remote workspace's host, through its access, on a worker thread. Its output
    arrives when it ends (``progressed`` never fires: the host's progress lines come with the rest); it cannot
    be cancelled from here."""

    _ended = QtCore.Signal(int, str)

    def __init__(self, access: RunAccess, args: list[str], title: str, parent: QtCore.QObject | None = None):
        super().__init__([f"{access.label()}: podium", *args], title, parent)
        self.access = access
        self.args = list(args)
        self._ended.connect(self._end, QtCore.Qt.ConnectionType.QueuedConnection)

    def start(self) -> None:
        self.started_at = time.monotonic()
        threading.Thread(target=self._work, daemon=True, name="podium-host-job").start()

    def _work(self) -> None:
        try:
            result = self.access.podium(*self.args, timeout=HOST_JOB_TIMEOUT)
            code, text = result.returncode, (result.stdout or "") + (result.stderr or "")
        except OSError as exc:  # the access layer's CommandTimeout included
            code, text = -1, f"could not run podium on {self.access.label()}: {exc}"
        self._ended.emit(code, text)

    def cancel(self) -> None:
        """Not possible over a single exec call; the bar says so rather than pretending."""
        self.output.emit("cannot be cancelled from here: it runs on the host until it ends")

    def kill(self) -> None:
        self.cancel()

    def _end(self, code: int, text: str) -> None:
        for raw in text.splitlines():
            progress = parse(raw)
            line = progress.message if progress is not None else raw  # words, not JSON, as a local job shows
            self.lines.append(line)
            self.output.emit(line)
        self.exit_code = code
        self.ended_at = time.monotonic()
        self.finished.emit(code, self.text())


def delete_checkpoints(model: CheckpointModel, rows: list[CheckpointRow]) -> list[str]:
    """Deletes the rows' folders (the model refuses the protected ones); on a remote workspace the SFTP calls
    run in a thread while the window paints on. The errors, one line each."""
    if not model.remote:
        return model.delete(rows)
    from gui.remote_workspace import Cancelled, in_background

    try:
        gone, errors = in_background(lambda: model.delete_files(rows))
    except Cancelled:
        return []  # the app is quitting: the next listing shows what the host removed
    model.forget(gone)
    return errors
