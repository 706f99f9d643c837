"""The atomic writer: a checkpoint folder written hidden, every file hashed while it is written and
fsynced, the manifest last, then one rename makes it visible.

Hashing costs little: each chunk ``torch.save`` produces goes to disk and into
sha256 as it is written, so no file is read back, and torch's own per-record
CRC32, redundant beside sha256, is skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from engine.checkpoints.loading import load_part, verify
from engine.checkpoints.state import DTYPES, cast_floating
from engine.contract.manifest import (
    TEMP_PREFIX,
    CheckpointInvalid,
    checkpoint_dir_name,
    fsync_dir,
    part_files,
    read_manifest,
    write_manifest,
)

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


class _HashingFile:
    """The file object ``torch.save`` writes into: each chunk goes to disk and into sha256 at once."""

    def __init__(self, fd: int):
        self.fd, self.digest, self.size, self.written_back = fd, hashlib.sha256(), 0, 0
        # torch.save turns an error raised by write() into a RuntimeError that names no cause;
        # the OS error is kept so the caller can raise it instead (a full disk must say so).
        self.os_error: OSError | None = None

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
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            self.os_error = exc
            raise

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
    out = _HashingFile(fd)
    try:
        if compression == "zstd":
            import zstandard

            # The stubs of stream_writer and torch.save ask for a whole IO[bytes]; they only write (and flush).
            zstd = zstandard.ZstdCompressor(level=level, threads=-1)
            compressor = zstd.stream_writer(out, closefd=False)  # type: ignore[arg-type]  # stub: write() suffices
            counter = _Counting(compressor)
            with _without_crc32():
                torch.save(obj, counter)  # type: ignore[arg-type]  # stub: write() suffices
            compressor.close()  # ends the frame; closefd=False leaves our file open
            raw_size = counter.size
        else:
            with _without_crc32():
                torch.save(obj, out)  # type: ignore[arg-type]  # stub: write() suffices
            raw_size = out.size
    except BaseException as exc:
        os.close(fd)
        if out.os_error is not None and exc is not out.os_error:
            raise out.os_error from exc
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


def _write_raw(path: Path, payload: bytes) -> tuple[dict[str, Any], Future]:
    """Write ``payload`` into ``path``; returns its manifest entry and the future of its background fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    out = _HashingFile(fd)
    try:
        out.write(payload)
    except BaseException:
        os.close(fd)
        raise
    return {"size": out.size, "sha256": out.digest.hexdigest()}, _SYNCER.submit(_fsync_close, fd)


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
        listed: dict[str, dict[str, Any]] = {}
        for name, payload in (files or {}).items():
            # Its fsync runs while the parts are serialized, not before them.
            listed[name], synced = _write_raw(tmp / name, payload)
            syncing.append(synced)
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


# --------------------------------------------------------------------------- archiving


def archive(folder: Path, weights_dtype: str = "fp32", compression: str | None = None, level: int = 3) -> int:
    """Turn a full checkpoint into a weights-only one in place; returns the bytes freed.

    Crash-safe: the new weights file is written beside the old files, then the
    manifest is replaced atomically, then the files it no longer lists go. At
    every moment the folder holds a valid checkpoint (full, then weights-only).
    """
    manifest = verify(folder)
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
        state = load_part(folder / model_file, entry, "cpu")
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
