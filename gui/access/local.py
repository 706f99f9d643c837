"""A workspace on this machine: plain file reads, the engine's own inbox, child processes."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat as stat_mod
import subprocess
import threading
from pathlib import Path
from typing import Any

from engine.contract.commandline import engine_command
from engine.contract.files import atomic_write_bytes
from engine.contract.rundir import RunDir
from gui.access.base import CommandTimeout, Stat


class LocalAccess:
    remote = False

    def __init__(self, root: str | os.PathLike[str]):
        self.url = os.fspath(root)
        self.root = os.path.abspath(os.path.expanduser(self.url))

    def label(self) -> str:
        home = os.path.expanduser("~")
        if self.root == home or self.root.startswith(home + os.sep):
            return "~" + self.root[len(home) :]
        return self.root

    def stat(self, path: str) -> Stat | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return Stat(st.st_size, st.st_mtime, stat_mod.S_ISDIR(st.st_mode))

    def stat_many(self, paths: list[str]) -> list[Stat | None]:
        return [self.stat(path) for path in paths]

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except OSError:
            return []

    def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
        try:
            # Non-blocking: opening a fifo planted in a run folder would otherwise wait for a writer forever.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            return b""
        except OSError as exc:  # a directory, no permission: say which file, as for any read
            raise OSError(exc.errno, f"cannot read {path}: {exc.strerror}") from exc
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, f"cannot read {path}: not a regular file")
        with os.fdopen(fd, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def read_many(self, paths: list[str], size: int) -> list[bytes | OSError]:
        found: list[bytes | OSError] = []
        for path in paths:
            try:
                found.append(self.read(path, 0, size))
            except OSError as exc:
                found.append(exc)
        return found

    def write(self, path: str, data: bytes, private: bool = True) -> None:
        # A reader never sees half a file: the bytes go to a temporary file beside it, then replace it.
        atomic_write_bytes(path, data, mode=0o600 if private else None)

    def rename(self, path: str, new: str) -> None:
        os.rename(path, new)

    def remove_tree(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def fetch(self, path: str) -> Path:
        return Path(path)

    def podium(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                engine_command(*args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"podium {' '.join(args)} did not finish within {timeout:g} s") from None

    def send_command(self, run: str, cmd: str, **args: Any) -> str:
        from engine.contract import commands  # the command models (pydantic): with the first command sent

        return commands.send_command(run, cmd, **args)

    def launch(self, argv: list[str], run: str, log: str | None = None) -> int:
        out = open(log, "ab") if log else open(os.devnull, "wb")  # noqa: SIM115 (the child holds it)
        try:
            # Its own session: the engine outlives the app and its terminal's hang-up.
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            out.close()
        # Reap it when it ends, so an exited engine is not left a zombie of this process.
        threading.Thread(target=proc.wait, name=f"podium-reap-{proc.pid}", daemon=True).start()
        return proc.pid

    def signal_launcher(self, run: str, name: str, pid: int | None = None) -> int:
        import psutil  # here, not on the way to the window's first paint (20 ms)

        from engine.contract.launcher_record import launches

        try:
            proc = psutil.Process(pid) if pid is not None else RunDir(run).launcher_process()
        except psutil.Error:
            proc = None
        if proc is not None and not launches(proc, Path(run)):  # the pid of a launcher gone meanwhile, reused
            proc = None
        if proc is None:
            raise ProcessLookupError(
                "launcher.json does not name a live process that is verifiably this run's launcher"
            )
        try:
            proc.send_signal(getattr(signal, f"SIG{name}"))
        except psutil.Error as exc:
            raise ProcessLookupError(f"pid {proc.pid}: {exc}") from None
        return proc.pid

    def process_alive(self, run: str) -> bool | None:
        return RunDir(run).launcher_alive()

    def close(self) -> None:
        pass
