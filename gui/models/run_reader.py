"""A run's files read and decoded off the GUI thread. Qt-free.

:class:`RunReader` follows one run directory through its workspace's :class:`~gui.access.RunAccess`: a
thread reads ``events.jsonl`` (decoded by the contract's reader, metrics made ready columns), the engine's
log and the launcher's output, and the launcher's liveness, and queues each pass as a :class:`ReadBatch`.
The GUI thread takes the batches (``take``) and only appends and draws.

A workspace that cannot be reached (:class:`~gui.access.Unreachable`) is retried with a growing pause;
every offset stays where the last successful read left it, so nothing is lost or read twice.
"""

from __future__ import annotations

import collections
import gc
import posixpath
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.contract.events import Rejected
from gui.access import RunAccess, Unreachable
from gui.models.columns import Item, coalesce, item_count, ready_items
from gui.models.parse_worker import ParseWorker
from gui.models.reader import AccessEventReader, TextTail

if TYPE_CHECKING:
    from gui.models.parse_worker import Decoded

_CHUNK = 64 << 10  # bytes of events per pass: small C calls, so the GUI thread gets the GIL often
_CHUNK_ELSEWHERE = 2 << 20  # per pass while a parse worker decodes: fewer round trips, and no GIL held
# A chunk this big (a run opened as the app starts) waits for the parse worker's children to come up, up to
# _STARTUP_S: decoded here instead, it would hold the GIL for seconds while the window tries to draw.
_WORTH_WAITING = 1 << 20
_STARTUP_S = 5.0
# Events read but not yet taken by the GUI thread, past which the reader waits: a window that cannot keep
# up with a flood holds a bounded backlog in memory, and the rest waits in the file.
_QUEUED_MAX = 500_000
_ALIVE_S = 0.5
_RETRY_S = (0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class ReadBatch:
    """One pass over a run's files, in the order read."""

    items: list[Item] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    garbage: int = 0  # lines rejected so far, in all
    offset: int = 0  # bytes of events.jsonl read so far
    behind: int = 0  # bytes of it known to be waiting
    log_lines: list[str] = field(default_factory=list)
    alive: bool | None = None
    alive_checked: bool = False
    disconnected: str | None = None  # why the workspace cannot be reached, while it cannot

    def absorb(self, later: ReadBatch) -> bool:
        """Take in the next pass (not yet taken by the GUI thread) as if read at once; False when it must
        stay a batch of its own (a change of connection or a process found gone is judged in order)."""
        if self.disconnected is not None or later.disconnected is not None or self.alive is False:
            return False
        self.items += later.items
        self.rejected += later.rejected
        self.log_lines += later.log_lines
        self.garbage, self.offset, self.behind = later.garbage, later.offset, later.behind
        if later.alive_checked:
            self.alive, self.alive_checked = later.alive, True
        return True


class RunReader:
    def __init__(
        self,
        access: RunAccess,
        root: str,
        process_alive: Callable[[], bool | None],
        launch_log: str | None = None,
        poll_s: float = 0.04,
        parser: ParseWorker | None = None,
    ):
        self.access = access
        self.events = AccessEventReader(posixpath.join(root, "events.jsonl"), access=access)  # type: ignore[arg-type]
        self.log = TextTail(posixpath.join(root, "engine.log"), access=access)
        # The launcher's output is a file on this machine (or where the launch ran), beside no run.
        self.launch = TextTail(launch_log) if launch_log else None
        self.process_alive = process_alive
        self.poll_s = poll_s
        self.parser = parser  # decodes in a process of its own when given and running; else this thread does
        self.disconnected: str | None = None
        self._alive: bool | None = None
        self._alive_at = 0.0
        self._lock = threading.Lock()  # one pass at a time: the thread's, or a catch-up's
        self._queue: collections.deque[ReadBatch] = collections.deque()
        self._queued = 0  # events in the queue
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deliver: Callable[[], None] = lambda: None

    # ------------------------------------------------------------- thread

    def start(self, deliver: Callable[[], None]) -> None:
        """Read in a thread; ``deliver`` is called (from it) when batches are waiting in ``take``."""
        self._deliver = deliver
        if self.parser is not None:
            self.parser.start()
        self._thread = threading.Thread(
            target=self._run, name=f"podium-read-{self.events.path.parent.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def take(self) -> list[ReadBatch]:
        """The passes read since the last take, each run of metrics columns in them joined into one."""
        with self._queue_lock:
            batches = list(self._queue)
            self._queue.clear()
            full = self._queued >= _QUEUED_MAX
            self._queued = 0
        if full:
            self._wake.set()
        for batch in batches:
            batch.items = coalesce(batch.items)
        return batches

    def _enqueue(self, batch: ReadBatch) -> None:
        # Passes the GUI thread has not taken yet become one batch: it appends once per series per frame,
        # whatever the number of reads behind it.
        with self._queue_lock:
            self._queued += item_count(batch.items)
            if not (self._queue and self._queue[-1].absorb(batch)):
                self._queue.append(batch)

    def _run(self) -> None:
        retry = 0
        while not self._stop.is_set():
            if self._queued >= _QUEUED_MAX:  # the GUI thread is this far behind: read on once it takes them
                self._wake.wait()
                self._wake.clear()
                continue
            elsewhere = self.parser is not None and (self.parser.running or self.parser.awaited)
            behind = self.read_once(_CHUNK_ELSEWHERE if elsewhere else _CHUNK)
            if self.disconnected is not None:
                pause = _RETRY_S[min(retry, len(_RETRY_S) - 1)]
                retry += 1
            else:
                retry = 0
                pause = 0.0 if behind else self.poll_s
            if pause:
                self._wake.wait(pause)
                self._wake.clear()
            else:
                time.sleep(0)  # behind: straight on, once the GUI thread has had the chance to take the GIL

    # --------------------------------------------------------------- pass

    def read_once(self, max_bytes: int | None = _CHUNK) -> bool:
        """One pass: events (``max_bytes`` of them; None: all), logs, liveness. Whether events are waiting."""
        with self._lock:
            # Parsing makes thousands of short-lived dicts, which would set off the cyclic collector (tens of
            # ms for a full pass, with the GIL held) in the middle of a read; they hold no cycles.
            collecting = gc.isenabled()
            gc.disable()
            try:
                batch = self._pass(max_bytes)
            finally:
                if collecting:
                    gc.enable()
            if batch is not None:
                self._enqueue(batch)
        if batch is not None:
            try:
                self._deliver()
            except RuntimeError:  # the session's Qt object is gone: nobody is reading any more
                self._stop.set()
        return bool(self.events.behind) and self.disconnected is None

    def _pass(self, max_bytes: int | None) -> ReadBatch | None:
        batch = ReadBatch()
        was = self.disconnected
        try:
            self._read_events(batch, max_bytes)
            batch.log_lines += self.log.read_new(256 << 10)
            if self.launch is not None:
                # The launcher writes its lines into engine.log itself; its own output matters only when it
                # ended before that (below).
                self.launch.read_new(64 << 10)
            self._check_alive(batch)
            self.disconnected = None
        except Unreachable as exc:
            self.disconnected = str(exc) or "the workspace cannot be reached"
        except OSError as exc:
            # A file of the run that cannot be read (a directory in its place, no permission): what came before
            # it in this pass is kept, and the reader tries again as after a dropped connection.
            self.disconnected = str(exc)
        batch.disconnected = self.disconnected
        batch.offset, batch.behind, batch.garbage = self.events.offset, self.events.behind, self.events.garbage
        news = batch.items or batch.rejected or batch.log_lines or batch.alive_checked
        return batch if news or was != self.disconnected else None

    def _read_events(self, batch: ReadBatch, max_bytes: int | None) -> None:
        block = self.events.read_block(max_bytes)
        if block is not None:
            first_line = self.events.block_first_line
            decoded = self._decode_elsewhere(block, first_line)
            if decoded is None:
                batch.items += ready_items(self.events.decode_lines(block.split(b"\n"), first_line))
            else:
                items, rejected, garbage = decoded
                batch.items += items
                self.events.garbage += garbage
                self.events.rejected += rejected
        if self.events.rejected:
            batch.rejected += self.events.rejected
            self.events.rejected = []

    def _decode_elsewhere(self, block: bytes, first_line: int) -> Decoded | None:
        if self.parser is None:
            return None
        if len(block) >= _WORTH_WAITING and not self.parser.running:
            self.parser.start()  # a run opened before the window started them
            self.parser.await_start(_STARTUP_S)
        return self.parser.decode(block, first_line)

    def _check_alive(self, batch: ReadBatch) -> None:
        now = time.monotonic()
        if now - self._alive_at < _ALIVE_S:
            return
        self._alive_at = now
        alive = self.process_alive()
        if alive is False and self._alive is not False:
            # Read what the engine wrote before it went, then judge.
            self._read_events(batch, None)
            batch.log_lines += self.log.read_new() + self.log.flush_partial()
            if self.launch is not None:
                self.launch.read_new()
                self.launch.flush_partial()
                if not self.log.last_lines:  # it ended before writing engine.log: a refused config
                    batch.log_lines += [f"[launcher] {line}" for line in self.launch.last_lines]
        self._alive = alive
        batch.alive, batch.alive_checked = alive, True
