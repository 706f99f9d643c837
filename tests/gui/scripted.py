"""Scripted event streams for GUI tests and the GUI benchmark.

``write_run`` writes a whole run's events at once (a finished run to open);
``fake_engine.py`` (run as a child process) plays a live run at a controlled
pace and answers control commands the way the engine does, so widget tests do
not depend on torch.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterable
from pathlib import Path

from engine.contract.events import EventWriter
from engine.contract.rundir import RunDir

HERE = Path(__file__).resolve().parent
FAKE_PODIUM = HERE / "fake_podium" / "podium"  # fake_engine.py under a launcher's name

ENV = {
    "world_size": 2,
    "backend": "gloo",
    "device": "cpu",
    "precision": "fp32",
    "precision_reason": "CPU: no bf16 autocast benefit",
    "torch": "2.13.0",
    "python": "3.11",
    "hostname": "test",
    "devices": ["cpu", "cpu"],
}
CONFIG = {"run": {"max_steps": 1000, "log_interval": 10}, "optim": {"lr": 0.001}}


def loss_at(step: int, seed: int = 0) -> float:
    rng = random.Random(step * 7919 + seed)
    return 4.0 * math.exp(-step / 400) + 1.2 + rng.gauss(0, 0.08)


def metrics_payload(step: int, lr: float = 1e-3, seed: int = 0, loss: float | None = None) -> dict:
    st = 0.25 + 0.02 * math.sin(step / 50)
    return {
        "loss": loss_at(step, seed) if loss is None else loss,
        "lr": lr,
        "grad_norm": 1.5 + math.sin(step / 30),
        "grad_norm_clipped": min(1.0, 1.5 + math.sin(step / 30)),
        "samples_per_s": 64 / st,
        "tokens_per_s": 16384 / st,
        "step_time": st,
        "data_wait_frac": 0.02 + 0.01 * math.cos(step / 40),
        "rank_work_times": [st, st * 1.04],
        "tokens_seen": step * 4096,
        "epoch": step // 500,
    }


# The corpus reference the engine measures once per run and sends with every sample event.
REFERENCE = {"pitch_class_entropy": {"mean": 2.9, "std": 0.2}, "note_density": {"mean": 5.0, "std": 0.5}}


def music_metrics(step: int) -> dict:
    return {"pitch_class_entropy": 2.5 + 0.3 * math.sin(step / 300), "note_density": 4 + step / 500}


def quality_at(step: int) -> float:
    return 0.8 - 0.6 * math.exp(-step / 400)


def system_payload(step: int) -> dict:
    return {
        "host": "test",
        "host_cpu_percent": 60 + 10 * math.sin(step / 80),
        "host_mem_percent": 40.0,
        "host_mem_used_mb": 6000.0,
        "ranks": [
            {
                "rank": r,
                "cpu_percent": 95.0,
                "rss_mb": 900 + step * 0.1 + 50 * r,
                "gpu_mem_alloc_mb": None,
                "gpu_mem_reserved_mb": None,
                "gpu_mem_peak_mb": None,
            }
            for r in range(2)
        ],
        "gpus": [],
    }


def write_run(
    run_dir: Path,
    steps: int = 1000,
    log_interval: int = 10,
    eval_interval: int = 100,
    nan_at: Iterable[int] = (),
    end: str | None = "finished",
    seed: int = 0,
    t0: float | None = None,
    dt: float = 0.5,
    samples: bool = True,
    anomalies: bool = True,
) -> RunDir:
    """A complete run's events with controlled timestamps (``t0`` + ``dt`` per logged step)."""
    run = RunDir(run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    nan_at = set(nan_at)
    t = t0 if t0 is not None else 1_700_000_000.0
    with EventWriter(run.events) as w:

        def emit(type_: str, step: int, **payload) -> None:
            w._file.write(_line(type_, step, t, payload))

        emit("run_start", 0, config=CONFIG, env=ENV, total_steps=steps)
        emit("status", 0, state="preparing", message="tokenising", progress=10, total=10)
        emit(
            "data",
            0,
            pieces_train=300,
            pieces_val=30,
            tokens_train=1_200_000,
            tokens_val=120_000,
            vocab_size=280,
            skipped=[{"file": "bwv999.mxl", "reason": "no notes"}],
        )
        emit("status", 0, state="running", message="")
        for step in range(log_interval, steps + 1, log_interval):
            t += dt
            emit("metrics", step, **metrics_payload(step, seed=seed, loss=math.nan if step in nan_at else None))
            if step % (log_interval * 5) == 0:
                emit("system", step, **system_payload(step))
            if step % eval_interval == 0:
                # As the engine: the round's samples and their quality score, then the validation pass with the score.
                if samples:
                    emit(
                        "sample",
                        step,
                        path=f"samples/step-{step}.mid",
                        metrics=music_metrics(step),
                        quality_score=quality_at(step),
                        reference=REFERENCE,
                    )
                    emit("eval", step, val_loss=loss_at(step, seed + 1) + 0.1, quality_score=quality_at(step))
                else:
                    emit("eval", step, val_loss=loss_at(step, seed + 1) + 0.1)
            if anomalies and step == steps // 2:
                emit(
                    "anomaly",
                    step,
                    kind="loss_spike",
                    severity="warning",
                    message="loss rose 3.1 sigma above its EMA",
                    evidence={"loss": 2.9, "ema": 2.1},
                    suggestion="lower the LR",
                    action=None,
                    action_result=None,
                )
            if step % 500 == 0:
                emit(
                    "checkpoint",
                    step,
                    path=f"checkpoints/step-{step:06d}",
                    kind="full",
                    reason="interval",
                    size_bytes=12_345_678,
                )
        if end:
            emit("run_end", steps, reason=end, message="")
    return run


def _line(type_: str, step: int, t: float, payload: dict) -> str:
    import json

    return json.dumps({"v": 1, "type": type_, "time": t, "step": step, **payload}) + "\n"


def fake_engine_argv(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(FAKE_PODIUM), "run", "-r", str(run_dir), *extra]


def write_rollback_run(
    run_dir: Path,
    reached: int = 125,
    to_step: int = 100,
    steps: int = 300,
    t0: float = 1_700_000_000.0,
    dt: float = 0.5,
) -> RunDir:
    """A run whose loss goes NaN at ``reached``: the engine rolls back to the checkpoint at ``to_step``
    (anomaly, then its follow-up with ``action_taken``) and logs steps ``to_step + 1`` on again, with
    the LR halved and a different trajectory, up to ``steps``. Logged every step."""
    run = RunDir(run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    t = t0
    with open(run.events, "w", encoding="utf-8") as f:

        def emit(type_: str, step: int, **payload) -> None:
            f.write(_line(type_, step, t, payload))

        emit("run_start", 0, config=CONFIG, env=ENV, total_steps=steps)
        emit("status", 0, state="running", message="")
        for step in range(1, reached + 1):
            t += dt
            # The first pass drifts up before it breaks: the undone stretch must read as a branch.
            loss = (
                math.nan
                if step == reached
                else (loss_at(step) + (0.02 * (step - to_step) ** 1.5 if step > to_step else 0))
            )
            emit("metrics", step, **metrics_payload(step, loss=loss))
            if step == to_step:
                emit(
                    "checkpoint",
                    step,
                    path=f"checkpoints/step-{step:06d}",
                    kind="full",
                    reason="interval",
                    size_bytes=12_345_678,
                )
        emit(
            "anomaly",
            reached,
            id="nan-1",
            kind="nonfinite_loss",
            severity="critical",
            message="loss is NaN",
            evidence={"loss": "nan"},
            suggestion="roll back and lower the LR",
            action="rollback",
            action_result=None,
        )
        t += dt
        emit(
            "anomaly",
            to_step,
            id="nan-1",
            kind="nonfinite_loss",
            severity="info",
            action="rollback",
            message="rollback after nonfinite_loss: done",
            action_taken={"action": "rollback", "outcome": "done", "to_step": to_step, "lr_factor": 0.5},
        )
        for step in range(to_step + 1, steps + 1):
            t += dt
            emit("metrics", step, **metrics_payload(step, lr=5e-4, seed=1))
        emit("run_end", steps, reason="finished", message="")
    return run
