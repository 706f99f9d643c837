"""Loading a checkpoint: verified against its manifest first, then loaded as data only
(``weights_only=True``), so a file carrying pickled code is refused without running it.

A checkpoint's files are written into its folder, never linked: a listed file that
is a symbolic link (which could point anywhere, outside the run too) is refused
before anything is read through it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from engine.contract.manifest import (
    CheckpointInvalid,
    check_entry,
    part_files,
    read_manifest,
    sha256_file,
    verify_checkpoint,
)


def verify(folder: Path, hashes: bool = True) -> dict[str, Any]:
    """:func:`verify_checkpoint`, after refusing listed files that are links; returns the manifest."""
    for name in read_manifest(folder)["files"]:
        if (folder / name).is_symlink():
            raise CheckpointInvalid(f"{folder / name}: a symbolic link, not a file written into the checkpoint")
    return verify_checkpoint(folder, hashes=hashes)


def load_part(path: Path, entry: dict[str, Any], map_location, mmap: bool = False) -> Any:
    """One part as data only; ``mmap`` maps an uncompressed file's tensors instead of reading them."""
    try:
        if entry.get("encoding") == "zstd":
            import zstandard

            with open(path, "rb") as f:
                raw = zstandard.ZstdDecompressor().stream_reader(f).read()
            return torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # UnpicklingError names the refused global: say it is refused, not corrupt
        raise CheckpointInvalid(f"{path}: refused to load (not plain tensors and data): {exc}") from None


def load(path: Path, map_location: str | torch.device = "cpu", parts: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Verify the manifest and hashes, then load the parts (all, or those named) as data only.

    Returns part name -> object, plus ``manifest``.
    """
    path = Path(path)
    manifest = verify(path, hashes=parts is None)
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
    out: dict[str, Any] = {part: load_part(path / f, manifest["files"][f], map_location) for part, f in wanted.items()}
    out["manifest"] = manifest
    return out


def check_loadable(path: Path) -> dict[str, Any]:
    """Verify a checkpoint and unpickle every part as data only, without keeping it: what a resume
    tries before it chooses a checkpoint, so one that ``weights_only`` refuses is passed over.
    Uncompressed parts are memory-mapped, so only their pickled records are read. Returns the manifest."""
    manifest = verify(path)
    for filename in part_files(manifest).values():
        load_part(path / filename, manifest["files"][filename], "cpu", mmap=True)
    return manifest
