"""Checkpoints: atomic, hashed, loaded only as data; saved in order, optionally in the background.

A checkpoint is a folder ``checkpoints/step-0000500/`` holding one ``.pt``
file per part (model, optimizer, training state), raw files (the tokenizer)
and ``manifest.json``, written last. Files go into a hidden temporary folder,
each fsynced; then the manifest (size and sha256 of every file); then one
rename makes it visible and the parent folder is fsynced, the pattern of
PyTorch DCP's commit marker. A folder without a valid manifest, or whose files
do not match it, is never loaded, and loading uses ``weights_only=True``, so a
file carrying pickled code is refused without running it.

This module is the public face; the work is grouped by job: ``writing`` (the
atomic writer and archiving), ``loading``, ``state`` (host copies, RNG
streams, comparisons) and ``manager`` (:class:`CheckpointManager`, the
trainer's side).
"""

from engine.checkpoints.loading import load
from engine.checkpoints.manager import CheckpointManager, ResumeRequest, newest_loadable
from engine.checkpoints.state import (
    DTYPES,
    HostCopier,
    cast_floating,
    check_compatible,
    config_changes,
    metric_of,
    rng_state,
    set_rng_state,
    versions,
)
from engine.checkpoints.writing import archive, save, write_checkpoint
from engine.contract.manifest import MANIFEST, CheckpointInvalid

__all__ = [
    "DTYPES",
    "MANIFEST",
    "CheckpointInvalid",
    "CheckpointManager",
    "HostCopier",
    "ResumeRequest",
    "archive",
    "cast_floating",
    "check_compatible",
    "config_changes",
    "load",
    "metric_of",
    "newest_loadable",
    "rng_state",
    "save",
    "set_rng_state",
    "versions",
    "write_checkpoint",
]
