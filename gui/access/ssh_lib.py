"""asyncssh, imported once without its import-time noise: it still names DSA keys, which the cryptography
package deprecates with a warning on every start of the app (not ours to fix, nothing for a user to do);
and what the SSH access's modules share of its errors."""

import warnings
from typing import TypeVar

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # CryptographyDeprecationWarning is a UserWarning
    import asyncssh

__all__ = ["LOST", "asyncssh", "close_quietly", "missing"]

T = TypeVar("T")
LOST = (asyncssh.DisconnectError, asyncssh.ChannelOpenError, asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)


def missing(exc: asyncssh.SFTPError, empty: T) -> T:
    """A file that is not there (or not ours to read) reads as empty, as a local one does; a lost
    connection is not a missing file."""
    if isinstance(exc, LOST):
        raise exc
    return empty


async def close_quietly(f: asyncssh.SFTPClientFile) -> None:
    try:
        await f.close()
    except (asyncssh.Error, OSError):  # the connection went: the server closed the handle with it
        pass
