"""Where the checkpoint browser's model reads and acts: a run on this disk (manifests read and files hashed
here), or a run on a remote workspace's host (``podium checkpoints`` run there through the workspace's
access). Both block; the browser calls the host's from a worker thread. Qt-free and torch-free.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
from pathlib import Path
from typing import Any

from engine.contract.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    TEMP_PREFIX,
    CheckpointInvalid,
    checkpoint_rows,
    parse_manifest,
    read_manifest,
)
from engine.contract.manifest import verify_checkpoint as verify_here
from gui.access.base import RunAccess

AVERAGES = "averages"
# The names a checkpoint folder has: step-NNNNNNN (engine.contract.manifest); an average's is whatever
# ``podium checkpoints average --out`` was given, listed as locally (not hidden: a save or delete under way).
_HOST_NAMES = {
    "checkpoints": re.compile(r"step-\d+"),
    AVERAGES: re.compile(r"[^./\x00][^/\x00]*"),
}
LIST_TIMEOUT, VERIFY_TIMEOUT = 120.0, 3600.0

# Every file's (name, size, mtime_ns), sorted by name; on a host, the manifest's (size, mtime).
Signature = tuple[tuple[str, int, int], ...]


_STEP_FOLDER = re.compile(r"step-(\d{1,16})")
MAX_WORLD_SIZE = 4096


def resume_world_size(access: RunAccess, run: str) -> int:
    """The ranks the run's newest full checkpoint was saved from (its manifest, read through ``access``), so a
    resume continues as the run ran; 1 when no manifest says."""
    folder = posixpath.join(run, "checkpoints")
    steps = ((int(m.group(1)), name) for name in access.listdir(folder) if (m := _STEP_FOLDER.fullmatch(name)))
    for _step, name in sorted(steps, reverse=True):
        path = posixpath.join(folder, name, MANIFEST)
        try:
            manifest = parse_manifest(access.read(path, 0, MAX_MANIFEST_BYTES + 1), path)
        except (OSError, CheckpointInvalid):
            continue  # unreadable or hostile: the resume would pass over it too
        if manifest.get("kind") != "full":
            continue
        size = manifest.get("world_size")
        return size if isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= MAX_WORLD_SIZE else 1
    return 1


class LocalFiles:
    """A run on this disk."""

    remote = False

    def rows(self, root: Path) -> list[dict[str, Any]]:
        """Every checkpoint of the run and of its averages/ as ``checkpoint_rows`` gives them, with
        ``folder`` and ``provenance`` (an average's inputs) added."""
        out = []
        for folder in ("checkpoints", AVERAGES):
            try:
                listed = checkpoint_rows(root / folder, hashes=False)
            except OSError:
                listed = []  # the folder vanished between listing and reading: next refresh
            for raw in listed:
                out.append({**raw, "folder": folder, "provenance": self._provenance(raw)})
        return out

    @staticmethod
    def _provenance(raw: dict[str, Any]) -> Any:
        if raw["integrity"].startswith("INVALID"):
            return None
        try:
            return read_manifest(Path(raw["path"])).get("provenance")
        except CheckpointInvalid:
            return None  # listed a moment ago, gone or rewritten now: the next refresh shows what is there

    @staticmethod
    def manifest(folder: Path) -> dict[str, Any]:
        return read_manifest(folder)

    def signature(self, folder: Path) -> Signature | None:
        """What changes when a checkpoint's files are rewritten, replaced or archived: every file's name,
        size and mtime. A hash verdict is reused only while this is unchanged (bit rot in place needs Verify)."""
        try:
            return tuple(sorted((p.name, st.st_size, st.st_mtime_ns) for p in folder.iterdir() if (st := p.stat())))
        except OSError:
            return None

    def verify(self, folder: Path) -> str | None:
        """Hash every file against the manifest: None when it matches, else what is wrong. Slow."""
        try:
            verify_here(folder, hashes=True)
        except CheckpointInvalid as exc:
            return str(exc)
        except OSError as exc:  # removed while we read it
            return f"{folder}: {exc.strerror or exc}"
        return None

    def exists(self, path: Path) -> bool:
        return path.exists()

    def delete(self, folder: Path) -> str | None:
        """Remove a checkpoint folder; the reason when it could not be. It is first renamed to a hidden
        temporary name, so a half-deleted checkpoint is never listed (or loaded) as one."""
        hidden = folder.with_name(f"{TEMP_PREFIX}deleted-{folder.name}-{os.getpid()}")
        try:
            os.rename(folder, hidden)
        except OSError as exc:
            return f"{folder.name}: {exc.strerror or exc}"
        shutil.rmtree(hidden, ignore_errors=True)
        return None


class HostFiles:
    """A run on a remote workspace's host: listing and hashing run there (``podium checkpoints``), so only
    their answers cross the network, never a checkpoint's bytes."""

    remote = True

    def __init__(self, access: RunAccess):
        self.access = access

    def rows(self, root: Path) -> list[dict[str, Any]]:
        result = self.access.podium("checkpoints", "list", "--json", "--fast", str(root), timeout=LIST_TIMEOUT)
        if result.returncode != 0:
            raise OSError(_failure("checkpoints list", result.returncode, result.stderr or result.stdout))
        try:
            listed = json.loads(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "[]")
        except ValueError:
            raise OSError(f"podium checkpoints list on the host answered no JSON: {result.stdout[-200:]}") from None
        # The host's answer is checked as any file of a run is: a row that is not one is left out.
        rows = [row for raw in listed if (row := _host_row(raw, root))] if isinstance(listed, list) else []
        for row in rows:
            valid_average = row["folder"] == AVERAGES and not row["integrity"].startswith("INVALID")
            row["provenance"] = self._provenance(row["path"]) if valid_average else None
        return rows

    def _provenance(self, folder: Path) -> Any:
        try:
            manifest = json.loads(self.access.read(posixpath.join(str(folder), MANIFEST), 0, MAX_MANIFEST_BYTES))
        except (OSError, ValueError, RecursionError):
            return None
        return manifest.get("provenance") if isinstance(manifest, dict) else None

    def manifest(self, folder: Path) -> dict[str, Any]:
        """The checkpoint's manifest on the host, checked as a local one is (CheckpointInvalid)."""
        path = posixpath.join(str(folder), MANIFEST)
        try:
            data = self.access.read(path, 0, MAX_MANIFEST_BYTES + 1)
        except OSError as exc:
            raise CheckpointInvalid(f"{self.access.label()}:{path}: unreadable: {exc}") from None
        return parse_manifest(data, f"{self.access.label()}:{path}")

    def signature(self, folder: Path) -> Signature | None:
        try:
            found = self.access.stat(posixpath.join(str(folder), MANIFEST))
        except OSError:
            return None
        return None if found is None else ((MANIFEST, found.size, int(found.mtime * 1e9)),)

    def verify(self, folder: Path) -> str | None:
        try:
            result = self.access.podium("checkpoints", "verify", str(folder), timeout=VERIFY_TIMEOUT)
        except OSError as exc:
            return f"{folder}: not verified: {exc}"
        if result.returncode == 0:
            return None
        invalid = [line.removeprefix("INVALID").strip() for line in result.stdout.splitlines()]
        invalid = [line for line in invalid if line and not line.startswith("ok ")]
        if result.returncode == 1 and invalid:
            return invalid[0]
        return f"{folder}: {_failure('checkpoints verify', result.returncode, result.stderr or result.stdout)}"

    def exists(self, path: Path) -> bool:
        return self.access.stat(str(path)) is not None

    def delete(self, folder: Path) -> str | None:
        """As on this disk, over SFTP: renamed out of the listing first (atomic on the host), then removed."""
        hidden = posixpath.join(str(folder.parent), f"{TEMP_PREFIX}deleted-{folder.name}-{os.getpid()}")
        try:
            self.access.rename(str(folder), hidden)
        except OSError as exc:
            return f"{folder.name}: {exc.strerror or exc}"
        self.access.remove_tree(hidden)
        return None


def _host_row(raw: Any, root: Path) -> dict[str, Any] | None:
    folder, name = (raw.get("folder"), raw.get("name")) if isinstance(raw, dict) else (None, None)
    if (
        not isinstance(folder, str)
        or folder not in _HOST_NAMES
        or not isinstance(name, str)
        or not isinstance(raw.get("integrity"), str)
    ):
        return None
    # Whatever the host prints: "" or ".." would make the row the folder of every checkpoint, or its parent,
    # and deleting it would delete them all.
    path = root / folder / name
    if not _HOST_NAMES[folder].fullmatch(name) or path.parent != root / folder:
        return None
    step = raw.get("step")
    return {
        **raw,
        "path": path,
        "step": step if isinstance(step, int) and not isinstance(step, bool) else None,
        "time": raw.get("time") if isinstance(raw.get("time"), (int, float)) else None,
        "size": raw.get("size") if isinstance(raw.get("size"), int) else None,
        "metrics": raw.get("metrics") if isinstance(raw.get("metrics"), dict) else {},
    }


def _failure(what: str, code: int, output: str) -> str:
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
    return f"podium {what} on the host exited {code}" + (f": {last.strip()}" if last else "")
