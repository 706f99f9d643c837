"""The console of ``podium run`` (launch.py's Follower, engine/contract/progress.py) on recorded events."""

from __future__ import annotations

import pytest

from engine.contract.events import EventWriter, as_records
from engine.contract.progress import event_line
from engine.contract.rundir import RunDir
from engine.launcher.launch import Follower


def _metrics(step: int, loss: float = 2.0) -> dict:
    return {"loss": loss, "tokens_per_s": 1000.0, "step_time": 0.1}


def _record(tmp_path) -> RunDir:
    """A NaN at step 20 that the anomaly policy answers with a rollback to step 10 and a lower LR, then a profile."""
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    with EventWriter(run.events) as w:
        w.emit("run_start", 0, total_steps=40)
        w.emit("metrics", 10, **_metrics(10))
        w.emit("metrics", 20, **_metrics(20, float("nan")))
        w.emit(
            "anomaly",
            20,
            id="a1",
            kind="nonfinite_loss",
            severity="critical",
            message="training loss is NaN",
            evidence={},
            suggestion="lower the LR",
            action="rollback",
        )
        w.emit(
            "anomaly",
            20,
            id="a1",
            kind="nonfinite_loss",
            action="rollback",
            severity="info",
            action_taken={"action": "rollback", "outcome": "done", "to_step": 10, "lr_factor": 0.5},
            message="rollback after nonfinite_loss: done",
        )
        w.emit("metrics", 20, **_metrics(20))
        w.emit(
            "profile",
            25,
            path=str(run.root / "profiles" / "step-0000021" / "host.pt.trace.json"),
            steps=5,
            top=[
                {"name": "aten::mm", "calls": 40, "self_cpu_ms": 12.5, "cpu_total_ms": 13.0},
                {"name": "aten::addmm", "calls": 20, "self_cpu_ms": 3.25, "cpu_total_ms": 4.0},
            ],
            table="...",
        )
        w.emit("run_end", 40, reason="finished")
    return run


@pytest.mark.parametrize("bar", [False, True])
def test_anomalies_recoveries_and_profiles_are_printed(tmp_path, capsys, bar):
    run = _record(tmp_path)
    follower = Follower(run, total=40, bar=bar, start_offset=0)
    follower.poll()
    follower.close()
    out = capsys.readouterr().out.splitlines()
    anomaly = next(line for line in out if line.startswith("[anomaly"))
    assert anomaly == "[anomaly critical] nonfinite_loss at step 20: training loss is NaN -> rollback"
    recovery = next(line for line in out if line.startswith("[recovery]"))
    assert recovery == "[recovery] step 20: rollback after nonfinite_loss: rolled back to step 10, LR x0.5"
    assert out.index(anomaly) < out.index(recovery)
    profile = next(line for line in out if line.startswith("[profile]"))
    assert "5 step(s) recorded" in profile and "host.pt.trace.json" in profile
    assert "aten::mm 12.5 ms" in profile and "aten::addmm 3.2 ms" in profile
    assert follower.end is not None


def _anomaly(fields: dict):
    return as_records([{"v": 1, "type": "anomaly", "time": 1.0, **fields}])[0]


def test_recovery_lines_say_what_was_done():
    def line(taken):
        return event_line(_anomaly({"step": 7, "kind": "loss_spike", "action": taken["action"], "action_taken": taken}))

    assert line({"action": "lower_lr", "outcome": "done", "lr_factor": 0.5}).endswith("lower lr, LR x0.5")
    assert line(
        {
            "action": "rollback",
            "outcome": "no valid checkpoint to roll back to; lowered the LR instead",
            "lr_factor": 0.5,
        }
    ).endswith("LR x0.5, no valid checkpoint to roll back to; lowered the LR instead")
    assert line({"action": "skip_batch", "outcome": "done"}).endswith("skipped the next batch")
    assert line({"action": "pause", "outcome": "done"}).endswith("paused the run")
    alert = event_line(
        _anomaly(
            {
                "step": 3,
                "kind": "grad_spike",
                "severity": "warning",
                "message": "grad norm 40x its median",
                "action": "alert",
            }
        )
    )
    assert alert == "[anomaly warning] grad_spike at step 3: grad norm 40x its median"
    assert event_line({"v": 1, "type": "metrics", "time": 1.0, "step": 3}) is None
