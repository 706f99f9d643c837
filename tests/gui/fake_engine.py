"""A stand-in engine for GUI tests: plays a live run and obeys control.jsonl.

    python tests/gui/fake_podium/podium run -r RUN_DIR [--steps N] [--interval S] [--crash-at STEP] [--ignore-stop]

Run under the name and arguments of a launcher's command line (``podium run -r RUN_DIR``), since only a
process that is verifiably a run's launcher is ever signalled. Writes launcher.json (its own pid),
engine.log and events.jsonl like the real launcher, answers every command with a control_ack, pauses, resumes, stops,
saves "checkpoints" and changes the LR. ``--crash-at`` dies without a
run_end (as a segfaulting engine would); ``--ignore-stop`` never answers a
stop, to exercise the GUI's SIGTERM/SIGKILL escalation.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scripted import CONFIG, ENV, metrics_payload, system_payload  # noqa: E402

from engine.contract.commands import ControlInbox  # noqa: E402
from engine.contract.events import EventWriter  # noqa: E402
from engine.contract.rundir import RunDir  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["run"])
    p.add_argument("-r", "--run-dir", required=True)
    p.add_argument("--steps", type=int, default=100000)
    p.add_argument("--interval", type=float, default=0.05, help="seconds per logged step")
    p.add_argument("--log-interval", type=int, default=10)
    p.add_argument("--crash-at", type=int, default=None)
    p.add_argument("--ignore-stop", action="store_true")
    p.add_argument("--ignore-term", action="store_true")
    a = p.parse_args()
    run = RunDir(a.run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    run.write_launcher(os.getpid())
    if a.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log = open(run.engine_log, "a", buffering=1)
    log.write(f"fake engine pid {os.getpid()} starting\n")
    inbox = ControlInbox(run.control)
    w = EventWriter(run.events)
    w.emit("run_start", 0, config=CONFIG, env=ENV, total_steps=a.steps)
    w.emit("status", 0, state="running", message="")
    lr, paused, step = 1e-3, False, 0
    while step < a.steps:
        for cmd in inbox.poll():
            name, cid = cmd.get("cmd"), cmd.get("id")
            if name == "stop" and a.ignore_stop:
                continue
            outcome, reason = "done", ""
            if name == "pause":
                if paused:
                    outcome, reason = "refused", "already paused"
                else:
                    paused = True
                    w.emit("status", step, state="paused", message="paused by command")
            elif name == "resume":
                if not paused:
                    outcome, reason = "refused", "not paused"
                else:
                    paused = False
                    w.emit("status", step, state="running", message="")
            elif name == "set_lr":
                lr = float(cmd["args"]["lr"])
            elif name == "save_checkpoint":
                w.emit(
                    "checkpoint",
                    step,
                    path=str(run.checkpoints / f"step-{step:06d}"),
                    kind="full",
                    reason="command",
                    size_bytes=1000,
                )
            elif name == "profile":
                # As the engine: the steps are recorded, then one profile event names the trace and the top operators.
                trace = run.root / "profiles" / f"step-{step:07d}" / "host.pt.trace.json"
                trace.parent.mkdir(parents=True, exist_ok=True)
                trace.write_text("{}")
                profiled = (step, int(cmd["args"]["steps"]), str(trace))
            elif name != "stop":
                outcome, reason = "refused", f"unknown command {name!r}"
            w.emit("control_ack", step, id=cid, cmd=name, outcome=outcome, reason=reason)
            if name == "profile":
                w.emit(
                    "profile",
                    step,
                    path=profiled[2],
                    steps=profiled[1],
                    table="(table)",
                    top=[{"name": "aten::mm", "calls": 40, "self_cpu_ms": 12.5, "cpu_total_ms": 13.0}],
                )
            log.write(f"command {name}: {outcome}\n")
            if name == "stop":
                w.emit("status", step, state="stopping", message="stop requested")
                w.emit("run_end", step, reason="stopped", message="stopped by command")
                log.write("stopped\n")
                return 0
        if paused:
            time.sleep(0.02)
            continue
        step += a.log_interval
        w.emit("metrics", step, **metrics_payload(step, lr=lr))
        if step % (a.log_interval * 5) == 0:
            w.emit("system", step, **system_payload(step))
        if a.crash_at is not None and step >= a.crash_at:
            log.write("Traceback (most recent call last):\nRuntimeError: simulated crash in the training step\n")
            log.flush()
            os._exit(3)
        time.sleep(a.interval)
    w.emit("run_end", step, reason="finished", message="")
    log.write("finished\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
