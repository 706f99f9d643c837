"""The stalled-training watchdog: the one detector that runs on a clock rather than on records."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engine.monitoring.detector import SUGGESTIONS, Anomaly


class Watchdog:
    """Fires ``stalled_training`` when no step has finished within the timeout.

    No thread of its own: the training loop calls :meth:`beat` after each step and a monitor
    thread calls :meth:`check` every few seconds. Because only a *finished* step beats, a step
    that hangs (a deadlocked collective, a stuck data worker) fires it too. The first step gets
    ``startup_timeout_s`` (compilation, data loading); call :meth:`suspend` before work that
    legitimately takes long (evaluation, sampling, checkpointing, a pause) and :meth:`beat`
    when it is over. It fires once per stall; the next beat re-arms it. ``clock`` is injectable
    for tests (monotonic seconds).
    """

    kind = "stalled_training"

    def __init__(
        self,
        timeout_s: float,
        startup_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        action: str = "alert",
    ):
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s if startup_timeout_s is not None else timeout_s
        self.clock = clock
        self.action = action
        self._lock = threading.Lock()  # beat() and check() come from different threads
        self._since: float | None = None  # None = not watching
        self._step: int | None = None
        self._fired = False

    def start(self) -> None:
        """Start watching for the first step."""
        with self._lock:
            self._since, self._step, self._fired = self.clock(), None, False

    def beat(self, step: int) -> None:
        """A step finished (or long legitimate work ended): the timeout restarts."""
        with self._lock:
            self._since, self._step, self._fired = self.clock(), int(step), False

    def suspend(self) -> None:
        """Stop watching until the next :meth:`beat` or :meth:`start`."""
        with self._lock:
            self._since = None

    @contextmanager
    def off(self) -> Iterator[None]:
        """Not watching during legitimate long work (a save, a checkpoint load); afterwards the
        timeout restarts if it was watching before (not during a pause or after the last step)."""
        with self._lock:
            was_watching, self._since = self._since is not None, None
        try:
            yield
        finally:
            if was_watching:
                with self._lock:
                    self._since = self.clock()

    def check(self, now: float | None = None) -> Anomaly | None:
        with self._lock:
            if self._since is None or self._fired:
                return None
            now = self.clock() if now is None else now
            limit = self.startup_timeout_s if self._step is None else self.timeout_s
            waited = now - self._since
            if waited <= limit:
                return None
            self._fired = True
            last_step = self._step
        what = "the first step" if last_step is None else f"the step after {last_step}"
        return Anomaly(
            self.kind,
            "critical",
            last_step or 0,
            f"no step has finished for {waited:.0f} s (limit {limit:.0f} s) waiting for {what}",
            {"seconds_since_last_step": waited, "timeout_s": limit, "last_step": last_step},
            SUGGESTIONS[self.kind],
            self.action,
        )
