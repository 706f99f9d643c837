"""Optional mirrors of the run's scalars in the team's tools: TensorBoard and W&B (offline).

Podium's events stay the source of truth; a mirror that fails is dropped with an error event, never
the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


class Sinks:
    """Optional mirrors of the scalars in TensorBoard and W&B (offline). Podium's events stay the source of truth."""

    def __init__(self, cfg, run_dir: Path, run_name: str, config: dict[str, Any]):
        self.tensorboard = self.wandb = None
        self.problems: list[str] = []
        if cfg.tensorboard:
            try:
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
                except Exception as exc:  # e.g. a folder that cannot be created or written: the run goes on
                    self.problems.append(
                        f"sinks.tensorboard is on but its writer could not be created in "
                        f"{run_dir / 'tensorboard'} ({type(exc).__name__}: {exc}); "
                        "continuing without it"
                    )
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

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            try:
                self.wandb.finish()
            except Exception as exc:  # the run is over and its events are complete: say so, do not fail it
                print(f"sinks.wandb: finish failed ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)
