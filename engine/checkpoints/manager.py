"""The trainer's side of checkpoints: ordered (optionally background) saves whose outcome every rank
agrees on, retention after each commit, and the choice of the checkpoint to resume from.

Rank 0 writes (inline, or in a background thread after copying the state to
CPU memory), every rank learns the outcome through one broadcast, retention
(``engine.checkpoints.retention``) runs on rank 0 after a commit, and every
removal is an event with its reason.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.checkpoints import retention
from engine.checkpoints.loading import check_loadable, verify
from engine.checkpoints.state import HostCopier
from engine.checkpoints.writing import archive, write_checkpoint
from engine.contract.manifest import (
    CheckpointInvalid,
    checkpoint_dir_name,
    checkpoint_folders,
    read_manifest,
    retention_history,
    temp_folders,
)


class Writer:
    """Runs save jobs one at a time, in order: inline, or on a background thread.

    A job never raises (it returns its outcome), so ``wait`` gives every
    rank-0 failure to the caller, which shares it with the other ranks.
    """

    def __init__(self, background: bool):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-writer") if background else None
        self._pending: Future | dict | None = None

    def submit(self, job: Callable[[], dict], background: bool) -> None:
        self._pending = self._pool.submit(job) if background and self._pool else job()

    def wait(self) -> dict | None:
        pending, self._pending = self._pending, None
        return pending.result() if isinstance(pending, Future) else pending

    def done(self) -> bool:
        """Whether :meth:`wait` would return at once."""
        return not isinstance(self._pending, Future) or self._pending.done()


# --------------------------------------------------------------------------- the trainer's side


@dataclass(frozen=True)
class ResumeRequest:
    """How a training process starts from a checkpoint.

    ``fork_from``: a checkpoint of another run to start from when this run has
    none of its own. ``attempt``: torchrun's restart count (> 0: the worker
    group was restarted after a failure, so resuming is automatic).
    """

    fork_from: Path | None = None
    attempt: int = 0


@dataclass(frozen=True)
class Saved:
    """A committed save, as every rank learns of it: what the ``checkpoint`` hook hands its subscribers."""

    step: int
    path: Path
    reason: str
    background: bool


# The errors that mean no room is left, as opposed to a disk that failed.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _failure(step: int, exc: BaseException) -> dict[str, Any]:
    os_error = isinstance(exc, OSError)
    code = exc.errno if isinstance(exc, OSError) else None
    full = code in DISK_FULL
    return {
        "ok": False,
        "step": step,
        "error": ("disk full: " if full else "") + f"{type(exc).__name__}: {exc}",
        "os_error": os_error,
        "errno": errno.errorcode.get(code, "") if code else "",
        "traceback": "" if os_error else traceback.format_exc(),
    }


def newest_loadable(checkpoints_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest full checkpoint that verifies and loads as data, and the (path, reason) of newer
    ones passed over; a step folder that is a link is passed over, wherever it points."""
    rejected: list[tuple[Path, str]] = []
    for folder in reversed(checkpoint_folders(checkpoints_dir)):
        try:
            if folder.is_symlink():
                raise CheckpointInvalid(
                    f"{folder}: a symbolic link to {os.readlink(folder)}, not a folder this run wrote"
                )
            if read_manifest(folder).get("kind") == "full":
                check_loadable(folder)
                return folder, rejected
        except CheckpointInvalid as exc:
            rejected.append((folder, str(exc)))
    return None, rejected


class CheckpointManager:
    """Saves, their agreed outcome, and retention, for one run. Every method is collective.

    Rank 0 writes and deletes; the others learn what happened through one
    broadcast per save, so the history that retention decides from, and the
    decision to stop after a failed save, are the same on every rank.
    """

    def __init__(
        self, directory: Path, section, dist, emit: Callable[..., None], on_saved: Callable[[Saved], None] | None = None
    ):
        """``on_saved`` is told of every committed save, on every rank, after its events."""
        self.directory, self.cfg, self.dist, self.emit, self.on_saved = directory, section, dist, emit, on_saved
        self.policy = retention.Policy.from_config(section)
        self.history: list[retention.Snapshot] = []
        self.protected: set[str] = set()
        self.writer = Writer(section.async_save) if dist.is_main else None
        self.copier = HostCopier()
        self.in_flight: dict[str, Any] | None = None
        self.last_failure: str | None = None  # the newest settled save's error, None once one succeeds

    @property
    def _main_writer(self) -> Writer:
        assert self.writer is not None, "only rank 0 writes"
        return self.writer

    # ---- saving

    def save(
        self,
        step: int,
        reason: str,
        build: Callable[[], dict[str, Any]],
        *,
        meta: dict[str, Any],
        metric: float | None,
        files: dict[str, bytes],
        wait: bool = False,
    ) -> dict[str, Any] | None:
        """Save the state ``build()`` returns (called on rank 0 only) as ``step``.

        The previous background save is settled first. Returns the outcome of
        this save when it is written inline (``wait``, or async off); else the
        outcome of the previous one when it failed; else None (in flight).
        """
        previous = self.settle()
        if previous is not None and not previous["ok"] and self.cfg.on_error == "stop":
            return previous
        background = self.cfg.async_save and not wait
        stall = 0.0
        if self.dist.is_main:
            started = time.perf_counter()
            parts, ready = build(), None
            if background:
                parts, ready = self.copier.copy(parts)
            record = retention.Snapshot(checkpoint_dir_name(step), step, "full", time.time(), metric)
            history = [s for s in self.history if s.name != record.name] + [record]
            actions = retention.plan(history, self.policy, record.time, self.protected)
            self._main_writer.submit(
                functools.partial(self._commit, parts, record, actions, meta, files, ready), background
            )
            stall = time.perf_counter() - started
        self.in_flight = {"step": step, "reason": reason, "background": background, "stall": stall}
        if background:
            return previous
        return self.settle()

    def _commit(
        self,
        parts: dict,
        record: retention.Snapshot,
        actions: list[retention.Action],
        meta: dict,
        files: dict[str, bytes],
        ready: Callable[[], None] | None,
    ) -> dict[str, Any]:
        """Rank 0, possibly on the writer thread: write, then apply retention. Returns the outcome; raises only
        what ends the process or its attempt (BaseException: a GroupRestart from SIGTERM), never a failure."""
        started = time.perf_counter()
        compression = None if self.cfg.compression == "none" else self.cfg.compression
        try:
            if ready is not None:
                ready()  # the copy off the GPU has landed
            manifest = write_checkpoint(
                self.directory / record.name,
                record.step,
                parts,
                files=files,
                meta=meta,
                compression=compression,
                level=self.cfg.compression_level,
            )
        except Exception as exc:  # a full disk, or anything else: the outcome says which
            return _failure(record.step, exc)
        result: dict[str, Any] = {
            "ok": True,
            "step": record.step,
            "record": record,
            "path": str(self.directory / record.name),
            "size_bytes": sum(e["size"] for e in manifest["files"].values()),
            "seconds": round(time.perf_counter() - started, 4),
            "compression": manifest.get("compression"),
            "done": [],
            "action_errors": [],
        }
        for action in actions:
            try:
                result["done"].append((action, self._apply(action)))
            except (OSError, CheckpointInvalid) as exc:
                result["action_errors"].append((action, f"{type(exc).__name__}: {exc}"))
        return result

    def _apply(self, action: retention.Action) -> int:
        folder = self.directory / action.name
        if folder.is_symlink():  # it may point outside the run: never written into nor deleted through
            raise CheckpointInvalid(f"{folder}: a symbolic link to {os.readlink(folder)}, not a folder this run wrote")
        if action.action == "archive":
            compression = None if self.cfg.compression == "none" else self.cfg.compression
            return archive(folder, self.cfg.weights_dtype, compression, self.cfg.compression_level)
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        shutil.rmtree(folder)
        return size

    def settle_if_written(self) -> dict[str, Any] | None:
        """Settle a background save that rank 0 has finished writing; None while it is still writing.

        Called at log steps, so its ``checkpoint`` event (which the GUI's checkpoint list
        follows) comes as soon as the files are there, not at the next save. One broadcast
        while a background save is in flight, none otherwise.
        """
        if self.in_flight is None or not self.in_flight["background"]:
            return None
        written = self.dist.broadcast_objects(self._main_writer.done() if self.dist.is_main else None)
        return self.settle() if written else None

    def settle(self) -> dict[str, Any] | None:
        """Wait for the save in flight, agree its outcome on every rank, report it and update the history."""
        if self.in_flight is None:
            return None
        flight, self.in_flight = self.in_flight, None
        result = self._main_writer.wait() if self.dist.is_main else None
        result = self.dist.broadcast_objects(result)
        self.last_failure = None if result["ok"] else result["error"]
        if result["ok"]:
            record = result["record"]
            history = [s for s in self.history if s.name != record.name] + [record]
            self.history = retention.apply(history, [action for action, _ in result["done"]])
        if not result["ok"] and not result["os_error"]:
            # Not the disk: a bug, which must not pass for a full disk. Every rank stops here.
            self.emit(
                "error",
                result["step"],
                message=f"checkpoint at step {result['step']} failed: {result['error']}",
                where="checkpoint",
                fatal=True,
                traceback=result["traceback"],
            )
            raise RuntimeError(f"checkpoint at step {result['step']} failed: {result['error']}")
        self._report(result, flight)
        return result

    def _report(self, result: dict[str, Any], flight: dict[str, Any]) -> None:
        step = result["step"]
        if not result["ok"]:
            free = shutil.disk_usage(self.directory if self.directory.exists() else self.directory.parent).free
            then = (
                "the run stops (checkpoint.on_error=stop)"
                if self.cfg.on_error == "stop"
                else "training continues and the next save tries again (checkpoint.on_error=continue)"
            )
            self.emit(
                "error",
                step,
                message=f"checkpoint at step {step} was not saved: {result['error']}; "
                f"earlier checkpoints are intact; {then}",
                where="checkpoint",
                fatal=self.cfg.on_error == "stop",
                errno=result["errno"],
                free_bytes=free,
                path=str(self.directory / checkpoint_dir_name(step)),
            )
            return
        record = result["record"]
        self.emit(
            "checkpoint",
            step,
            path=result["path"],
            kind="full",
            reason=flight["reason"],
            size_bytes=result["size_bytes"],
            seconds=result["seconds"],
            stall_seconds=round(flight["stall"], 4),
            background=flight["background"],
            compression=result["compression"],
            metric=record.metric,
        )
        for action, freed in result["done"]:
            self.emit(
                "checkpoint_removed",
                step,
                path=str(self.directory / action.name),
                reason=action.reason,
                scope="training_state" if action.action == "archive" else "all",
                freed_bytes=freed,
            )
        for action, error in result["action_errors"]:
            self.emit(
                "error",
                step,
                message=f"could not {action.action} {action.name}: {error}",
                where="retention",
                fatal=False,
                path=str(self.directory / action.name),
            )
        if self.on_saved is not None:
            self.on_saved(Saved(step, Path(result["path"]), flight["reason"], flight["background"]))

    # ---- resuming

    def resume_point(self, fork_from: Path | None) -> tuple[Path | None, str]:
        """The checkpoint to resume from: this run's newest full one that verifies and loads as data
        (each newer one passed over is an error event saying why), else ``fork_from``.

        Rank 0 verifies and removes folders of saves that never committed;
        every rank gets its answer (or its error) through one broadcast.
        """
        answer: dict[str, Any] | None = None
        if self.dist.is_main:
            try:
                answer = self._find(fork_from)
            except CheckpointInvalid as exc:
                answer = {"error": str(exc)}
        answer = self.dist.broadcast_objects(answer)
        if "error" in answer:
            raise CheckpointInvalid(answer["error"])
        return (Path(answer["path"]) if answer["path"] else None), answer["mode"]

    def _find(self, fork_from: Path | None) -> dict[str, Any]:
        for folder in temp_folders(self.directory):
            shutil.rmtree(folder, ignore_errors=True)
            self.emit(
                "checkpoint_removed",
                0,
                path=str(folder),
                scope="all",
                freed_bytes=None,
                reason="incomplete save: its writer stopped before the commit (killed, or the disk failed)",
            )
        path, rejected = newest_loadable(self.directory)
        for bad, why in rejected:
            self.emit(
                "error", 0, message=f"skipped invalid checkpoint: {why}", where="resume", fatal=False, path=str(bad)
            )
        if path is not None:
            return {"path": str(path), "mode": "resume"}
        if fork_from is None:
            return {"path": None, "mode": "fresh"}
        manifest = verify(fork_from)
        return {"path": str(fork_from), "mode": "fork" if manifest.get("kind") == "full" else "weights"}

    def adopt(self, resumed_from: Path | None) -> None:
        """Take over this run's checkpoints on disk: the same history on every rank, the resume point protected."""
        history = None
        if self.dist.is_main:
            history = [retention.Snapshot(**s) for s in retention_history(self.directory, self.cfg.best_metric)]
        self.history = self.dist.broadcast_objects(history)
        if resumed_from is not None and resumed_from.parent == self.directory:
            self.protected = {resumed_from.name}
