"""Checkpoints: atomic, hashed, loaded only as data.

A checkpoint is a folder ``checkpoints/step-000500/`` holding one ``.pt`` file
per part (model, optimizer, training state) and ``manifest.json``, written
last. Files go into a hidden temporary folder, each fsynced; then the manifest
(sizes and sha256 of every file); then one rename makes it visible, the
pattern of PyTorch DCP's commit marker. A folder without a valid manifest, or
whose files do not match it, is never loaded.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from engine.manifest import MANIFEST, CheckpointInvalid, checkpoint_dir_name, fsync_dir, verify_checkpoint, write_manifest


def save(checkpoints_dir: Path, step: int, parts: dict[str, Any], *, kind: str = "full",
         files: dict[str, bytes] | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Write ``parts`` (name -> object of tensors and plain data) and raw ``files`` as one committed checkpoint."""
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoints_dir / checkpoint_dir_name(step)
    tmp = checkpoints_dir / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        payloads = dict(files or {})
        for name, obj in parts.items():
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            payloads[f"{name}.pt"] = buffer.getvalue()
        listed = {}
        for filename, payload in payloads.items():
            path = tmp / filename
            with open(path, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            listed[filename] = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        write_manifest(tmp, {"step": step, "kind": kind, "time": time.time(), "files": listed, **(meta or {})})
        if final.exists():
            # Re-saving a step (e.g. the final save right after an interval save) replaces it whole.
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(checkpoints_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify the manifest and hashes, then load every part as data only (no pickled code)."""
    manifest = verify_checkpoint(path)
    parts = {}
    for filename in manifest["files"]:
        if not filename.endswith(".pt"):
            continue  # raw files (the tokenizer) are read by whoever needs them
        try:
            parts[filename.removesuffix(".pt")] = torch.load(path / filename, map_location=map_location, weights_only=True)
        except Exception as exc:  # UnpicklingError names the refused global; say it is refused, not corrupt
            raise CheckpointInvalid(f"{path / filename}: refused to load (not plain tensors and data): {exc}") from None
    parts["manifest"] = manifest
    return parts


__all__ = ["save", "load", "CheckpointInvalid", "MANIFEST"]
