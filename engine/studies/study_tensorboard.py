"""A study in TensorBoard's HParams view: each finished trial as a session with its parameters and value.

Written when the study's base config turns ``sinks.tensorboard`` on, into
``STUDY/tensorboard/trial-NNNN`` (point ``tensorboard --logdir`` at the study
folder; the trials' own curves are in their run directories' ``tensorboard``).
Only the tensorboard package is needed: its protobufs and event writer, no torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def write_trial(folder: Path, number: int, params: dict[str, Any], metric: str, value: float, state: str) -> str | None:
    """Add one trial to the HParams view; returns a problem to show (the study goes on), or None."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import summary_v2 as hp
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        return "sinks.tensorboard is on but the tensorboard package is not installed (pip install tensorboard)"
    name = f"trial-{number:04d}"
    try:
        writer = EventFileWriter(str(folder / "tensorboard" / name))
        hparams = {**{k: v for k, v in params.items() if isinstance(v, (bool, int, float, str))}, "state": state}
        now = time.time()
        writer.add_event(Event(wall_time=now, step=0, summary=hp.hparams_pb(hparams, trial_id=name)))
        scalar = Summary(value=[Summary.Value(tag=metric, simple_value=float(value))])
        writer.add_event(Event(wall_time=now, step=0, summary=scalar))
        writer.close()
    except Exception as exc:  # a folder that cannot be written: a mirror is not worth the study
        return f"trial {number} could not be written to TensorBoard in {folder / 'tensorboard'} ({exc})"
    return None
