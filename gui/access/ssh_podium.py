"""What an SSH workspace asks of ``podium`` on its host: commands to a run's inbox, a detached launch, a
signal to a stubborn launcher, and whether a run's launcher still lives. Each runs the host's own
``podium`` over exec, so the host's checks (the inbox's owner, an ended run refused, the launcher
verified from launcher.json before any signal) apply there, where the run is.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import shlex
import subprocess
import time
from typing import TYPE_CHECKING, Any

from engine.contract.commandline import engine_command
from engine.contract.commands import parse_command
from engine.contract.errors import CommandError
from gui.access.base import CommandTimeout
from gui.access.ssh_lib import asyncssh

if TYPE_CHECKING:
    from gui.access.ssh import SshAccess

ALIVE_TTL = 5.0
_SENT = re.compile(r"^sent \S+ \(id (\S+)\)$", re.MULTILINE)
_SIGNALLED = re.compile(r"^sent SIG\S+ to pid (\d+)$", re.MULTILINE)
# The only arguments `podium control` takes besides the command.
_CONTROL_FLAGS = {"lr": "--lr", "steps": "--steps"}


class PodiumOnHost:
    def __init__(self, access: SshAccess):
        self.access = access
        self._alive: dict[str, tuple[float, bool | None]] = {}
        self._asking: set[str] = set()

    def run(self, args: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess[str]:
        return self.access._call(lambda conn, _sftp: self._run(conn, args, timeout), timeout + 10)

    async def _run(
        self, conn: asyncssh.SSHClientConnection, args: tuple[str, ...], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        command = f"{self.access.podium_command} {shlex.join(args)}"
        try:
            result = await conn.run(command, check=False, timeout=timeout, stdin=asyncssh.DEVNULL)
        except asyncssh.TimeoutError as exc:
            raise CommandTimeout(f"{command} did not finish within {timeout:g} s on {self.access.host}") from exc
        code = result.exit_status if result.exit_status is not None else -1
        return subprocess.CompletedProcess(command, code, str(result.stdout or ""), str(result.stderr or ""))

    def send_command(self, run: str, cmd: str, args: dict[str, Any]) -> str:
        # A typo fails here, before anything crosses the wire (the id and time are the host's to give).
        parse_command({"id": "checked-here", "cmd": cmd, "args": args, "time": time.time()})
        argv = ["control", run, cmd]
        for name, value in args.items():
            if name not in _CONTROL_FLAGS:
                raise CommandError(f"{cmd}: argument {name!r} cannot be sent to a remote run")
            argv += [_CONTROL_FLAGS[name], repr(value) if isinstance(value, float) else str(value)]
        result = self.run(tuple(argv), 30)
        sent = _SENT.search(result.stdout)
        if result.returncode == 0 and sent:
            return sent.group(1)
        message = _message(result)
        if result.returncode == 2:
            raise CommandError(message)
        raise CommandError(f"podium control on {self.access.host} exited {result.returncode}: {message}")

    def signal_launcher(self, run: str, name: str) -> int:
        """``podium stop RUN --signal NAME`` on the host; the pid it signalled. ProcessLookupError, with the
        host's reason, when launcher.json names no live process that is verifiably the run's launcher."""
        result = self.run(("stop", run, "--signal", name), 30)
        sent = _SIGNALLED.search(result.stdout)
        if result.returncode == 0 and sent:
            return int(sent.group(1))
        if result.returncode == 1:
            raise ProcessLookupError(_message(result))
        raise OSError(f"podium stop on {self.access.host} exited {result.returncode}: {_message(result)}")

    def launch(self, argv: list[str], run: str, log: str | None) -> int:
        local = engine_command()
        if argv[: len(local)] == local:
            argv = argv[len(local) :]
        out = shlex.quote(log) if log else "/dev/null"
        script = (
            f"mkdir -p {shlex.quote(posixpath.dirname(run))} && cd {shlex.quote(self.access.root)} && "
            # Braces: only podium goes to the background, its output nowhere near this channel, which then
            # closes at once; without a job control, setsid execs podium itself, so $! is the launcher's pid.
            f"{{ setsid nohup {self.access.podium_command} {shlex.join(argv)} >{out} 2>&1 </dev/null & echo $!; }}"
        )
        host = self.access.host

        async def work(conn: asyncssh.SSHClientConnection, _sftp: Any) -> int:
            result = await conn.run(script, check=False, timeout=30, stdin=asyncssh.DEVNULL)
            pid = str(result.stdout or "").strip()
            if result.exit_status != 0 or not pid.isdigit():
                raise OSError(f"{host}: could not start podium: {str(result.stderr or '').strip()}")
            return int(pid)

        return self.access._call(work, 40)

    def process_alive(self, run: str) -> bool | None:
        cached = self._alive.get(run)
        if (cached is None or time.monotonic() - cached[0] >= ALIVE_TTL) and run not in self._asking:
            conn, _sftp = self.access._session()  # Unreachable when the host is away, as for any read
            self._asking.add(run)
            asyncio.run_coroutine_threadsafe(self._ask_alive(conn, run), self.access._loop)
        return cached[1] if cached is not None else None

    async def _ask_alive(self, conn: asyncssh.SSHClientConnection, run: str) -> None:
        try:
            result = await self._run(conn, ("runs", "--json", run), 60)
            alive = json.loads(result.stdout)[0]["alive"] if result.returncode == 0 else None
            self._alive[run] = (time.monotonic(), alive if isinstance(alive, bool) else None)
        except (ValueError, LookupError, TypeError, CommandTimeout):
            self._alive[run] = (time.monotonic(), None)
        except (asyncssh.Error, OSError):
            pass  # the connection went: the next call reconnects and asks again
        finally:
            self._asking.discard(run)


def _message(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr or result.stdout).strip().removeprefix("error: ")
