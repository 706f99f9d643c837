"""A workspace on another machine, over SSH (asyncssh): SFTP for files, ``podium`` over exec for the rest.

One connection per workspace, owned by an asyncio loop in a background thread; every method blocks the
calling (worker) thread until its coroutine finishes there. The host's key must be in
~/.ssh/known_hosts (see :mod:`gui.access.hostkeys`); keys come from the agent or ~/.ssh, host aliases
from ~/.ssh/config, and no password is ever asked for or stored. A dropped connection raises
:class:`Unreachable`; the next call after a back-off connects again. Offsets live with the readers, so
nothing read before the drop is read twice or skipped after it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import posixpath
import stat as stat_mod
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from gui.access import hostkeys
from gui.access.base import Stat, Unreachable
from gui.access.ssh_lib import LOST, asyncssh, close_quietly, missing
from gui.access.ssh_podium import PodiumOnHost
from gui.access.ssh_tail import READ_AHEAD, Tails
from gui.access.ssh_url import DEFAULT_PODIUM, SshUrlError, parse_url

T = TypeVar("T")
__all__ = ["DEFAULT_PODIUM", "SshAccess", "SshUrlError", "parse_url"]

# Back-off between reconnection attempts: doubling from the first to the last, then staying there.
RETRY_FIRST, RETRY_MAX = 0.25, 8.0
CONNECT_TIMEOUT = 10.0
# A connection whose server stops answering (the network went, not the server) is declared lost after
# KEEPALIVE * KEEPALIVE_COUNT seconds of silence.
KEEPALIVE, KEEPALIVE_COUNT = 3.0, 3


class SshAccess:
    remote = True

    def __init__(self, url: str, podium_command: str | None = None):
        self.url = url
        self.user, self.host, self.port, self.root = parse_url(url)
        self.podium_command = podium_command or DEFAULT_PODIUM
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=f"podium-ssh-{self.host}")
        self._thread.start()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._connecting = threading.Lock()
        self._closed = False
        self._failures = 0
        self._retry_at = 0.0
        self.last_error = ""
        self._closing: set[asyncio.Task[None]] = set()
        self._host = PodiumOnHost(self)
        self._tails = Tails(self)
        self._cache = Path(os.path.expanduser("~/.cache/podium/remote")) / hashlib.sha1(url.encode()).hexdigest()[:16]

    def label(self) -> str:
        return f"{self.host}:{self.root}"

    @property
    def connected(self) -> bool:
        return self._conn is not None

    # ------------------------------------------------------------------ connection

    @staticmethod
    def _config() -> list[str]:
        config = os.path.expanduser("~/.ssh/config")
        return [config] if os.path.exists(config) else []

    def _options(self) -> asyncssh.SSHClientConnectionOptions:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "config": self._config(),
            "connect_timeout": CONNECT_TIMEOUT,
            "keepalive_interval": KEEPALIVE,
            "keepalive_count_max": KEEPALIVE_COUNT,
            # Keys only (agent, ~/.ssh): a password is never asked for, so never kept.
            "preferred_auth": "gssapi-keyex,gssapi-with-mic,hostbased,publickey",
        }
        if self.port is not None:
            kwargs["port"] = self.port
        if self.user is not None:
            kwargs["username"] = self.user
        return asyncssh.SSHClientConnectionOptions(**kwargs)

    async def _open(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        options = self._options()
        try:
            conn = await asyncssh.connect(options.host, options=options)
        except asyncssh.HostKeyNotVerifiable:
            key = await asyncssh.get_server_host_key(options.host, options.port, config=self._config())
            if key is None:
                raise
            raise hostkeys.classify(options.host, options.port, key) from None
        try:
            return conn, await conn.start_sftp_client()
        except BaseException:
            conn.close()
            raise

    def _session(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        with self._connecting:
            if self._closed:  # a worker still asking after the window closed this workspace
                raise Unreachable(f"{self.label()}: closed")
            if self._conn is not None and self._sftp is not None:
                return self._conn, self._sftp
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise Unreachable(f"{self.label()}: disconnected ({self.last_error}); retrying in {wait:.1f} s")
            try:
                self._conn, self._sftp = self._wait(self._open(), CONNECT_TIMEOUT + 5)
            except hostkeys.HostKeyError:
                raise
            except (OSError, asyncssh.Error, concurrent.futures.TimeoutError) as exc:
                self._failures += 1
                self._retry_at = time.monotonic() + min(RETRY_MAX, RETRY_FIRST * 2 ** (self._failures - 1))
                self.last_error = _reason(exc)
                raise Unreachable(f"{self.label()}: cannot connect: {self.last_error}") from None
            self._failures, self._retry_at = 0, 0.0
            return self._conn, self._sftp

    def _drop(self, exc: BaseException) -> Unreachable:
        with self._connecting:
            conn, self._conn, self._sftp = self._conn, None, None
            self.last_error = _reason(exc)
            self._retry_at = time.monotonic() + RETRY_FIRST
        self._tails.reset()
        if conn is not None:
            self._loop.call_soon_threadsafe(conn.abort)
        return Unreachable(f"{self.label()}: connection lost: {self.last_error}")

    def _wait(self, coro: Awaitable[T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def _call(
        self, work: Callable[[asyncssh.SSHClientConnection, asyncssh.SFTPClient], Awaitable[T]], timeout: float
    ) -> T:
        conn, sftp = self._session()
        try:
            return self._wait(work(conn, sftp), timeout)
        except (*LOST, ConnectionError, concurrent.futures.TimeoutError) as exc:
            raise self._drop(exc) from None
        except Exception:
            if self._closed:  # closed meanwhile (the window went): asyncssh then fails in ways of its own
                raise Unreachable(f"{self.label()}: closed") from None
            raise

    # ------------------------------------------------------------------ files

    def stat(self, path: str) -> Stat | None:
        return self.stat_many([path])[0]

    def stat_many(self, paths: list[str]) -> list[Stat | None]:
        """All in flight at once: 200 runs cost a round trip, not 200; a followed file's often none (ssh_tail)."""
        return self._tails.stat_many(paths, self._stat_now)

    def _stat_now(self, paths: list[str]) -> list[Stat | None]:
        async def one(sftp: asyncssh.SFTPClient, path: str) -> Stat | None:
            try:
                attrs = await sftp.stat(path)
            except asyncssh.SFTPError as exc:
                return missing(exc, None)
            return Stat(attrs.size or 0, float(attrs.mtime or 0), stat_mod.S_ISDIR(attrs.permissions or 0))

        async def work(_conn: Any, sftp: asyncssh.SFTPClient) -> list[Stat | None]:
            return list(await asyncio.gather(*(one(sftp, path) for path in paths)))

        return self._call(work, 30)

    def listdir(self, path: str) -> list[str]:
        async def work(_conn: Any, sftp: asyncssh.SFTPClient) -> list[str]:
            try:
                names = await sftp.listdir(path)
            except asyncssh.SFTPError as exc:
                return missing(exc, [])
            return [str(n) for n in names if n not in (".", "..")]

        return self._call(work, 30)

    def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
        """A reader's slices come from what was read ahead for it (ssh_tail); larger reads read afresh."""
        if 0 <= size < READ_AHEAD:
            return self._tails.read(path, offset, size)
        return self._read(path, offset, size)

    def _read(self, path: str, offset: int, size: int) -> bytes:
        # Large first reads (a finished run's whole file) get the time they need; a stuck one still ends.
        return self._call(lambda _conn, sftp: self._fetch(sftp, path, offset, size), 600)

    def read_many(self, paths: list[str], size: int) -> list[bytes | OSError]:
        """All in flight at once: a runs list's 200 notes files cost a few round trips, not 600."""

        async def one(sftp: asyncssh.SFTPClient, path: str) -> bytes | OSError:
            try:
                return await self._fetch(sftp, path, 0, size)
            except ConnectionError:
                raise
            except OSError as exc:
                return exc

        async def work(_conn: Any, sftp: asyncssh.SFTPClient) -> list[bytes | OSError]:
            return list(await asyncio.gather(*(one(sftp, path) for path in paths)))

        return self._call(work, 120)

    async def _open_regular(self, sftp: asyncssh.SFTPClient, path: str) -> Any:
        """``path`` opened for reading; OSError when it is not a regular file. The host's sftp-server answers
        one request at a time: a fifo planted in a run folder, once opened, would hold every later read of
        the workspace behind it."""
        attrs = await sftp.stat(path)
        if not stat_mod.S_ISREG(attrs.permissions or 0):
            raise OSError(f"{self.label()}: cannot read {path}: not a regular file")
        return await sftp.open(path, "rb")

    async def _fetch(self, sftp: asyncssh.SFTPClient, path: str, offset: int, size: int) -> bytes:
        try:
            f = await self._open_regular(sftp, path)
        except asyncssh.SFTPError as exc:
            return missing(exc, b"")
        try:
            data: bytes = await f.read(size, offset)
        except asyncssh.SFTPError as exc:
            data = missing(exc, b"")
        finally:
            self._spawn(close_quietly(f))  # not waited for: a small read costs one round trip less
        return data

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:  # in the loop's thread: runs on, unawaited
        task = self._loop.create_task(work)
        self._closing.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._closing.discard)

    def write(self, path: str, data: bytes, private: bool = True) -> None:
        temp = posixpath.join(posixpath.dirname(path), f".podium-{os.getpid()}-{time.monotonic_ns()}.tmp")

        async def work(_conn: Any, sftp: asyncssh.SFTPClient) -> None:
            # Not private: what the host's umask leaves of 0666, as a file made there by the engine gets.
            attrs = asyncssh.SFTPAttrs(permissions=0o600 if private else 0o666)
            try:
                async with sftp.open(temp, "wb", attrs) as f:
                    await f.write(data)
                await sftp.posix_rename(temp, path)
            except asyncssh.SFTPError as exc:
                if isinstance(exc, LOST):
                    raise
                await _remove_quietly(sftp, temp)
                raise OSError(f"{self.label()}: cannot write {path}: {exc.reason}") from None

        self._call(work, 120)
        self._tails.forget(path)

    def rename(self, path: str, new: str) -> None:
        async def work(_conn: Any, sftp: asyncssh.SFTPClient) -> None:
            try:
                await sftp.posix_rename(path, new)
            except asyncssh.SFTPError as exc:
                if isinstance(exc, LOST):
                    raise
                raise OSError(f"{posixpath.basename(path)}: {exc.reason}") from None

        self._call(work, 30)

    def remove_tree(self, path: str) -> None:
        async def work(_conn: Any, sftp: asyncssh.SFTPClient) -> None:
            try:
                await sftp.rmtree(path, ignore_errors=True)
            except asyncssh.SFTPError as exc:
                if isinstance(exc, LOST):
                    raise

        self._call(work, 600)

    def fetch(self, path: str) -> Path:
        local = self._cache / hashlib.sha1(path.encode()).hexdigest()[:16] / posixpath.basename(path)

        async def work(_conn: Any, sftp: asyncssh.SFTPClient) -> Path:
            try:
                attrs = await sftp.stat(path)
            except asyncssh.SFTPError as exc:
                if isinstance(exc, LOST):
                    raise
                raise FileNotFoundError(f"{self.label()}: {path}: {exc.reason}") from None
            try:
                here = local.stat()
                if here.st_size == attrs.size and int(here.st_mtime) == int(attrs.mtime or 0):
                    return local
            except OSError:
                pass
            local.parent.mkdir(parents=True, exist_ok=True)
            partial = local.with_name(local.name + ".part")
            await sftp.get(path, str(partial), preserve=True)
            partial.replace(local)
            return local

        return self._call(work, 600)

    # ------------------------------------------------------------------ the podium command (ssh_podium)

    def podium(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self._host.run(args, timeout)

    def send_command(self, run: str, cmd: str, **args: Any) -> str:
        return self._host.send_command(run, cmd, args)

    def signal_launcher(self, run: str, name: str, pid: int | None = None) -> int:
        """Checked on the host, from launcher.json: the pid this app was told at launch is not trusted."""
        return self._host.signal_launcher(run, name)

    def launch(self, argv: list[str], run: str, log: str | None = None) -> int:
        """``argv`` as for a local launch (``engine_command("run", ...)``) or the podium arguments alone;
        the host runs them with its own podium command, in a session of their own (setsid), immune to
        the hang-up of this connection (nohup): the run trains on when the laptop closes."""
        return self._host.launch(argv, run, log)

    def process_alive(self, run: str) -> bool | None:
        """The last answer from the host (None until there is one), asked again in the background at most
        every few seconds: launcher.json names the process by pid, start time and command line, which only
        its host can check, with a podium start there (most of a second) that no reader waits for."""
        return self._host.process_alive(run)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with self._connecting:
            conn, self._conn, self._sftp = self._conn, None, None
            self._closed = True
        self._tails.reset()
        if conn is not None:
            self._loop.call_soon_threadsafe(conn.close)  # asyncssh objects belong to their loop's thread
            try:
                self._wait(conn.wait_closed(), 5)
            except (concurrent.futures.TimeoutError, asyncssh.Error, OSError):
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


async def _remove_quietly(sftp: asyncssh.SFTPClient, path: str) -> None:
    try:
        await sftp.remove(path)
    except asyncssh.SFTPError:
        pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, concurrent.futures.TimeoutError):
        return "no answer in time"
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason or type(exc).__name__
    return str(exc) or type(exc).__name__
