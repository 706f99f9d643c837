"""``podium slurm status|cancel RUN``: a SLURM run's job as the queue sees it, asked on the host that holds the run.

The app calls these through its workspace's access (``podium`` there), so a
run on a cluster's login node shows its queue state in an app on a laptop.
The job id comes from ``RUN/slurm.json`` (written by ``podium run --slurm``),
read as hostile: only a SLURM job id is ever passed to ``squeue``/``scancel``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.contract.commandline import UsageError
from engine.launcher.slurm import JOB_FILE

JOB_ID = re.compile(r"\d{1,12}(_\d{1,9})?")  # a job, or one task of an array
QUEUE_TIMEOUT_S = 20.0
# squeue's fields, in this order: state, reason, time used, time limit, (expected) start, nodes.
SQUEUE_FORMAT = "%T|%r|%M|%l|%S|%N"
# Queue states in which the job's script has not started: cancelling them loses no work.
WAITING = ("PENDING", "CONFIGURING", "REQUEUE_HOLD", "REQUEUED")


def add_parser(sub: Any) -> None:
    slurm = sub.add_parser("slurm", help="a SLURM run's job: its queue state, or cancel it while it waits")
    actions = slurm.add_subparsers(dest="action", required=True)
    status = actions.add_parser("status", help="the job's state from squeue (sacct once it left the queue)")
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true", help="one JSON object (for the app)")
    cancel = actions.add_parser(
        "cancel", help="cancel the job while it waits in the queue (a running job: podium control RUN stop)"
    )
    cancel.add_argument("run_dir", type=Path)


def cmd_slurm(args: Any) -> int:
    job = job_id(args.run_dir)
    if args.action == "cancel":
        return _cancel(args.run_dir, job)
    found = status(job)
    if args.json:
        print(json.dumps(found))
    else:
        print(describe(found))
    return 0


def job_id(run_dir: Path) -> str:
    """The job id that ``podium run --slurm`` recorded, checked before any SLURM command sees it."""
    path = run_dir / JOB_FILE
    try:
        record = json.loads(path.read_text(errors="replace"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; {run_dir} was not submitted with podium run --slurm") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f'{path}: not readable JSON ({exc}); expected {{"job_id": "12345", ...}}') from None
    job = record.get("job_id") if isinstance(record, dict) else None
    if not isinstance(job, str) or not JOB_ID.fullmatch(job):
        raise UsageError(f"{path}: job_id {job!r} is not a SLURM job id (digits, or JOB_TASK for an array task)")
    return job


def status(job: str) -> dict[str, Any]:
    """The job's state: squeue while SLURM keeps it, then sacct; ``state`` None when neither knows it."""
    found: dict[str, Any] = {"job_id": job, "state": None, "reason": "", "elapsed": "", "time_limit": ""}
    found |= {"start": "", "nodes": "", "source": ""}
    queue = _run("squeue", "-h", "-j", job, "-o", SQUEUE_FORMAT)
    line = queue.stdout.strip().splitlines()[0] if queue.returncode == 0 and queue.stdout.strip() else ""
    if line:
        state, reason, elapsed, limit, start, nodes = (line.split("|") + [""] * 6)[:6]
        found |= {"state": state, "elapsed": elapsed, "time_limit": limit, "nodes": nodes, "source": "squeue"}
        found["reason"] = "" if reason in ("None", "(null)") else reason
        found["start"] = "" if start in ("N/A", "Unknown") else start
        return found
    if queue.returncode != 0 and "invalid job id" not in queue.stderr.lower():
        found["note"] = f"squeue cannot tell: {_first_line(queue.stderr)}"
        return found
    history = _run("sacct", "-n", "-X", "-P", "-j", job, "-o", "State,Reason,Elapsed,Timelimit,Start,NodeList")
    line = history.stdout.strip().splitlines()[-1] if history.returncode == 0 and history.stdout.strip() else ""
    if line:
        state, reason, elapsed, limit, start, nodes = (line.split("|") + [""] * 6)[:6]
        found |= {"state": state.split()[0] if state else None, "elapsed": elapsed, "time_limit": limit}
        found |= {"start": start, "nodes": nodes, "source": "sacct"}
        found["reason"] = "" if reason in ("None", "(null)") else reason
        return found
    why = _first_line(history.stderr) or "no record of it"
    found["note"] = f"the job left the queue and sacct cannot tell how it ended ({why})"
    return found


def describe(found: dict[str, Any]) -> str:
    state = found.get("state")
    if not state:
        return f"SLURM job {found['job_id']}: {found.get('note', 'unknown')}"
    reason = f" ({found['reason']})" if found.get("reason") else ""
    used = f", {found['elapsed']} of {found['time_limit']}" if found.get("elapsed") else ""
    return f"SLURM job {found['job_id']}: {state}{reason}{used}"


def _cancel(run_dir: Path, job: str) -> int:
    before = status(job).get("state")
    if before not in WAITING:
        what = "left the queue" if before is None else f"is {before}"
        print(f"SLURM job {job} {what}: only a job that waits in the queue is cancelled here", file=sys.stderr)
        if before == "RUNNING":
            print(f"stop the run with a checkpoint instead: podium control {run_dir} stop", file=sys.stderr)
        return 1
    # --state: the controller cancels the job only while it still waits, so a job that started meanwhile
    # keeps its run (and is stopped with a checkpoint by `podium control RUN stop` instead).
    result = _run("scancel", f"--state={before}", job)
    after = status(job).get("state")
    if result.returncode != 0 or after in WAITING or after == "RUNNING":
        why = result.stderr.strip() or f"the job is {after}"
        print(f"SLURM job {job} was not cancelled: {why}", file=sys.stderr)
        return 1
    print(f"cancelled SLURM job {job}" + (f" ({after})" if after else ""))
    return 0


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which(tool)
    if path is None:
        raise UsageError(f"{tool} is not on PATH: run podium slurm on a host of the SLURM cluster that ran the job")
    try:
        return subprocess.run([path, *args], capture_output=True, text=True, timeout=QUEUE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess([path, *args], 1, "", f"{tool} gave no answer in {QUEUE_TIMEOUT_S:g} s")


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].removeprefix("error: ") if lines else ""
