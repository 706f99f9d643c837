"""Checkpoint manifests: listing and verification without torch.

The GUI's checkpoint browser and ``podium checkpoints list/verify`` read only
manifests and hashes, so this module must never import torch.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class CheckpointInvalid(ValueError):
    """A checkpoint that must not be loaded; the message names the bad file."""


def checkpoint_dir_name(step: int) -> str:
    return f"step-{step:07d}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    path = folder / MANIFEST
    with open(path, "w") as f:
        json.dump({"manifest_version": MANIFEST_VERSION, **manifest}, f, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(folder)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointInvalid(f"{path}: missing (the save never completed)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointInvalid(f"{path}: unreadable: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or "step" not in manifest:
        raise CheckpointInvalid(f"{path}: not a Podium manifest (needs step and files)")
    return manifest


def verify_checkpoint(folder: Path, hashes: bool = True) -> dict[str, Any]:
    """Return the manifest if every listed file exists with its size (and hash); else raise."""
    manifest = read_manifest(folder)
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointInvalid(f"{path}: missing")
        if path.stat().st_size != entry.get("size"):
            raise CheckpointInvalid(f"{path}: size {path.stat().st_size} bytes, manifest says {entry.get('size')}")
        if hashes and sha256_file(path) != entry.get("sha256"):
            raise CheckpointInvalid(f"{path}: sha256 mismatch (corrupt or modified)")
    return manifest


def checkpoint_folders(checkpoints_dir: Path) -> list[Path]:
    """Committed-looking checkpoint folders, oldest step first (temporary folders excluded)."""
    if not checkpoints_dir.is_dir():
        return []
    return sorted(p for p in checkpoints_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def newest_valid(checkpoints_dir: Path, kind: str = "full") -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint of ``kind`` that verifies, and the (path, reason) of newer ones that did not."""
    rejected = []
    for folder in reversed(checkpoint_folders(checkpoints_dir)):
        try:
            manifest = verify_checkpoint(folder)
        except CheckpointInvalid as exc:
            rejected.append((folder, str(exc)))
            continue
        if manifest.get("kind") == kind:
            return folder, rejected
    return None, rejected


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def checkpoint_rows(checkpoints_dir: Path, hashes: bool = True) -> list[dict[str, Any]]:
    """One row per checkpoint folder, invalid ones included with the reason."""
    rows = []
    for folder in checkpoint_folders(checkpoints_dir):
        row: dict[str, Any] = {"path": folder, "name": folder.name}
        try:
            manifest = verify_checkpoint(folder, hashes=hashes)
            row.update(step=manifest["step"], time=manifest.get("time"), kind=manifest.get("kind"),
                       size=sum(int(f.get("size", 0)) for f in manifest["files"].values()),
                       metrics=manifest.get("metrics") or {}, integrity="ok")
        except CheckpointInvalid as exc:
            row.update(step=None, time=None, kind=None, size=None, metrics={}, integrity=f"INVALID: {exc}")
        rows.append(row)
    return rows


def checkpoint_table(run_dir: Path) -> str:
    import time as _time

    rows = checkpoint_rows(Path(run_dir) / "checkpoints")
    if not rows:
        return f"no checkpoints in {Path(run_dir) / 'checkpoints'}"
    lines = [f"{'name':<14} {'step':>8} {'time':<19} {'kind':<8} {'size':>9}  {'val_loss':>8}  integrity"]
    for r in rows:
        when = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(r["time"])) if r["time"] else "-"
        val = r["metrics"].get("val_loss")
        lines.append(f"{r['name']:<14} {r['step'] if r['step'] is not None else '-':>8} {when:<19} {r['kind'] or '-':<8} "
                     f"{_human_size(r['size']) if r['size'] is not None else '-':>9}  "
                     f"{f'{val:.4f}' if isinstance(val, (int, float)) else '-':>8}  {r['integrity']}")
    return "\n".join(lines)


def verify_tree(path: Path) -> list[str]:
    """Verify one checkpoint or every checkpoint of a run; print and return the problems."""
    path = Path(path)
    folders = [path] if (path / MANIFEST).exists() or path.parent.name == "checkpoints" else checkpoint_folders(path / "checkpoints")
    if not folders:
        print(f"no checkpoints under {path}")
        return [f"{path}: no checkpoints"]
    problems = []
    for folder in folders:
        try:
            verify_checkpoint(folder)
            print(f"ok       {folder}")
        except CheckpointInvalid as exc:
            problems.append(str(exc))
            print(f"INVALID  {exc}")
    return problems
