"""The checkpoint browser's model: a run's checkpoints from their manifests, integrity, and the
engine commands that act on them. Qt-free and torch-free.

Listing reads manifests and file sizes only (fast at any size); hashing
every file (:func:`verify`) is slow for large checkpoints and runs off the
GUI thread. Anything that needs torch (averaging, sampling) is an engine
subcommand whose command line this model builds and whose output it parses;
the panel runs it in a child process.

Averages go to ``<run>/averages/``, not ``<run>/checkpoints/``: a resumed run
takes over every folder in ``checkpoints/`` for its retention policy, which
could delete an average the user made on purpose.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.contract.rundir import RunDir
from gui.access.base import RunAccess
from gui.models.checkpoint_files import AVERAGES, HostFiles, LocalFiles, Signature

METHODS = ("uniform", "greedy")


@dataclass
class CheckpointRow:
    path: Path
    name: str
    source: str  # "run" (checkpoints/) or "average" (averages/)
    step: int | None = None
    time: float | None = None
    kind: str | None = None
    reason: str | None = None
    size: int | None = None
    weights_dtype: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None
    integrity: str = "sizes ok"  # sizes ok | verifying | verified | corrupt
    problem: str = ""  # why it is corrupt

    @property
    def valid(self) -> bool:
        return self.integrity in ("sizes ok", "verifying", "verified")

    @property
    def val_loss(self) -> float | None:
        return _number(self.metrics.get("val_loss"))

    @property
    def quality(self) -> float | None:
        return _number(self.metrics.get("quality_score"))

    def integrity_text(self) -> str:
        if self.integrity == "corrupt":
            return f"corrupt: {self.problem}"
        return {"sizes ok": "sizes ok (not hashed)", "verifying": "verifying…", "verified": "verified"}[self.integrity]

    def inputs_text(self) -> str:
        """An average's inputs with their validation losses: ``step 5 (5.6475), step 10 (5.2455, unused)``."""
        if not self.provenance:
            return ""
        parts = []
        for item in self.provenance.get("inputs") or []:
            loss = _number(item.get("val_loss"))
            extra = [f"{loss:.4f}"] if loss is not None else []
            if not item.get("used", True):
                extra.append("unused")
            parts.append(f"step {item.get('step', '?')}" + (f" ({', '.join(extra)})" if extra else ""))
        return ", ".join(parts)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _newest(rows: Iterable[CheckpointRow]) -> CheckpointRow | None:
    """The row with the highest step among those that have one (the first of equals), or None."""
    stepped = [(r.step, r) for r in rows if r.step is not None]
    return max(stepped, key=lambda pair: pair[0])[1] if stepped else None


class CheckpointModel:
    def __init__(self, run_dir: str | os.PathLike[str] | None = None):
        self.run: RunDir | None = None
        self.rows: list[CheckpointRow] = []
        self._listed: list[dict[str, Any]] = []  # the listing the rows were made from
        self.version = 0
        self._verified: dict[Path, tuple[Signature | None, str | None]] = {}
        self.files: LocalFiles | HostFiles = LocalFiles()
        self.set_run(run_dir)

    def set_access(self, access: RunAccess) -> None:
        """Where the run's checkpoints are: this disk, or a remote workspace's host (call set_run after)."""
        self.files = HostFiles(access) if access.remote else LocalFiles()

    @property
    def remote(self) -> bool:
        return self.files.remote

    def set_run(self, run_dir: str | os.PathLike[str] | None, listing: bool = True) -> None:
        """``listing=False``: no rows until :meth:`apply` gets the listing (read off the GUI thread)."""
        # Absolute: engine children run in the repository, not in the GUI's working directory.
        path = Path(run_dir) if run_dir else None
        self.run = RunDir(path if self.remote else path.resolve()) if path else None
        self._verified.clear()
        if listing:
            self.refresh()
        else:
            self.apply([])

    @property
    def averages_dir(self) -> Path | None:
        return self.run.root / AVERAGES if self.run else None

    # ---------------------------------------------------------------- listing

    def refresh(self) -> bool:
        """Re-read the manifests; returns whether anything the table shows changed."""
        return self.apply(self.listing())

    def listing(self) -> list[dict[str, Any]]:
        """The run's checkpoints as the files say (blocks: on a remote workspace, a call to its host)."""
        return self.files.rows(self.run.root) if self.run is not None else []

    def apply(self, listing: list[dict[str, Any]]) -> bool:
        """Show a listing; returns whether anything the table shows changed."""
        self._listed = listing
        rows = [self._row(raw) for raw in listing]
        rows.sort(key=lambda r: (r.step if r.step is not None else math.inf, r.source != "run", r.name))
        key = [(r.path, r.integrity, r.step, r.size, r.problem) for r in rows]
        changed = key != [(r.path, r.integrity, r.step, r.size, r.problem) for r in self.rows]
        self.rows = rows
        if changed:
            self.version += 1
        return changed

    def _row(self, raw: dict[str, Any]) -> CheckpointRow:
        path = Path(raw["path"])
        row = CheckpointRow(
            path,
            raw["name"],
            "run" if raw["folder"] == "checkpoints" else "average",
            raw.get("step"),
            raw.get("time"),
            raw.get("kind"),
            raw.get("reason"),
            raw.get("size"),
            raw.get("weights_dtype"),
            dict(raw.get("metrics") or {}),
        )
        if raw["integrity"].startswith("INVALID"):
            row.integrity, row.problem = "corrupt", _short_reason(raw["integrity"].removeprefix("INVALID: "), path)
            return row
        provenance = raw.get("provenance")
        row.provenance = provenance if isinstance(provenance, dict) else None
        known = self._verified.get(path)
        if known is not None and known[0] == self.files.signature(path):
            problem = known[1]
            row.integrity, row.problem = ("corrupt", _short_reason(problem, path)) if problem else ("verified", "")
        return row

    def verify(self, folder: Path) -> tuple[Signature | None, str | None]:
        """Hash every file against the manifest: the folder's signature when hashing began, and None when it
        matches or what is wrong. Slow: off the GUI thread."""
        signature = self.files.signature(folder)
        return signature, self.files.verify(folder)

    def row(self, path: Path) -> CheckpointRow | None:
        return next((r for r in self.rows if r.path == Path(path)), None)

    def unverified(self) -> list[CheckpointRow]:
        return [r for r in self.rows if r.integrity == "sizes ok"]

    def total_size(self) -> int:
        return sum(r.size or 0 for r in self.rows)

    # ------------------------------------------------------------ verification

    def mark_verifying(self, paths: list[Path]) -> None:
        for path in paths:
            row = self.row(path)
            if row is not None and row.integrity != "corrupt":
                row.integrity = "verifying"
        self.version += 1

    def set_verified(self, path: Path, problem: str | None, signature: Signature | None) -> None:
        """Record a hash check's outcome, made on the files as ``signature`` describes them. It counts (now
        and across refreshes) while the files are unchanged; a check overtaken by a change leaves the row
        unverified, to be checked again."""
        path = Path(path)
        self._verified[path] = (signature, problem)
        row = self.row(path)
        if row is not None:
            if signature is not None and signature == self.files.signature(path):
                row.integrity, row.problem = ("corrupt", _short_reason(problem, path)) if problem else ("verified", "")
            else:
                row.integrity, row.problem = "sizes ok", ""
        self.version += 1

    # --------------------------------------------------------------- deleting

    def protected(self) -> dict[Path, str]:
        """Checkpoints that must not be deleted, with why: the newest valid one, and the newest valid
        full one (the run resumes from it)."""
        mine = [r for r in self.rows if r.source == "run" and r.valid]
        out: dict[Path, str] = {}
        newest = _newest(mine)
        if newest is not None:
            out[newest.path] = "the newest valid checkpoint"
        newest_full = _newest(r for r in mine if r.kind == "full")
        if newest_full is not None:
            out.setdefault(newest_full.path, "the newest valid full checkpoint: the run resumes from it")
        return out

    def deletable(self, rows: list[CheckpointRow]) -> tuple[list[CheckpointRow], list[str]]:
        """The rows that may go, and a line for each that may not."""
        protected = self.protected()
        ok, refused = [], []
        for row in rows:
            if row.path in protected:
                refused.append(f"{row.name} is {protected[row.path]}")
            else:
                ok.append(row)
        return ok, refused

    def delete(self, rows: list[CheckpointRow]) -> list[str]:
        """Remove deletable rows' folders; returns errors. A folder is first renamed to a hidden
        temporary name, so a half-deleted checkpoint is never listed (or loaded) as one."""
        gone, errors = self.delete_files(rows)
        self.forget(gone)
        return errors

    def delete_files(self, rows: list[CheckpointRow]) -> tuple[set[Path], list[str]]:
        """The deletion alone (blocks: on a remote workspace, SFTP calls; safe off the GUI thread): the
        folders removed, and a line for each row refused or failed."""
        ok, refused = self.deletable(rows)
        errors, gone = list(refused), set()
        for row in ok:
            error = self.files.delete(row.path)
            if error:
                errors.append(error)
            else:
                gone.add(row.path)
        return gone, errors

    def forget(self, gone: set[Path]) -> None:
        """Deleted folders leave the table now; the host's own listing follows when the browser asks."""
        for path in gone:
            self._verified.pop(path, None)
        if self.remote:
            self.apply([raw for raw in self._listed if Path(raw["path"]) not in gone])
        else:
            self.refresh()

    # ------------------------------------------------------------- engine jobs

    def average_out(self, rows: list[CheckpointRow], method: str) -> Path:
        """A new folder name under averages/ saying what went in: ``uniform-5-10`` (``-2``, ... if taken)."""
        assert self.averages_dir is not None
        steps = sorted({r.step for r in rows if r.step is not None})
        base = (
            f"{method}-"
            + "-".join(str(s) for s in steps[:6])
            + (f"-and-{len(steps) - 6}-more" if len(steps) > 6 else "")
        )
        out = self.averages_dir / base
        n = 2
        while self.files.exists(out):
            out = self.averages_dir / f"{base}-{n}"
            n += 1
        return out

    def average_problems(self, rows: list[CheckpointRow], method: str) -> list[str]:
        problems = []
        if method not in METHODS:
            problems.append(f"method {method!r}: use one of {', '.join(METHODS)}")
        if len(rows) < 2:
            problems.append("select at least two checkpoints to average")
        problems += [f"{r.name} is corrupt" for r in rows if not r.valid]
        return problems

    def average_args(self, rows: list[CheckpointRow], method: str, out: Path) -> list[str]:
        """The ``podium`` arguments that average ``rows`` into ``out``."""
        return [
            "checkpoints",
            "average",
            *[str(r.path) for r in rows],
            "--out",
            str(out),
            "--method",
            method,
            "--progress",
            "json",
        ]

    def sample_out(self, row: CheckpointRow, seed: int) -> Path:
        assert self.run is not None
        return self.run.samples / "gui" / f"{row.name}-seed{seed}.mid"

    def sample_args(self, row: CheckpointRow, seed: int, out: Path) -> list[str]:
        return ["sample", str(row.path), "--out", str(out), "--seed", str(seed)]

    def resume_mode(self, row: CheckpointRow) -> str:
        """``resume`` when the run resumes from this very checkpoint (its newest valid full one), else
        ``fork``: a new run that starts from this checkpoint's state (``--from-checkpoint``)."""
        if row.source == "run" and row.kind == "full":
            newest_full = _newest(r for r in self.rows if r.source == "run" and r.valid and r.kind == "full")
            if newest_full is not None and newest_full.path == row.path:
                return "resume"
        return "fork"


def checkpoint_config_yaml(path: Path, files: LocalFiles | HostFiles | None = None) -> str:
    """The config a checkpoint was trained with, as YAML for the config editor (raises CheckpointInvalid);
    ``files`` reads a server's checkpoint through its access."""
    manifest = (files or LocalFiles()).manifest(Path(path))
    header = f"# the config of {path} (step {manifest.get('step')})\n"
    config = manifest.get("config")
    return header + (yaml.safe_dump(config, sort_keys=False) if config else "")


def _short_reason(problem: str, folder: Path) -> str:
    """The engine names the full path of the bad file; the table row already says which checkpoint."""
    text = problem.replace(str(folder) + os.sep, "").replace(str(folder), "")
    return text.lstrip(": ").strip() or problem


_AVG_RESULT = re.compile(
    r"^(?P<path>.+?)\s+\((?P<method>\w+) average of (?P<used>\d+)\)\s+(?P<step>\d+)\s+(?P<loss>\S+)\s*$"
)


def parse_average_report(text: str) -> dict[str, Any] | None:
    """The result line of ``checkpoints average``: out path, method, inputs used, step, validation loss."""
    for line in text.splitlines():
        m = _AVG_RESULT.match(line.strip())
        if m:
            try:
                loss = float(m.group("loss"))
            except ValueError:
                loss = None
            return {
                "path": Path(m.group("path").strip()),
                "method": m.group("method"),
                "used": int(m.group("used")),
                "step": int(m.group("step")),
                "val_loss": loss,
            }
    return None


_SAMPLE_RESULT = re.compile(r"^wrote (?P<path>.+?): (?P<tokens>\d+) tokens, (?P<notes>\d+) notes")


def parse_sample_report(text: str) -> dict[str, Any] | None:
    for line in text.splitlines():
        m = _SAMPLE_RESULT.match(line.strip())
        if m:
            return {"path": Path(m.group("path")), "tokens": int(m.group("tokens")), "notes": int(m.group("notes"))}
    return None
