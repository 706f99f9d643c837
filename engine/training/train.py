"""The training process, one per rank, started by torchrun through ``engine.launcher.launch``.

    python -m torch.distributed.run --nproc-per-node N -m engine.training.train --run-dir DIR [--resume]

Rank 0 alone writes events and checkpoints. The loop itself is :class:`engine.training.trainer.Trainer`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import traceback
from pathlib import Path

import numpy as np

from engine.checkpoints import checkpoint
from engine.contract import config as config_mod
from engine.contract.events import EventWriter
from engine.contract.rundir import RunDir
from engine.training import distributed
from engine.training.dispatcher import GroupRestart, handle_signals, ignore_sigterm
from engine.training.event_scan import events_of_type
from engine.training.trainer import Trainer

__all__ = ["Trainer", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engine.training.train")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from this run's newest valid checkpoint")
    parser.add_argument(
        "--from-checkpoint", type=Path, help="start from this checkpoint (a fork) unless the run has its own"
    )
    parser.add_argument(
        "--sigterm-stops",
        action="store_true",
        help="SIGTERM stops the run with a checkpoint even when torchrun may restart (a batch system's job step)",
    )
    args = parser.parse_args(argv)
    # torchrun sets these in every worker: a count above 0 means it restarted the group after a failure.
    max_restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0))
    restarts_left = max_restarts - int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))
    handle_signals(torchrun_may_restart=max_restarts > 0, sigterm_stops=args.sigterm_stops)
    run = RunDir(args.run_dir)
    is_main = int(os.environ.get("RANK", 0)) == 0
    trainer = None
    try:
        cfg = config_mod.load(run.config)
        dist = distributed.init(cfg.run.device, cfg.run.threads_per_rank)
        attempt = _attempt(run, dist)
        resume = (
            checkpoint.ResumeRequest(args.from_checkpoint, attempt)
            if args.resume or args.from_checkpoint or attempt
            else None
        )
        # Seeded like torch's stream, so checkpoints carry reproducible numpy and Python streams too.
        np.random.seed(cfg.run.seed + dist.rank)
        random.seed(cfg.run.seed + dist.rank)
        trainer = Trainer(run, cfg, dist, resume)
        reason = trainer.train()
        saves = trainer.checkpoints.manager
        saves.settle()  # a background save still in flight: run_end follows its outcome
        message = trainer.control.stop_message
        if saves.last_failure:
            reason, message = "failed", f"the last checkpoint was not saved: {saves.last_failure}"
        trainer.emit("run_end", reason=reason, message=message or f"{reason} at step {trainer.step}")
        return 0
    except (Exception, GroupRestart) as exc:
        ignore_sigterm()
        if is_main:
            with EventWriter(run.events) as events:
                step = trainer.step if trainer else 0
                what = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, GroupRestart) or restarts_left > 0:
                    # Not the end: torchrun restarts the group, which resumes from the newest valid checkpoint
                    # (if torchrun gives up instead, the launcher ends the run).
                    restart = (
                        f" (restart {max_restarts - restarts_left + 1} of {max_restarts})" if restarts_left > 0 else ""
                    )
                    events.emit(
                        "error",
                        step,
                        message=f"{what}; torchrun restarts the workers{restart}",
                        where="training",
                        fatal=False,
                        traceback=traceback.format_exc(),
                    )
                else:
                    events.emit(
                        "error", step, message=what, where="training", fatal=True, traceback=traceback.format_exc()
                    )
                    events.emit("run_end", step, reason="failed", message=what)
        raise
    finally:
        distributed.shutdown()


def _attempt(run: RunDir, dist: distributed.Dist) -> int:
    """How many times this launch's worker group started before this one (0: the first time).

    torchrun's restart count is each agent's own: a node started again counts from 0, and a restart
    because a node joined is not counted at all. So rank 0 also counts the ``run_start`` events since
    the launcher began, and every rank takes the highest answer: the whole group resumes, or none of it.
    """
    counted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))
    launched_at = run.launched_at() if dist.is_main else None
    if launched_at is not None:
        starts = events_of_type(run.events, "run_start")
        counted = max(counted, sum(1 for e in starts if e["time"] >= launched_at))
    return max(dist.gather_objects(counted))


if __name__ == "__main__":
    sys.exit(main())
