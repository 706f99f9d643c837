"""``ssh://[user@]host[:port]/abs/path``, read without loading asyncssh (half a second), so a URL is
checked on the GUI thread at once and the library loads with the first contact, in the background."""

from __future__ import annotations

import posixpath
from urllib.parse import urlsplit

DEFAULT_PODIUM = "podium"


class SshUrlError(ValueError):
    pass


def parse_url(url: str) -> tuple[str | None, str, int | None, str]:
    """(user, host, port, absolute path) of ``ssh://[user@]host[:port]/abs/path``."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise SshUrlError(f"{url}: not a remote workspace; use ssh://[user@]host[:port]/absolute/path")
    try:
        port = parts.port
    except ValueError:
        raise SshUrlError(f"{url}: the port is not a number from 1 to 65535") from None
    path = parts.path or "/"
    if parts.password is not None:
        raise SshUrlError(
            f"ssh://{parts.username}:***@{parts.hostname}: Podium never takes a password;"
            " use your SSH agent or a key in ~/.ssh"
        )
    if parts.query or parts.fragment:
        raise SshUrlError(f"{url}: unexpected '?' or '#'; use ssh://[user@]host[:port]/absolute/path")
    return parts.username, parts.hostname, port, posixpath.normpath(path)
