"""Event lines decoded in a process of their own, so the GUI thread keeps the GIL. Qt-free.

Decoding is most of what reading a run costs (JSON, the contract's checks, metrics made columns). Done in a
reader thread, it holds the GIL for as long as the GUI thread's appends and paints together, and each call
from Qt into Python waits for it: a flood of events stalls the window although a second core is idle.
:class:`ParseWorker` hands chunks of complete lines to child processes (``python -m
gui.models.parse_worker``, two on a machine of two cores or more), which decode them with the same code a
reader thread runs and send the ready items back; the calling thread waits on a socket, without the GIL.
Until the children are up, or if one dies, :meth:`ParseWorker.decode` says so and the caller decodes in its
own thread: nothing is lost either way.
"""

from __future__ import annotations

import atexit
import gc
import math
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the decoding modules load where lines are decoded, not where the children are started
    from engine.contract.events import Rejected
    from gui.models.columns import Item

    Decoded = tuple[list[Item], list[Rejected], int]  # the items, the newest rejected lines, how many rejected
_READY = b"ready"
# A reply later than this means a stuck child (a part is decoded in well under a second): the readers go on
# decoding in their own threads rather than wait for it.
REPLY_S = 30.0
_MIN_SHARE = 512 << 10  # bytes: a smaller chunk goes to one child whole (a round trip costs more than it saves)


def decode_chunk(block: bytes, first_line: int) -> Decoded:
    """Complete lines (one chunk, newline-separated) as a reader thread decodes them, the rejected ones
    counted from ``first_line``."""
    from engine.contract.events import EventReader
    from gui.models.columns import ready_items

    reader = EventReader(Path(os.devnull))
    items = ready_items(reader.decode_lines(block.split(b"\n"), first_line))
    return items, reader.rejected, reader.garbage


def _parts(block: bytes, count: int, first_line: int) -> list[tuple[bytes, int]]:
    """``block`` cut at newlines into at most ``count`` parts of at least _MIN_SHARE bytes, each with the
    number of its first line (0 stays 0: not known)."""
    share = max(_MIN_SHARE, -(-len(block) // count))
    parts: list[tuple[bytes, int]] = []
    start = 0
    while start <= len(block):
        cut = block.find(b"\n", start + share) if len(parts) < count - 1 else -1
        end = len(block) if cut < 0 else cut
        parts.append((block[start:end], first_line))
        if first_line:
            first_line += block.count(b"\n", start, end) + 1
        start = end + 1
    return parts


class _Child:
    """One decoding process and its end of the socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gui.models.parse_worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        # A child that stops reading must not block its reader forever: a send waits this long at most.
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", math.ceil(REPLY_S), 0))
        self.conn = Connection(ours.detach())
        self.ready = False

    def poll_ready(self) -> bool:
        if not self.ready and self.conn.poll(0):
            if self.conn.recv_bytes() != _READY:
                raise EOFError("the parse worker did not start")
            self.ready = True
        return self.ready

    def close(self) -> None:
        self.conn.close()  # the child reads EOF and exits
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ParseWorker:
    """Decoding child processes shared by the reader threads of every open run, one chunk of lines at a time.

    A big chunk (a finished run being opened, a flood) is split between the children, which decode their
    parts at once on other cores; the children run at a lower priority than the app, so decoding takes what
    the window leaves.
    """

    def __init__(self, processes: int = min(2, os.cpu_count() or 1)) -> None:
        self.processes = max(1, processes)
        self._lock = threading.Lock()
        self._children: list[_Child] = []
        self._started = False
        self._failed = False
        self._start_awaited = False  # a reader has waited for them to come up once; nobody waits again

    def start(self) -> None:
        """Start the children (once); they become usable when their imports are done, in the background."""
        if self._started or self._failed:  # the GUI thread calls this on every open: no lock when done
            return
        with self._lock:
            if self._started or self._failed:
                return
            self._started = True
            try:
                for _ in range(self.processes):
                    self._children.append(_Child())
            except (OSError, ValueError):  # no process to be had, or no way to hand it a socket (Windows)
                self._fail_locked()

    def await_start(self, wait_s: float) -> None:
        """Wait up to ``wait_s`` for children still starting, once per worker (a child that never comes up
        costs one wait, not one per chunk), without the lock, so nobody else waits with this caller."""
        if self._start_awaited or self._failed:
            return
        self._start_awaited = True
        deadline = time.monotonic() + wait_s
        starting = [child.conn for child in list(self._children) if not child.ready]
        try:
            while starting and (left := deadline - time.monotonic()) > 0:
                up = wait(starting, left)  # readable: its "ready" is waiting to be read, under the lock
                starting = [conn for conn in starting if conn not in up]
        except (OSError, ValueError):  # closed meanwhile: the worker failed or the app is closing
            pass

    @property
    def awaited(self) -> bool:
        """Whether waiting for the children could still pay: not given up on, and nobody has waited yet."""
        return not self._failed and not self._start_awaited

    def decode(self, block: bytes, first_line: int) -> Decoded | None:
        """A chunk of complete lines (newline-separated) decoded by the children; None when they cannot (not
        started or not up yet, or gone). The chunk goes as bytes: no list of lines is built or pickled
        here."""
        with self._lock:
            if not self._children:
                return None
            try:
                if not all([child.poll_ready() for child in self._children]):
                    return None
                if not block:
                    return [], [], 0
                parts = list(zip(_parts(block, len(self._children), first_line), self._children))
                for part, child in parts:
                    child.conn.send(part)
                items: list[Item] = []
                rejected: list[Rejected] = []
                garbage = 0
                for _, child in parts:
                    if not child.conn.poll(REPLY_S):
                        raise TimeoutError("a parse worker stopped answering")
                    part_items, part_rejected, part_garbage = child.conn.recv()
                    items += part_items
                    rejected += part_rejected
                    garbage += part_garbage
                return items, rejected, garbage
            except Exception:  # gone, stuck or garbled: no later reply can be trusted to match its request
                self._fail_locked()  # decoded in the readers' threads from now on
                return None

    @property
    def running(self) -> bool:
        return bool(self._children) and all(child.ready for child in self._children)

    def close(self) -> None:
        with self._lock:
            for child in self._children:
                child.close()
            self._children = []

    def _fail_locked(self) -> None:
        for child in self._children:
            child.close()
        self._children = []
        self._failed = True


_shared: ParseWorker | None = None
_shared_lock = threading.Lock()


def shared() -> ParseWorker:
    """The app's one parse worker (started by the first reader that asks)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ParseWorker()
            atexit.register(_shared.close)
        return _shared


def _serve(fd: int) -> None:
    os.nice(5)
    # Decoding makes many short-lived dicts and no cycles: the cyclic collector would only slow it down.
    gc.disable()
    conn = Connection(fd)
    # Up means able to decode at full speed: the decoding modules (pydantic's models) load first.
    decode_chunk(b"", 0)
    try:
        conn.send_bytes(_READY)
    except OSError:  # the app quit while the modules loaded
        return
    while True:
        try:
            block, first_line = conn.recv()
        except (EOFError, OSError):  # the app closed its end, or is gone
            return
        conn.send(decode_chunk(block, first_line))


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
