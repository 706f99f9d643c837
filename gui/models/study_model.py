"""A hyperparameter study as the study panel shows it. Qt-free.

The data comes as the snapshot ``engine.contract.studies.snapshot`` makes (the same JSON
``main.py hpo show --json`` prints). :class:`JournalSource` makes it in this
process from the study's journal file: Optuna's JournalStorage reads only the
lines added since the last call, and importing Optuna loads neither torch nor
SQLAlchemy (tests/gui/test_study_panel.py checks). A study in a database
(``--storage postgresql://...``) is read by :class:`DatabaseSource` on a worker
thread (a query may wait on the network; the GUI thread only takes the latest
snapshot). Its password lives in this process's memory only, never in a field,
a setting or a message.
"""

from __future__ import annotations

import json
import math
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import numpy as np

from engine.contract.studies import JOURNAL, study_dir

if TYPE_CHECKING:
    import optuna

TERMINAL = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class TrialRow:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None
    params: dict[str, Any]
    run_dir: Path | None
    reason: str | None
    duration_s: float | None
    steps: np.ndarray = field(repr=False)  # intermediate values: steps ...
    values: np.ndarray = field(repr=False)  # ... and the metric there (NaN where it was not finite)

    @classmethod
    def from_snapshot(cls, t: dict[str, Any]) -> TrialRow:
        inter = t.get("intermediate") or []
        return cls(
            number=int(t["number"]),
            state=str(t["state"]),
            value=t.get("value"),
            params=dict(t.get("params") or {}),
            run_dir=Path(t["run_dir"]) if t.get("run_dir") else None,
            reason=t.get("reason"),
            duration_s=t.get("duration_s"),
            steps=np.array([s for s, _ in inter], dtype=float),
            values=np.array([np.nan if v is None else v for _, v in inter], dtype=float),
        )


@dataclass
class ParallelData:
    """Parallel coordinates: one column per parameter and one for the metric, each scaled to [0, 1]."""

    axes: list[str]
    lines: np.ndarray  # (trials, axes)
    values: np.ndarray  # the metric per line, for its colour
    numbers: list[int]
    labels: list[tuple[str, str]]  # (bottom, top) label per axis


class StudyModel:
    """Trials and what the plots draw from them. ``update`` reports whether anything changed."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.name: str | None = None
        self.direction = "minimize"
        self.metric = "value"
        self.space: dict[str, dict[str, Any]] = {}
        self.target: int | None = None
        self.best: dict[str, Any] | None = None
        self.trials: list[TrialRow] = []
        self.revision = 0
        self._digest: str | None = None

    def update(self, snap: dict[str, Any] | None) -> bool:
        if snap is None:
            changed = self.name is not None
            self.clear()
            return changed
        # Durations of running trials grow every poll; leave them out of what counts as a change.
        digest = json.dumps(
            [
                snap.get("best"),
                snap.get("target"),
                [
                    (t["number"], t["state"], t.get("value"), t.get("intermediate"), t.get("reason"))
                    for t in snap.get("trials", [])
                ],
            ],
            sort_keys=True,
            default=str,
        )
        changed = digest != self._digest or snap.get("study") != self.name
        self.name = snap.get("study")
        self.direction = snap.get("direction", "minimize")
        self.metric = snap.get("metric") or "value"
        self.space = snap.get("space") or {}
        self.target = snap.get("target")
        self.best = snap.get("best")
        self.trials = [TrialRow.from_snapshot(t) for t in snap.get("trials", [])]
        if changed:
            self._digest = digest
            self.revision += 1
        return changed

    # ---- summaries

    @property
    def param_names(self) -> list[str]:
        names = list(self.space)
        for t in self.trials:
            names += [k for k in t.params if k not in names]
        return names

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    @property
    def running(self) -> bool:
        return any(t.state == "RUNNING" for t in self.trials)

    def complete_count(self) -> int:
        return sum(1 for t in self.trials if t.state == "COMPLETE")

    def summary(self) -> str:
        if self.name is None:
            return "no study"
        counts = self.counts()
        done = sum(counts.get(s, 0) for s in TERMINAL)
        parts = [f"{done}/{self.target or '?'} trials done"]
        for state in ("RUNNING", "WAITING", "PRUNED", "FAIL"):
            if counts.get(state):
                parts.append(f"{counts[state]} {state.lower()}")
        if self.best:
            parts.append(f"best {self.metric} {self.best['value']:.4g} (trial {self.best['number']})")
        return " · ".join(parts)

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "minimize" else a > b

    # ---- plot data

    def history(self) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        """(trial numbers, values, states) of trials with a value, and the best value so far at each."""
        rows = [(t, t.value) for t in self.trials if t.value is not None and t.state in ("COMPLETE", "PRUNED")]
        numbers = np.array([t.number for t, _ in rows], dtype=float)
        values = np.array([value for _, value in rows], dtype=float)
        best = np.full(len(rows), np.nan)
        current: float | None = None
        for i, (t, value) in enumerate(rows):
            if t.state == "COMPLETE" and (current is None or self.better(value, current)):
                current = value
            best[i] = np.nan if current is None else current
        return numbers, values, [t.state for t, _ in rows], best

    def parallel(self) -> ParallelData:
        """Complete trials across every parameter, scaled by the space's bounds (log axes in log)."""
        rows = [(t.number, t.params, t.value) for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        return parallel_data(self.param_names, self.space, self.metric, rows)


def parallel_data(
    names: list[str],
    space: dict[str, dict[str, Any]],
    metric: str,
    rows: list[tuple[int, dict[str, Any], float]],
) -> ParallelData:
    """Parallel coordinates of ``rows`` (number, parameters, metric value): each axis scaled to [0, 1] by
    its ``space`` entry (bounds, log, choices), else by the values' own range."""
    lines = np.full((len(rows), len(names) + 1), np.nan)
    labels: list[tuple[str, str]] = []
    for j, name in enumerate(names):
        column = [params.get(name) for _, params, _ in rows]
        scaled, label = _scale_axis(space.get(name, {}), column)
        lines[:, j] = scaled
        labels.append(label)
    values = np.array([value for _, _, value in rows], dtype=float)
    if len(values):
        low, high = float(values.min()), float(values.max())
        lines[:, -1] = (values - low) / (high - low) if high > low else 0.5
        labels.append((f"{low:.4g}", f"{high:.4g}"))
    else:
        labels.append(("", ""))
    return ParallelData(
        axes=names + [metric], lines=lines, values=values, numbers=[n for n, _, _ in rows], labels=labels
    )


def _scale_axis(spec: dict[str, Any], column: list[Any]) -> tuple[np.ndarray, tuple[str, str]]:
    if spec.get("type") == "categorical" or any(isinstance(v, str) for v in column if v is not None):
        choices = list(spec.get("choices") or sorted({str(v) for v in column}, key=str))
        index = {str(c): i for i, c in enumerate(choices)}
        span = max(len(choices) - 1, 1)
        scaled = np.array([index.get(str(v), np.nan) / span for v in column], dtype=float)
        return scaled, (str(choices[0]) if choices else "", str(choices[-1]) if choices else "")
    numbers = np.array([np.nan if v is None else float(v) for v in column], dtype=float)
    low = spec.get("low", np.nanmin(numbers) if len(numbers) else 0.0)
    high = spec.get("high", np.nanmax(numbers) if len(numbers) else 1.0)
    if spec.get("log") and low > 0:
        scaled = (np.log(numbers) - math.log(low)) / (math.log(high) - math.log(low))
    else:
        scaled = (numbers - low) / (high - low) if high > low else np.full(len(numbers), 0.5)
    return scaled, (f"{low:.3g}", f"{high:.3g}")


class JournalSource:
    """Snapshots of one study from its journal file, read incrementally in this process."""

    def __init__(self, workspace: Path, study: str):
        self.study_name = study
        self.path = study_dir(workspace, study) / JOURNAL
        self._study: optuna.Study | None = None

    def read(self) -> dict[str, Any] | None:
        """The study's snapshot, or None while its journal does not hold it yet."""
        if self._study is None:
            if not self.path.exists():
                return None
            import optuna
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            try:
                self._study = optuna.load_study(
                    study_name=self.study_name, storage=JournalStorage(JournalFileBackend(str(self.path)))
                )
            except KeyError:  # the journal exists but the first worker has not created the study in it yet
                return None
        from engine.contract.studies import snapshot

        return snapshot(self._study)


DATABASE_POLL_S = 2.0
CONNECT_TIMEOUT_S = 10


def redact(text: str) -> str:
    """A storage URL, or a message quoting one, without its password."""
    return re.sub(r"://([^:/@\s]+):[^@\s]*@", r"://\1:***@", text)


def split_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password, and the password (None when it holds none)."""
    parts = urlsplit(url.strip())
    if parts.password is None:
        return url.strip(), None
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}@{host}")), unquote(parts.password)


class DatabaseSource:
    """Snapshots of one study in an Optuna RDB storage (PostgreSQL), read on a worker thread.

    ``read`` never blocks: it returns the newest snapshot (None until the first arrives) and asks
    again at most every ``poll_s``. ``error`` says, without the password, why the last read failed.
    Without a password here, libpq's own ``PGPASSWORD`` or ``~/.pgpass`` answer.
    """

    def __init__(self, url: str, study: str, password: str | None = None, poll_s: float = DATABASE_POLL_S):
        self.url, typed = split_password(url)  # what may be shown
        self.study_name = study
        self.poll_s = poll_s
        self.error = ""
        self._password = password if password else typed
        self._snapshot: dict[str, Any] | None = None
        self._study: optuna.Study | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-study-db")
        self._pending: Future[dict[str, Any] | None] | None = None
        self._due = 0.0

    def read(self) -> dict[str, Any] | None:
        if self._pending is not None and self._pending.done():
            try:
                self._snapshot, self.error = self._pending.result(), ""
            except Exception as exc:  # SQLAlchemy's errors, a missing driver: shown, asked again later
                self._study = None
                self.error = redact(_innermost(exc))[:400]
                if self._password:
                    self.error = self.error.replace(self._password, "***")
            self._pending = None
        if self._pending is None and time.monotonic() >= self._due:
            self._due = time.monotonic() + self.poll_s
            self._pending = self._pool.submit(self._fetch)
        return self._snapshot

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _fetch(self) -> dict[str, Any] | None:
        import optuna

        from engine.contract.studies import snapshot

        if self._study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            # A server that does not answer fails the read in seconds, not the TCP timeout's minutes.
            connect = {"connect_timeout": CONNECT_TIMEOUT_S} if self.url.startswith("postgresql") else {}
            storage = optuna.storages.RDBStorage(
                self._full_url(),
                engine_kwargs={"connect_args": connect},
                skip_table_creation=True,  # a reader: it never changes the database
            )
            try:
                self._study = optuna.load_study(study_name=self.study_name, storage=storage)
            except KeyError:
                raise LookupError(f"no study {self.study_name!r} in {self.url}") from None
        return snapshot(self._study)

    def _full_url(self) -> str:
        if not self._password:
            return self.url
        parts = urlsplit(self.url)
        user, _, host = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{user}:{quote(self._password, safe='')}@{host}"))


def _innermost(exc: BaseException) -> str:
    """The message of the error at the bottom of a chain: Optuna wraps the driver's reason ("password
    authentication failed") in a generic one."""
    while (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc).split("(Background on this error")[0]
    return " ".join(text.split())
