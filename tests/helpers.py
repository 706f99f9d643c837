"""Helpers for tests that drive real engine processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.contract.events import read_events

REPO = Path(__file__).resolve().parent.parent
_tick = threading.Event()  # never set: wait() on it is an interruptible pause between polls


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        _tick.wait(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def events_of(run_dir: Path, type_: str | None = None) -> list[dict]:
    events, _ = read_events(run_dir / "events.jsonl")
    return [e for e in events if type_ is None or e["type"] == type_]


def ack_for(run_dir: Path, command_id: str) -> dict | None:
    return next((e for e in events_of(run_dir, "control_ack") if e.get("id") == command_id), None)


def start_run(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), "run", "-r", str(run_dir), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def trainer_in_this_process(run_root: Path, overrides: list[str]) -> Iterator:
    """A 1-rank CPU Trainer of resources/smoke.yaml (tiny samples) in this process, as bench/overhead.py
    drives it: world size 1 needs neither torchrun nor a process group. Restores torch's thread count."""
    import torch

    from engine.contract import config
    from engine.contract.rundir import RunDir
    from engine.training import distributed
    from engine.training.train import Trainer

    cfg = config.load(
        REPO / "resources" / "smoke.yaml",
        ["run.device=cpu", "music.num_samples=1", "music.sample_tokens=16", *overrides],
    )
    run = RunDir(run_root)
    run.root.mkdir()
    run.config.write_text(config.dump(cfg))  # as the launcher prepares the run directory
    run.control.touch()
    threads = torch.get_num_threads()
    try:
        yield Trainer(run, cfg, distributed.init("cpu", 1), None)
    finally:
        torch.set_num_threads(threads)


def train_to(trainer, interval, step: int):
    """Drive a :func:`trainer_in_this_process` Trainer through loop iterations until ``step``; returns the interval."""
    while trainer.step < step:
        interval = trainer.iteration(interval)
    return interval
