"""The training process, one per rank, started by torchrun through ``engine.launcher.launch``.

    python -m torch.distributed.run --nproc-per-node N -m engine.training.train --run-dir DIR [--resume]

Rank 0 alone writes events and checkpoints. The loop itself is :class:`engine.training.trainer.Trainer`.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import traceback
from pathlib import Path

import numpy as np

from engine.checkpoints import checkpoint
from engine.contract import config as config_mod
from engine.contract.events import EventWriter
from engine.contract.rundir import RunDir
from engine.training import distributed
from engine.training.dispatcher import stop_on_signal
from engine.training.trainer import Trainer

__all__ = ["Trainer", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engine.training.train")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from this run's newest valid checkpoint")
    parser.add_argument(
        "--from-checkpoint", type=Path, help="start from this checkpoint (a fork) unless the run has its own"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    run = RunDir(args.run_dir)
    is_main = int(os.environ.get("RANK", 0)) == 0
    # torchrun sets these in every worker: a count above 0 means it restarted the group after a failure.
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))
    restarts_left = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0)) - attempt
    resume = (
        checkpoint.ResumeRequest(args.from_checkpoint, attempt)
        if args.resume or args.from_checkpoint or attempt
        else None
    )
    trainer = None
    try:
        cfg = config_mod.load(run.config)
        dist = distributed.init(cfg.run.device, cfg.run.threads_per_rank)
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
    except Exception as exc:
        if is_main:
            with EventWriter(run.events) as events:
                step = trainer.step if trainer else 0
                if restarts_left > 0:
                    # Not the end: torchrun restarts the group, which resumes from the newest valid checkpoint.
                    events.emit(
                        "error",
                        step,
                        message=f"{type(exc).__name__}: {exc}; torchrun restarts the workers "
                        f"(restart {attempt + 1} of {attempt + restarts_left})",
                        where="training",
                        fatal=False,
                        traceback=traceback.format_exc(),
                    )
                else:
                    events.emit(
                        "error",
                        step,
                        message=f"{type(exc).__name__}: {exc}",
                        where="training",
                        fatal=True,
                        traceback=traceback.format_exc(),
                    )
                    events.emit("run_end", step, reason="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
