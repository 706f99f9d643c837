"""What SIGTERM means to a worker: torchrun ending the attempt (a restart may follow), or a stop with a checkpoint.

The signal reaches the worker wherever it is; these tests deliver it inside the code that keeps a run going past
failures (a checkpoint write, a metrics mirror), which must not swallow the end of the attempt.
"""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest
import torch

from engine.checkpoints import checkpoint
from engine.contract.config import CheckpointSection, SinksSection
from engine.contract.rundir import RunDir
from engine.launcher.launch import LaunchOptions, torchrun_command
from engine.monitoring.sinks import Sinks
from engine.training import dispatcher
from engine.training.dispatcher import GroupRestart, handle_signals
from engine.training.distributed import Dist
from tests.test_monitoring import _fake_wandb


@pytest.fixture
def own_signals(monkeypatch):
    """The test installs the workers' handlers; pytest gets its own back, and no stop stays signalled."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(dispatcher, "_stop_signalled", False)
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_torchruns_sigterm_during_a_checkpoint_write_ends_the_attempt_and_leaves_no_failed_save(
    tmp_path, own_signals, monkeypatch
):
    events: list[dict] = []
    manager = checkpoint.CheckpointManager(
        tmp_path / "checkpoints",
        CheckpointSection(async_save=False, keep_best=0),
        Dist(0, 1, 0, 1, 0, torch.device("cpu"), "gloo"),
        lambda type_, step, **p: events.append({"type": type_, "step": step, **p}),
    )
    parts = {"model": {"w": torch.arange(4.0)}}
    assert manager.save(10, "interval", lambda: parts, meta={}, metric=None, files={})["ok"]
    real_save = torch.save

    def interrupted_save(*args, **kwargs):
        _sigterm_self()  # torchrun tears the group down while rank 0 writes
        real_save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted_save)
    handle_signals(torchrun_may_restart=True)
    with pytest.raises(GroupRestart):
        manager.save(20, "interval", lambda: parts, meta={}, metric=None, files={})
    # No "checkpoint failed" for the next attempt to report, and the earlier checkpoint is intact for it.
    assert [e["type"] for e in events] == ["checkpoint"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0000010"]
    assert torch.equal(checkpoint.load(tmp_path / "checkpoints" / "step-0000010")["model"]["w"], torch.arange(4.0))


def test_torchruns_sigterm_while_wandb_logs_ends_the_attempt_and_keeps_the_mirror(tmp_path, own_signals, monkeypatch):
    logged = []

    def log(values, step):
        _sigterm_self()
        logged.append(step)

    _fake_wandb(monkeypatch, lambda **kwargs: SimpleNamespace(log=log, finish=lambda: None))
    sinks = Sinks(SinksSection(wandb=True), tmp_path, "run", {})
    handle_signals(torchrun_may_restart=True)
    with pytest.raises(GroupRestart):
        sinks.scalars("train", 10, {"loss": 2.5})
    assert sinks.wandb is not None  # the next attempt mirrors again; nothing said it failed


@pytest.mark.parametrize(
    ("may_restart", "sigterm_stops", "ends_attempt"),
    [(True, False, True), (True, True, False), (False, False, False), (False, True, False)],
)
def test_sigterm_ends_the_attempt_only_when_torchrun_may_restart_and_no_batch_system_sent_it(
    own_signals, may_restart, sigterm_stops, ends_attempt
):
    handle_signals(torchrun_may_restart=may_restart, sigterm_stops=sigterm_stops)
    if ends_attempt:
        with pytest.raises(GroupRestart):
            _sigterm_self()
    else:
        _sigterm_self()
    assert dispatcher.stop_signalled() is not ends_attempt  # otherwise: a stop, with the final checkpoint


def test_a_launcher_run_as_a_batch_job_step_tells_its_workers_that_sigterm_stops(tmp_path):
    run = RunDir(tmp_path / "run")
    batch = torchrun_command(LaunchOptions(tmp_path / "run", max_restarts=2, sigterm_stops=True), run)
    plain = torchrun_command(LaunchOptions(tmp_path / "run", max_restarts=2), run)
    assert batch[batch.index("engine.training.train") :][-1] == "--sigterm-stops"
    assert "--sigterm-stops" not in plain
