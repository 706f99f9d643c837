"""Saving, resuming and rolling back a run: what a checkpoint holds and how every rank restores it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from engine.checkpoints import checkpoint
from engine.contract.manifest import checkpoint_dir_name
from engine.music.export import DataFacts
from engine.training.event_scan import last_attempt_step

if TYPE_CHECKING:
    from engine.training.trainer import Trainer


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore the optimizer's moments and steps; its hyperparameters (betas, weight decay, LR) stay as they
    are, since the config and the schedule set them: a fork may change them."""
    hyper = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, hyper, strict=True):
        group.update(kept)


class Checkpointing:
    """The run's checkpoints, through ``manager`` (engine/checkpoints): collective saves, resume and rollback.

    A checkpoint holds the model, the optimizer and ``train_state``: step, tokens seen, the shared
    state of every component (``Trainer.components``) and each rank's own state (random streams
    and data position).
    """

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.manager = checkpoint.CheckpointManager(
            trainer.run.checkpoints,
            trainer.cfg.checkpoint,
            trainer.dist,
            self._emit_at,
            on_saved=lambda saved: trainer.hooks.fire("checkpoint", saved),
        )
        self.last_step = -1  # the step of the newest checkpoint saved (or restored)

    def _emit_at(self, type_: str, step: int, **payload: Any) -> None:
        """Emit with an explicit step: a background save reports after training has moved on."""
        if self.trainer.events is not None:
            self.trainer.events.emit(type_, step, **payload)

    # ------------------------------------------------------------------ saving

    def save(self, reason: str) -> Path | None:
        """Collective: every rank calls it at the same step.

        Returns the checkpoint folder (committed, or being written in the background), or None when
        the save failed; a failure never touches earlier checkpoints, and stops the run when
        ``checkpoint.on_error`` says so.
        """
        t = self.trainer
        if not t.weights_finite():
            # A NaN checkpoint would be what the next rollback or resume restores.
            t.emit(
                "error",
                message=f"checkpoint not saved at step {t.step} ({reason}): the weights are not finite; "
                "the earlier checkpoints are kept",
                where="checkpoint",
                fatal=False,
            )
            return None
        with t.monitors.unwatched():
            return self._save(reason)

    def report_written(self) -> None:
        """Announce a background save once written; a failure stops the run when checkpoint.on_error says so."""
        outcome = self.manager.settle_if_written()
        if outcome is not None and not outcome["ok"] and not self.trainer.control.stop_reason:
            self._stop_if_saves_must_not_fail(outcome["step"], outcome["error"])

    def _stop_if_saves_must_not_fail(self, step: int, error: str) -> None:
        if self.trainer.cfg.checkpoint.on_error == "stop":
            message = f"checkpoint not saved at step {step}: {error}"
            self.trainer.control.stop("failed", message, f"{message} (checkpoint.on_error=stop)")

    def _save(self, reason: str) -> Path | None:
        t = self.trainer
        ck = t.cfg.checkpoint
        last_eval = t.evaluator.last
        metrics = dict(last_eval) if last_eval.get("step") == t.step else {}
        if ck.keep_best and ck.best_metric == "val_loss" and not metrics:
            # Best-of ranking compares values measured at each checkpoint's own step. Not evaluate():
            # an extra eval event would also feed plateau and early-stopping patience.
            t.model.eval()
            metrics = {"step": t.step, "val_loss": t.evaluator.validation_loss(t.model)[0]}
            t.model.train()
        per_rank = t.dist.gather_objects(self._rank_state())
        meta = {
            "reason": reason,
            "metrics": metrics,
            "config_digest": t.cfg.digest(),
            "config": t.cfg.model_dump(mode="json"),
            "vocab_size": t.model.vocab_size,
            "music": DataFacts.of_corpus(t.batches.corpus.meta).as_json(),
            "world_size": t.dist.world_size,
            "versions": checkpoint.versions(),
        }
        outcome = self.manager.save(
            t.step,
            reason,
            lambda: self._parts(per_rank),
            meta=meta,
            metric=checkpoint.metric_of(metrics, ck.best_metric),
            files={"tokenizer.json": t.batches.tokenizer_json},
            wait=reason in ("command", "final"),
        )
        # This save's outcome (inline) or the previous one's (async); None: in flight, or already reported.
        if outcome is not None and not outcome["ok"]:
            self._stop_if_saves_must_not_fail(outcome["step"], outcome["error"])
        saved = self.manager.in_flight is not None or (
            outcome is not None and outcome["ok"] and outcome["step"] == t.step
        )
        if saved or ck.on_error == "stop":
            # continue: a failed save leaves last_step behind, so the final save tries again.
            self.last_step = t.step
        return t.run.checkpoints / checkpoint_dir_name(t.step) if saved else None

    def _rank_state(self) -> dict[str, Any]:
        """This rank's own state, gathered from every rank at a save: its random streams (as tensors,
        so checkpoints load with weights_only=True) and its data position."""
        t = self.trainer
        return {"rng": checkpoint.rng_state(t.device), "sampler": t.batches.rank_state()}

    def _parts(self, per_rank: list[dict[str, Any]]) -> dict[str, Any]:
        """Everything a resumed run needs; state every rank shares comes from rank 0."""
        t = self.trainer
        return {
            "model": t.model.state_dict(),
            "optimizer": t.optimizer.state_dict(),
            "train_state": {
                "step": t.step,
                "tokens_seen": t.tokens_seen,
                "techniques": {name: part.state_dict() for name, part in t.components.items()},
                "ranks": per_rank,
                "world_size": t.dist.world_size,
                "config_digest": t.cfg.digest(),
            },
        }

    def _load_shared(self, parts: dict[str, Any]) -> None:
        """Optimizer, step, tokens seen and every component's state: what all ranks share."""
        t = self.trainer
        load_optimizer_state(t.optimizer, parts["optimizer"])
        state = parts["train_state"]
        t.step, t.tokens_seen = state["step"], state["tokens_seen"]
        for name, part in t.components.items():
            if name in state["techniques"]:
                part.load_state_dict(state["techniques"][name])
        self.last_step = t.step

    # ------------------------------------------------------------------ rollback

    def rollback(self) -> int | None:
        """Restore weights, optimizer and component state from the newest valid checkpoint, on every rank;
        returns its step (None without one).

        The data sampler keeps its position, so the window that caused the anomaly is skipped
        rather than replayed.
        """
        t = self.trainer
        self.manager.settle()  # a background save still in flight may be the newest good one
        # Rank 0's answer for all: what ranks do next (load, or the collective weights_finite) must agree.
        path = t.dist.broadcast_objects(checkpoint.newest_loadable(t.run.checkpoints)[0] if t.dist.is_main else None)
        if path is None:
            return None
        with t.monitors.unwatched():
            parts = checkpoint.load(path, map_location=t.device)
        t.model.load_state_dict(parts["model"])
        peak_lr = t.schedule.peak_lr  # a set_lr after the checkpoint still holds
        self._load_shared(parts)
        t.schedule.peak_lr = peak_lr
        t.hooks.fire("restored", t.step)
        return t.step

    # ------------------------------------------------------------------ resume

    def resume(self, request: checkpoint.ResumeRequest | bool = True) -> dict[str, Any] | None:
        """Restore what a checkpoint holds. Collective; returns what run_start records as ``resumed_from``.

        The source is this run's newest valid full checkpoint (invalid newer ones are reported and
        passed over), else ``request.fork_from``: a fork, whose config changes are recorded, or a
        weights-only checkpoint, which gives the weights to a run that starts at step 0. After
        torchrun restarted the workers (``request.attempt`` > 0) a ``restart`` event says how many
        steps were lost.
        """
        t = self.trainer
        request = request if isinstance(request, checkpoint.ResumeRequest) else checkpoint.ResumeRequest()
        reached = self._last_step_reached() if request.attempt else 0
        path, mode = self.manager.resume_point(request.fork_from)
        info = None
        if path is None:
            t.emit("status", state="starting", message="no valid checkpoint to resume from; starting fresh")
        else:
            parts = checkpoint.load(path, map_location=t.device)
            saved = parts["manifest"]
            checkpoint.check_compatible(parts["model"], t.model.state_dict(), str(path))
            t.model.load_state_dict(parts["model"])
            if mode != "weights":
                self._restore_training_state(parts, saved)
            info = {
                "step": t.step,
                "path": str(path),
                "mode": mode,
                "config_changes": checkpoint.config_changes(saved.get("config"), t.cfg.model_dump(mode="json")),
            }
            what = {"resume": "resumed from", "fork": "forked from", "weights": "starting from the weights of"}[mode]
            t.emit("status", state="starting", message=f"{what} {path} at step {t.step}")
        self.manager.adopt(path if mode == "resume" else None)
        if request.attempt:
            t.emit(
                "restart",
                attempt=request.attempt,
                resumed_from=t.step,
                steps_lost=max(0, reached - t.step),
                path=str(path) if path else None,
                max_restarts=int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0)),
            )
        return info

    def _restore_training_state(self, parts: dict[str, Any], saved: dict[str, Any]) -> None:
        t = self.trainer
        self._load_shared(parts)
        if (saved.get("config") or {}).get("optim", {}).get("lr") != t.cfg.optim.lr:
            t.schedule.peak_lr = t.cfg.optim.lr  # a changed config LR wins over the saved (maybe set_lr) peak
        state = parts["train_state"]
        if state["world_size"] == t.dist.world_size:
            mine = state["ranks"][t.dist.rank]
            checkpoint.set_rng_state(mine["rng"], t.device)
            t.batches.load_rank_state(mine["sampler"])
        else:
            self._continue_on_new_world_size(state["ranks"], state["world_size"])
        t.evaluator.last = dict(saved.get("metrics") or {})

    def _continue_on_new_world_size(self, ranks: list[dict[str, Any]], saved_world: int) -> None:
        """Resume on a different number of ranks: same weights, optimizer, schedule and global batch.

        Dropout streams cannot carry over, so they are reseeded: correct training, not bit-identical
        to the old world size.
        """
        t = self.trainer
        where = t.batches.continue_from(ranks, saved_world)
        torch.manual_seed(t.cfg.run.seed + t.dist.rank + 1_000_003 * t.step)
        t.emit(
            "status",
            state="starting",
            message=f"world size changed from {saved_world} to {t.dist.world_size}: {where}; dropout streams "
            f"are reseeded, so results are not bit-identical to a {saved_world}-rank continuation",
        )

    def _last_step_reached(self) -> int:
        """The furthest step the failed attempt recorded (its events after the last run_start); a lower
        bound when rank 0 itself died between two events."""
        return last_attempt_step(self.trainer.run.events) if self.trainer.dist.is_main else 0
