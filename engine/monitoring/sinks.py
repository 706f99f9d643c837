"""Optional mirrors of the run's scalars in the team's tools: TensorBoard and W&B (offline).

Podium's events stay the source of truth; a mirror that fails is dropped with an error event, never
the run. TensorBoard shows what the run really trained: when a run goes back to a checkpoint (a
rollback, or a resume in a new process) the steps past it are purged (a ``SessionLog.START`` at the
first step to be logged again, as ``SummaryWriter(purge_step=...)`` writes), so a curve never
doubles back; at the end the run's hyperparameters and final metrics go to the HParams view.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any


class Sinks:
    """Optional mirrors of the scalars in TensorBoard and W&B (offline). Podium's events stay the source of truth."""

    def __init__(self, cfg, run_dir: Path, run_name: str, config: dict[str, Any], start_step: int = 0):
        """``start_step``: where the run starts (0, or the step it resumed at); TensorBoard drops what an
        earlier process of the run logged past it."""
        self.tensorboard = self.wandb = None
        self.config = config
        self.problems: list[str] = []
        if cfg.tensorboard:
            try:
                from tensorboard.compat.proto.event_pb2 import Event, SessionLog
                from tensorboard.compat.proto.summary_pb2 import Summary
                from torch.utils.tensorboard.writer import FileWriter
            except ImportError:
                self.problems.append(
                    "sinks.tensorboard is on but the tensorboard package is not installed "
                    "(pip install tensorboard); continuing without it"
                )
            else:
                try:
                    self.tensorboard, self._summary = FileWriter(str(run_dir / "tensorboard")), Summary
                    self._event, self._session_log = Event, SessionLog
                except Exception as exc:  # e.g. a folder that cannot be created or written: the run goes on
                    self.problems.append(
                        f"sinks.tensorboard is on but its writer could not be created in "
                        f"{run_dir / 'tensorboard'} ({type(exc).__name__}: {exc}); "
                        "continuing without it"
                    )
        self.rewound_to(start_step)
        if cfg.wandb:
            try:
                import wandb
            except ImportError:
                self.problems.append(
                    "sinks.wandb is on but the wandb package is not installed (pip install wandb); "
                    "continuing without it"
                )
            else:
                os.environ.setdefault("WANDB_MODE", "offline")
                try:
                    self.wandb = wandb.init(
                        project=cfg.wandb_project, name=run_name, dir=str(run_dir), config=config, mode="offline"
                    )
                except Exception as exc:  # settings, files, its service: a mirror is not worth the run
                    self.problems.append(
                        f"sinks.wandb is on but wandb.init failed ({type(exc).__name__}: {exc}); continuing without it"
                    )

    def scalars(self, prefix: str, step: int, values: dict[str, Any]) -> list[str]:
        """Mirror the numbers among ``values``; returns the problems met (a sink that fails is dropped)."""
        problems = []
        numbers = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.tensorboard is not None:
            # One event for all of a step's scalars: TensorBoard's writer thread serialises and checksums each
            # event in Python, and an event per scalar cost it ten times the CPU (about 1% of a core in a run).
            summary_values = [
                self._summary.Value(tag=f"{prefix}/{name}", simple_value=value) for name, value in numbers.items()
            ]
            self.tensorboard.add_summary(self._summary(value=summary_values), step)
        if self.wandb is not None:
            try:
                self.wandb.log({f"{prefix}/{k}": v for k, v in numbers.items()}, step=step)
            except Exception as exc:  # its service died, its disk filled: the run goes on without the mirror
                self.wandb = None
                problems.append(
                    f"sinks.wandb failed at step {step} ({type(exc).__name__}: {exc}); "
                    "continuing without it (events.jsonl has every value)"
                )
        return problems

    def rewound_to(self, step: int) -> None:
        """The run goes on from ``step`` (restored from its checkpoint): TensorBoard forgets every later step.

        Its readers drop the events before a ``SessionLog.START`` whose step is at or past that event's
        step. W&B offline has no such record; its own step order keeps the first values it saw.
        """
        if self.tensorboard is not None:
            start = self._session_log(status=self._session_log.START)
            self.tensorboard.add_event(self._event(step=step + 1, session_log=start))

    def flush(self) -> None:
        """Write what the mirrors hold to disk: at a checkpoint, so a crash loses no more than the run does."""
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self, final: dict[str, Any] | None = None) -> None:
        """``final``: the run's last metrics, written with its hyperparameters to TensorBoard's HParams view."""
        if self.tensorboard is not None:
            try:
                if final:
                    self._hparams(final)
            except Exception as exc:  # the run is over and its events are complete: say so, do not fail it
                print(f"sinks.tensorboard: hparams not written ({type(exc).__name__}: {exc})", file=sys.stderr)
            self.tensorboard.close()
        if self.wandb is not None:
            try:
                self.wandb.finish()
            except Exception as exc:  # the run is over and its events are complete: say so, do not fail it
                print(f"sinks.wandb: finish failed ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)

    def _hparams(self, final: dict[str, Any]) -> None:
        """The config, one hyperparameter per field (``optim.lr``), and ``final`` as scalars under ``final/``."""
        from torch.utils.tensorboard.summary import hparams

        assert self.tensorboard is not None
        step = int(final.get("step", 0))
        metrics = {
            f"final/{name}": float(value)
            for name, value in final.items()
            if name != "step"
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
        }
        for summary in hparams(_flat(self.config), metrics):
            self.tensorboard.add_summary(summary, step)
        self.scalars("final", step, {name.removeprefix("final/"): value for name, value in metrics.items()})


def _flat(config: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """``{"optim": {"lr": 3e-4}}`` as ``{"optim.lr": 3e-4}``; lists and mappings as their JSON text, None left out."""
    flat: dict[str, bool | int | float | str] = {}
    for section, fields in config.items():
        for name, value in fields.items() if isinstance(fields, dict) else [("", fields)]:
            key = f"{section}.{name}" if name else section
            if isinstance(value, (bool, int, float, str)):
                flat[key] = value
            elif value is not None:
                flat[key] = json.dumps(value, sort_keys=True)
    return flat
