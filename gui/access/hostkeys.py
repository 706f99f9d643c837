"""Host keys as OpenSSH keeps them: ~/.ssh/known_hosts decides whom a remote workspace may talk to.

An unknown host is refused until the user accepts its key (the app asks, showing the fingerprint, as
``ssh`` does); a host whose key differs from the one on record is refused outright.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gui.access.ssh_lib import asyncssh


def known_hosts_path() -> Path:
    return Path(os.path.expanduser("~/.ssh/known_hosts"))


def host_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class HostKeyError(OSError):
    """The server's host key is not one this user trusts: nothing was read or sent."""


class UnknownHost(HostKeyError):
    def __init__(self, host: str, port: int, key_line: str, fingerprint: str):
        super().__init__(host, port)
        self.host, self.port, self.fingerprint = host, port, fingerprint
        self.key_line = key_line  # "ssh-ed25519 AAAA..." as known_hosts stores it

    def __str__(self) -> str:
        return (
            f"The authenticity of host '{host_pattern(self.host, self.port)}' can't be established.\n"
            f"Its key fingerprint is {self.fingerprint}.\n"
            f"It is not in {known_hosts_path()}: nothing is sent to it until you accept the key."
        )


class ChangedHost(HostKeyError):
    def __init__(self, host: str, port: int, fingerprint: str):
        super().__init__(host, port)
        self.host, self.port, self.fingerprint = host, port, fingerprint

    def __str__(self) -> str:
        return (
            f"The host key of '{host_pattern(self.host, self.port)}' has changed (now {self.fingerprint}); "
            f"it may be an impostor. Refused. If the server was reinstalled, remove its old line from "
            f"{known_hosts_path()} (ssh-keygen -R '{host_pattern(self.host, self.port)}')."
        )


def classify(host: str, port: int, key: asyncssh.SSHKey) -> HostKeyError:
    """Why ``key`` was not accepted: no record of this host (it may be accepted) or a different one."""
    fingerprint = key.get_fingerprint("sha256")
    path = known_hosts_path()
    recorded: Sequence[asyncssh.SSHKey] = ()
    if path.exists():
        try:
            recorded = asyncssh.read_known_hosts(str(path)).match(host, "", port)[0]
        except (OSError, ValueError):
            recorded = ()
    if recorded:
        return ChangedHost(host, port, fingerprint)
    line = key.export_public_key("openssh").decode().split()
    return UnknownHost(host, port, " ".join(line[:2]), fingerprint)


def accept(unknown: UnknownHost) -> None:
    """Record the key in ~/.ssh/known_hosts (created 0600 in a 0700 ~/.ssh when missing)."""
    path = known_hosts_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{host_pattern(unknown.host, unknown.port)} {unknown.key_line}\n")
