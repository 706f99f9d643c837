"""Where a study lives: its Optuna storage, the redacted name of that storage, and the workers' ask lock.

Optuna is imported inside functions: the command line imports this module to
build its parser and must stay light.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.contract.commandline import UsageError
from engine.contract.studies import JOURNAL, STUDIES, list_studies, study_dir


def is_url(storage: str | None) -> bool:
    return bool(storage) and "://" in str(storage)


def open_storage(storage: str | None, workspace: str | os.PathLike, study: str, create: bool = True):
    """The study's storage: its journal file by default, a journal at a given path, or an RDB URL."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if storage and is_url(storage):
        if storage.startswith("sqlite"):
            print(
                "warning: SQLite locks the whole database on every write and is not meant for several workers "
                "writing at once; prefer the default journal file on one machine, PostgreSQL across hosts",
                file=sys.stderr,
            )
        try:
            return optuna.storages.RDBStorage(storage)
        except ImportError as exc:
            raise UsageError(
                f"--storage {redact(storage)}: a database driver is missing ({exc}); for PostgreSQL "
                f"install psycopg2-binary"
            ) from None
        except Exception as exc:  # SQLAlchemy's errors: bad URL, server down, wrong password
            raise UsageError(f"--storage {redact(storage)}: cannot open the database: {redact(str(exc))}") from None
    path = Path(storage) if storage else study_dir(workspace, study) / JOURNAL
    if not create and not path.exists():
        known = list_studies(workspace)
        hint = f"; studies in {Path(workspace) / STUDIES}: {', '.join(known)}" if known else ""
        raise UsageError(f"no study {study!r}: {path} does not exist{hint}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def redact(text: str) -> str:
    """A storage URL (or a message quoting one) without its password, for messages and files."""
    return re.sub(r"://([^:/@\s]+):[^@\s]*@", r"://\1:***@", text)


def load_study(storage, name: str):
    """The named study, or None when the storage holds none of that name."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


@contextmanager
def ask_lock(folder: Path) -> Iterator[None]:
    """Workers on this machine ask one at a time, so a grid point or a queued trial goes to one of them."""
    fd = os.open(folder / "ask.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
