"""A real OpenSSH server on 127.0.0.1 for the remote-workspace tests (Debian's openssh-server).

Throwaway host and client keys, its own config, pid file and port; the client side is a temporary HOME
whose ~/.ssh holds the client key, a known_hosts that names the server and a config alias. It can be
killed and started again on the same port, as a server that drops off the network and comes back.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
REPO = Path(__file__).resolve().parent.parent
ALIAS = "podium-test-host"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class SshServer:
    def __init__(self, base: Path):
        self.base = base
        self.port = _free_port()
        self.user = (
            os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        )
        server = base / "server"
        server.mkdir(mode=0o700, parents=True)
        self.host_key_line = _keygen(server / "host_key")
        self.home = base / "home"
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        (server / "authorized_keys").write_text(_keygen(ssh_dir / "id_ed25519") + "\n")
        self.pid_file = server / "sshd.pid"
        self.config = server / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {server / 'host_key'}\n"
            f"PidFile {self.pid_file}\nAuthorizedKeysFile {server / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            # The throwaway files live under /tmp, which StrictModes would reject for its mode.
            "StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
            # The tests' engine commands need the checkout's code and the session's data cache.
            "AcceptEnv PODIUM_*\n"
        )
        (ssh_dir / "config").write_text(
            f"Host {ALIAS}\n  HostName 127.0.0.1\n  Port {self.port}\n  User {self.user}\n"
            f"  IdentityFile {ssh_dir / 'id_ed25519'}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def known_hosts(self) -> Path:
        return self.home / ".ssh" / "known_hosts"

    def trust(self) -> None:
        """Write the server's key into the client's known_hosts, as an earlier 'yes' would have."""
        key = " ".join(self.host_key_line.split()[:2])
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key}\n")

    def url(self, path: str | os.PathLike[str]) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{os.fspath(path)}"

    def podium_command(self) -> str:
        """The engine as the test host runs it: this interpreter, this checkout, the tests' data cache."""
        env = {"PYTHONPATH": str(REPO), "PODIUM_CACHE_DIR": os.environ.get("PODIUM_CACHE_DIR", "")}
        assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if v)
        return f"env {assigns} {shlex.quote(sys.executable)} -m engine"

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory sshd insists on
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {self.port} within 10 s")

    def kill(self) -> None:
        """The server and every session it serves, gone at once (as when a host drops off the network)."""
        if self.proc is None:
            return
        # sshd forks a process (or two) per connection: those go too, but not a run that a session started
        # detached (it left sshd's tree when its shell exited).
        sessions = [p for p in psutil.Process(self.proc.pid).children(recursive=True) if p.name() == "sshd"]
        self.proc.send_signal(signal.SIGKILL)
        for proc in sessions:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait()
        self.proc = None

    stop = kill


def sshd_available() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh-keygen") is not None
