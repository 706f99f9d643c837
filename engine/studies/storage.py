"""Where a study lives: its Optuna storage, the redacted name of that storage, and the workers' ask lock.

Optuna is imported inside functions: the command line imports this module to
build its parser and must stay light.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.contract.commandline import UsageError
from engine.contract.studies import JOURNAL, STUDIES, list_studies, study_dir


def is_url(storage: str | None) -> bool:
    return bool(storage) and "://" in str(storage)


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """How a worker on a database says it is alive, and what becomes of its trial when it stops saying so.

    Every ``interval`` seconds a worker records a heartbeat for its running
    trial; a RUNNING trial without one for ``grace`` seconds is failed by the
    next worker that looks, and its parameters are queued again up to
    ``retries`` times (Optuna's RetryHeartbeatStaleTrialCallback).
    """

    interval: int = 30
    grace: int | None = None  # None: twice the interval, Optuna's default
    retries: int = 1

    def check(self) -> None:
        if self.interval < 1:
            raise UsageError(f"--heartbeat {self.interval}: use a whole number of seconds, 1 or more")
        if self.grace is not None and self.grace <= self.interval:
            raise UsageError(
                f"--grace {self.grace}: use more seconds than --heartbeat ({self.interval}), "
                "or a live worker's trial is failed between two of its heartbeats"
            )
        if self.retries < 0:
            raise UsageError(f"--retries {self.retries}: use 0 (fail for good) or more")


def check_heartbeat(storage: str | None, heartbeat: Heartbeat | None) -> None:
    if heartbeat is not None and not is_url(storage):
        raise UsageError(
            "--heartbeat, --grace and --retries apply to a database (--storage postgresql://...); on one machine "
            "a worker finds a dead worker's trial by its process"
        )
    if heartbeat is not None:
        heartbeat.check()


def open_storage(
    storage: str | None,
    workspace: str | os.PathLike,
    study: str,
    create: bool = True,
    heartbeat: Heartbeat | None = None,
):
    """The study's storage: its journal file by default, a journal at a given path, or an RDB URL.

    Heartbeats need an RDB: a journal file lives on one machine, where a dead
    worker's trial is found by its process identity instead (``Controller.recover_stale``).
    """
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if storage and is_url(storage):
        heartbeat = heartbeat or Heartbeat()
        if storage.startswith("sqlite"):
            print(
                "warning: SQLite locks the whole database on every write and is not meant for several workers "
                "writing at once; prefer the default journal file on one machine, PostgreSQL across hosts",
                file=sys.stderr,
            )
        try:
            return _rdb(storage, heartbeat)
        except ImportError as exc:
            raise UsageError(
                f"--storage {redact(storage)}: a database driver is missing ({exc}); for PostgreSQL "
                "pip install 'psycopg[binary]' (or podium's extra: pip install 'podium[postgres]')"
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


def _rdb(url: str, heartbeat: Heartbeat):
    import optuna
    from sqlalchemy.exc import DBAPIError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.retries)
        for attempt in range(3):
            try:
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=heartbeat.interval,
                    grace_period=heartbeat.grace,
                    heartbeat_stale_trial_callback=retry if heartbeat.retries else None,
                )
            except DBAPIError as exc:
                # Workers starting together on a new database race to create Optuna's tables; the loser's
                # CREATE fails with "already exists", and a second try finds them made.
                if "already exists" not in str(exc) or attempt == 2:
                    raise
                time.sleep(0.5)
    raise AssertionError("unreachable")


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


def fail_stale_trials(study) -> None:
    """Fail the RUNNING trials whose worker stopped sending heartbeats (and queue their retries); RDB only."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


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
