"""What an SSH workspace keeps of the files it follows (a run's events.jsonl and engine.log), so that a
reader's pass costs about one round trip however many files it looks at, and a backlog is caught up on at
the pace of parsing rather than of round trips. Under a busy GUI thread a round trip costs several ms of
waiting for the GIL twice (the SSH loop's thread, then the reader's), whatever the network.

- **Stats.** A stat that crosses the wire brings along those of the other files followed in the same
  folder (asked for in the last ``FOLLOWED_S``), which serve their files' stats for ``FRESH_S``: a reader's
  pass asks the wire once, not once per file. A stat of a file whose reader is still behind what
  the last stat saw is answered from that stat: the file only grows, and the reader that catches up gets a
  fresh one; meanwhile its neighbours' stats serve a quarter of that long (a pass is mostly parsing then,
  and a log line may wait that much).
- **Reads.** Small reads (a reader's slices) are served from a buffer read ahead, as far as the last stat
  saw (up to ``READ_AHEAD``); the next bytes are on their way in the background while the reader parses
  these. A file read past its start (an append-only log) is read through a handle kept open while it is
  followed, so a read is one round trip; it is opened only after a stat says it is a regular file (a fifo,
  once opened, would hold the host's single sftp-server).
- A file seen shorter than what was read of it (truncated, or a new run in the folder) loses its buffer and
  handle; so does a read that finds fewer bytes than the last stat promised.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import posixpath
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gui.access.base import Stat
from gui.access.ssh_lib import asyncssh, close_quietly, missing

if TYPE_CHECKING:
    from gui.access.ssh import SshAccess

READ_AHEAD = 4 << 20
AHEAD_TTL = 5.0  # seconds a buffer is trusted without a stat (a replaced file is found by its stat)
FRESH_S = 0.03  # how long a stat brought along serves (under a reader's poll, 40 ms: its next pass asks afresh)
BEHIND_S = 1.0  # how long a stat serves a reader still behind it
FOLLOWED_S = 2.0  # a file asked for this recently is followed: its stat comes along with its neighbours'
HANDLE_IDLE_S = 30.0  # an open handle unused this long is closed


@dataclass
class _File:
    path: str
    stat: Stat | None = None
    stat_at: float = float("-inf")
    own: bool = False  # the last stat was asked for this file, not brought along with a neighbour's
    told: int = 0  # the size the last stat answered for this file said
    asked_at: float = float("-inf")
    served: int = 0  # the end of the furthest read handed out
    start: int = 0  # the buffer's offset in the file
    data: bytes = b""
    data_at: float = float("-inf")
    refill: concurrent.futures.Future[bytes] | None = None  # the next bytes after the buffer, on their way
    handle: Any = None  # asyncssh.SFTPClientFile, of the session in ``session``
    session: Any = None
    used_at: float = float("-inf")
    opening: asyncio.Lock | None = None  # made and used in the SSH loop's thread only

    def drop(self) -> Any:
        """Forget the buffer and the handle (returned, to close); the stat stands."""
        handle, self.handle, self.session = self.handle, None, None
        self.served, self.data, self.refill = 0, b"", None
        return handle


class Tails:
    """The followed files of one :class:`~gui.access.ssh.SshAccess`; its ``stat_many`` and small ``read``."""

    def __init__(self, access: SshAccess):
        self.access = access
        self._files: dict[str, _File] = {}
        self._lock = threading.Lock()  # callers are worker threads; the SSH loop's thread opens handles

    def _file(self, path: str) -> _File:
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = _File(path)
        return f

    # ------------------------------------------------------------------ stats

    def stat_many(self, paths: list[str], stat_now: Callable[[list[str]], list[Stat | None]]) -> list[Stat | None]:
        now = time.monotonic()
        answers: dict[str, Stat | None] = {}
        with self._lock:
            behind = {posixpath.dirname(p) for p, f in self._files.items() if self._behind(f, now)}
            for path in paths:
                f = self._file(path)
                f.asked_at = now
                fresh = now - f.stat_at
                if (fresh < FRESH_S and not f.own) or self._behind(f, now):
                    answers[path] = f.stat
                elif fresh < BEHIND_S / 4 and posixpath.dirname(path) in behind:
                    answers[path] = f.stat  # its reader's pass is mostly parsing a backlog now
            ask = list(dict.fromkeys(p for p in paths if p not in answers))
            folders = {posixpath.dirname(p) for p in ask}
            along = [
                p
                for p, f in self._files.items()
                if p not in answers
                and p not in ask
                and now - f.asked_at < FOLLOWED_S
                and posixpath.dirname(p) in folders
            ]
        if ask:
            found = stat_now(ask + along)
            now = time.monotonic()
            closing = []
            with self._lock:
                for path, st in zip(ask + along, found, strict=True):
                    f = self._file(path)
                    f.stat, f.stat_at, f.own = st, now, path in ask
                    if st is None or st.size < max(f.served, f.start + len(f.data)):
                        closing.append(f.drop())  # truncated or replaced: what was read is another file's
                    if path in ask:
                        answers[path] = st
            self._close(closing)
        with self._lock:
            for path in paths:
                st = answers[path]
                self._file(path).told = st.size if st is not None else 0
        return [answers[path] for path in paths]

    @staticmethod
    def _behind(f: _File, now: float) -> bool:
        """Whether its reader is still catching up on what its last stat (in the last BEHIND_S) told it. Not on
        a size a neighbour's stat brought along: news its reader has not asked for yet."""
        recent = now - f.stat_at < BEHIND_S and now - f.data_at < AHEAD_TTL
        return recent and f.served < f.told

    # ------------------------------------------------------------------ reads

    def read(self, path: str, offset: int, size: int) -> bytes:
        now = time.monotonic()
        with self._lock:
            f = self._file(path)
            # A read from the start (a config, a manifest, notes: replaced whole, by rename; or a followed file's
            # first slice) always asks the host: a buffer could hold a replaced file's bytes, or a gone host's.
            data = self._from_buffer(f, offset, size, now) if offset > 0 else b""
            waiting = f.refill if not data and f.refill is not None and f.start + len(f.data) == offset else None
            known = f.stat.size if f.stat is not None else None
        if not data and waiting is not None:
            try:
                more = waiting.result(600)
            except Exception:  # the refill failed (lost connection, a replaced file): read directly below
                more = None
            with self._lock:
                if more is not None and f.refill is waiting:
                    f.start, f.data, f.data_at, f.refill = offset, more, time.monotonic(), None
                data = self._from_buffer(f, offset, size, time.monotonic())
        if not data:
            # As much as the last stat saw (a live run's tail: just the new bytes), up to READ_AHEAD.
            want = max(size, min(READ_AHEAD, (known if known is not None else offset + READ_AHEAD) - offset))
            got = self.access._call(lambda _conn, sftp: self._read_at(sftp, path, offset, want), 600)
            with self._lock:
                if known is not None and len(got) < min(want, known - offset):
                    # Fewer bytes than the stat promised: not the file it was; the next stat looks again.
                    self._close([f.drop()])
                    f.stat_at = float("-inf")
                    return got[:size]
                f.start, f.data, f.data_at, f.refill = offset, got, time.monotonic(), None
                data = self._from_buffer(f, offset, size, time.monotonic())
        self._sweep()
        return data

    def _from_buffer(self, f: _File, offset: int, size: int, now: float) -> bytes:
        """Bytes from the buffer (b"" when it does not hold ``offset``); starts the refill when it runs low."""
        end = f.start + len(f.data)
        if not (f.start <= offset < end) or now - f.data_at >= AHEAD_TTL:
            return b""
        data = f.data[offset - f.start : offset - f.start + size]
        f.served = max(f.served, offset + len(data))
        known = f.stat.size if f.stat is not None else 0
        if f.refill is None and known > end:
            sftp = self.access._sftp
            if sftp is not None:
                refill = self._read_at(sftp, f.path, end, min(READ_AHEAD, known - end))
                f.refill = asyncio.run_coroutine_threadsafe(refill, self.access._loop)
        return data

    async def _read_at(self, sftp: asyncssh.SFTPClient, path: str, offset: int, size: int) -> bytes:
        """In the SSH loop's thread: ``size`` bytes at ``offset``. A file read past its start is being followed
        (an append-only log): through its handle, opened if need be. One read from its start (a config, a
        manifest: replaced whole, by rename) opens it afresh, so it is never an old file's bytes."""
        if offset == 0:
            return await self.access._fetch(sftp, path, offset, size)
        with self._lock:
            f = self._file(path)
            if f.opening is None:
                f.opening = asyncio.Lock()
        async with f.opening:
            if f.handle is None or f.session is not sftp:
                try:
                    handle = await self.access._open_regular(sftp, path)
                except asyncssh.SFTPError as exc:
                    return missing(exc, b"")
                with self._lock:
                    f.handle, f.session = handle, sftp
            handle = f.handle
        f.used_at = time.monotonic()
        try:
            data: bytes = await handle.read(size, offset)
        except asyncssh.SFTPError as exc:
            return missing(exc, b"")
        except ValueError:  # closed meanwhile (swept, or the file was replaced): the caller reads again
            return b""
        return data

    # ------------------------------------------------------------------ upkeep

    def forget(self, path: str) -> None:
        """This app wrote the file: what was read and stat'ed of it is another file's."""
        with self._lock:
            f = self._files.pop(path, None)
        if f is not None:
            self._close([f.drop()])

    def reset(self) -> None:
        """The connection went: its handles with it."""
        with self._lock:
            for f in self._files.values():
                f.drop()
                f.stat_at, f.opening = float("-inf"), None

    def _sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            idle = [f.drop() for f in self._files.values() if f.handle is not None and now - f.used_at > HANDLE_IDLE_S]
        self._close(idle)

    def _close(self, handles: list[Any]) -> None:
        loop = self.access._loop
        for handle in handles:
            if handle is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self.access._spawn, close_quietly(handle))
