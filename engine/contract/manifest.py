"""Checkpoint manifests: listing, verification and retention inputs without torch.

The GUI's checkpoint browser and ``podium checkpoints list/verify`` read only
manifests and hashes, so this module must never import torch.

A manifest lists every file of a checkpoint with its size and sha256 (of the
bytes on disk, so compressed files verify without decompressing). Files that
hold a torch object name it as their ``part`` (model, optimizer, train_state);
other files (the tokenizer) are raw. A checkpoint whose manifest is missing or
unreadable, or whose files differ from it, is invalid and never loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from engine.contract.files import atomic_write_text

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# A folder being written is hidden until its manifest is in place: ``.tmp-<name>-<pid>``.
TEMP_PREFIX = ".tmp-"


class CheckpointInvalid(ValueError):
    """A checkpoint that must not be loaded; the message names the bad file."""


def checkpoint_dir_name(step: int) -> str:
    return f"step-{step:07d}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write (or atomically replace) ``folder/manifest.json`` and make it durable."""
    # A replace, not a rewrite in place: archiving a checkpoint swaps its manifest
    # while it is visible, and a reader must see the old one or the new one.
    text = json.dumps({"manifest_version": MANIFEST_VERSION, **manifest}, indent=1, default=str)
    atomic_write_text(folder / MANIFEST, text)
    fsync_dir(folder)


MAX_MANIFEST_BYTES = 4 << 20  # a manifest with the whole config is a few KB
# A vocabulary this large would make loading the model allocate gigabytes for its embedding alone.
MAX_VOCAB_SIZE = 1_000_000
_LATEST_TIME = 1e11  # seconds since 1970: year 5138, far past any honest save


def _file_name(name: str) -> str:
    if "/" in name or "\\" in name or name in ("", ".", "..", MANIFEST) or name.startswith("."):
        raise ValueError("a file name in the checkpoint's own folder")
    return name


class FileEntry(BaseModel):
    """One file of a checkpoint: its size and digest as written, and the torch object it holds."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    part: str | None = Field(default=None, max_length=64)


class Manifest(BaseModel):
    """A checkpoint's manifest.json: what was saved, when, and every file with its size and digest."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    manifest_version: int = MANIFEST_VERSION
    step: int = Field(ge=0, le=2**53)
    kind: str = Field(default="full", max_length=32)
    time: float | None = Field(default=None, ge=0, lt=_LATEST_TIME)
    files: dict[Annotated[str, AfterValidator(_file_name)], FileEntry]
    metrics: dict[str, float | None] = {}
    compression: dict[str, Any] | None = None
    weights_dtype: str | None = Field(default=None, max_length=16)
    vocab_size: int | None = Field(default=None, ge=1, le=MAX_VOCAB_SIZE)
    config: dict[str, Any] | None = None
    reason: str | None = None


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a checkpoint folder, checked against :class:`Manifest`; CheckpointInvalid naming the
    file and the field when it is missing, unreadable or not a valid manifest."""
    path = folder / MANIFEST
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise CheckpointInvalid(f"{path}: missing (the save never completed)") from None
    except OSError as exc:
        raise CheckpointInvalid(f"{path}: unreadable: {str(exc)[:200]}") from None
    return parse_manifest(data, path)


def parse_manifest(data: bytes, path: Path | str) -> dict[str, Any]:
    """A manifest's bytes, however they were read (a server's come over SSH), checked as
    :func:`read_manifest` checks a local one; ``path`` names it in the message."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise CheckpointInvalid(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes; not a Podium manifest")
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CheckpointInvalid(f"{path}: unreadable: {str(exc)[:200]}") from None
    if type(manifest) is not dict:
        raise CheckpointInvalid(f"{path}: not a Podium manifest (needs step and files)")
    try:
        Manifest.model_validate(manifest)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"]) or "manifest"
        raise CheckpointInvalid(f"{path}: {where}: {error['msg']}") from None
    return manifest


def check_entry(path: Path, entry: dict[str, Any], size: int, sha256: str | None) -> None:
    """Raise unless a file's size (and hash, when given) match its manifest entry."""
    if size != entry.get("size"):
        raise CheckpointInvalid(f"{path}: size {size} bytes, manifest says {entry.get('size')} (truncated or replaced)")
    if sha256 is not None and sha256 != entry.get("sha256"):
        raise CheckpointInvalid(f"{path}: sha256 mismatch (corrupt or modified)")


def verify_checkpoint(folder: Path, hashes: bool = True) -> dict[str, Any]:
    """Return the manifest if every listed file exists with its size (and hash); else raise."""
    if folder.is_symlink():
        raise CheckpointInvalid(f"{folder}: a symbolic link; a checkpoint folder must be the run's own")
    manifest = read_manifest(folder)
    for name, entry in manifest["files"].items():
        path = folder / name
        try:
            info = path.lstat()
        except OSError:
            raise CheckpointInvalid(f"{path}: missing") from None
        if not stat.S_ISREG(info.st_mode):
            # A link could point anywhere: a file outside the run would be loaded and copied into averages.
            raise CheckpointInvalid(f"{path}: not a regular file (a symbolic link or a device); refused")
        check_entry(path, entry, info.st_size, None)
    if hashes:
        names = list(manifest["files"])
        # Files hash in parallel (sha256 releases the GIL): a checkpoint verifies in about the time
        # of its largest file, the optimizer's.
        with ThreadPoolExecutor(min(4, max(1, len(names)))) as pool:
            digests = list(pool.map(lambda n: sha256_file(folder / n), names))
        for name, digest in zip(names, digests):
            check_entry(folder / name, manifest["files"][name], manifest["files"][name]["size"], digest)
    return manifest


def part_files(manifest: dict[str, Any]) -> dict[str, str]:
    """Part name -> file name, for the files that hold torch objects."""
    parts = {}
    for filename, entry in manifest["files"].items():
        part = entry.get("part") or (filename.removesuffix(".pt") if filename.endswith(".pt") else None)
        if part:
            parts[part] = filename
    return parts


def checkpoint_folders(checkpoints_dir: Path) -> list[Path]:
    """Committed-looking checkpoint folders, oldest step first (temporary folders excluded)."""
    if not checkpoints_dir.is_dir():
        return []
    return sorted(p for p in checkpoints_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def temp_folders(checkpoints_dir: Path) -> list[Path]:
    """Folders of saves that never committed (the writer died or failed before the rename)."""
    if not checkpoints_dir.is_dir():
        return []
    return sorted(p for p in checkpoints_dir.iterdir() if p.is_dir() and p.name.startswith(TEMP_PREFIX))


def newest_valid(checkpoints_dir: Path, kind: str = "full") -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint of ``kind`` that verifies, and the (path, reason) of newer ones that did not.

    Folders of another kind are passed over without hashing their files.
    """
    rejected = []
    for folder in reversed(checkpoint_folders(checkpoints_dir)):
        try:
            if read_manifest(folder).get("kind") != kind:
                continue
            verify_checkpoint(folder)
        except CheckpointInvalid as exc:
            rejected.append((folder, str(exc)))
            continue
        return folder, rejected
    return None, rejected


def snapshot_of(folder: Path, manifest: dict[str, Any], metric: str) -> dict[str, Any]:
    """What retention needs to know of one checkpoint (plain data, same on every rank)."""
    value = (manifest.get("metrics") or {}).get(metric)
    return {
        "name": folder.name,
        "step": int(manifest["step"]),
        "kind": manifest.get("kind", "full"),
        "time": float(manifest.get("time") or 0.0),
        "metric": float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None,
    }


def retention_history(checkpoints_dir: Path, metric: str) -> list[dict[str, Any]]:
    """Every committed checkpoint with a readable manifest, as retention snapshots (sizes checked, not hashes)."""
    history = []
    for folder in checkpoint_folders(checkpoints_dir):
        try:
            history.append(snapshot_of(folder, verify_checkpoint(folder, hashes=False), metric))
        except CheckpointInvalid:
            continue  # an invalid folder is evidence of a problem: reported on resume, never deleted silently
    return history


def _human_size(n: float) -> str:
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
            row.update(
                step=manifest["step"],
                time=manifest.get("time"),
                kind=manifest.get("kind"),
                reason=manifest.get("reason"),
                size=sum(int(f.get("size", 0)) for f in manifest["files"].values()),
                ratio=(manifest.get("compression") or {}).get("ratio"),
                weights_dtype=manifest.get("weights_dtype"),
                metrics=manifest.get("metrics") or {},
                integrity="ok" if hashes else "sizes ok",
            )
        except CheckpointInvalid as exc:
            row.update(
                step=None,
                time=None,
                kind=None,
                reason=None,
                size=None,
                ratio=None,
                weights_dtype=None,
                metrics={},
                integrity=f"INVALID: {exc}",
            )
        rows.append(row)
    return rows


# Bookkeeping and values derived from others: the table shows the metrics themselves.
_UNSHOWN_METRICS = {"step", "val_tokens", "val_ppl", "lr_scale"}


def _metric_text(metrics: dict[str, Any]) -> str:
    shown = []
    for key, value in metrics.items():
        if key in _UNSHOWN_METRICS or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        shown.append(f"{key}={value:.4f}" if isinstance(value, float) and math.isfinite(value) else f"{key}={value}")
    return " ".join(shown) or "-"


def checkpoint_table(run_dir: Path, hashes: bool = True) -> str:
    rows = checkpoint_rows(Path(run_dir) / "checkpoints", hashes=hashes)
    if not rows:
        return f"no checkpoints in {Path(run_dir) / 'checkpoints'}"
    width = max(len(_metric_text(r["metrics"])) for r in rows)
    lines = [
        f"{'name':<14} {'step':>8} {'time':<19} {'kind':<12} {'size':>9} {'ratio':>5}  {'metrics':<{width}} integrity"
    ]
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"])) if r["time"] else "-"
        kind = r["kind"] or "-"
        if r["weights_dtype"] and r["weights_dtype"] != "fp32":
            kind += f" {r['weights_dtype']}"
        step = r["step"] if r["step"] is not None else "-"
        size = _human_size(r["size"]) if r["size"] is not None else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        lines.append(
            f"{r['name']:<14} {step:>8} {when:<19} {kind:<12} {size:>9} {ratio:>5}  "
            f"{_metric_text(r['metrics']):<{width}} {r['integrity']}"
        )
    return "\n".join(lines)


def verify_tree(path: Path) -> list[str]:
    """Verify one checkpoint or every checkpoint of a run; print and return the problems."""
    path = Path(path)
    folders = (
        [path]
        if (path / MANIFEST).exists() or path.parent.name == "checkpoints"
        else checkpoint_folders(path / "checkpoints")
    )
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
