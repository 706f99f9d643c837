"""The ``hpo`` worker processes of the studies started from this app, and the tail of their logs. Qt-free.

A worker runs in a session of its own with its output in ``<study>/worker-<stamp>-<i>.log``: a study
outlives the window (and its Ctrl-C), like a training run. Stopping a study gently is the engine's
stop file (``engine.studies.hpo.request_stop``); :meth:`StudyWorkers.terminate` is for the workers
that do not listen.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from engine.contract.studies import study_dir

TAIL_BYTES = 64_000  # read from the end of a log: enough for the lines shown


class StudyWorkers:
    """The workers started here, by study."""

    def __init__(self, command: list[str]):
        self.command = list(command)  # what starts the engine's CLI; ``hpo`` and its arguments follow
        self._workers: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start_study(
        self, study: str, folder: Path, space: str, args_for: Callable[[Path], list[str]], count: int
    ) -> list[str]:
        """Write the study's space into its folder and start ``count`` workers with ``args_for(space_file)``;
        returns why any could not start."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            space_file = folder / "space.yaml"
            space_file.write_text(space)
        except OSError as exc:
            return [f"cannot write the study's space into {folder}: {exc.strerror}"]
        return self.start(study, folder, args_for(space_file), count)

    def start(self, study: str, folder: Path, args: list[str], count: int) -> list[str]:
        """Start ``count`` workers of ``study`` (``hpo`` with ``args``), logging into ``folder``; returns
        why any could not start."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        errors = []
        for i in range(count):
            with open(folder / f"worker-{stamp}-{i}.log", "ab") as log:
                try:
                    worker = subprocess.Popen(
                        [*self.command, "hpo", *args],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                except OSError as exc:
                    errors.append(f"could not start a worker: {exc}")
                    continue
            self._workers.append((study, worker))
        return errors

    def alive(self, study: str) -> int:
        """How many of ``study``'s workers started here still run (those that ended are reaped)."""
        self._workers = [(s, w) for s, w in self._workers if w.poll() is None]
        return sum(1 for s, _ in self._workers if s == study)

    def terminate(self, study: str) -> None:
        for s, worker in self._workers:
            if s == study and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)


class LogTail:
    """The last lines of a study's newest worker log, read again only when the log changed."""

    def __init__(self, lines: int):
        self.lines = lines
        self._seen: tuple[str, int] | None = None

    def reset(self) -> None:
        self._seen = None

    def read(self, workspace: Path, study: str) -> str | None:
        """The tail, or None when there is no log or nothing changed since the last call."""
        logs = worker_logs(workspace, study)
        if not logs:
            return None
        newest = logs[-1]
        try:
            size = newest.stat().st_size
        except OSError:
            return None
        if (str(newest), size) == self._seen:
            return None
        self._seen = (str(newest), size)
        with open(newest, "rb") as f:
            f.seek(max(0, size - TAIL_BYTES))
            text = f.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-self.lines :])


def worker_logs(workspace: Path, study: str) -> list[Path]:
    """The study's worker logs, oldest first (the panel starts workers with their output there)."""
    folder = study_dir(workspace, study)
    logs = folder.glob("worker-*.log") if folder.is_dir() else []
    return sorted(logs, key=lambda p: (p.stat().st_mtime, p.name))
