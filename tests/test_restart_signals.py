"""With run.max_restarts > 0, torchrun tears a worker group down with SIGTERM to restart it; a person's or the
app's stop must still end the run with its final checkpoint, and torchrun's SIGTERM must not.

The launcher and the app stop a run with the stop command and then SIGINT to torchrun, which forwards it to the
workers; SIGTERM sent straight to the workers stands for torchrun's teardown.
"""

from __future__ import annotations

import signal

import psutil
import pytest

from tests.conftest import SMOKE
from tests.helpers import events_of, start_run, wait_until

RESTARTABLE = ["-c", str(SMOKE), "--nproc", "2", "--set", "run.max_restarts=1", "--set", "checkpoint.interval=10"]
RESTARTABLE += ["--set", "run.eval_interval=1000"]


def _workers(launcher: psutil.Process) -> list[psutil.Process]:
    """The training processes: their module (the first ``-m``) is the trainer, not torchrun's agent."""
    return [p for p in launcher.children(recursive=True) if _module(p.cmdline()) == "engine.training.train"]


def _module(args: list[str]) -> str | None:
    return args[args.index("-m") + 1] if "-m" in args[:-1] else None


def _saved(run_dir) -> list[int]:
    return [c["step"] for c in events_of(run_dir, "checkpoint")]


@pytest.mark.slow
def test_torchruns_sigterm_to_the_workers_ends_the_attempt_and_the_run_resumes_to_its_end(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(run_dir, *RESTARTABLE, "--set", "run.max_steps=40")
    try:
        wait_until(lambda: _saved(run_dir), 240, "a checkpoint")
        for worker in _workers(psutil.Process(proc.pid)):
            worker.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    restart = events_of(run_dir, "restart")
    assert len(restart) == 1 and restart[0]["attempt"] == 1 and restart[0]["resumed_from"] in _saved(run_dir)
    events = events_of(run_dir)
    steps = [e["step"] for e in events[events.index(restart[0]) :] if e["type"] == "metrics"]
    assert steps and steps[0] > restart[0]["resumed_from"] and steps == sorted(steps)
    assert [(e["reason"], e["step"]) for e in events_of(run_dir, "run_end")] == [("finished", 40)]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM to the launcher", "the launcher killed"])
def test_a_stop_by_signal_stays_a_stop_with_its_checkpoint_when_torchrun_may_restart(tmp_path, how):
    """The app's Stop escalates to SIGTERM for the launcher; a launcher that dies hands its torchrun a stop."""
    run_dir = tmp_path / "run"
    proc = start_run(run_dir, *RESTARTABLE, "--set", "run.max_steps=100000")
    try:
        wait_until(lambda: _saved(run_dir), 240, "a checkpoint")
        launcher = psutil.Process(proc.pid)
        workers = _workers(launcher)
        if how == "the launcher killed":
            launcher.kill()
        else:
            launcher.send_signal(signal.SIGTERM)
        psutil.wait_procs(workers, timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    ends = events_of(run_dir, "run_end")
    assert [e["reason"] for e in ends] == ["stopped"] and not events_of(run_dir, "restart")
    assert ends[0]["step"] in _saved(run_dir)  # the final checkpoint: nothing trained is lost


@pytest.mark.slow
def test_a_batch_systems_sigterm_to_every_process_stays_a_stop_with_its_checkpoint_when_torchrun_may_restart(
    tmp_path,
):
    """SLURM's preemption or scancel signals every process of the job step, workers included; the launcher runs
    there with --sigterm stop, and the run must end with its final checkpoint for the requeued job to resume."""
    run_dir = tmp_path / "run"
    proc = start_run(run_dir, *RESTARTABLE, "--sigterm", "stop", "--set", "run.max_steps=100000")
    try:
        wait_until(lambda: _saved(run_dir), 240, "a checkpoint")
        launcher = psutil.Process(proc.pid)
        step = [launcher, *launcher.children(recursive=True)]
        assert _workers(launcher)
        for process in step:
            process.send_signal(signal.SIGTERM)
        psutil.wait_procs(step, timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    ends = events_of(run_dir, "run_end")
    assert [e["reason"] for e in ends] == ["stopped"] and not events_of(run_dir, "restart")
    assert ends[0]["step"] in _saved(run_dir)  # the final checkpoint: the requeued job resumes from it
