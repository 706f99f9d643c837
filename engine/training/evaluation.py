"""Evaluation at ``run.eval_interval``: validation loss on every rank, samples and their quality on rank 0."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from engine.training.trainer import Trainer


class Evaluator:
    """Evaluates the model, applies plateau, and fires the ``evaluation`` hook with the result."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.last: dict[str, Any] = {}  # the latest result, with its step
        self.done = 0
        self.last_train_loss = float("nan")

    @torch.no_grad()
    def validation_loss(self, model: torch.nn.Module) -> tuple[float, int]:
        t = self.trainer
        dist, batches, micro = t.dist, t.batches, t.micro.size
        total = torch.zeros(2, device=t.device)
        mine = list(range(dist.rank, len(batches.val_set), dist.world_size))
        limit = t.cfg.run.eval_max_batches
        chunks = [mine[i : i + micro] for i in range(0, len(mine), micro)]
        for chunk in chunks[:limit] if limit else chunks:
            x, y = batches.to_device([batches.val_set.example(i) for i in chunk])
            total[0] += t.loss_sum(model, x, y)
            total[1] += (y != batches.pad_id).sum()
        dist.all_reduce_sum(total)
        loss_sum, count = total.tolist()
        return loss_sum / max(count, 1), int(count)

    def evaluate(self) -> None:
        """Validation loss (all ranks), then samples and their quality (rank 0; the score is shared for
        early stopping)."""
        with self.trainer.monitors.unwatched():
            self._evaluate()

    def _evaluate(self) -> None:
        t = self.trainer
        started = time.perf_counter()
        t.model.eval()
        val_loss, count = self.validation_loss(t.model)
        result: dict[str, Any] = {
            "val_loss": val_loss,
            "val_ppl": math.exp(min(val_loss, 50.0)),
            "val_tokens": count,
            "train_loss": self.last_train_loss,
        }
        if t.ema is not None:
            result["val_loss_ema"], _ = self.validation_loss(t.ema.module)
        music = t.cfg.music
        if music.enabled and self.done % music.every_n_evals == 0:
            result["quality_score"] = t.dist.broadcast_objects(self._samples())
        self.done += 1
        t.model.train()
        if t.plateau:
            new_scale = t.plateau.observe(val_loss, t.schedule.plateau_scale)
            if new_scale is not None:
                t.schedule.plateau_scale = new_scale
                t.emit(
                    "status",
                    state="running",
                    message=f"validation loss plateaued: LR scale now {new_scale:g}",
                    lr_scale=new_scale,
                )
        result["lr_scale"] = t.schedule.plateau_scale
        self.last = {"step": t.step, **result}
        t.emit(
            "eval", **result, replicas_in_sync=self.replicas_in_sync(), seconds=round(time.perf_counter() - started, 3)
        )
        t.hooks.fire("evaluation", result)

    def _samples(self) -> float | None:
        """Rank 0 writes samples of the model and returns their quality score (None on other ranks)."""
        t = self.trainer
        if not t.weights_finite():
            t.emit("status", state="running", message=f"no samples at step {t.step}: the weights are not finite")
            return None
        if t.monitors.music is None:
            return None
        report = t.monitors.music.run(t.model, t.step)
        t.emit("sample", **report)
        t.monitors.on_samples(report["metrics"])
        return report["quality_score"]

    def replicas_in_sync(self) -> bool:
        """Whether every rank holds the same weights: a command applied at different steps would break it."""
        t = self.trainer
        checksum = float(torch.stack([p.detach().double().sum() for p in t.model.parameters()]).sum())
        return len(set(t.dist.gather_objects(checksum))) == 1
