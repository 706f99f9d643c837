"""Everything the runs table lists: the workspace's runs and its studies' trials, each with its config
fields and notes. Qt-free; scanned in a worker thread.

Runs come from :class:`gui.models.workspace.WorkspaceIndex` (one for the workspace, one per study
folder, whose trials are run directories too); a study's trial states, parameters and values come
from its Optuna journal (:class:`gui.models.study_model.JournalSource`). A run's ``config.yaml`` and
``notes.json`` are read again only when they change. Every file here may be hostile: one that
cannot be read becomes a ``problem`` on its row or study, never an exception out of the scan.
"""

from __future__ import annotations

import os
import posixpath
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.contract.notes import MAX_NOTES_BYTES, NOTES, NotesError, notes_path, parse_notes, read_notes
from engine.contract.rundir import RunDir, RunSummary
from engine.contract.studies import STUDIES, list_studies, study_dir
from gui.access.base import RunAccess, Unreachable
from gui.models.study_model import JournalSource
from gui.models.workspace import WorkspaceIndex

if TYPE_CHECKING:
    from engine.contract.notes_model import RunNotes

# What an Optuna state is called in the runs table (the run's own state says why it ended).
TRIAL_STATES = {
    "COMPLETE": "finished",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}


@dataclass(frozen=True)
class TrialInfo:
    number: int
    state: str  # Optuna's: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None
    params: dict[str, Any]


@dataclass
class RunRow:
    """One run as the runs table shows, sorts, filters and groups it."""

    summary: RunSummary
    config: dict[str, Any] = field(default_factory=dict)  # dotted field -> value (``optim.lr``)
    notes: RunNotes | None = None
    problem: str | None = None  # why its config or notes could not be read
    study: str | None = None
    trial: TrialInfo | None = None

    @property
    def path(self) -> Path:
        return self.summary.path

    @property
    def title(self) -> str:
        """The name a person gave it, else its folder's."""
        return self.notes.name if self.notes and self.notes.name else self.summary.name

    @property
    def tags(self) -> tuple[str, ...]:
        return self.notes.tags if self.notes else ()

    @property
    def state(self) -> str:
        if self.trial is not None and self.trial.state in ("RUNNING", "WAITING", "PRUNED"):
            return TRIAL_STATES[self.trial.state]
        return self.summary.state

    @property
    def duration_s(self) -> float | None:
        s = self.summary
        return s.last_event_time - s.start_time if s.start_time and s.last_event_time else None

    def search_text(self) -> str:
        """What a free-text filter word is looked for in, lower case."""
        notes = self.notes
        parts = [self.summary.name, self.state, self.study or ""]
        if notes is not None:
            parts += [notes.name, " ".join(notes.tags), notes.note]
        return "\n".join(parts).lower()


@dataclass
class StudyInfo:
    name: str
    folder: Path
    direction: str = "minimize"
    metric: str = "value"
    target: int | None = None
    params: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    problem: str | None = None  # the journal could not be read

    def summary(self) -> str:
        if self.problem:
            return self.problem
        done = sum(self.counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))
        parts = [f"{done}/{self.target or '?'} trials"]
        for state in ("RUNNING", "WAITING", "FAIL"):
            if self.counts.get(state):
                parts.append(f"{self.counts[state]} {TRIAL_STATES[state]}")
        if self.best and self.best.get("value") is not None:
            parts.append(f"best {self.metric} {self.best['value']:.4g} (trial {self.best['number']})")
        return " · ".join(parts)


@dataclass
class Scan:
    root: Path
    runs: list[RunRow]
    studies: dict[str, StudyInfo]


class LabIndex:
    """The workspace's runs and studies, kept up to date by ``refresh`` (cheap when little changed)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.runs = WorkspaceIndex(self.root)
        self._study_runs: dict[str, WorkspaceIndex] = {}
        self._journals: dict[str, JournalSource] = {}
        self._files: dict[Path, tuple[Any, dict[str, Any], RunNotes | None, str | None]] = {}

    def refresh(self, now: float | None = None) -> Scan:
        rows = [self._row(s) for s in self.runs.refresh(now) if s.path.name != STUDIES]
        studies: dict[str, StudyInfo] = {}
        try:
            names = list_studies(self.root)
        except OSError:
            names = []
        for name in names:
            info, trials = self._study(name)
            studies[name] = info
            index = self._study_runs.setdefault(name, WorkspaceIndex(info.folder))
            for summary in index.refresh(now):
                row = self._row(summary)
                row.study = name
                row.trial = trials.get(summary.path.resolve())
                rows.append(row)
        for gone in set(self._study_runs) - set(names):
            del self._study_runs[gone]
            self._journals.pop(gone, None)
        seen = {r.path for r in rows}
        for path in [p for p in self._files if p not in seen]:
            del self._files[path]
        return Scan(self.root, rows, studies)

    def _study(self, name: str) -> tuple[StudyInfo, dict[Path, TrialInfo]]:
        info = StudyInfo(name, study_dir(self.root, name))
        source = self._journals.setdefault(name, JournalSource(self.root, name))
        try:
            snap = source.read()
        except Exception as exc:  # a damaged journal: Optuna's own errors are of many kinds
            self._journals.pop(name, None)
            info.problem = f"{source.path}: cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
            return info, {}
        if snap is None:
            return info, {}
        info.direction = str(snap.get("direction", "minimize"))
        info.metric = str(snap.get("metric") or "value")
        info.target = snap.get("target")
        info.counts = dict(snap.get("counts") or {})
        info.best = snap.get("best")
        info.params = list(snap.get("space") or {})
        trials: dict[Path, TrialInfo] = {}
        for t in snap.get("trials", []):
            for key in t.get("params") or {}:
                if key not in info.params:
                    info.params.append(key)
            if t.get("run_dir"):
                trials[Path(t["run_dir"]).resolve()] = TrialInfo(
                    int(t["number"]), str(t["state"]), t.get("value"), dict(t.get("params") or {})
                )
        return info, trials

    def _row(self, summary: RunSummary) -> RunRow:
        run = RunDir(summary.path)
        key = (_stamp(run.config), _stamp(notes_path(run.root)))
        cached = self._files.get(summary.path)
        if cached is None or cached[0] != key:
            problems = []
            from engine.contract import config as config_mod  # the schema (pydantic): in the scan's thread

            try:
                config = flatten(config_mod.parse_yaml(config_mod.read_text(run.config), str(run.config)))
            except config_mod.ConfigError as exc:
                config = {}
                if run.config.exists():
                    problems.append(str(exc))
            try:
                notes = read_notes(run.root)
            except NotesError as exc:
                notes = None
                problems.append(str(exc))
            cached = self._files[summary.path] = (key, config, notes, "; ".join(problems) or None)
        _, config, notes, problem = cached
        return RunRow(summary, config, notes, problem)


class RemoteNotes:
    """The notes of a server's runs, read through the workspace's access in the watcher's thread.

    A host's listing carries each run's notes.json as read there (``host_notes``, gui/access/host_rows.py),
    so they are as fresh as the list. From a host that does not, the notes.json of every run not read yet
    are read together (one round trip over SSH, whatever their number) when the runs are first listed, and
    all of them again every ``reread_s`` (a note set on the host shows within that).
    """

    def __init__(self, access: RunAccess, reread_s: float = 30.0):
        self.access = access
        self.reread_s = reread_s
        self._known: dict[Path, tuple[RunNotes | None, str | None]] = {}
        self._saved: dict[Path, float] = {}  # when a run's notes were last saved here: a read before is stale
        self._read_at = time.monotonic()

    def rows(self, summaries: list[RunSummary]) -> list[RunRow]:
        if time.monotonic() - self._read_at >= self.reread_s:
            self._known.clear()
            self._read_at = time.monotonic()
        for summary in summaries:  # carried by the host's listing, unless saved here since it was asked for
            if hasattr(summary, "host_notes") and getattr(summary, "asked", 0.0) > self._saved.get(summary.path, -1.0):
                self._known[summary.path] = self._parse(summary.path, getattr(summary, "host_notes"))  # noqa: B009
        wanted = [s.path for s in summaries if s.path not in self._known]
        if wanted:
            asked = time.monotonic()
            try:
                found = self.access.read_many(
                    [posixpath.join(p.as_posix(), NOTES) for p in wanted], MAX_NOTES_BYTES + 1
                )
            except Unreachable:  # the listing came back, these reads did not: no notes this time, asked again next
                found = []
            for path, data in zip(wanted, found, strict=False):
                # Saved from the app while this read was on its way: what was saved is newer.
                if self._saved.get(path, -1.0) < asked:
                    self._known[path] = self._parse(path, data)
        return [RunRow(s, {}, *self._known.get(s.path, (None, None))) for s in summaries]

    def write(self, run: Path, notes: RunNotes) -> None:
        """Replace the run's notes.json on the host (atomically, as the access writes)."""
        data = notes.model_dump_json(indent=1).encode()
        self.access.write(posixpath.join(run.as_posix(), NOTES), data, private=False)  # as the engine writes them
        self._known[run] = (notes, None)
        self._saved[run] = time.monotonic()

    def _parse(self, run: Path, data: bytes | OSError | None) -> tuple[RunNotes | None, str | None]:
        where = f"{self.access.label()}: {posixpath.join(run.as_posix(), NOTES)}"
        if isinstance(data, OSError):
            return None, f"{where}: cannot read ({data})"
        if not data:  # none, as ``read`` says of a missing file
            return None, None
        try:
            return parse_notes(data, where), None
        except NotesError as exc:
            return None, str(exc)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted fields (``{"optim": {"lr": 1e-3}}`` -> ``{"optim.lr": 1e-3}``)."""
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
