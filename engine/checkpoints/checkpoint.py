"""Checkpoints: atomic, hashed, loaded only as data; saved in order, optionally in the background.

A checkpoint is a folder ``checkpoints/step-0000500/`` holding one ``.pt``
file per part (model, optimizer, training state), raw files (the tokenizer)
and ``manifest.json``, written last. Files go into a hidden temporary folder,
each fsynced; then the manifest (size and sha256 of every file); then one
rename makes it visible and the parent folder is fsynced, the pattern of
PyTorch DCP's commit marker. A folder without a valid manifest, or whose files
do not match it, is never loaded, and loading uses ``weights_only=True``, so a
file carrying pickled code is refused without running it.

Hashing costs little: each chunk ``torch.save`` produces is written by one
thread while a helper thread hashes it (both release the GIL), and torch's own
per-record CRC32, redundant beside sha256, is skipped.

:class:`CheckpointManager` is what the trainer uses: rank 0 writes (inline, or
in a background thread after copying the state to CPU memory), every rank
learns the outcome through one broadcast, retention (``engine.checkpoints.retention``)
runs on rank 0 after a commit, and every removal is an event with its reason.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import os
import random
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.checkpoints import retention
from engine.contract.manifest import (
    MANIFEST,
    TEMP_PREFIX,
    CheckpointInvalid,
    check_entry,
    checkpoint_dir_name,
    fsync_dir,
    newest_valid,
    part_files,
    read_manifest,
    retention_history,
    sha256_file,
    temp_folders,
    verify_checkpoint,
    write_manifest,
)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Chunks at least this big are hashed on the helper thread while they are
# written; smaller ones (pickle records, zip headers) cost less than the hand-off.
PARALLEL_HASH_BYTES = 1 << 16
# Every this many bytes written, the kernel is asked to start writing them to
# disk, so the final fsync waits for the tail only (measured: fsync alone was
# 0.8x a torch.save on an ext4 disk).
WRITEBACK_BYTES = 32 << 20
_HASHER = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-hash")
# A file's fsync runs here while the next file is serialized.
_SYNCER = ThreadPoolExecutor(2, thread_name_prefix="checkpoint-fsync")


# --------------------------------------------------------------------------- writing


class _HashingFile:
    """The file object ``torch.save`` writes into: each chunk goes to disk and into sha256 at once."""

    def __init__(self, fd: int):
        self.fd, self.digest, self.size, self.written_back = fd, hashlib.sha256(), 0, 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if view.nbytes >= PARALLEL_HASH_BYTES:
            hashed = _HASHER.submit(self.digest.update, view)
            self._write_all(view)
            hashed.result()  # the chunk's memory is only ours until write() returns
        else:
            self.digest.update(view)
            self._write_all(view)
        self.size += view.nbytes
        if self.size - self.written_back >= WRITEBACK_BYTES:
            # DONTNEED starts writeback of the dirty range without waiting for it (and
            # frees the cache of what is already on disk: checkpoints are write-once).
            os.posix_fadvise(self.fd, self.written_back, self.size - self.written_back, os.POSIX_FADV_DONTNEED)
            self.written_back = self.size
        return view.nbytes

    def _write_all(self, view: memoryview) -> None:
        while view:
            view = view[os.write(self.fd, view) :]

    def flush(self) -> None:
        """Nothing is buffered here; fsync happens once the file is complete."""


class _Counting:
    """Counts what ``torch.save`` produces before compression, for the manifest's ratio."""

    def __init__(self, inner):
        self.inner, self.size = inner, 0

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        self.inner.write(data)
        self.size += n
        return n

    def flush(self) -> None:
        """The compressor is flushed once, when its frame ends."""


_CRC32_LOCK = threading.Lock()


@contextmanager
def _without_crc32():
    """torch.save's CRC32 of every record is redundant beside the sha256 of every file, and costs
    about as much (bench/checkpoint.py): skip it for our saves. The option is global, hence the lock."""
    with _CRC32_LOCK:
        previous = torch.serialization.get_crc32_options()
        torch.serialization.set_crc32_options(False)
        try:
            yield
        finally:
            torch.serialization.set_crc32_options(previous)


def _write_part(path: Path, obj: Any, compression: str | None, level: int) -> tuple[dict[str, Any], Future]:
    """``torch.save`` ``obj`` into ``path`` (optionally zstd-compressed).

    Returns its manifest entry and the future of its fsync, which runs in the
    background while the caller goes on; the caller must wait for it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        out = _HashingFile(fd)
        if compression == "zstd":
            import zstandard

            compressor = zstandard.ZstdCompressor(level=level, threads=-1).stream_writer(out, closefd=False)
            counter = _Counting(compressor)
            with _without_crc32():
                torch.save(obj, counter)
            compressor.close()  # ends the frame; closefd=False leaves our file open
            raw_size = counter.size
        else:
            with _without_crc32():
                torch.save(obj, out)
            raw_size = out.size
    except BaseException:
        os.close(fd)
        raise
    entry = {"size": out.size, "sha256": out.digest.hexdigest()}
    if compression:
        entry.update(encoding=compression, raw_size=raw_size)
    return entry, _SYNCER.submit(_fsync_close, fd)


def _fsync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_raw(path: Path, payload: bytes) -> dict[str, Any]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        out = _HashingFile(fd)
        out.write(payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"size": out.size, "sha256": out.digest.hexdigest()}


def _wait_all(futures: list[Future]) -> None:
    """Wait for every future, then raise the first error (no fsync is left running on a removed file)."""
    errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


def _compression_summary(
    files: dict[str, dict[str, Any]], compression: str | None, level: int
) -> dict[str, Any] | None:
    encoded = [e for e in files.values() if e.get("encoding")]
    if not compression or not encoded:
        return None
    raw, stored = sum(e["raw_size"] for e in encoded), sum(e["size"] for e in encoded)
    return {
        "codec": compression,
        "level": level,
        "raw_bytes": raw,
        "stored_bytes": stored,
        "ratio": round(raw / max(stored, 1), 4),
    }


def write_checkpoint(
    final: Path,
    step: int,
    parts: dict[str, Any],
    *,
    kind: str = "full",
    files: dict[str, bytes] | None = None,
    meta: dict[str, Any] | None = None,
    compression: str | None = None,
    level: int = 3,
) -> dict[str, Any]:
    """Write ``parts`` (name -> tensors and plain data) and raw ``files`` as one committed checkpoint at ``final``.

    Returns the manifest. On any error the temporary folder is removed and the
    error propagates; checkpoints already committed are never touched.
    """
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f"{TEMP_PREFIX}{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    aside = None
    syncing: list[Future] = []
    try:
        listed = {name: _write_raw(tmp / name, payload) for name, payload in (files or {}).items()}
        for name, obj in parts.items():
            filename = f"{name}.pt" + (".zst" if compression == "zstd" else "")
            entry, synced = _write_part(tmp / filename, obj, compression, level)
            syncing.append(synced)
            listed[filename] = {"part": name, **entry}
        _wait_all(syncing)  # every file is durable before the manifest says it exists
        manifest = {"step": step, "kind": kind, "time": time.time(), "files": listed, **(meta or {})}
        summary = _compression_summary(listed, compression, level)
        if summary:
            manifest["compression"] = summary
        write_manifest(tmp, manifest)
        if final.exists():
            # Re-saving a step (a command right after an interval save): the old
            # folder moves aside, so a crash leaves a hidden folder, never a mix.
            aside = parent / f"{TEMP_PREFIX}{final.name}-{os.getpid()}-replaced"
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
        os.replace(tmp, final)
        fsync_dir(parent)
    except BaseException:
        for synced in syncing:
            synced.exception()  # let every fsync finish before its folder goes
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None and aside.exists() and not final.exists():
            os.replace(aside, final)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return read_manifest(final)


def save(checkpoints_dir: Path, step: int, parts: dict[str, Any], **options: Any) -> Path:
    """Commit a checkpoint as ``checkpoints_dir/step-NNNNNNN``; options as for :func:`write_checkpoint`."""
    final = checkpoints_dir / checkpoint_dir_name(step)
    write_checkpoint(final, step, parts, **options)
    return final


# --------------------------------------------------------------------------- loading


def _load_part(path: Path, entry: dict[str, Any], map_location) -> Any:
    try:
        if entry.get("encoding") == "zstd":
            import zstandard

            with open(path, "rb") as f:
                raw = zstandard.ZstdDecompressor().stream_reader(f).read()
            return torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError names the refused global: say it is refused, not corrupt
        raise CheckpointInvalid(f"{path}: refused to load (not plain tensors and data): {exc}") from None


def load(path: Path, map_location: str | torch.device = "cpu", parts: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Verify the manifest and hashes, then load the parts (all, or those named) as data only.

    Returns part name -> object, plus ``manifest``.
    """
    path = Path(path)
    manifest = verify_checkpoint(path, hashes=parts is None)
    wanted = part_files(manifest)
    if parts is not None:
        missing = [p for p in parts if p not in wanted]
        if missing:
            raise CheckpointInvalid(f"{path}: has no {', '.join(missing)} (a {manifest.get('kind')} checkpoint)")
        wanted = {p: wanted[p] for p in parts}
        for filename in wanted.values():  # the parts not loaded were size-checked; what is loaded is hashed
            check_entry(
                path / filename,
                manifest["files"][filename],
                (path / filename).stat().st_size,
                sha256_file(path / filename),
            )
    out: dict[str, Any] = {part: _load_part(path / f, manifest["files"][f], map_location) for part, f in wanted.items()}
    out["manifest"] = manifest
    return out


# --------------------------------------------------------------------------- state helpers


class HostCopier:
    """Copies state into CPU memory for a background save; storage sharing is kept (tied weights stay tied).

    Buffers are reused from one save to the next (the manager takes a new copy
    only after the previous write finished). GPU storages go to pinned buffers
    by asynchronous copies: training's next kernels queue behind them on the
    same stream, so the host does not wait; the writer calls ``ready`` first.
    """

    def __init__(self):
        self._buffers: dict[tuple[str, int], list[torch.UntypedStorage]] = {}

    def copy(self, obj: Any) -> tuple[Any, Callable[[], None]]:
        free = {key: list(buffers) for key, buffers in self._buffers.items()}
        memo: dict[tuple, torch.UntypedStorage] = {}
        out = self._copy(obj, memo, free)
        if any(device.type == "cuda" for device, _ in memo):
            done = torch.cuda.Event()
            done.record()
            return out, done.synchronize
        return out, lambda: None

    def _buffer(self, device: torch.device, nbytes: int, free: dict) -> torch.UntypedStorage:
        key = (device.type, nbytes)
        if free.get(key):
            return free[key].pop(0)  # in allocation order: each tensor gets its buffer of last time
        if device.type == "cuda":
            buffer = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True).untyped_storage()
        else:
            buffer = torch.UntypedStorage(nbytes)
        self._buffers.setdefault(key, []).append(buffer)
        return buffer

    def _copy(self, obj: Any, memo: dict, free: dict) -> Any:
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            key = (obj.device, storage.data_ptr())
            copy = memo.get(key)
            if copy is None:
                copy = memo[key] = self._buffer(obj.device, storage.nbytes(), free)
                copy.copy_(storage, non_blocking=obj.device.type == "cuda")
            return torch.empty(0, dtype=obj.dtype).set_(copy, obj.storage_offset(), obj.size(), obj.stride())
        if isinstance(obj, dict):
            return {k: self._copy(v, memo, free) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._copy(v, memo, free) for v in obj)
        return obj


def cast_floating(state: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """Floating tensors of a state dict in ``dtype``; views of one tensor stay one tensor (tied weights)."""
    memo: dict[tuple, torch.Tensor] = {}
    out = {}
    for key, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.size()), tuple(t.stride()))
            if ident not in memo:
                memo[ident] = t.detach().to(dtype)
            out[key] = memo[ident]
        else:
            out[key] = t
    return out


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every random stream of this process, as tensors and numbers (loads with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version_, words, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": {"version": int(version_), "words": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state(
            ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        )
    if "python" in state:
        p = state["python"]
        random.setstate((p["version"], tuple(int(w) for w in p["words"].tolist()), p["gauss_next"]))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def check_compatible(saved: dict[str, Any], expected: dict[str, Any], source: str) -> None:
    """Raise a clear error unless two model state dicts have the same keys and shapes."""
    problems = []
    for key in sorted(expected.keys() - saved.keys()):
        problems.append(f"missing {key}")
    for key in sorted(saved.keys() - expected.keys()):
        problems.append(f"unexpected {key}")
    for key in sorted(saved.keys() & expected.keys()):
        a, b = saved[key], expected[key]
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
            problems.append(f"{key}: {tuple(a.shape)} here, {tuple(b.shape)} expected")
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise CheckpointInvalid(f"{source}: the model architecture differs: {shown}")


def versions() -> dict[str, str]:
    """Library versions written into every manifest."""
    out = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__}
    for package in ("miditok", "zstandard"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


# --------------------------------------------------------------------------- archiving


def archive(folder: Path, weights_dtype: str = "fp32", compression: str | None = None, level: int = 3) -> int:
    """Turn a full checkpoint into a weights-only one in place; returns the bytes freed.

    Crash-safe: the new weights file is written beside the old files, then the
    manifest is replaced atomically, then the files it no longer lists go. At
    every moment the folder holds a valid checkpoint (full, then weights-only).
    """
    manifest = verify_checkpoint(folder)
    model_file = part_files(manifest).get("model")
    if model_file is None:
        raise CheckpointInvalid(f"{folder}: has no model weights to keep")
    before = sum(e["size"] for e in manifest["files"].values())
    kept = {name: e for name, e in manifest["files"].items() if not e.get("part") and not name.endswith(".pt")}
    current_dtype = manifest.get("weights_dtype", "fp32")
    entry = manifest["files"][model_file]
    if weights_dtype == current_dtype and (entry.get("encoding") or None) == compression:
        kept[model_file] = entry
    else:
        state = _load_part(folder / model_file, entry, "cpu")
        new_name = f"model.{weights_dtype}.pt" + (".zst" if compression == "zstd" else "")
        entry, synced = _write_part(folder / new_name, cast_floating(state, DTYPES[weights_dtype]), compression, level)
        synced.result()
        kept[new_name] = {"part": "model", **entry}
    updated = {k: v for k, v in manifest.items() if k not in ("manifest_version", "compression")}
    updated.update(
        kind="weights",
        files=kept,
        weights_dtype=weights_dtype,
        archived={"time": time.time(), "from": manifest.get("kind", "full")},
    )
    summary = _compression_summary(kept, compression, level)
    if summary:
        updated["compression"] = summary
    write_manifest(folder, updated)
    for name in manifest["files"]:
        if name not in kept:
            (folder / name).unlink(missing_ok=True)
    fsync_dir(folder)
    return before - sum(e["size"] for e in kept.values())


# --------------------------------------------------------------------------- ordered writer


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


def _failure(step: int, exc: BaseException) -> dict[str, Any]:
    os_error = isinstance(exc, OSError)
    return {
        "ok": False,
        "step": step,
        "error": f"{type(exc).__name__}: {exc}",
        "os_error": os_error,
        "errno": errno.errorcode.get(exc.errno, "") if os_error and exc.errno else "",
        "traceback": "" if os_error else traceback.format_exc(),
    }


class CheckpointManager:
    """Saves, their agreed outcome, and retention, for one run. Every method is collective.

    Rank 0 writes and deletes; the others learn what happened through one
    broadcast per save, so the history that retention decides from, and the
    decision to stop after a failed save, are the same on every rank.
    """

    def __init__(self, directory: Path, section, dist, emit: Callable[..., None]):
        self.directory, self.cfg, self.dist, self.emit = directory, section, dist, emit
        self.policy = retention.Policy.from_config(section)
        self.history: list[retention.Snapshot] = []
        self.protected: set[str] = set()
        self.writer = Writer(section.async_save) if dist.is_main else None
        self.copier = HostCopier()
        self.in_flight: dict[str, Any] | None = None
        self.last_failure: str | None = None  # the newest settled save's error, None once one succeeds

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
            self.writer.submit(functools.partial(self._commit, parts, record, actions, meta, files, ready), background)
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
        """Rank 0, possibly on the writer thread: write, then apply retention. Returns the outcome, never raises."""
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
        written = self.dist.broadcast_objects(self.writer.done() if self.dist.is_main else None)
        return self.settle() if written else None

    def settle(self) -> dict[str, Any] | None:
        """Wait for the save in flight, agree its outcome on every rank, report it and update the history."""
        if self.in_flight is None:
            return None
        flight, self.in_flight = self.in_flight, None
        result = self.writer.wait() if self.dist.is_main else None
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

    # ---- resuming

    def resume_point(self, fork_from: Path | None) -> tuple[Path | None, str]:
        """The checkpoint to resume from: this run's newest valid full one, else ``fork_from``.

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
        path, rejected = newest_valid(self.directory)
        for bad, why in rejected:
            self.emit(
                "error", 0, message=f"skipped invalid checkpoint: {why}", where="resume", fatal=False, path=str(bad)
            )
        if path is not None:
            return {"path": str(path), "mode": "resume"}
        if fork_from is None:
            return {"path": None, "mode": "fresh"}
        manifest = verify_checkpoint(fork_from)
        return {"path": str(fork_from), "mode": "fork" if manifest.get("kind") == "full" else "weights"}

    def adopt(self, resumed_from: Path | None) -> None:
        """Take over this run's checkpoints on disk: the same history on every rank, the resume point protected."""
        history = None
        if self.dist.is_main:
            history = [retention.Snapshot(**s) for s in retention_history(self.directory, self.cfg.best_metric)]
        self.history = self.dist.broadcast_objects(history)
        if resumed_from is not None and resumed_from.parent == self.directory:
            self.protected = {resumed_from.name}


def metric_of(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, list]:
    """Config fields that differ between a checkpoint's run and this one: ``{"optim.lr": [old, new]}``."""
    before, after = _flatten(old or {}), _flatten(new)
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    }


__all__ = [
    "save",
    "load",
    "write_checkpoint",
    "archive",
    "CheckpointManager",
    "ResumeRequest",
    "CheckpointInvalid",
    "MANIFEST",
]
